//! `out_of_scope`: actions outside the identity's entitlements, and undeclared identities.

use nhiwatch_model::{FindingKind, Severity, Sym};
use nhiwatch_policy::{Refusal, Verdict};
use serde_json::json;

use super::{draft, entry_json, plural, raise, techniques};
use crate::attack;
use crate::engine::{Detector, Draft, EngineConfig, Names, Observation, StreamPosition};
use crate::episode::{Episode, EpisodeRules, Episodes, Flags, Grouped};

/// Items are keyed by what refused the action, so that one action refused by two rules is two
/// lines of the explanation.
fn refusal_key(refusal: Refusal) -> u64 {
    match refusal {
        Refusal::NoGrant => 0,
        Refusal::Deny(i) => 1 << 40 | u64::from(i),
        Refusal::IamDeny(at) => 2 << 40 | u64::from(at.doc) << 16 | u64::from(at.index),
    }
}

/// `out_of_scope`: an action or resource outside the identity's entitlements (allow/deny rules,
/// tool scope, IAM documents), whether the provider carried it out or refused it.
///
/// Severity: medium when every such event was refused or failed at the provider (an attempt);
/// high when one was carried out; critical when a carried-out one changed permissions or ran
/// code (class `permission` or `exec`).
pub type OutOfScope = Grouped<ScopeRules>;

/// The rules of [`OutOfScope`].
#[derive(Debug)]
pub struct ScopeRules;

impl EpisodeRules for ScopeRules {
    const NAME: &'static str = "out_of_scope";

    fn new(_: &EngineConfig) -> Self {
        ScopeRules
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, flags: &mut Flags<'_, '_>) {
        let Verdict::NotPermitted(refusal) = obs.judgement.verdict else {
            return;
        };
        let Some((_, entry)) = obs.entry else {
            return;
        };
        flags.flag(obs, refusal_key(refusal), || {
            let mut note = entry.describe_refusal(refusal);
            if let Some(at) = obs.judgement.uncertain {
                note.push_str(&format!(
                    " (IAM {} has a condition nhiwatch cannot evaluate)",
                    entry.iam().describe(at)
                ));
            }
            note
        });
    }

    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>) {
        let entry = names.entry(episode.entry);
        let succeeded = episode.succeeded();
        let mut severity = if succeeded > 0 {
            Severity::High
        } else {
            Severity::Medium
        };
        let escalates = episode.items.iter().any(|t| {
            t.succeeded > 0
                && matches!(
                    t.class,
                    nhiwatch_model::ActionClass::Permission | nhiwatch_model::ActionClass::Exec
                )
        });
        if escalates {
            severity = raise(severity);
        }
        let actions: Vec<_> = episode
            .items
            .iter()
            .map(|t| {
                let mut item = t.to_json(names);
                if let Some(map) = item.as_object_mut() {
                    map.insert("reason".into(), t.note.clone().into());
                }
                item
            })
            .collect();
        let summary = format!(
            "{} acted outside its entitlements: {} ({}), {} carried out; compare with the permitted set and revoke or re-scope the credential",
            names.identities.resolve(identity),
            plural(episode.events(), "event"),
            episode.top_actions(names, 3),
            succeeded
        );
        let detail = json!({
            "lens": "permitted",
            "check": "entitlements",
            "policy_entry": entry_json(names, &episode),
            "permitted": entry.map(|e| e.permitted_set(20)).unwrap_or_default(),
            "actions": actions,
            "window": episode.window_json(),
        });
        let techniques = techniques(&episode, names, attack::valid_accounts(episode.source));
        out.push(draft(
            identity,
            episode,
            FindingKind::OutOfScope,
            severity,
            summary,
            detail,
            techniques,
        ));
    }
}

/// `out_of_scope` for an identity that no policy entry matches, when the policy says identities
/// must be declared (`require_declared: true`). Reported once per identity, with the events of
/// its first episode; medium severity.
#[derive(Debug)]
pub struct Undeclared {
    episodes: Episodes,
    /// One bit per identity: its first episode has been reported.
    reported: Vec<u64>,
}

impl Undeclared {
    /// A detector with the engine's episode settings.
    pub fn new(config: &EngineConfig) -> Self {
        Undeclared {
            episodes: Episodes::new(config),
            reported: Vec::new(),
        }
    }

    fn is_reported(&self, identity: Sym) -> bool {
        let i = identity.0 as usize;
        self.reported
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    fn mark(reported: &mut Vec<u64>, identity: Sym) {
        let i = identity.0 as usize;
        if reported.len() <= i / 64 {
            reported.resize(i / 64 + 1, 0);
        }
        reported[i / 64] |= 1 << (i % 64);
    }

    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>) {
        let source = names.policy.map_or("the policy", |p| p.source());
        let actions: Vec<_> = episode.items.iter().map(|t| t.to_json(names)).collect();
        let summary = format!(
            "{} is not declared in {source} but acted: {} ({}); declare it with its owner and entitlements, or disable its credential",
            names.identities.resolve(identity),
            plural(episode.events(), "event"),
            episode.top_actions(names, 3),
        );
        let detail = json!({
            "lens": "permitted",
            "check": "declared_identity",
            "rule": "require_declared: every identity must match an entry of the policy",
            "policy": source,
            "declared_patterns": names.policy.map(|p| p.entries().iter().map(|e| e.pattern().to_owned()).take(20).collect::<Vec<_>>()).unwrap_or_default(),
            "actions": actions,
            "window": episode.window_json(),
        });
        let techniques: Vec<_> = attack::valid_accounts(episode.source).into_iter().collect();
        out.push(draft(
            identity,
            episode,
            FindingKind::OutOfScope,
            Severity::Medium,
            summary,
            detail,
            techniques,
        ));
    }
}

impl Detector for Undeclared {
    fn name(&self) -> &'static str {
        "undeclared_identity"
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, names: &Names<'_>, out: &mut Vec<Draft>) {
        if obs.entry.is_some() || self.is_reported(obs.identity) {
            return;
        }
        let closed = self.episodes.flag(obs, 0, String::new);
        if let Some(closed) = closed {
            // The first episode is the report; later activity of the identity is not repeated.
            Self::mark(&mut self.reported, obs.identity);
            Self::report(obs.identity, *closed, names, out);
            self.episodes.discard(obs.identity);
        }
    }

    fn sweep(&mut self, at: StreamPosition, names: &Names<'_>, out: &mut Vec<Draft>) {
        if at.preview.is_some() {
            // A preview closes nothing, so the identity is not yet reported.
            self.episodes.expire(at, |identity, episode| {
                Self::report(identity, *episode, names, out)
            });
            return;
        }
        let reported = &mut self.reported;
        self.episodes.expire(at, |identity, episode| {
            Self::mark(reported, identity);
            Self::report(identity, *episode, names, out);
        });
    }

    fn flush(&mut self, names: &Names<'_>, out: &mut Vec<Draft>) {
        let reported = &mut self.reported;
        self.episodes.drain(|identity, episode| {
            Self::mark(reported, identity);
            Self::report(identity, *episode, names, out);
        });
    }

    fn state_bytes(&self) -> usize {
        self.episodes.bytes() + self.reported.capacity() * 8
    }
}
