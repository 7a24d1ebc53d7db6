//! `denied_attempts`: what the provider refused, grouped per identity and window.

use nhiwatch_model::{FindingKind, Outcome, Severity, Sym};
use nhiwatch_policy::Verdict;
use serde_json::json;

use super::{draft, entry_json, plural, raise, techniques};
use crate::engine::{Draft, EngineConfig, Names, Observation};
use crate::episode::{Episode, EpisodeRules, Flags, Grouped};

/// Item keys: what the policy says of the refused action (the provider and the policy may
/// disagree, and that disagreement is itself worth reading).
const POLICY_UNJUDGED: u64 = 0;
const POLICY_PERMITS: u64 = 1;
const POLICY_REFUSES: u64 = 2;

/// `denied_attempts`: actions the provider refused (CloudTrail `AccessDenied*`,
/// `UnauthorizedOperation`; Kubernetes 403; a tool's permission error). Works with or without a
/// policy. A burst is one finding listing every event, not one per event.
///
/// Severity grows with the burst: 1-2 events low, 3-9 medium, 10 or more high; one step more
/// when an attempt would have changed something (class write, delete, permission or exec),
/// because a read-only integration trying to write is the pattern of stolen credentials probing.
pub type DeniedAttempts = Grouped<DeniedRules>;

/// The rules of [`DeniedAttempts`].
#[derive(Debug)]
pub struct DeniedRules;

impl EpisodeRules for DeniedRules {
    const NAME: &'static str = "denied_attempts";

    fn new(_: &EngineConfig) -> Self {
        DeniedRules
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, flags: &mut Flags<'_, '_>) {
        if obs.event.outcome != Outcome::Denied {
            return;
        }
        let key = match obs.judgement.verdict {
            Verdict::Unjudged => POLICY_UNJUDGED,
            Verdict::Permitted(_) => POLICY_PERMITS,
            Verdict::NotPermitted(_) => POLICY_REFUSES,
        };
        flags.flag(obs, key, || {
            obs.event.error.as_deref().unwrap_or("denied").to_owned()
        });
    }

    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>) {
        let events = episode.events();
        let mut severity = match events {
            0..=2 => Severity::Low,
            3..=9 => Severity::Medium,
            _ => Severity::High,
        };
        if episode.changes(false) {
            severity = raise(severity).min(Severity::High);
        }
        let distinct = {
            let mut actions: Vec<Sym> = episode.items.iter().map(|t| t.action).collect();
            actions.sort_unstable();
            actions.dedup();
            actions.len()
        };
        let actions: Vec<_> = episode
            .items
            .iter()
            .map(|t| {
                let mut item = t.to_json(names);
                if let Some(map) = item.as_object_mut() {
                    map.insert("error".into(), t.note.clone().into());
                    let policy = match t.key {
                        POLICY_PERMITS => "permitted",
                        POLICY_REFUSES => "not permitted",
                        _ => "not judged",
                    };
                    map.insert("policy".into(), policy.into());
                }
                item
            })
            .collect();
        let summary = format!(
            "{} was refused {} at {} ({}) between {} and {}; find out who holds this credential and what it was trying to reach",
            names.identities.resolve(identity),
            plural(events, "time"),
            plural(distinct, "action"),
            episode.top_actions(names, 3),
            episode.start,
            episode.last,
        );
        let detail = json!({
            "lens": "permitted",
            "check": "provider_denials",
            "grouping": "denied events of one identity, each within the episode gap of the others",
            "thresholds": {"low": "1-2 events", "medium": "3-9 events", "high": "10 or more", "raised": "one step when an attempt would change something"},
            "policy_entry": entry_json(names, &episode),
            "actions": actions,
            "window": episode.window_json(),
        });
        let techniques = techniques(&episode, names, None);
        out.push(draft(
            identity,
            episode,
            FindingKind::DeniedAttempts,
            severity,
            summary,
            detail,
            techniques,
        ));
    }
}
