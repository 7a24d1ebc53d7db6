//! The detectors of the permitted and expected lenses.
//!
//! | detector | kind | fires on |
//! |---|---|---|
//! | [`OutOfScope`] | `out_of_scope` | an action or resource outside the identity's entitlements, carried out or not |
//! | [`Undeclared`] | `out_of_scope` | an identity no policy entry matches, when the policy sets `require_declared` |
//! | [`DeniedAttempts`] | `denied_attempts` | actions the provider refused (with or without a policy) |
//! | [`SensitiveAccess`] | `sensitive_access` | access to what the entry marks sensitive |
//! | [`WorkflowDeviation`] | `workflow_deviation` | a step out of order, not in the workflow, or a restart midway |
//! | [`OutsideHours`] | `time_anomaly` | activity outside the entry's approved hours |
//! | [`Usual`] | `novel_action`, `novel_resource`, `rare_sequence`, `enumeration`, `time_anomaly`, `volume_anomaly`, `rate_anomaly`, `new_origin` | departures from the identity's learned baseline (the usual lens) |
//! | [`Usual`] with [`catalogue`] | `privilege_escalation`, `defense_evasion` | known-dangerous actions and chains, unless routine for the identity |
//!
//! Each groups its events per identity and episode (see [`crate::episode`]) and explains in
//! `evidence.detail` what the events were compared with. The policy-bound detectors are
//! [`crate::episode::Grouped`] over their rules (`DeniedRules`, `ScopeRules`, ...): the rules
//! say which events are flagged and how an episode reads; the episodes are kept alike.

pub mod catalogue;
mod denied;
mod hours;
mod scope;
mod sensitive;
mod usual;
mod workflow;

use nhiwatch_baseline::Baseline;
use nhiwatch_model::{FindingKind, Severity};
use nhiwatch_policy::Policy;
use serde_json::Value;

pub use denied::{DeniedAttempts, DeniedRules};
pub use hours::{HoursRules, OutsideHours};
pub use scope::{OutOfScope, ScopeRules, Undeclared};
pub use sensitive::{SensitiveAccess, SensitiveRules};
pub use usual::{Usual, UsualConfig};
pub use workflow::{WorkflowDeviation, WorkflowRules};

use crate::attack::{self, Technique};
use crate::engine::{Detector, Draft, EngineConfig, Names};
use crate::episode::Episode;

/// The standard detectors: all of the table above, the usual lens starting from an empty
/// baseline (it learns every identity as it goes; until a profile matures only the catalogue
/// fires). Without a policy the policy-bound detectors stay idle.
pub fn standard(policy: Option<&Policy>, config: &EngineConfig) -> Vec<Box<dyn Detector>> {
    let usual = Usual::new(Baseline::new(), UsualConfig::default(), config);
    lenses(policy, config, usual)
}

/// The detectors of all three lenses, with the usual lens given (over a learned baseline).
pub fn lenses(
    policy: Option<&Policy>,
    config: &EngineConfig,
    usual: Usual,
) -> Vec<Box<dyn Detector>> {
    let mut detectors: Vec<Box<dyn Detector>> =
        vec![Box::new(DeniedAttempts::new(config)), Box::new(usual)];
    if let Some(policy) = policy {
        detectors.extend(policy_lenses(policy, config));
    }
    detectors
}

/// The detectors bound to a policy: the permitted lens (out of scope, undeclared when the
/// policy requires declarations, sensitive access) and the expected lens (workflow, hours).
pub fn policy_lenses(policy: &Policy, config: &EngineConfig) -> Vec<Box<dyn Detector>> {
    let mut detectors: Vec<Box<dyn Detector>> = vec![
        Box::new(OutOfScope::new(config)),
        Box::new(SensitiveAccess::new(config)),
        Box::new(WorkflowDeviation::new(config)),
        Box::new(OutsideHours::new(config)),
    ];
    if policy.require_declared() {
        detectors.push(Box::new(Undeclared::new(config)));
    }
    detectors
}

/// One step up the severity ladder.
pub(crate) fn raise(severity: Severity) -> Severity {
    match severity {
        Severity::Low => Severity::Medium,
        Severity::Medium => Severity::High,
        Severity::High | Severity::Critical => Severity::Critical,
    }
}

/// The techniques an episode's actions are instances of, after `first` when given.
pub(crate) fn techniques(
    episode: &Episode,
    names: &Names<'_>,
    first: Option<&'static Technique>,
) -> Vec<&'static Technique> {
    let mut found: Vec<&'static Technique> = first.into_iter().collect();
    for tally in &episode.items {
        if let Some(technique) = attack::for_action(names.actions.resolve(tally.action)) {
            if !found.iter().any(|t| t.id == technique.id) {
                found.push(technique);
            }
        }
    }
    found
}

/// Assembles a draft from an episode (the parts every detector shares).
pub(crate) fn draft(
    identity: nhiwatch_model::Sym,
    episode: Episode,
    kind: FindingKind,
    severity: Severity,
    summary: String,
    detail: Value,
    techniques: Vec<&'static Technique>,
) -> Draft {
    Draft {
        identity,
        entry: episode.entry,
        kind,
        severity,
        time: episode.last,
        summary,
        event_ids: episode.event_ids,
        detail,
        techniques,
    }
}

/// The policy entry of an episode as JSON: its index and `match` glob.
pub(crate) fn entry_json(names: &Names<'_>, episode: &Episode) -> Value {
    match names.entry(episode.entry) {
        Some(entry) => serde_json::json!({"index": entry.index(), "match": entry.pattern()}),
        None => Value::Null,
    }
}

/// "1 event" / "3 events".
pub(crate) fn plural(count: usize, one: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {one}s")
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod usual_tests;
