//! The usual lens and the catalogue through the engine, one behaviour per test.

use std::borrow::Cow;
use std::sync::Arc;

use nhiwatch_baseline::{Baseline, Learner};
use nhiwatch_model::{Event, Finding, FindingKind, Severity};
use nhiwatch_policy::Policy;

use super::testing::{event, EventExt};
use super::UsualConfig;
use crate::engine::{Engine, EngineConfig};

const ROLE: &str = "arn:aws:iam::123456789012:role/report-exporter";
const DAY: i64 = 24 * 60;

/// One benign event: `minutes` after Monday 10:00, from the identity's usual place and client.
fn usual(id: &str, minutes: i64, action: &str) -> Event<'static> {
    let mut e = event(id, minutes, ROLE, action);
    e.src_ip = Some(Cow::Borrowed("10.0.0.5"));
    e.user_agent = Some(Cow::Borrowed(
        "Boto3/1.34.69 md/Botocore#1.34.69 os/linux#5.10",
    ));
    e
}

/// A week of a reporting job: every 10 minutes from 10:00 to 16:00, it checks who it is and
/// reads the day's part from its bucket (1 MB each).
fn history() -> Vec<Event<'static>> {
    let mut events = Vec::new();
    for day in 0..7 {
        for slot in 0..36 {
            let minutes = day * DAY + slot * 10;
            events.push(usual(
                &format!("h{day}-{slot}-a"),
                minutes,
                "sts:GetCallerIdentity",
            ));
            let mut read =
                usual(&format!("h{day}-{slot}-b"), minutes, "s3:GetObject").on(&format!(
                    "arn:aws:s3:::reports/daily/2024-01-0{}/part-{slot}.csv",
                    day + 1
                ));
            read.bytes_out = Some(1_000_000);
            events.push(read);
        }
    }
    events
}

fn learned() -> Baseline {
    let mut learner = Learner::new();
    for e in history() {
        learner.observe(&e);
    }
    learner.finish()
}

fn detect(policy: Option<&str>, baseline: Baseline, events: &[Event<'static>]) -> Vec<Finding> {
    let policy = policy.map(|yaml| Arc::new(Policy::parse(yaml, "p.yaml", None).expect("policy")));
    let mut engine = Engine::with_baseline(
        policy,
        EngineConfig::default(),
        baseline,
        UsualConfig::default(),
    );
    let mut findings = Vec::new();
    for e in events {
        engine.process(e, &mut |f| findings.push(f));
    }
    engine.finish(&mut |f| findings.push(f));
    findings
}

fn of_kind(findings: &[Finding], kind: FindingKind) -> Vec<&Finding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}

/// A normal working slot on day 8 (so detection starts where history left off).
fn normal_day(day: i64) -> Vec<Event<'static>> {
    (0..36)
        .flat_map(|slot| {
            let minutes = day * DAY + slot * 10;
            let mut read =
                usual(&format!("d{day}-{slot}-b"), minutes, "s3:GetObject").on(&format!(
                    "arn:aws:s3:::reports/daily/2024-01-{}/part-{slot}.csv",
                    10 + day
                ));
            read.bytes_out = Some(1_000_000);
            [
                usual(
                    &format!("d{day}-{slot}-a"),
                    minutes,
                    "sts:GetCallerIdentity",
                ),
                read,
            ]
        })
        .collect()
}

#[test]
fn usual_behaviour_raises_nothing() {
    let findings = detect(None, learned(), &normal_day(8));
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn novel_actions_are_grouped_and_explained() {
    let mut events = normal_day(8);
    events.push(usual("x1", 8 * DAY + 61, "iam:ListRoles"));
    events.push(usual("x2", 8 * DAY + 62, "iam:ListUsers"));
    events.push(usual("x3", 8 * DAY + 63, "iam:ListRoles"));
    let findings = detect(None, learned(), &events);
    let novel = of_kind(&findings, FindingKind::NovelAction);
    assert_eq!(novel.len(), 1, "{findings:#?}");
    let f = novel[0];
    assert_eq!(f.evidence.event_ids, ["x1", "x2", "x3"]);
    let detail = &f.evidence.detail;
    assert_eq!(detail["lens"], "usual");
    assert_eq!(detail["threshold"]["seen_before"], 0);
    // The profile as it stands when the episode closes: history plus what was learned since.
    assert!(
        detail["baseline"]["profile"]["events"].as_u64() >= Some(504),
        "{detail}"
    );
    assert_eq!(
        detail["observed"]["new_actions"][0]["action"],
        "iam:ListRoles"
    );
    assert_eq!(detail["observed"]["new_actions"][0]["events"], 2);
    assert!(f.frameworks.iter().any(|t| t == "OWASP-NHI-06"));
    assert!(
        f.frameworks.iter().any(|t| t == "MITRE-ATTACK:T1078.004"),
        "{:?}",
        f.frameworks
    );
    assert!(f.summary.contains("never done before"), "{}", f.summary);
}

#[test]
fn without_history_nothing_is_judged_but_the_catalogue() {
    let events = [
        usual("n1", 0, "s3:GetObject"),
        usual("n2", 1, "iam:ListRoles"),
        usual("n3", 2, "cloudtrail:StopLogging"),
    ];
    let findings = detect(None, Baseline::new(), &events);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].kind, FindingKind::DefenseEvasion);
}

#[test]
fn defense_evasion_is_one_critical_finding_with_its_techniques() {
    let mut events = normal_day(8);
    events.push(usual("t1", 8 * DAY + 100, "cloudtrail:DescribeTrails"));
    events.push(usual("t2", 8 * DAY + 101, "cloudtrail:StopLogging").on("org-trail"));
    events.push(usual("t3", 8 * DAY + 102, "guardduty:DeleteDetector"));
    events.push(usual("t4", 8 * DAY + 103, "cloudtrail:DeleteTrail").on("org-trail"));
    let findings = detect(None, learned(), &events);
    let evasion = of_kind(&findings, FindingKind::DefenseEvasion);
    assert_eq!(evasion.len(), 1, "{findings:#?}");
    let f = evasion[0];
    assert_eq!(f.evidence.event_ids, ["t2", "t3", "t4"]);
    assert_eq!(f.severity, Severity::Critical);
    for tag in [
        "MITRE-ATTACK:T1562.008",
        "MITRE-ATTACK:T1562.001",
        "NIST-SP-800-207:5.1",
    ] {
        assert!(
            f.frameworks.iter().any(|t| t == tag),
            "{tag} in {:?}",
            f.frameworks
        );
    }
    assert_eq!(
        f.evidence.detail["catalogue"][0]["why"],
        "stops a CloudTrail trail"
    );
    assert!(f.risk >= 90, "{}", f.risk);
}

#[test]
fn routine_dangerous_actions_are_not_reported_but_new_targets_are() {
    const OWN: &str = "arn:aws:iam::123456789012:user/svc-legacy";
    let mut learner = Learner::new();
    for e in history() {
        learner.observe(&e);
    }
    for week in 0..2 {
        learner.observe(&usual(&format!("k{week}"), week * 7 * DAY, "iam:CreateAccessKey").on(OWN));
    }
    let baseline = learner.finish();
    let events = [
        usual("r1", 8 * DAY, "iam:CreateAccessKey").on(OWN),
        usual("r2", 8 * DAY + 300, "iam:CreateAccessKey")
            .on("arn:aws:iam::123456789012:user/admin-breakglass"),
    ];
    let findings = detect(None, baseline, &events);
    let escalation = of_kind(&findings, FindingKind::PrivilegeEscalation);
    assert_eq!(escalation.len(), 1, "{findings:#?}");
    assert_eq!(escalation[0].evidence.event_ids, ["r2"]);
    assert_eq!(escalation[0].severity, Severity::High);
    assert!(escalation[0]
        .frameworks
        .iter()
        .any(|t| t == "MITRE-ATTACK:T1098.001"));
}

#[test]
fn pass_role_then_new_compute_is_a_critical_chain() {
    let events = [
        usual("p1", 8 * DAY, "iam:PassRole").on("arn:aws:iam::123456789012:role/lambda-admin"),
        usual("p2", 8 * DAY + 2, "lambda:CreateFunction20150331").on("sync-helper"),
        // Much later, new compute alone is not part of a chain.
        usual("p3", 9 * DAY, "lambda:CreateFunction20150331").on("other"),
    ];
    let findings = detect(None, learned(), &events);
    let escalation = of_kind(&findings, FindingKind::PrivilegeEscalation);
    assert_eq!(escalation.len(), 1, "{findings:#?}");
    assert_eq!(escalation[0].evidence.event_ids, ["p1", "p2"]);
    assert_eq!(escalation[0].severity, Severity::Critical);
    assert!(escalation[0].evidence.detail["chain"].is_string());
}

#[test]
fn a_new_network_and_client_is_a_new_origin() {
    let mut events = normal_day(8);
    for n in 0..3 {
        let mut e = usual(&format!("o{n}"), 8 * DAY + 70 + n, "s3:GetObject").on(&format!(
            "arn:aws:s3:::reports/daily/2024-01-18/part-{n}.csv"
        ));
        e.src_ip = Some(Cow::Borrowed("185.220.101.4"));
        e.user_agent = Some(Cow::Borrowed("aws-cli/2.13.0 Python/3.11.4 Darwin/22.6.0"));
        events.push(e);
    }
    let findings = detect(None, learned(), &events);
    let origin = of_kind(&findings, FindingKind::NewOrigin);
    assert_eq!(origin.len(), 1, "{findings:#?}");
    assert_eq!(origin[0].evidence.event_ids, ["o0", "o1", "o2"]);
    assert_eq!(origin[0].severity, Severity::Medium);
    assert_eq!(
        origin[0].evidence.detail["observed"]["origins"][0]["source_ip"],
        "185.220.101.4"
    );
}

#[test]
fn far_more_data_than_usual_is_a_volume_anomaly() {
    let mut events = normal_day(8);
    for n in 0..5 {
        let mut e = usual(&format!("v{n}"), 8 * DAY + 75, "s3:GetObject").on(&format!(
            "arn:aws:s3:::reports/daily/2024-01-18/part-{n}.csv"
        ));
        e.bytes_out = Some(500_000_000);
        events.push(e);
    }
    let findings = detect(None, learned(), &events);
    let volume = of_kind(&findings, FindingKind::VolumeAnomaly);
    assert_eq!(volume.len(), 1, "{findings:#?}");
    let detail = &volume[0].evidence.detail;
    assert!(detail["observed"]["peak_window"].as_u64() > detail["threshold"]["value"].as_u64());
    assert!(
        detail["baseline"]["p99"]
            .as_u64()
            .is_some_and(|p| p < 5_000_000),
        "{detail}"
    );
    assert_eq!(volume[0].severity, Severity::High);
}

#[test]
fn many_distinct_lookups_are_enumeration() {
    let mut events = normal_day(8);
    for n in 0..30 {
        events.push(
            usual(&format!("g{n}"), 8 * DAY + 80, "s3:GetObject").on(&format!(
                "arn:aws:s3:::reports/daily/2024-01-18/part-{}.csv",
                100 + n
            )),
        );
    }
    let findings = detect(None, learned(), &events);
    let enumeration = of_kind(&findings, FindingKind::Enumeration);
    assert_eq!(enumeration.len(), 1, "{findings:#?}");
    assert!(enumeration[0].evidence.event_ids.len() >= 10);
}

#[test]
fn learned_hours_report_odd_hours_unless_the_policy_declares_hours() {
    let mut events = normal_day(8);
    // 03:00 on day 9: 17 hours after 10:00.
    events.push(
        usual("night", 9 * DAY - 7 * 60, "s3:GetObject")
            .on("arn:aws:s3:::reports/daily/2024-01-19/part-1.csv"),
    );
    let findings = detect(None, learned(), &events);
    let time = of_kind(&findings, FindingKind::TimeAnomaly);
    assert_eq!(time.len(), 1, "{findings:#?}");
    assert_eq!(time[0].severity, Severity::Low);
    assert_eq!(time[0].evidence.detail["lens"], "usual");
    let policy =
        format!("identities:\n  - match: \"{ROLE}\"\n    hours: \"Mon-Sun 09:00-17:00 UTC\"\n");
    let findings = detect(Some(&policy), learned(), &events);
    let time = of_kind(&findings, FindingKind::TimeAnomaly);
    assert_eq!(
        time.len(),
        1,
        "one finding, from the approved hours: {findings:#?}"
    );
    assert_eq!(time[0].evidence.detail["lens"], "expected");
}

#[test]
fn an_attacker_cannot_teach_the_baseline_in_a_day() {
    let mut events = Vec::new();
    for day in 8..12 {
        events.extend(normal_day(day));
        for n in 0..20 {
            events.push(usual(
                &format!("a{day}-{n}"),
                day * DAY + 90 + n,
                "secretsmanager:GetSecretValue",
            ));
        }
    }
    let findings = detect(None, learned(), &events);
    let novel = of_kind(&findings, FindingKind::NovelAction);
    assert_eq!(novel.len(), 4, "once per day, never learned: {findings:#?}");
}

#[test]
fn a_finding_vouched_benign_is_usual_from_then_on() {
    let day = |n: i64| {
        let mut events = normal_day(n);
        events.push(usual(&format!("x{n}-1"), n * DAY + 61, "iam:ListRoles"));
        events.push(usual(&format!("x{n}-2"), n * DAY + 62, "iam:ListUsers"));
        events
    };
    for vouched in [false, true] {
        let mut engine = Engine::with_baseline(
            None,
            EngineConfig::default(),
            learned(),
            UsualConfig::default(),
        );
        let mut findings = Vec::new();
        let first = day(8);
        for e in &first {
            engine.process(e, &mut |f| findings.push(f));
        }
        engine.finish(&mut |f| findings.push(f));
        let novel = of_kind(&findings, FindingKind::NovelAction);
        assert_eq!(novel.len(), 1, "{findings:#?}");
        if vouched {
            let finding = novel[0].clone();
            assert_eq!(
                engine.vouch(&finding, &first),
                4,
                "two new actions and the transitions into them"
            );
            assert_eq!(engine.vouch(&finding, &first), 0, "learned once");
            let (risk, _) = engine
                .forgive(&finding)
                .expect("the risk scorer keeps history");
            assert!(risk < finding.risk, "{risk} < {}", finding.risk);
            assert_eq!(engine.forgive(&finding), None, "forgiven once");
        }
        let mut later = Vec::new();
        for e in &day(9) {
            engine.process(e, &mut |f| later.push(f));
        }
        engine.finish(&mut |f| later.push(f));
        if vouched {
            assert!(later.is_empty(), "{later:#?}");
        } else {
            assert_eq!(
                of_kind(&later, FindingKind::NovelAction).len(),
                1,
                "without the mark it is flagged again: {later:#?}"
            );
        }
    }
}
