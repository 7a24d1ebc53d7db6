//! The permitted lens on telemetry nobody on this project wrote (../shared/corpus):
//! - OTRF's EC2-proxy S3 exfiltration: stolen BankingWAFRole instance credentials used for S3
//!   are out of scope for a role whose policy allows only WAF;
//! - Panther's CloudTrail rule tests (Stratus Red Team style): the denied calls, under a
//!   read-only policy, raise grouped `denied_attempts`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Event, Finding, FindingKind, Outcome, Severity};
use nhiwatch_policy::Policy;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");

/// Decodes an input with the public reader; fails on any reject.
fn decode(feed: impl FnOnce(&mut Reader, &mut Sinks<'_>)) -> Vec<Event<'static>> {
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut sinks = Sinks {
        event: &mut |event| events.push(event.into_owned()),
        reject: &mut |reject| rejects.push(reject),
    };
    feed(&mut reader, &mut sinks);
    reader.finish(&mut sinks);
    assert!(rejects.is_empty(), "rejected: {rejects:#?}");
    events
}

fn detect(policy: Policy, events: &[Event<'static>]) -> Vec<Finding> {
    let mut engine = Engine::new(Some(Arc::new(policy)), EngineConfig::default());
    let mut findings = Vec::new();
    for event in events {
        engine.process(event, &mut |f| findings.push(f));
    }
    engine.finish(&mut |f| findings.push(f));
    findings
}

fn otrf_events() -> Vec<Event<'static>> {
    let path = format!("{CORPUS}/cloudtrail/ec2_proxy_s3_exfiltration.zip");
    decode(|reader, sinks| reader.read_path(Path::new(&path), sinks))
}

/// The role's events and the one out-of-scope finding about it.
fn check_waf_role_out_of_scope(policy: Policy) {
    let events = otrf_events();
    let role_events: Vec<&Event<'_>> = events
        .iter()
        .filter(|e| e.identity.id.contains("BankingWAFRole"))
        .collect();
    assert!(
        role_events.len() >= 10,
        "the role's S3 activity is in the corpus"
    );
    let role = role_events[0].identity.id.to_string();
    assert!(
        role.starts_with("arn:aws:iam::123456789123:role/"),
        "{role}"
    );

    let findings = detect(policy, &events);
    let scope: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::OutOfScope)
        .collect();
    assert_eq!(scope.len(), 1, "one episode, one finding: {scope:#?}");
    let finding = scope[0];
    assert_eq!(finding.identity, role);

    let expected: BTreeSet<&str> = role_events.iter().map(|e| e.id.as_ref()).collect();
    let listed: BTreeSet<&str> = finding
        .evidence
        .event_ids
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(listed, expected, "every event of the role is evidence");
    assert_eq!(finding.evidence.event_ids.len(), role_events.len());

    // The explanation names each S3 action the role used and what it was compared with.
    let used: BTreeSet<&str> = role_events.iter().map(|e| e.action.as_ref()).collect();
    assert!(
        used.contains("s3:GetObject") && used.contains("s3:ListBuckets"),
        "{used:?}"
    );
    let explained: BTreeSet<&str> = finding.evidence.detail["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["action"].as_str().expect("action"))
        .collect();
    assert_eq!(explained, used);
    let permitted = finding.evidence.detail["permitted"].to_string();
    assert!(permitted.contains("wafv2:*"), "{permitted}");

    // The stolen credentials read data: carried out, so high; mapped to the techniques OTRF's
    // dataset description names (T1078.004, T1530).
    assert!(role_events.iter().all(|e| e.outcome == Outcome::Success));
    assert_eq!(finding.severity, Severity::High);
    for technique in ["MITRE-ATTACK:T1078.004", "MITRE-ATTACK:T1530"] {
        assert!(
            finding.frameworks.iter().any(|f| f == technique),
            "{:?}",
            finding.frameworks
        );
    }
    let last = role_events.iter().map(|e| e.time).max().expect("events");
    assert_eq!(finding.time, last);

    // User pedro has no entry: watched, not judged, so nothing of his is out of scope.
    assert!(findings.iter().all(|f| f.identity == role));
}

#[test]
fn otrf_banking_waf_role_is_out_of_scope_for_a_waf_only_policy() {
    let policy = Policy::parse(
        r#"
identities:
  - match: "arn:aws:iam::*:role/*BankingWAFRole*"
    kind: role
    allow:
      - action: "waf:*"
      - action: "waf-regional:*"
      - action: "wafv2:*"
"#,
        "waf-policy.yaml",
        None,
    )
    .expect("the policy loads");
    check_waf_role_out_of_scope(policy);
}

#[test]
fn otrf_banking_waf_role_is_out_of_scope_for_a_waf_only_iam_document() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(
        dir.path().join("waf-role.json"),
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"WafOnly","Effect":"Allow",
            "Action":["waf:*","waf-regional:*","wafv2:*"],"Resource":"*"}]}"#,
    )
    .expect("write the IAM document");
    let policy = Policy::parse(
        "identities:\n  - match: \"arn:aws:iam::*:role/*BankingWAFRole*\"\n    iam_policy: waf-role.json\n",
        "waf-iam-policy.yaml",
        Some(dir.path()),
    )
    .expect("the policy loads");
    check_waf_role_out_of_scope(policy);
}

/// AWS error codes that mean "not authorised", as CloudTrail writes them.
fn is_denial_code(code: &str) -> bool {
    code.contains("AccessDenied") || code.ends_with("UnauthorizedOperation")
}

#[test]
fn denied_enumeration_under_a_read_only_policy_raises_grouped_denied_attempts() {
    let path = format!("{CORPUS}/rule_tests/panther_rule_tests.AWS.CloudTrail.jsonl");
    let text = std::fs::read_to_string(&path).expect("the Panther rule tests are in the corpus");
    let mut lines = String::new();
    for line in text.lines() {
        let wrapper: serde_json::Value = serde_json::from_str(line).expect("a rule-test wrapper");
        let log = &wrapper["log"];
        let code = log["errorCode"].as_str().or(log["errorcode"].as_str());
        if code.is_some_and(is_denial_code) {
            lines.push_str(&log.to_string());
            lines.push('\n');
        }
    }
    let events =
        decode(|reader, sinks| reader.read_bytes("panther-denied", lines.as_bytes(), sinks));
    assert!(events.len() >= 30, "{} denied records", events.len());
    assert!(events.iter().all(|e| e.outcome == Outcome::Denied));

    let policy = Policy::parse(
        r#"
identities:
  - match: "*"
    allow:
      - action: "*:Get*"
      - action: "*:List*"
      - action: "*:Describe*"
"#,
        "read-only.yaml",
        None,
    )
    .expect("the policy loads");
    let findings = detect(policy, &events);
    let denied: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::DeniedAttempts)
        .collect();

    // Every denied event is evidence of exactly one denied_attempts finding of its identity.
    let mut by_identity: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for event in &events {
        by_identity
            .entry(event.identity.id.as_ref())
            .or_default()
            .push(event.id.as_ref());
        times
            .entry(event.identity.id.as_ref())
            .or_default()
            .push(event.time.unix_seconds());
    }
    let mut listed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for finding in &denied {
        assert!(!finding.evidence.event_ids.is_empty());
        listed
            .entry(finding.identity.as_str())
            .or_default()
            .extend(finding.evidence.event_ids.iter().map(String::as_str));
    }
    for ids in by_identity.values_mut().chain(listed.values_mut()) {
        ids.sort_unstable();
    }
    assert_eq!(listed, by_identity);
    // Grouped per identity and window: one finding per run of an identity's denials that are
    // each within 30 minutes of the previous one, never one per event.
    let gap = EngineConfig::default().episode_gap / 1_000_000_000;
    let windows: usize = times
        .values_mut()
        .map(|t| {
            t.sort_unstable();
            1 + t.windows(2).filter(|w| w[1] - w[0] > gap).count()
        })
        .sum();
    assert_eq!(denied.len(), windows);
    assert!(
        denied.len() < events.len(),
        "{} findings for {} events",
        denied.len(),
        events.len()
    );

    // The largest burst (one read-only user's denied bucket writes, all at one moment) is one
    // finding listing every event of that identity in its window, and severe because every
    // attempt was a write.
    let burst = denied
        .iter()
        .max_by_key(|f| f.evidence.event_ids.len())
        .expect("findings");
    let burst_identity = burst.identity.as_str();
    let (start, end) = (
        &burst.evidence.detail["window"]["start"],
        &burst.evidence.detail["window"]["end"],
    );
    let in_window: Vec<&Event<'_>> = events
        .iter()
        .filter(|e| e.identity.id == burst_identity)
        .filter(|e| e.time.to_string().as_str() >= start.as_str().expect("start"))
        .filter(|e| e.time.to_string().as_str() <= end.as_str().expect("end"))
        .collect();
    assert_eq!(burst.evidence.event_ids.len(), in_window.len());
    assert!(in_window.len() >= 5, "{burst:#?}");
    assert!(in_window
        .iter()
        .all(|e| e.action_class != nhiwatch_model::ActionClass::Read
            && e.action_class != nhiwatch_model::ActionClass::List));
    assert_eq!(burst.severity, Severity::High);
    let errors: BTreeSet<&str> = burst.evidence.detail["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["error"].as_str().expect("error code"))
        .collect();
    assert!(errors.iter().all(|code| is_denial_code(code)), "{errors:?}");
    assert!(burst.evidence.detail["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .all(|a| a["policy"] == "not permitted"));

    // The same writes are outside the read-only policy: out of scope, as attempts (medium).
    let scope: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::OutOfScope && f.identity == burst_identity)
        .collect();
    assert_eq!(scope.len(), 1);
    assert_eq!(scope[0].severity, Severity::Medium);
}
