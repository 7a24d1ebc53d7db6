//! The usual lens: each identity judged against its learned profile (and its peers'), plus the
//! catalogue of known-dangerous actions.
//!
//! | check | kind | fires on (profile mature: 30 events on 3 days) |
//! |---|---|---|
//! | new action | `novel_action` | an action the identity never performed, when it rarely does new things (Good-Turing rate ≤ 1%) |
//! | new resource | `novel_resource` | a resource container never touched (not for list actions, whose targets are free-form filters), or a new resource shape changed; same gate |
//! | rare transition | `rare_sequence` | an action after another that it (almost) never follows (smoothed bigram p < 0.4%, ≥ 100 departures seen; failed calls, usually retried, are not judged) |
//! | many lookups | `enumeration` | more distinct read/list targets in a 15-minute window than 3× the usual 99th percentile (and +10) |
//! | quiet hour | `time_anomaly` | activity at an hour of the day with (almost) nothing within two hours of it (< 0.2% of its activity, weighted), for identities whose policy sets no hours |
//! | data volume | `volume_anomaly` | more bytes out in a window than 3× the usual 99th percentile (and +64 MiB) |
//! | request rate | `rate_anomaly` | more events in a window than 3× the usual 99th percentile (and +20) |
//! | origin | `new_origin` | a source network (/24, /64) or user-agent family never seen, by it or its peers |
//! | catalogue | `privilege_escalation`, `defense_evasion` | [`super::catalogue`], unless routine for the identity (any maturity) |
//!
//! Every finding groups an identity's events per episode and check, and its `evidence.detail`
//! says what was compared: the baseline figure, the observed figure, the threshold.
//!
//! The profile keeps learning while it judges (unless [`UsualConfig::learn`] is off): known
//! behaviour at once, new behaviour through the [`Quarantine`] (three distinct days, never when
//! it raised a finding), windows only when no finding touched them.

use nhiwatch_baseline::{
    hash, peer, Baseline, Feature, Features, Novelty, Peers, Profile, Quarantine, Tracker,
    QUIET_HOUR_SHARE,
};
use nhiwatch_model::{ActionClass, FindingKind, Outcome, Severity, Sym};
use serde_json::{json, Value};

use super::catalogue::{self, Condition, Dangerous};
use super::hours::{time_draft, HoursBasis};
use super::{draft, plural, raise, techniques};
use crate::engine::{Detector, Draft, EngineConfig, Names, Observation, StreamPosition};
use crate::episode::{Episode, Episodes};

/// Thresholds of the usual lens.
#[derive(Clone, Debug)]
pub struct UsualConfig {
    /// Keep learning while detecting (behind the poisoning guard). Default on.
    pub learn: bool,
    /// A new key of a feature is reported only when the identity does new things of that
    /// feature at most this often (Good-Turing: keys seen once / events). Default 0.01.
    pub max_novelty_rate: f64,
    /// A transition is rare below this smoothed probability. Default 0.004.
    pub rare_transition: f64,
    /// ... once its previous action has been followed at least this often. Default 100.
    pub min_departures: u32,
    /// Windows a profile needs before its rates and volumes are judged. Default 20.
    pub min_windows: u64,
    /// How far above the usual 99th-percentile window an anomaly starts. Default 3.
    pub window_factor: f64,
    /// Events a window must exceed the 99th percentile by, at least. Default 20.
    pub rate_floor: u64,
    /// Bytes a window must exceed the 99th percentile by, at least. Default 64 MiB.
    pub volume_floor: u64,
    /// Distinct lookup targets a window must exceed the 99th percentile by, at least. Default 10.
    pub targets_floor: u64,
}

impl Default for UsualConfig {
    fn default() -> Self {
        UsualConfig {
            learn: true,
            max_novelty_rate: 0.01,
            rare_transition: 0.004,
            min_departures: 100,
            min_windows: 20,
            window_factor: 3.0,
            rate_floor: 20,
            volume_floor: 64 << 20,
            targets_floor: 10,
        }
    }
}

/// The checks, each with its own episodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    NovelAction,
    NovelResource,
    RareSequence,
    Enumeration,
    Time,
    Volume,
    Rate,
    Origin,
    Escalation,
    Evasion,
}

impl Check {
    const ALL: [Check; 10] = [
        Check::NovelAction,
        Check::NovelResource,
        Check::RareSequence,
        Check::Enumeration,
        Check::Time,
        Check::Volume,
        Check::Rate,
        Check::Origin,
        Check::Escalation,
        Check::Evasion,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What is known of an interned action.
#[derive(Clone, Copy, Debug, Default)]
struct ActionInfo {
    /// Its baseline key (0: not worked out yet).
    key: u64,
    dangerous: Option<&'static Dangerous>,
}

/// Thresholds of the current window, worked out once per window.
#[derive(Clone, Copy, Debug)]
struct Limits {
    window: i64,
    rate: u64,
    volume: u64,
    targets: u64,
}

const NO_LIMITS: Limits = Limits {
    window: i64::MIN,
    rate: u64::MAX,
    volume: u64::MAX,
    targets: u64::MAX,
};

/// Largest window figures an open episode saw, and the thresholds they crossed.
#[derive(Clone, Copy, Debug, Default)]
struct Peak {
    observed: u64,
    limit: u64,
}

const UNSET: u32 = u32::MAX;

/// Per-identity live state.
#[derive(Debug)]
struct Live {
    slot: u32,
    peer: Option<u32>,
    hours_declared: bool,
    tracker: Tracker,
    quarantine: Quarantine,
    limits: Limits,
    /// Peaks for enumeration, volume and rate episodes.
    peaks: [Peak; 3],
    passed_role: i64,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            slot: UNSET,
            peer: None,
            hours_declared: false,
            tracker: Tracker::default(),
            quarantine: Quarantine::default(),
            limits: NO_LIMITS,
            peaks: [Peak::default(); 3],
            passed_role: i64::MIN,
        }
    }
}

fn peak_index(check: Check) -> Option<usize> {
    match check {
        Check::Enumeration => Some(0),
        Check::Volume => Some(1),
        Check::Rate => Some(2),
        _ => None,
    }
}

/// One check an event failed: its episode item key and words.
struct Hit {
    check: Check,
    key: u64,
    note: String,
}

/// The usual lens and the catalogue; see the module documentation.
pub struct Usual {
    config: UsualConfig,
    gap: i64,
    baseline: Baseline,
    peers: Peers,
    live: Vec<Live>,
    actions: Vec<ActionInfo>,
    episodes: Vec<Episodes>,
    hits: Vec<Hit>,
}

impl std::fmt::Debug for Usual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usual")
            .field("identities", &self.baseline.len())
            .field("peer_groups", &self.peers.len())
            .finish()
    }
}

impl Usual {
    /// The lens over `baseline` (empty: every identity starts unknown and is learned as it
    /// goes; only the catalogue fires until profiles mature).
    pub fn new(baseline: Baseline, config: UsualConfig, engine: &EngineConfig) -> Self {
        let peers = baseline.peers();
        Usual {
            config,
            gap: engine.episode_gap,
            baseline,
            peers,
            live: Vec::new(),
            actions: Vec::new(),
            episodes: Check::ALL.iter().map(|_| Episodes::new(engine)).collect(),
            hits: Vec::new(),
        }
    }

    /// The profiles as they stand (learned further while detecting, when learning is on).
    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    fn action(&mut self, sym: Sym, name: &str) -> ActionInfo {
        let index = sym.0 as usize;
        if index >= self.actions.len() {
            self.actions.resize(index + 1, ActionInfo::default());
        }
        let info = &mut self.actions[index];
        if info.key == 0 {
            info.key = hash::key(name);
            info.dangerous = catalogue::lookup(name);
            self.baseline.name_action(info.key, name);
        }
        *info
    }

    fn live(&mut self, obs: &Observation<'_, '_>) -> usize {
        let index = obs.identity.0 as usize;
        if index >= self.live.len() {
            self.live.resize_with(index + 1, Live::default);
        }
        if self.live[index].slot == UNSET {
            let id = &obs.event.identity.id;
            let live = &mut self.live[index];
            live.slot = self.baseline.insert(id) as u32;
            live.peer = peer::group_of(id)
                .and_then(|group| self.peers.find(&group))
                .map(|slot| slot as u32);
            live.hours_declared = obs.entry.is_some_and(|(_, e)| e.hours().is_some());
        }
        index
    }

    fn limits(&self, profile: &Profile, window: i64) -> Limits {
        if profile.rate.count() < self.config.min_windows {
            return Limits {
                window,
                ..NO_LIMITS
            };
        }
        let limit = |histogram: &nhiwatch_baseline::sketch::Histogram, floor: u64| -> u64 {
            let p99 = histogram.quantile(0.99).unwrap_or(0);
            let scaled = (p99 as f64 * self.config.window_factor).min(u64::MAX as f64) as u64;
            scaled.max(p99.saturating_add(floor))
        };
        Limits {
            window,
            rate: limit(&profile.rate, self.config.rate_floor),
            volume: limit(&profile.volume, self.config.volume_floor),
            targets: limit(&profile.targets, self.config.targets_floor),
        }
    }

    /// Runs every check of the lens on one event; fills `self.hits`.
    fn judge(
        &mut self,
        index: usize,
        info: ActionInfo,
        f: &Features,
        prev: u64,
        novelty: &Novelty,
        obs: &Observation<'_, '_>,
    ) {
        let live = &self.live[index];
        let profile = self.baseline.profile(live.slot as usize);
        let peer = live.peer.map(|p| self.peers.get(p as usize).1);
        let config = &self.config;
        let hits = &mut self.hits;
        if profile.is_mature() {
            let rate = |feature| profile.novelty_rate(feature);
            let peers_know = |feature, key| peer.is_some_and(|p| p.knows(feature, key));
            if novelty.action && rate(Feature::Action) <= config.max_novelty_rate {
                hits.push(Hit {
                    check: Check::NovelAction,
                    key: u64::from(peers_know(Feature::Action, f.action)),
                    note: String::new(),
                });
            } else if !novelty.action {
                // Listing takes free-form filters and queries: what is new there is no sign.
                // A new object of a known kind in a known place matters only when it is changed.
                let judged = f.class != ActionClass::List;
                let container = judged
                    && novelty.container
                    && rate(Feature::Container) <= config.max_novelty_rate;
                let shape = judged
                    && novelty.shape
                    && changes(f.class)
                    && rate(Feature::Shape) <= config.max_novelty_rate;
                if container || shape {
                    let r = f.resource.unwrap_or_default();
                    hits.push(Hit {
                        check: Check::NovelResource,
                        key: if container { r.container } else { r.shape },
                        note: if container { "container" } else { "shape" }.into(),
                    });
                }
                // A failed call is usually retried: its place in the sequence says little.
                let (p, count, row) = profile.transition(prev, f.action);
                if f.outcome != Outcome::Error
                    && row >= config.min_departures
                    && p < config.rare_transition
                {
                    let from = self.baseline.action_name(prev).unwrap_or(
                        if prev == nhiwatch_baseline::track::START {
                            "(session start)"
                        } else {
                            "(unknown)"
                        },
                    );
                    hits.push(Hit {
                        check: Check::RareSequence,
                        key: prev,
                        note: format!("{from}\u{1f}{p:.5}\u{1f}{count}\u{1f}{row}"),
                    });
                }
            }
            if novelty.hour && !live.hours_declared {
                let hour = f.hour_of_day();
                hits.push(Hit {
                    check: Check::Time,
                    key: u64::from(hour),
                    note: format!(
                        "{hour}\u{1f}{:.5}\u{1f}{}",
                        profile.hour_share(hour),
                        profile.hour_events(hour)
                    ),
                });
            }
            let network = novelty.network
                && rate(Feature::Network) <= config.max_novelty_rate
                && !peers_know(Feature::Network, f.network);
            let agent = novelty.agent
                && rate(Feature::Agent) <= config.max_novelty_rate
                && !peers_know(Feature::Agent, f.agent);
            if network || agent {
                let event = obs.event;
                hits.push(Hit {
                    check: Check::Origin,
                    key: (if network { f.network } else { 0 }) ^ (if agent { f.agent } else { 0 }),
                    note: format!(
                        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                        u8::from(network),
                        u8::from(agent),
                        event.src_ip.as_deref().unwrap_or(""),
                        event.user_agent.as_deref().unwrap_or("")
                    ),
                });
            }
            if f.timed {
                let window = live.tracker.window();
                let limits = live.limits;
                let stats = window.stats;
                if u64::from(stats.targets) > limits.targets && f.is_lookup() {
                    hits.push(Hit {
                        check: Check::Enumeration,
                        key: 0,
                        note: String::new(),
                    });
                }
                if stats.bytes > limits.volume && f.bytes > 0 {
                    hits.push(Hit {
                        check: Check::Volume,
                        key: 0,
                        note: String::new(),
                    });
                }
                if u64::from(stats.events) > limits.rate {
                    hits.push(Hit {
                        check: Check::Rate,
                        key: 0,
                        note: String::new(),
                    });
                }
            }
        }
        if let Some(dangerous) = info.dangerous {
            let applies = match dangerous.condition {
                Condition::Always | Condition::PassRole => true,
                Condition::OtherPrincipal => obs
                    .event
                    .resource
                    .as_deref()
                    .is_some_and(|r| !r.is_empty() && r != obs.event.identity.id.as_ref()),
                Condition::AfterPassRole => {
                    live.passed_role != i64::MIN
                        && f.time.saturating_sub(live.passed_role) <= self.gap
                }
            };
            let routine = profile.knows(Feature::Action, f.action)
                && f.resource
                    .is_none_or(|r| profile.knows(Feature::Shape, r.shape));
            if applies && !routine {
                hits.push(Hit {
                    check: if dangerous.kind == FindingKind::DefenseEvasion {
                        Check::Evasion
                    } else {
                        Check::Escalation
                    },
                    key: 0,
                    note: dangerous.why.into(),
                });
            }
        }
    }

    fn report(
        &mut self,
        check: Check,
        identity: Sym,
        episode: Episode,
        names: &Names<'_>,
        out: &mut Vec<Draft>,
    ) {
        report(
            &Ctx {
                config: &self.config,
                baseline: &self.baseline,
                peers: &self.peers,
                actions: &self.actions,
            },
            &mut self.live,
            check,
            identity,
            episode,
            names,
            out,
        );
    }
}

/// Whether an action class changes something.
fn changes(class: ActionClass) -> bool {
    matches!(
        class,
        ActionClass::Write | ActionClass::Delete | ActionClass::Permission | ActionClass::Exec
    )
}

/// What reports read.
struct Ctx<'c> {
    config: &'c UsualConfig,
    baseline: &'c Baseline,
    peers: &'c Peers,
    actions: &'c [ActionInfo],
}

impl Detector for Usual {
    fn name(&self) -> &'static str {
        "usual"
    }

    fn baseline(&self) -> Option<&Baseline> {
        Some(Usual::baseline(self))
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, names: &Names<'_>, out: &mut Vec<Draft>) {
        let info = self.action(obs.action, &obs.event.action);
        let index = self.live(obs);
        let live = &mut self.live[index];
        let f = live.tracker.features(obs.event, info.key);
        let step = live.tracker.step(&f);
        let slot = live.slot as usize;
        let learn = self.config.learn && obs.learn;
        if let Some(window) = step.closed {
            if learn {
                self.baseline.profile_mut(slot).learn_window(&window);
            }
        }
        if f.timed {
            let window = self.live[index].tracker.window().index;
            if self.live[index].limits.window != window {
                let limits = self.limits(self.baseline.profile(slot), window);
                self.live[index].limits = limits;
            }
        }
        let novelty = self.baseline.profile(slot).novelty(&f, step.prev);
        self.hits.clear();
        self.judge(index, info, &f, step.prev, &novelty, obs);
        if info
            .dangerous
            .is_some_and(|d| d.condition == Condition::PassRole)
        {
            self.live[index].passed_role = f.time;
        }
        let flagged = !self.hits.is_empty();
        let live = &mut self.live[index];
        let profile = self.baseline.profile_mut(slot);
        if learn {
            if profile.is_mature() || flagged {
                live.quarantine.learn(profile, &f, step.prev, &novelty);
            } else {
                profile.learn(&f, step.prev);
            }
        }
        if !flagged {
            return;
        }
        live.tracker.flag_window();
        live.quarantine.flag(&f, step.prev, &novelty);
        let stats = live.tracker.window().stats;
        let limits = live.limits;
        let hits = std::mem::take(&mut self.hits);
        for hit in &hits {
            if let Some(p) = peak_index(hit.check) {
                let (observed, limit) = match hit.check {
                    Check::Enumeration => (u64::from(stats.targets), limits.targets),
                    Check::Volume => (stats.bytes, limits.volume),
                    _ => (u64::from(stats.events), limits.rate),
                };
                let peak = &mut self.live[index].peaks[p];
                if observed >= peak.observed {
                    *peak = Peak { observed, limit };
                }
            }
            let (closed, episode) = self.episodes[hit.check.index()].record(obs);
            episode.tally(obs, hit.key, || hit.note.clone());
            if let Some(closed) = closed {
                self.report(hit.check, obs.identity, *closed, names, out);
            }
        }
        self.hits = hits;
    }

    fn sweep(&mut self, at: StreamPosition, names: &Names<'_>, out: &mut Vec<Draft>) {
        let ctx = Ctx {
            config: &self.config,
            baseline: &self.baseline,
            peers: &self.peers,
            actions: &self.actions,
        };
        for check in Check::ALL {
            let live = &mut self.live;
            self.episodes[check.index()].expire(at, |identity, episode| {
                report(&ctx, live, check, identity, *episode, names, out)
            });
        }
    }

    fn flush(&mut self, names: &Names<'_>, out: &mut Vec<Draft>) {
        let ctx = Ctx {
            config: &self.config,
            baseline: &self.baseline,
            peers: &self.peers,
            actions: &self.actions,
        };
        for check in Check::ALL {
            let live = &mut self.live;
            self.episodes[check.index()].drain(|identity, episode| {
                report(&ctx, live, check, identity, *episode, names, out)
            });
        }
    }

    fn vouch(&mut self, context: &[Observation<'_, '_>], benign: &[bool]) -> usize {
        if !self.config.learn {
            return 0;
        }
        // Fresh trackers follow the context's sessions, so each benign event gets its own
        // predecessor; the live trackers (the stream's present) are left alone.
        let mut trackers: Vec<(Sym, Tracker)> = Vec::new();
        let mut learned = 0;
        for (obs, &benign) in context.iter().zip(benign) {
            let info = self.action(obs.action, &obs.event.action);
            let index = self.live(obs);
            let at = match trackers.iter().position(|(sym, _)| *sym == obs.identity) {
                Some(at) => at,
                None => {
                    trackers.push((obs.identity, Tracker::default()));
                    trackers.len() - 1
                }
            };
            let tracker = &mut trackers[at].1;
            let f = tracker.features(obs.event, info.key);
            let step = tracker.step(&f);
            if benign {
                let live = &mut self.live[index];
                let profile = self.baseline.profile_mut(live.slot as usize);
                learned += live.quarantine.vouch(profile, &f, step.prev);
            }
        }
        learned
    }

    fn state_bytes(&self) -> usize {
        self.baseline.profile_bytes()
            + self.live.capacity() * std::mem::size_of::<Live>()
            + self
                .live
                .iter()
                .map(|l| l.tracker.bytes() + l.quarantine.bytes())
                .sum::<usize>()
            + self.episodes.iter().map(Episodes::bytes).sum::<usize>()
    }
}

/// The profile figures every usual-lens finding quotes.
fn baseline_json(profile: &Profile) -> Value {
    json!({
        "events": profile.events,
        "active_days": profile.days.len(),
        "first_seen": nhiwatch_model::Timestamp(profile.first_seen).to_string(),
        "last_seen": nhiwatch_model::Timestamp(profile.last_seen).to_string(),
        "distinct_actions": profile.actions.len(),
        "denied_ratio": round(profile.denied_ratio()),
    })
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn top_actions(ctx: &Ctx<'_>, profile: &Profile) -> Vec<Value> {
    profile
        .actions
        .top(5)
        .into_iter()
        .map(|(key, count)| {
            json!({"action": ctx.baseline.action_name(key).unwrap_or("(unnamed)"), "events": count})
        })
        .collect()
}

fn report(
    ctx: &Ctx<'_>,
    live: &mut [Live],
    check: Check,
    identity: Sym,
    episode: Episode,
    names: &Names<'_>,
    out: &mut Vec<Draft>,
) {
    let Some(state) = live.get_mut(identity.0 as usize) else {
        return;
    };
    let profile = ctx.baseline.profile(state.slot as usize);
    let who = names.identities.resolve(identity);
    let span = format!("between {} and {}", episode.start, episode.last);
    let events = plural(episode.events(), "event");
    let peer = state.peer.map(|p| ctx.peers.get(p as usize));
    let peer_json = peer.map_or(
        Value::Null,
        |(name, _, members)| json!({"group": name, "members": members}),
    );
    let items = |extra: &dyn Fn(&crate::episode::Tally, &mut serde_json::Map<String, Value>)| -> Vec<Value> {
        episode
            .items
            .iter()
            .map(|t| {
                let mut item = t.to_json(names);
                if let Some(map) = item.as_object_mut() {
                    extra(t, map);
                }
                item
            })
            .collect()
    };
    let max_rate = ctx.config.max_novelty_rate;
    let (kind, severity, summary, detail) = match check {
        Check::NovelAction => {
            let distinct = episode.items.len();
            let base = if episode.items.iter().any(|t| {
                matches!(
                    t.class,
                    ActionClass::Permission | ActionClass::Exec | ActionClass::Delete
                )
            }) {
                Severity::Medium
            } else {
                Severity::Low
            };
            let mut severity = if distinct >= 3 { raise(base) } else { base };
            let peers_know_all = episode.items.iter().all(|t| t.key == 1);
            if peers_know_all && severity > Severity::Low {
                severity = Severity::Low;
            }
            let list = items(&|t, map| {
                map.insert("peers_did_it".into(), (t.key == 1).into());
            });
            (
                FindingKind::NovelAction,
                severity,
                format!(
                    "{who} did {} it has never done before ({}), {events} {span}; confirm the change was intended",
                    plural(distinct, "action"),
                    episode.top_actions(names, 4)
                ),
                json!({
                    "lens": "usual",
                    "check": "novel_action",
                    "baseline": {"profile": baseline_json(profile), "usual_actions": top_actions(ctx, profile), "novelty_rate": round(profile.novelty_rate(Feature::Action))},
                    "observed": {"new_actions": list},
                    "threshold": {"seen_before": 0, "max_novelty_rate": max_rate},
                    "peers": peer_json,
                    "window": episode.window_json(),
                }),
            )
        }
        Check::NovelResource => {
            let containers = episode
                .items
                .iter()
                .filter(|t| t.note == "container")
                .count();
            let severity = if episode.items.len() >= 5 || containers > 0 && episode.changes(false) {
                Severity::Medium
            } else {
                Severity::Low
            };
            let list = items(&|t, map| {
                map.insert("new".into(), t.note.clone().into());
            });
            (
                FindingKind::NovelResource,
                severity,
                format!(
                    "{who} touched {} it has never touched before ({} of them in a new place), {events} {span}; check it was meant to reach them",
                    plural(episode.items.len(), "resource pattern"),
                    containers
                ),
                json!({
                    "lens": "usual",
                    "check": "novel_resource",
                    "baseline": {"profile": baseline_json(profile), "resource_containers": profile.containers.len(), "resource_shapes": profile.shapes.len(), "events_with_resource": profile.resourced, "novelty_rate_containers": round(profile.novelty_rate(Feature::Container)), "novelty_rate_shapes": round(profile.novelty_rate(Feature::Shape))},
                    "observed": {"new_resources": list},
                    "threshold": {"seen_before": 0, "max_novelty_rate": max_rate, "shape": "digits and long ids masked, first 6 path segments; container: up to the first /"},
                    "window": episode.window_json(),
                }),
            )
        }
        Check::RareSequence => {
            let severity = if episode.events() >= 3 {
                Severity::Medium
            } else {
                Severity::Low
            };
            let list = items(&|t, map| {
                let mut parts = t.note.split('\u{1f}');
                let from = parts.next().unwrap_or("");
                let p: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
                let count: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let row: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                map.insert("after".into(), from.into());
                map.insert("probability".into(), p.into());
                map.insert("times_seen_after_it".into(), count.into());
                map.insert("times_it_was_followed".into(), row.into());
            });
            (
                FindingKind::RareSequence,
                severity,
                format!(
                    "{who} ran actions in an order it (almost) never uses ({}), {events} {span}; check what drove this run",
                    episode.top_actions(names, 3)
                ),
                json!({
                    "lens": "usual",
                    "check": "rare_sequence",
                    "baseline": {"profile": baseline_json(profile), "model": "bigram Markov chain over each session's actions, additive smoothing α = 0.5"},
                    "observed": {"transitions": list},
                    "threshold": {"max_probability": ctx.config.rare_transition, "min_times_previous_followed": ctx.config.min_departures},
                    "window": episode.window_json(),
                }),
            )
        }
        Check::Time => {
            let hours: Vec<Value> = {
                let mut seen: Vec<&str> = Vec::new();
                episode
                    .items
                    .iter()
                    .filter(|t| {
                        let fresh = !seen.contains(&t.note.as_str());
                        seen.push(&t.note);
                        fresh
                    })
                    .map(|t| {
                        let mut parts = t.note.split('\u{1f}');
                        let hour: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                        let share: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
                        let usual: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                        json!({"hour_utc": hour, "share_of_activity": share, "events_in_hour_before": usual})
                    })
                    .collect()
            };
            let basis = HoursBasis::Usual {
                usual: profile.usual_hours(),
                observed: json!({"hours": hours, "baseline_events": profile.events}),
                threshold: QUIET_HOUR_SHARE,
            };
            time_draft(identity, episode, names, basis, out);
            return;
        }
        Check::Origin => {
            let list = items(&|t, map| {
                let mut parts = t.note.split('\u{1f}');
                let network = parts.next() == Some("1");
                let agent = parts.next() == Some("1");
                map.insert("new_network".into(), network.into());
                map.insert("new_user_agent_family".into(), agent.into());
                map.insert("source_ip".into(), parts.next().unwrap_or("").into());
                map.insert("user_agent".into(), parts.next().unwrap_or("").into());
            });
            let both = episode.items.iter().any(|t| t.note.starts_with("1\u{1f}1"));
            let severity = if both {
                Severity::Medium
            } else {
                Severity::Low
            };
            (
                FindingKind::NewOrigin,
                severity,
                format!(
                    "{who} was used from a {} it (and its peers) never used before, {events} {span}; confirm who holds this credential",
                    if both { "network and client" } else if episode.items.iter().any(|t| t.note.starts_with('1')) { "network" } else { "client" }
                ),
                json!({
                    "lens": "usual",
                    "check": "new_origin",
                    "baseline": {"profile": baseline_json(profile), "networks": profile.networks.len(), "user_agent_families": profile.agents.len(), "novelty_rate_networks": round(profile.novelty_rate(Feature::Network)), "novelty_rate_user_agents": round(profile.novelty_rate(Feature::Agent))},
                    "observed": {"origins": list},
                    "threshold": {"seen_before": 0, "max_novelty_rate": max_rate, "network": "IPv4 /24, IPv6 /64", "user_agent_family": "first product and major version, operating system"},
                    "peers": peer_json,
                    "window": episode.window_json(),
                }),
            )
        }
        Check::Enumeration | Check::Volume | Check::Rate => {
            let p = peak_index(check).unwrap_or(0);
            let peak = std::mem::take(&mut state.peaks[p]);
            let (kind, histogram, what, unit) = match check {
                Check::Enumeration => (
                    FindingKind::Enumeration,
                    &profile.targets,
                    "distinct lookup targets",
                    "targets",
                ),
                Check::Volume => (
                    FindingKind::VolumeAnomaly,
                    &profile.volume,
                    "bytes sent out",
                    "bytes",
                ),
                _ => (FindingKind::RateAnomaly, &profile.rate, "events", "events"),
            };
            let ratio = if peak.limit == 0 {
                0.0
            } else {
                peak.observed as f64 / peak.limit as f64
            };
            let denied = episode.items.iter().map(|t| t.denied).sum::<u32>() as usize;
            let severity = match check {
                Check::Enumeration if denied * 3 >= episode.events() => Severity::High,
                Check::Enumeration => Severity::Medium,
                Check::Volume if ratio >= 10.0 => Severity::High,
                Check::Volume => Severity::Medium,
                _ if ratio >= 3.0 => Severity::Medium,
                _ => Severity::Low,
            };
            let list = items(&|_, _| {});
            (
                kind,
                severity,
                format!(
                    "{who} reached {} {what} in 15 minutes, above its usual maximum of {} (median {}), {events} {span}; {}",
                    peak.observed,
                    peak.limit,
                    histogram.quantile(0.5).unwrap_or(0),
                    match check {
                        Check::Enumeration => "find out what it was looking for",
                        Check::Volume => "check where the data went",
                        _ => "check what drove the burst",
                    }
                ),
                json!({
                    "lens": "usual",
                    "check": kind.as_str(),
                    "baseline": {
                        "profile": baseline_json(profile),
                        "windows": histogram.count(),
                        "window_minutes": 15,
                        "median": histogram.quantile(0.5),
                        "mad": histogram.mad(),
                        "p99": histogram.quantile(0.99),
                        "max": histogram.max(),
                        "unit": unit,
                    },
                    "observed": {"peak_window": peak.observed, "unit": unit, "actions": list},
                    "threshold": {"value": peak.limit, "rule": format!("max({} × p99, p99 + {})", ctx.config.window_factor, match check { Check::Enumeration => ctx.config.targets_floor, Check::Volume => ctx.config.volume_floor, _ => ctx.config.rate_floor })},
                    "window": episode.window_json(),
                }),
            )
        }
        Check::Escalation | Check::Evasion => {
            let mut actions: Vec<Sym> = episode.items.iter().map(|t| t.action).collect();
            actions.sort_unstable();
            actions.dedup();
            let entries: Vec<&'static Dangerous> = actions
                .iter()
                .filter_map(|a| ctx.actions.get(a.0 as usize).and_then(|i| i.dangerous))
                .collect();
            let chain = entries
                .iter()
                .any(|d| d.condition == Condition::AfterPassRole);
            let all_refused =
                episode.succeeded() == 0 && episode.items.iter().all(|t| t.denied == t.events);
            let severity = catalogue::severity(actions.len(), chain, all_refused);
            let list = items(&|t, map| {
                if let Some(d) = ctx
                    .actions
                    .get(t.action.0 as usize)
                    .and_then(|i| i.dangerous)
                {
                    map.insert("why".into(), d.why.into());
                    map.insert(
                        "attack".into(),
                        json!({"id": d.technique.id, "name": d.technique.name}),
                    );
                }
            });
            let kind = if check == Check::Evasion {
                FindingKind::DefenseEvasion
            } else {
                FindingKind::PrivilegeEscalation
            };
            let summary = format!(
                "{who} {} ({}){}, {events} {span}; {}",
                if check == Check::Evasion {
                    "switched off or narrowed security monitoring"
                } else {
                    "performed privilege-escalation actions"
                },
                episode.top_actions(names, 4),
                if chain {
                    ", passing a role to new compute"
                } else {
                    ""
                },
                if all_refused {
                    "all refused, but find out who tried"
                } else {
                    "act now: revert the change and rotate this identity's credentials"
                }
            );
            let detail = json!({
                "lens": "usual",
                "check": "catalogue",
                "catalogue": list,
                "chain": chain.then_some("iam:PassRole followed by new compute within the episode gap"),
                "baseline": {"profile": baseline_json(profile), "routine": "not routine: the action on a resource of this shape was never learned for this identity"},
                "window": episode.window_json(),
            });
            let mut found: Vec<&'static crate::attack::Technique> = Vec::new();
            for d in &entries {
                if !found.iter().any(|t| t.id == d.technique.id) {
                    found.push(d.technique);
                }
            }
            let techniques = techniques(&episode, names, None);
            for t in techniques {
                if !found.iter().any(|f| f.id == t.id) {
                    found.push(t);
                }
            }
            out.push(draft(
                identity, episode, kind, severity, summary, detail, found,
            ));
            return;
        }
    };
    let techniques = techniques(
        &episode,
        names,
        crate::attack::valid_accounts(episode.source),
    );
    out.push(draft(
        identity, episode, kind, severity, summary, detail, techniques,
    ));
}
