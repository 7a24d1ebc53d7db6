//! Findings as OCSF Detection Findings (class `2004`, category `2` Findings, activity `1`
//! Create, so `type_uid` `200401`), for SIEMs and data lakes that read OCSF.
//!
//! Mapping: `finding_info.uid` and `metadata.uid` are the finding's stable id; `finding_info`
//! carries the kind (`types`, `analytic`), the summary (`desc`), the episode's first and last
//! event times, and the ATT&CK techniques (`attacks`); `evidences` holds one artifact per event,
//! with the identity as `actor.user` and the event id in `data`; `severity_id` follows OCSF's
//! 1-6 scale, `risk_score`/`risk_level_id` the finding's risk. What OCSF has no attribute for
//! — the decision, the framework references and the detail of what was compared — goes in
//! `unmapped`.

use nhiwatch_model::{Finding, FindingKind, Severity, Timestamp};
use serde_json::{json, Value};

use crate::attack;

/// The OCSF schema version written.
pub const OCSF_VERSION: &str = "1.3.0";

/// Detection Finding.
pub const CLASS_UID: u32 = 2004;
/// Findings.
pub const CATEGORY_UID: u32 = 2;
/// Create.
pub const ACTIVITY_CREATE: u32 = 1;

fn severity_id(severity: Severity) -> (u8, &'static str) {
    match severity {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn risk_level(risk: u8) -> (u8, &'static str) {
    match risk {
        0..=19 => (0, "Info"),
        20..=39 => (1, "Low"),
        40..=59 => (2, "Medium"),
        60..=79 => (3, "High"),
        _ => (4, "Critical"),
    }
}

fn title(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::OutOfScope => "Non-human identity acted outside its entitlements",
        FindingKind::DeniedAttempts => "Non-human identity was repeatedly refused",
        FindingKind::WorkflowDeviation => "Non-human identity left its approved workflow",
        FindingKind::NovelAction => "Non-human identity performed a new action",
        FindingKind::NovelResource => "Non-human identity touched a new resource",
        FindingKind::SensitiveAccess => "Non-human identity accessed something sensitive",
        FindingKind::RareSequence => "Non-human identity performed a rare sequence of actions",
        FindingKind::Enumeration => "Non-human identity enumerated resources",
        FindingKind::TimeAnomaly => "Non-human identity acted at an unusual time",
        FindingKind::VolumeAnomaly => "Non-human identity moved unusual volumes of data",
        FindingKind::RateAnomaly => "Non-human identity acted at an unusual rate",
        FindingKind::NewOrigin => "Non-human identity acted from a new origin",
        FindingKind::PrivilegeEscalation => "Non-human identity escalated privileges",
        FindingKind::DefenseEvasion => "Non-human identity weakened defences",
        FindingKind::Rule => "Detection rule matched",
    }
}

/// OCSF times are milliseconds since the epoch.
fn millis(time: Timestamp) -> i64 {
    time.unix_nanos().div_euclid(1_000_000)
}

/// One finding as an OCSF Detection Finding.
pub fn detection_finding(finding: &Finding) -> Value {
    let (severity_id, severity) = severity_id(finding.severity);
    let (risk_level_id, risk_level) = risk_level(finding.risk);
    let first_seen = finding.evidence.detail["window"]["start"]
        .as_str()
        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        .unwrap_or(finding.time);
    let attacks: Vec<Value> = finding
        .frameworks
        .iter()
        .filter_map(|tag| attack::from_tag(tag))
        .map(|t| {
            json!({
                "technique": {"uid": t.id, "name": t.name},
                "tactic": {"uid": t.tactic_id, "name": t.tactic},
            })
        })
        .collect();
    let evidences: Vec<Value> = finding
        .evidence
        .event_ids
        .iter()
        .map(|id| {
            json!({
                "actor": {"user": {"uid": finding.identity, "name": finding.identity}},
                "data": {"event_id": id},
            })
        })
        .collect();
    json!({
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "time": millis(finding.time),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "message": finding.summary,
        "risk_score": finding.risk,
        "risk_level_id": risk_level_id,
        "risk_level": risk_level,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": finding.id,
            "product": {
                "name": "nhiwatch",
                "vendor_name": "nhiwatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "finding_info": {
            "uid": finding.id,
            "title": title(finding.kind),
            "desc": finding.summary,
            "types": [finding.kind.as_str()],
            "analytic": {
                "uid": finding.kind.as_str(),
                "name": finding.kind.as_str(),
                "type_id": 1,
                "type": "Rule",
            },
            "first_seen_time": millis(first_seen),
            "last_seen_time": millis(finding.time),
            "related_events_count": finding.evidence.event_ids.len(),
            "attacks": attacks,
        },
        "evidences": evidences,
        "unmapped": {
            "identity": finding.identity,
            "decision": finding.decision.as_str(),
            "frameworks": finding.frameworks,
            "detail": finding.evidence.detail,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_model::{Decision, Evidence};

    #[test]
    fn a_finding_becomes_a_detection_finding() {
        let finding = Finding {
            id: "f-1".into(),
            time: Timestamp::parse_rfc3339("2020-09-14T01:13:20Z").unwrap(),
            identity: "arn:aws:iam::1:role/r".into(),
            kind: FindingKind::OutOfScope,
            severity: Severity::High,
            risk: 75,
            decision: Decision::Block,
            summary: "r acted outside its entitlements".into(),
            evidence: Evidence {
                event_ids: vec!["e1".into(), "e2".into()],
                detail: json!({"window": {"start": "2020-09-14T01:00:04Z"}}),
            },
            frameworks: vec!["OWASP-NHI-06".into(), "MITRE-ATTACK:T1530".into()],
        };
        let o = detection_finding(&finding);
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["category_uid"], 2);
        assert_eq!(o["activity_id"], 1);
        assert_eq!(o["type_uid"], 200_401);
        assert_eq!(o["severity_id"], 4);
        assert_eq!(o["time"], 1_600_046_000_000i64);
        assert_eq!(o["finding_info"]["uid"], "f-1");
        assert_eq!(o["finding_info"]["first_seen_time"], 1_600_045_204_000i64);
        assert_eq!(o["finding_info"]["types"][0], "out_of_scope");
        assert_eq!(o["finding_info"]["attacks"][0]["technique"]["uid"], "T1530");
        assert_eq!(
            o["finding_info"]["attacks"][0]["tactic"]["name"],
            "Collection"
        );
        assert_eq!(o["evidences"].as_array().unwrap().len(), 2);
        assert_eq!(o["evidences"][1]["data"]["event_id"], "e2");
        assert_eq!(
            o["evidences"][0]["actor"]["user"]["uid"],
            "arn:aws:iam::1:role/r"
        );
        assert_eq!(o["risk_level_id"], 3);
        assert_eq!(o["unmapped"]["decision"], "block");
    }
}
