//! The per-identity risk score and the decision it implies: a continuously re-evaluated trust
//! (zero trust, NIST SP 800-207 §5.1).
//!
//! Each identity carries a risk of 0-100. A finding adds its weight as an independent piece of
//! evidence (`risk ← 100 − (100 − risk) × (1 − weight/100)`, so risk rises with every finding
//! and never passes 100), whatever lens raised it. The weight is the finding's severity
//! (25/50/75/95 for low/medium/high/critical, so an identity's first finding scores what
//! [`crate::SeverityScorer`] would give it) times how sensitive the action
//! was: ×1.2 when it is an instance of an ATT&CK technique, ×1.2 when the finding is about
//! sensitive, out-of-scope or escalating actions. Between findings the risk decays by half
//! every [`RiskScorer::HALF_LIFE`] of event time: behaviour that stays normal earns the trust
//! back.
//!
//! The decision follows the risk (below 40 allow, below 65 review, below 90 step up, else
//! block), unless the identity's policy entry sets a `decision` for the finding's severity,
//! which then wins. A finding a person judges benign has its weight taken back out.

use nhiwatch_model::{Decision, Finding, FindingKind, Severity, Sym};
use nhiwatch_policy::Entry;

use crate::attack::FRAMEWORK_PREFIX;
use crate::engine::{Draft, Scorer, SeverityScorer, SECOND};

/// Risk per identity; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct RiskScorer {
    /// (risk, time of the last finding in nanoseconds) by identity Sym.
    identities: Vec<(f64, i64)>,
    /// Findings judged benign whose weight was taken back.
    forgiven: std::collections::HashSet<String>,
}

impl RiskScorer {
    /// Risk halves after this long (event time, nanoseconds) without a finding: 6 hours.
    pub const HALF_LIFE: i64 = 6 * 3_600 * SECOND;

    /// A scorer where every identity starts at risk 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The weight of a draft: severity times sensitivity, at most 99.
    pub fn weight(draft: &Draft) -> f64 {
        Self::weight_of(draft.severity, draft.kind, !draft.techniques.is_empty())
    }

    /// The weight of a finding of `kind` and `severity`, an instance of an ATT&CK technique
    /// or not.
    pub fn weight_of(severity: Severity, kind: FindingKind, technique: bool) -> f64 {
        let mut weight = f64::from(SeverityScorer::risk(severity));
        if technique {
            weight *= 1.2;
        }
        if matches!(
            kind,
            FindingKind::SensitiveAccess
                | FindingKind::OutOfScope
                | FindingKind::PrivilegeEscalation
                | FindingKind::DefenseEvasion
        ) {
            weight *= 1.2;
        }
        weight.min(99.0)
    }

    /// The decision a risk figure implies when the policy sets none.
    pub fn decision(risk: u8) -> Decision {
        match risk {
            0..40 => Decision::Allow,
            40..65 => Decision::Review,
            65..90 => Decision::StepUp,
            _ => Decision::Block,
        }
    }

    /// The current risk of an identity at `time` (decayed), 0 for one never scored.
    pub fn risk_at(&self, identity: Sym, time: i64) -> f64 {
        self.identities
            .get(identity.0 as usize)
            .map_or(0.0, |&(risk, at)| decay(risk, at, time))
    }
}

fn decay(risk: f64, at: i64, time: i64) -> f64 {
    if time <= at || risk <= 0.0 {
        return risk;
    }
    let half_lives = (time - at) as f64 / RiskScorer::HALF_LIFE as f64;
    risk * 0.5f64.powf(half_lives)
}

impl Scorer for RiskScorer {
    fn score(&mut self, draft: &Draft, entry: Option<&Entry>) -> (u8, Decision) {
        let index = draft.identity.0 as usize;
        if index >= self.identities.len() {
            self.identities.resize(index + 1, (0.0, i64::MIN));
        }
        let time = draft.time.unix_nanos();
        let (risk, at) = self.identities[index];
        let before = decay(risk, at, time);
        let risk = 100.0 - (100.0 - before) * (1.0 - Self::weight(draft) / 100.0);
        self.identities[index] = (risk, at.max(time));
        let figure = risk.round().clamp(0.0, 100.0) as u8;
        let decision = entry
            .and_then(|e| e.decision(draft.severity))
            .unwrap_or_else(|| Self::decision(figure));
        (figure, decision)
    }

    fn resume(&mut self, identity: Sym, risk: u8, time: i64) {
        let index = identity.0 as usize;
        if index >= self.identities.len() {
            self.identities.resize(index + 1, (0.0, i64::MIN));
        }
        let slot = &mut self.identities[index];
        if slot.1 < time {
            *slot = (f64::from(risk.min(100)), time);
        }
    }

    /// Takes the finding's weight back out of the identity's risk (the inverse of adding it,
    /// at least 0), once per finding; an identity this scorer never scored stays at 0.
    fn forgive(&mut self, identity: Sym, finding: &Finding) -> Option<(u8, Decision)> {
        if !self.forgiven.insert(finding.id.clone()) {
            return None;
        }
        let Some(slot) = self.identities.get_mut(identity.0 as usize) else {
            // Scored before this scorer's time (a restart): its risk here is already 0.
            return Some((0, Self::decision(0)));
        };
        let technique = finding
            .frameworks
            .iter()
            .any(|tag| tag.starts_with(FRAMEWORK_PREFIX));
        let kept = 1.0 - Self::weight_of(finding.severity, finding.kind, technique) / 100.0;
        let before = slot.0;
        slot.0 = (100.0 - (100.0 - before) / kept).clamp(0.0, before);
        let figure = slot.0.round() as u8;
        Some((figure, Self::decision(figure)))
    }

    /// Scores as [`score`](Self::score) would, then forgets it: a previewed episode is scored
    /// again when it closes, and an inline decision must not raise the identity's risk twice.
    fn preview(&mut self, draft: &Draft, entry: Option<&Entry>) -> (u8, Decision) {
        let (index, len) = (draft.identity.0 as usize, self.identities.len());
        let saved = self.identities.get(index).copied();
        let scored = self.score(draft, entry);
        self.identities.truncate(len);
        if let Some(saved) = saved {
            self.identities[index] = saved;
        }
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_model::{Severity, Sym, Timestamp};

    fn draft(identity: u32, severity: Severity, kind: FindingKind, hours: i64) -> Draft {
        Draft {
            identity: Sym(identity),
            entry: None,
            kind,
            severity,
            time: Timestamp(hours * 3_600 * SECOND),
            summary: String::new(),
            event_ids: vec!["e".into()],
            detail: serde_json::Value::Null,
            techniques: Vec::new(),
        }
    }

    #[test]
    fn risk_rises_with_findings_and_decays_with_time() {
        let mut scorer = RiskScorer::new();
        let (first, decision) =
            scorer.score(&draft(0, Severity::Low, FindingKind::NovelAction, 0), None);
        assert_eq!(
            (first, decision),
            (25, Decision::Allow),
            "a first finding scores its severity"
        );
        let (second, _) = scorer.score(
            &draft(0, Severity::Medium, FindingKind::RateAnomaly, 0),
            None,
        );
        assert!(second > 50 && second > first, "{second}");
        let (other, _) = scorer.score(&draft(1, Severity::Low, FindingKind::NovelAction, 0), None);
        assert_eq!(other, 25, "identities are scored apart");
        let later = scorer.risk_at(Sym(0), 24 * 3_600 * SECOND);
        assert!(later < f64::from(second) / 10.0, "{later}: four half-lives");
        let (critical, decision) = scorer.score(
            &draft(2, Severity::Critical, FindingKind::DefenseEvasion, 0),
            None,
        );
        assert_eq!((critical, decision), (99, Decision::Block));
    }

    #[test]
    fn a_benign_finding_takes_its_weight_back_once() {
        let mut scorer = RiskScorer::new();
        let (low, _) = scorer.score(&draft(0, Severity::Low, FindingKind::NovelAction, 0), None);
        let escalation = draft(0, Severity::High, FindingKind::PrivilegeEscalation, 0);
        let (both, decision) = scorer.score(&escalation, None);
        assert_eq!((both, decision), (93, Decision::Block));
        let finding = Finding {
            id: "f-escalation".into(),
            time: escalation.time,
            identity: "role".into(),
            kind: escalation.kind,
            severity: escalation.severity,
            risk: both,
            decision,
            summary: String::new(),
            evidence: nhiwatch_model::Evidence {
                event_ids: vec!["e".into()],
                detail: serde_json::Value::Null,
            },
            frameworks: vec!["OWASP-NHI-06".into()],
        };
        assert_eq!(
            scorer.forgive(Sym(0), &finding),
            Some((low, Decision::Allow)),
            "what the low finding alone scored"
        );
        assert_eq!(scorer.forgive(Sym(0), &finding), None, "once");
        assert_eq!(scorer.risk_at(Sym(0), 0).round() as u8, low);
        let mut restarted = RiskScorer::new();
        assert_eq!(
            restarted.forgive(Sym(0), &finding),
            Some((0, Decision::Allow)),
            "never scored here"
        );
    }

    #[test]
    fn a_resumed_risk_decays_and_rises_as_if_never_stopped() {
        let mut scorer = RiskScorer::new();
        scorer.resume(Sym(0), 80, 0);
        assert_eq!(scorer.risk_at(Sym(0), 0), 80.0);
        assert_eq!(scorer.risk_at(Sym(0), RiskScorer::HALF_LIFE), 40.0);
        let (risk, _) = scorer.score(&draft(0, Severity::Low, FindingKind::NovelAction, 0), None);
        assert_eq!(risk, 85, "100 - 20 x 0.75");
        scorer.resume(Sym(0), 10, -1);
        assert_eq!(
            scorer.risk_at(Sym(0), 0).round(),
            85.0,
            "an older figure does not replace a later one"
        );
    }

    #[test]
    fn the_policy_decision_wins() {
        let policy = nhiwatch_policy::Policy::parse(
            "identities:\n  - match: \"x\"\n    decision: {high: review}\n",
            "p.yaml",
            None,
        )
        .expect("policy");
        let entry = policy.entries().first();
        let mut scorer = RiskScorer::new();
        let (risk, decision) = scorer.score(
            &draft(0, Severity::High, FindingKind::PrivilegeEscalation, 0),
            entry,
        );
        assert!(risk >= 90);
        assert_eq!(decision, Decision::Review);
    }
}
