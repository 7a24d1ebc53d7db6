//! The rules inside the nhiwatch engine: findings of kind `rule`, grouped per identity and
//! episode, inline decisions, and bounded state.

use std::sync::Arc;

use nhiwatch_decode::{Decoders, Format};
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Finding, FindingKind, Severity, Source, Sym, Timestamp};
use nhiwatch_rules::{
    Evaluator, Hit, Limits, LoadOptions, Origin, RuleSet, RulesDetector, Subject,
};

const STOP_LOGGING: &str = "
title: CloudTrail logging stopped
id: stop-logging
description: A trail stopped recording.
level: high
tags: [attack.defense-evasion, attack.t1562.008]
logsource: {product: aws, service: cloudtrail}
detection:
    selection: {eventName: StopLogging}
    condition: selection
";

const SEQUENCE: &str = "
nhiwatch: sequence
id: probe-then-assume
title: Refused IAM calls, then a role assumed
level: critical
tags: [attack.privilege-escalation, attack.t1078.004]
sources: [cloudtrail]
sequence:
    within: 10m
    steps:
        - where: {action|startswith: 'iam:', outcome: denied}
          min: 2
        - where: {action: sts:AssumeRole, outcome: success}
";

fn record(
    id: &str,
    role: &str,
    minute: u32,
    source: &str,
    name: &str,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!(r#""errorCode":"{e}","errorMessage":"denied","#))
        .unwrap_or_default();
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/{role}/s","accountId":"111122223333","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::111122223333:role/{role}","userName":"{role}"}}}}}},"eventTime":"2026-11-20T10:{minute:02}:00Z","eventSource":"{source}.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9",{error}"requestParameters":null,"responseElements":null,"eventID":"{id}","eventType":"AwsApiCall","recipientAccountId":"111122223333"}}"#
    )
}

fn engine(yaml: &str) -> Engine {
    let set = RuleSet::compile(&[("rules.yml", yaml)], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let config = EngineConfig::default();
    let detector = RulesDetector::new(Arc::new(set), &config);
    Engine::with_detectors(None, config, vec![Box::new(detector)])
}

fn run(engine: &mut Engine, records: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut decoders = Decoders::default();
    for record in records {
        decoders
            .decode(Format::CloudTrail, record, &mut |event| {
                engine.process(&event, &mut |f| findings.push(f))
            })
            .unwrap_or_else(|e| panic!("{e}: {record}"));
    }
    engine.finish(&mut |f| findings.push(f));
    findings
}

#[test]
fn sigma_matches_become_rule_findings_grouped_per_identity() {
    let mut engine = engine(STOP_LOGGING);
    let records = [
        record("e1", "ci", 0, "cloudtrail", "StopLogging", None),
        record("e2", "ci", 5, "cloudtrail", "StopLogging", None),
        record("e3", "other", 6, "cloudtrail", "StopLogging", None),
        record("e4", "ci", 7, "cloudtrail", "StartLogging", None),
    ];
    let mut findings = run(&mut engine, &records);
    findings.sort_by(|a, b| a.identity.cmp(&b.identity));
    assert_eq!(findings.len(), 2, "{findings:#?}");
    let ci = &findings[0];
    assert_eq!(ci.identity, "arn:aws:iam::111122223333:role/ci");
    assert_eq!(ci.kind, FindingKind::Rule);
    assert_eq!(ci.severity, Severity::High);
    assert_eq!(ci.evidence.event_ids, ["e1", "e2"]);
    let rule = &ci.evidence.detail["rule"];
    assert_eq!(rule["id"], "stop-logging");
    assert_eq!(rule["title"], "CloudTrail logging stopped");
    assert_eq!(rule["level"], "high");
    assert_eq!(rule["kind"], "sigma");
    assert_eq!(rule["tags"][1], "attack.t1562.008");
    assert!(
        ci.frameworks.iter().any(|f| f == "MITRE-ATTACK:T1562.008"),
        "{:?}",
        ci.frameworks
    );
    assert!(
        ci.summary.contains("CloudTrail logging stopped"),
        "{}",
        ci.summary
    );
    assert_eq!(findings[1].evidence.event_ids, ["e3"]);
}

#[test]
fn sequences_follow_one_identity_and_list_every_step() {
    let mut engine = engine(SEQUENCE);
    let records = [
        record("p1", "web", 0, "iam", "ListRoles", Some("AccessDenied")),
        record("x1", "other", 1, "iam", "ListRoles", Some("AccessDenied")),
        record("p2", "web", 2, "iam", "GetRole", Some("AccessDenied")),
        record("x2", "other", 3, "sts", "AssumeRole", None),
        record("p3", "web", 4, "sts", "AssumeRole", None),
    ];
    let findings = run(&mut engine, &records);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    assert_eq!(finding.identity, "arn:aws:iam::111122223333:role/web");
    assert_eq!(finding.severity, Severity::Critical);
    assert_eq!(finding.evidence.event_ids, ["p1", "p2", "p3"]);
    assert_eq!(finding.evidence.detail["logic"]["type"], "sequence");
    assert_eq!(finding.evidence.detail["rule"]["kind"], "native_sequence");
}

#[test]
fn inline_decisions_preview_rule_findings_without_closing_them() {
    let mut engine = engine(STOP_LOGGING);
    let record = record("d1", "agent", 0, "cloudtrail", "StopLogging", None);
    let mut decoders = Decoders::default();
    let mut assessed = None;
    let mut emitted = Vec::new();
    decoders
        .decode(Format::CloudTrail, &record, &mut |event| {
            assessed = Some(engine.decide(&event, &mut |f| emitted.push(f)));
        })
        .expect("decodes");
    let assessment = assessed.expect("an event");
    assert!(emitted.is_empty());
    assert_eq!(assessment.findings.len(), 1);
    assert_eq!(assessment.findings[0].kind, FindingKind::Rule);
    engine.finish(&mut |f| emitted.push(f));
    assert_eq!(emitted.len(), 1);
    assert_eq!(
        emitted[0].id, assessment.findings[0].id,
        "the preview names the finding to come"
    );
}

#[test]
fn correlation_state_stays_within_its_limits() {
    let yaml = "
title: many denied users
id: many
correlation:
    type: value_count
    rules: [denied]
    group-by: [sourceIPAddress]
    timespan: 1h
    condition: {field: userIdentity.arn, gte: 1000}
---
title: denied
name: denied
logsource: {product: aws}
detection:
    s: {errorCode: AccessDenied}
    condition: s
";
    let set = Arc::new(
        RuleSet::compile(&[("c.yml", yaml)], &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let limits = Limits {
        max_groups: 100,
        max_entries: 50,
        max_evidence: 8,
    };
    let mut eval = Evaluator::new(set, limits);
    let origin = Origin {
        identity: Sym(0),
        entry: None,
    };
    let mut hits: Vec<Hit> = Vec::new();
    for i in 0..20_000u32 {
        let raw = format!(
            r#"{{"errorCode":"AccessDenied","sourceIPAddress":"10.0.{}.{}","userIdentity":{{"arn":"u{i}"}}}}"#,
            i / 256 % 256,
            i % 256
        );
        let subject =
            Subject::raw(Source::Cloudtrail, &raw).at(Timestamp(i64::from(i) * 1_000_000));
        eval.process(&subject, origin, &mut hits);
        assert!(
            eval.open_groups() <= 100,
            "after {i}: {}",
            eval.open_groups()
        );
    }
    assert!(hits.is_empty());
}
