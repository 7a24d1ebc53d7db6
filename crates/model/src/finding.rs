//! The finding: what a detector reports (DESIGN.md, "Finding").

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// What kind of departure from approved use a finding reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An action or resource outside the identity's entitlements.
    OutOfScope,
    /// Actions the provider denied, grouped per identity and window.
    DeniedAttempts,
    /// A run of actions that leaves the approved workflow.
    WorkflowDeviation,
    /// An action this identity has not performed before.
    NovelAction,
    /// A resource this identity has not touched before.
    NovelResource,
    /// Access to something the policy marks sensitive.
    SensitiveAccess,
    /// A sequence of actions that is rare for this identity.
    RareSequence,
    /// Many distinct list/describe/get targets in a short window.
    Enumeration,
    /// Activity outside approved or usual hours.
    TimeAnomaly,
    /// Far more data or records than usual.
    VolumeAnomaly,
    /// Far more actions per window than usual.
    RateAnomaly,
    /// A source IP, network or user agent not seen before.
    NewOrigin,
    /// A known privilege-escalation action or chain.
    PrivilegeEscalation,
    /// A known defense-evasion action (logging off, detectors disabled).
    DefenseEvasion,
    /// A user-supplied rule (Sigma or native) matched.
    Rule,
}

impl FindingKind {
    /// Every kind, in contract order.
    pub const ALL: [FindingKind; 15] = [
        FindingKind::OutOfScope,
        FindingKind::DeniedAttempts,
        FindingKind::WorkflowDeviation,
        FindingKind::NovelAction,
        FindingKind::NovelResource,
        FindingKind::SensitiveAccess,
        FindingKind::RareSequence,
        FindingKind::Enumeration,
        FindingKind::TimeAnomaly,
        FindingKind::VolumeAnomaly,
        FindingKind::RateAnomaly,
        FindingKind::NewOrigin,
        FindingKind::PrivilegeEscalation,
        FindingKind::DefenseEvasion,
        FindingKind::Rule,
    ];

    /// The name used in the JSON contract.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::OutOfScope => "out_of_scope",
            FindingKind::DeniedAttempts => "denied_attempts",
            FindingKind::WorkflowDeviation => "workflow_deviation",
            FindingKind::NovelAction => "novel_action",
            FindingKind::NovelResource => "novel_resource",
            FindingKind::SensitiveAccess => "sensitive_access",
            FindingKind::RareSequence => "rare_sequence",
            FindingKind::Enumeration => "enumeration",
            FindingKind::TimeAnomaly => "time_anomaly",
            FindingKind::VolumeAnomaly => "volume_anomaly",
            FindingKind::RateAnomaly => "rate_anomaly",
            FindingKind::NewOrigin => "new_origin",
            FindingKind::PrivilegeEscalation => "privilege_escalation",
            FindingKind::DefenseEvasion => "defense_evasion",
            FindingKind::Rule => "rule",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth recording.
    Low,
    /// Worth a look.
    Medium,
    /// Needs action.
    High,
    /// Needs action now.
    Critical,
}

impl Severity {
    /// The name used in the JSON contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a finding leads to: the risk decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let it go on.
    Allow,
    /// Let it go on, and have a person look.
    Review,
    /// Ask for stronger proof (re-authentication, a human approval) before going on.
    StepUp,
    /// Stop it.
    Block,
}

impl Decision {
    /// The name used in the JSON contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Review => "review",
            Decision::StepUp => "step_up",
            Decision::Block => "block",
        }
    }
}

/// The events behind a finding and what they were compared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Ids of the events that make the finding; never empty.
    pub event_ids: Vec<String>,
    /// What the events were compared with: the permitted set, the expected next step, the
    /// baseline figure and threshold, the rule.
    pub detail: serde_json::Value,
}

/// One finding, one JSON object per line in the output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable, unique id; see [`Finding::stable_id`].
    pub id: String,
    /// Time of the last event in the evidence.
    pub time: Timestamp,
    /// The identity's id.
    pub identity: String,
    /// What kind of departure this is.
    pub kind: FindingKind,
    /// How serious it is.
    pub severity: Severity,
    /// 0-100: how far the identity's behaviour now stands from its approved use.
    pub risk: u8,
    /// What it leads to.
    pub decision: Decision,
    /// One sentence a person can act on.
    pub summary: String,
    /// The events and what they were compared with.
    pub evidence: Evidence,
    /// Framework references, e.g. `OWASP-NHI-06`.
    pub frameworks: Vec<String>,
}

/// The framework references every behavioural finding maps to.
pub const BASE_FRAMEWORKS: [&str; 3] =
    ["OWASP-NHI-06", "NIST-CSF-2.0:DE.CM", "NIST-SP-800-207:5.1"];

impl Finding {
    /// A stable id from what makes a finding itself: the identity, the kind and the first
    /// evidence event. Re-running detection on the same input yields the same ids.
    pub fn stable_id(identity: &str, kind: FindingKind, first_event_id: &str) -> String {
        let mut hasher = blake3::Hasher::new();
        for part in [identity, kind.as_str(), first_event_id] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let hash = hasher.finalize();
        let mut id = String::with_capacity(26);
        id.push_str("f-");
        for byte in &hash.as_bytes()[..12] {
            use std::fmt::Write;
            let _ = write!(id, "{byte:02x}");
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_contract_names() {
        for kind in FindingKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(
            serde_json::to_string(&Decision::StepUp).unwrap(),
            "\"step_up\""
        );
    }

    #[test]
    fn stable_id_depends_on_every_part() {
        let a = Finding::stable_id("id", FindingKind::OutOfScope, "e1");
        assert_eq!(a, Finding::stable_id("id", FindingKind::OutOfScope, "e1"));
        assert_ne!(a, Finding::stable_id("id", FindingKind::NovelAction, "e1"));
        assert_ne!(a, Finding::stable_id("id", FindingKind::OutOfScope, "e2"));
        assert_ne!(
            Finding::stable_id("ab", FindingKind::Rule, "c"),
            Finding::stable_id("a", FindingKind::Rule, "bc")
        );
    }
}
