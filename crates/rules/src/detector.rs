//! The rules as a detector of the nhiwatch engine: findings of kind `rule`.
//!
//! Each event the engine observes is evaluated against the rule set (with the lens results the
//! engine worked out, for native rules). Hits of one rule for one identity are grouped into an
//! episode while they keep coming within the engine's episode gap, like every other detector's
//! findings; the finding carries the rule's id, title, level, tags and file, its ATT&CK
//! techniques, and every matched event as evidence.

use std::sync::Arc;

use nhiwatch_detect::attack::Technique;
use nhiwatch_detect::{Detector, Draft, EngineConfig, Names, Observation, StreamPosition};
use nhiwatch_model::{FindingKind, Sym, Timestamp};
use nhiwatch_policy::{EntryId, Verdict};
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use crate::eval::{Evaluator, Hit, Limits, Origin};
use crate::record::{Lens, Subject};
use crate::set::RuleSet;
use crate::tags;

/// The open episode of one rule for one identity.
#[derive(Clone)]
struct RuleEpisode {
    entry: Option<EntryId>,
    start: Timestamp,
    last: Timestamp,
    event_ids: Vec<String>,
    hits: u32,
    group: Vec<String>,
    touched: u64,
}

/// Runs a [`RuleSet`] inside the engine (`Engine::add_detector`).
pub struct RulesDetector {
    eval: Evaluator,
    techniques: Vec<Vec<&'static Technique>>,
    episodes: FxHashMap<(u32, Sym), RuleEpisode>,
    hits: Vec<Hit>,
    gap: i64,
    max_evidence: usize,
    lateness: u64,
    seq: u64,
}

impl RulesDetector {
    /// A detector for `set` with the engine's episode settings and default [`Limits`].
    pub fn new(set: Arc<RuleSet>, config: &EngineConfig) -> Self {
        RulesDetector::with_limits(set, config, Limits::default())
    }

    /// The same with explicit limits on rule state.
    pub fn with_limits(set: Arc<RuleSet>, config: &EngineConfig, limits: Limits) -> Self {
        let techniques = set
            .rules()
            .iter()
            .map(|r| tags::techniques(&r.tags))
            .collect();
        RulesDetector {
            eval: Evaluator::new(set, limits),
            techniques,
            episodes: FxHashMap::default(),
            hits: Vec::new(),
            gap: config.episode_gap,
            max_evidence: config.max_evidence.max(1),
            lateness: config.lateness_events,
            seq: 0,
        }
    }

    fn lens(obs: &Observation<'_, '_>) -> Lens {
        Lens {
            out_of_scope: obs.judgement.is_refused(),
            permitted: matches!(obs.judgement.verdict, Verdict::Permitted(_)),
            declared: obs.entry.is_some(),
            first_sight: obs.first_sight,
            sensitive: obs
                .entry
                .zip(obs.profile)
                .is_some_and(|((_, entry), profile)| {
                    entry
                        .sensitive_match(profile, obs.event.resource.as_deref())
                        .is_some()
                }),
        }
    }

    /// Files the pending hits into episodes, reporting the episodes they close.
    fn drain(&mut self, names: &Names<'_>, out: &mut Vec<Draft>) {
        let hits = std::mem::take(&mut self.hits);
        for hit in &hits {
            let key = (hit.rule as u32, hit.origin.identity);
            let fits = self.episodes.get(&key).is_some_and(|e| {
                hit.time.0 <= e.last.0.saturating_add(self.gap)
                    && hit.time.0 >= e.start.0.saturating_sub(self.gap)
                    && e.event_ids.len() < self.max_evidence
            });
            if !fits {
                if let Some(closed) = self.episodes.remove(&key) {
                    self.report(key, closed, names, out);
                }
            }
            let episode = self.episodes.entry(key).or_insert_with(|| RuleEpisode {
                entry: hit.origin.entry,
                start: hit.time,
                last: hit.time,
                event_ids: Vec::new(),
                hits: 0,
                group: hit.group.clone(),
                touched: self.seq,
            });
            episode.start = episode.start.min(hit.time);
            episode.last = episode.last.max(hit.time);
            episode.hits += 1;
            episode.touched = self.seq;
            for id in &hit.event_ids {
                if episode.event_ids.len() >= self.max_evidence {
                    break;
                }
                if !episode.event_ids.contains(id) {
                    episode.event_ids.push(id.clone());
                }
            }
        }
        self.hits = hits;
        self.hits.clear();
    }

    fn report(
        &self,
        (rule, identity): (u32, Sym),
        episode: RuleEpisode,
        names: &Names<'_>,
        out: &mut Vec<Draft>,
    ) {
        let Some(info) = self.eval.set().rules().get(rule as usize) else {
            return;
        };
        let events = episode.event_ids.len();
        let summary = format!(
            "{} matched rule \"{}\" ({}, {}): {} event{}{}",
            names.identities.resolve(identity),
            info.title,
            info.level.as_str(),
            info.id,
            events,
            if events == 1 { "" } else { "s" },
            info.description
                .as_deref()
                .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
                .map(|d| format!("; {d}"))
                .unwrap_or_default(),
        );
        let mut rule_json = json!({
            "id": info.id,
            "title": info.title,
            "level": info.level.as_str(),
            "kind": info.kind.as_str(),
            "tags": info.tags,
            "file": info.file,
            "line": info.line,
        });
        if let (Some(description), Some(map)) = (&info.description, rule_json.as_object_mut()) {
            map.insert("description".into(), Value::from(description.as_str()));
        }
        let mut detail = json!({
            "lens": "rule",
            "rule": rule_json,
            "matches": episode.hits,
            "window": {
                "start": episode.start.to_string(),
                "end": episode.last.to_string(),
                "events": events,
            },
        });
        if let (Some(logic), Some(map)) = (
            self.eval.set().logic_json(rule as usize),
            detail.as_object_mut(),
        ) {
            map.insert("logic".into(), logic);
        }
        if !episode.group.is_empty() {
            if let Some(map) = detail.as_object_mut() {
                map.insert("group".into(), json!(episode.group));
            }
        }
        out.push(Draft {
            identity,
            entry: episode.entry,
            kind: FindingKind::Rule,
            severity: info.level.severity(),
            time: episode.last,
            summary,
            event_ids: episode.event_ids,
            detail,
            techniques: self
                .techniques
                .get(rule as usize)
                .cloned()
                .unwrap_or_default(),
        });
    }

    fn report_all(&mut self, mut keys: Vec<(u32, Sym)>, names: &Names<'_>, out: &mut Vec<Draft>) {
        keys.sort_by_key(|key| {
            let last = self.episodes.get(key).map_or(0, |e| e.last.0);
            (last, key.0, key.1 .0)
        });
        for key in keys {
            if let Some(episode) = self.episodes.remove(&key) {
                self.report(key, episode, names, out);
            }
        }
    }
}

impl Detector for RulesDetector {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, names: &Names<'_>, out: &mut Vec<Draft>) {
        let lens = if self.eval.set().native {
            RulesDetector::lens(obs)
        } else {
            Lens::default()
        };
        let subject = Subject::new(obs.event, lens);
        self.seq = obs.seq;
        let origin = Origin {
            identity: obs.identity,
            entry: obs.entry_id(),
        };
        self.eval.process(&subject, origin, &mut self.hits);
        if !self.hits.is_empty() {
            self.drain(names, out);
        }
    }

    fn sweep(&mut self, at: StreamPosition, names: &Names<'_>, out: &mut Vec<Draft>) {
        if let Some(identity) = at.preview {
            // An inline decision: the identity's episodes that this event joined, as they
            // would read if they closed now; nothing closes.
            let mut joined: Vec<((u32, Sym), RuleEpisode)> = self
                .episodes
                .iter()
                .filter(|((_, who), e)| *who == identity && e.touched == at.events)
                .map(|(key, e)| (*key, e.clone()))
                .collect();
            joined.sort_by_key(|(key, _)| key.0);
            for (key, episode) in joined {
                self.report(key, episode, names, out);
            }
            return;
        }
        self.eval.sweep(at.time, &mut self.hits);
        self.drain(names, out);
        let (gap, lateness) = (self.gap, self.lateness);
        let ended: Vec<(u32, Sym)> = self
            .episodes
            .iter()
            .filter(|(_, e)| {
                e.last.0.saturating_add(gap) < at.time.0
                    && e.touched.saturating_add(lateness) <= at.events
            })
            .map(|(key, _)| *key)
            .collect();
        self.report_all(ended, names, out);
    }

    fn flush(&mut self, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.eval.flush(&mut self.hits);
        self.drain(names, out);
        let all: Vec<(u32, Sym)> = self.episodes.keys().copied().collect();
        self.report_all(all, names, out);
    }

    fn state_bytes(&self) -> usize {
        let episodes: usize = self
            .episodes
            .values()
            .map(|e| {
                std::mem::size_of::<RuleEpisode>()
                    + e.event_ids
                        .iter()
                        .map(|id| id.capacity() + 24)
                        .sum::<usize>()
            })
            .sum();
        // Correlation groups and sequence runs: a small fixed cost each.
        episodes + self.eval.open_groups() * 160
    }
}
