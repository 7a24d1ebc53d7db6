//! The detectors through the engine, one behaviour per test.

use nhiwatch_model::{Decision, Finding, FindingKind, Severity, Source};

use super::testing::{event, run, EventExt};
use crate::engine::EngineConfig;

const CI: &str = "arn:aws:iam::123456789012:role/ci-deployer";

const DEPLOYER: &str = r#"
identities:
  - match: "arn:aws:iam::*:role/ci-deployer"
    allow:
      - action: "ecr:*"
      - action: "sts:GetCallerIdentity"
      - action: "ecs:UpdateService"
        resource: "arn:aws:ecs:*:*:service/prod/*"
      - action: "ecs:Describe*"
    deny:
      - action: "iam:*"
    workflow:
      steps: "sts:GetCallerIdentity ecr:GetAuthorizationToken ecr:*+ ecs:UpdateService ecs:Describe*"
      window: 30m
    hours: "Mon-Fri 05:00-21:00 UTC"
    sensitive: ["secretsmanager:GetSecretValue", {resource: "arn:aws:s3:::payroll/*"}]
    decision: {high: block}
"#;

fn of_kind(findings: &[Finding], kind: FindingKind) -> Vec<&Finding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}

fn ids(finding: &Finding) -> Vec<&str> {
    finding
        .evidence
        .event_ids
        .iter()
        .map(String::as_str)
        .collect()
}

#[test]
fn out_of_scope_groups_an_episode_and_explains_it() {
    let events = [
        event("e1", 0, CI, "s3:ListBuckets"),
        event("e2", 1, CI, "ecr:GetAuthorizationToken"),
        event("e3", 2, CI, "s3:GetObject").on("arn:aws:s3:::data/a.csv"),
        event("e4", 20, CI, "s3:GetObject").on("arn:aws:s3:::data/b.csv"),
        event("e5", 21, CI, "iam:CreateAccessKey").denied("AccessDenied"),
    ];
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &events);
    let scope = of_kind(&findings, FindingKind::OutOfScope);
    assert_eq!(scope.len(), 1, "{findings:#?}");
    let f = scope[0];
    assert_eq!(ids(f), ["e1", "e3", "e4", "e5"]);
    assert_eq!(f.identity, CI);
    assert_eq!(f.id, Finding::stable_id(CI, FindingKind::OutOfScope, "e1"));
    assert_eq!(f.time, events[4].time);
    assert_eq!(f.severity, Severity::High, "reads were carried out");
    assert_eq!(
        (f.risk, f.decision),
        (75, Decision::Block),
        "the entry's decision map"
    );
    let actions = f.evidence.detail["actions"].as_array().unwrap();
    let line = |action: &str| {
        actions
            .iter()
            .find(|a| a["action"] == action)
            .unwrap_or_else(|| panic!("{action} in {actions:#?}"))
    };
    assert_eq!(line("s3:GetObject")["events"], 2);
    assert_eq!(
        line("s3:GetObject")["example_resource"],
        "arn:aws:s3:::data/a.csv"
    );
    assert_eq!(
        line("s3:GetObject")["reason"],
        "no allow rule, tool entry or IAM Allow statement grants it"
    );
    assert_eq!(
        line("iam:CreateAccessKey")["reason"],
        "denied by deny[0] iam:*"
    );
    assert_eq!(line("iam:CreateAccessKey")["denied"], 1);
    let permitted = f.evidence.detail["permitted"].as_array().unwrap();
    assert!(permitted.contains(&"ecs:UpdateService on arn:aws:ecs:*:*:service/prod/*".into()));
    assert_eq!(f.evidence.detail["lens"], "permitted");
    for framework in [
        "OWASP-NHI-06",
        "NIST-CSF-2.0:DE.CM",
        "MITRE-ATTACK:T1078.004",
        "MITRE-ATTACK:T1530",
        "MITRE-ATTACK:T1619",
    ] {
        assert!(
            f.frameworks.iter().any(|x| x == framework),
            "{framework}: {:?}",
            f.frameworks
        );
    }
}

#[test]
fn episodes_split_on_the_gap_and_on_the_evidence_cap() {
    let events: Vec<_> = [0, 5, 100, 101, 102]
        .iter()
        .enumerate()
        .map(|(i, &m)| event(&format!("e{i}"), m, CI, "s3:ListBuckets"))
        .collect();
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &events);
    let scope = of_kind(&findings, FindingKind::OutOfScope);
    assert_eq!(
        scope.iter().map(|f| ids(f)).collect::<Vec<_>>(),
        [vec!["e0", "e1"], vec!["e2", "e3", "e4"]]
    );

    let config = EngineConfig {
        max_evidence: 2,
        ..EngineConfig::default()
    };
    let findings = run(Some(DEPLOYER), config, &events);
    let sizes: Vec<usize> = of_kind(&findings, FindingKind::OutOfScope)
        .iter()
        .map(|f| f.evidence.event_ids.len())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
}

#[test]
fn an_episode_closes_when_the_stream_moves_on() {
    let other = "arn:aws:iam::123456789012:role/other";
    let events = [
        event("a1", 0, CI, "s3:ListBuckets"),
        event("b1", 120, other, "s3:ListBuckets"),
    ];
    let policy = std::sync::Arc::new(nhiwatch_policy::Policy::parse(DEPLOYER, "p", None).unwrap());
    let config = EngineConfig {
        lateness_events: 1,
        ..EngineConfig::default()
    };
    let mut engine = crate::Engine::new(Some(policy), config);
    let mut emitted = Vec::new();
    engine.process(&events[0], &mut |f| emitted.push(f));
    assert!(emitted.is_empty());
    engine.process(&events[1], &mut |f| emitted.push(f));
    // Closed by the sweep, before the end of input: the action was out of scope and, for the
    // workflow, a foreign step.
    let mut kinds: Vec<_> = emitted.iter().map(|f| f.kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [FindingKind::OutOfScope, FindingKind::WorkflowDeviation]
    );
    assert!(emitted.iter().all(|f| f.evidence.event_ids == ["a1"]));
    assert_eq!(engine.stats().identities, 2);
    assert_eq!(engine.stats().declared, 1);
}

#[test]
fn input_out_of_time_order_still_groups_within_the_lateness() {
    // Another identity's records from two years later arrive between this identity's records.
    let late = "arn:aws:iam::1:user/late";
    let other = "arn:aws:iam::1:user/other";
    let two_years = 2 * 365 * 24 * 60;
    let events = [
        event("l1", 0, late, "iam:GetRole").denied("AccessDenied"),
        event("o1", two_years, other, "s3:GetObject").denied("AccessDenied"),
        event("l2", 1, late, "iam:GetRole").denied("AccessDenied"),
    ];
    let findings = run(None, EngineConfig::default(), &events);
    let late_findings: Vec<_> = findings.iter().filter(|f| f.identity == late).collect();
    assert_eq!(late_findings.len(), 1);
    assert_eq!(ids(late_findings[0]), ["l1", "l2"]);
    // Without lateness, the jump in stream time closes the first episode early.
    let eager = EngineConfig {
        lateness_events: 0,
        ..EngineConfig::default()
    };
    let findings = run(None, eager, &events);
    assert_eq!(findings.iter().filter(|f| f.identity == late).count(), 2);
}

#[test]
fn denied_attempts_are_one_finding_per_burst_with_or_without_policy() {
    let reader = "arn:aws:iam::1:user/reader";
    let burst: Vec<_> = (0..12)
        .map(|i| event(&format!("d{i}"), i, reader, "iam:ListRoles").denied("AccessDenied"))
        .collect();
    let findings = run(None, EngineConfig::default(), &burst);
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f.kind, FindingKind::DeniedAttempts);
    assert_eq!(f.evidence.event_ids.len(), 12);
    assert_eq!(f.severity, Severity::High);
    assert_eq!(
        f.decision,
        Decision::StepUp,
        "the default ladder without a policy"
    );
    assert_eq!(f.evidence.detail["actions"][0]["error"], "AccessDenied");
    assert_eq!(f.evidence.detail["actions"][0]["policy"], "not judged");
    assert!(f.frameworks.iter().any(|x| x == "MITRE-ATTACK:T1087.004"));

    let two = &burst[..2];
    assert_eq!(
        run(None, EngineConfig::default(), two)[0].severity,
        Severity::Low
    );
    let writes: Vec<_> = (0..3)
        .map(|i| event(&format!("w{i}"), i, reader, "s3:PutBucketLogging").denied("AccessDenied"))
        .collect();
    assert_eq!(
        run(None, EngineConfig::default(), &writes)[0].severity,
        Severity::High
    );
}

#[test]
fn sensitive_access_by_action_and_by_resource() {
    let events = [
        event("s1", 0, CI, "secretsmanager:GetSecretValue")
            .on("arn:aws:secretsmanager:eu-west-1:1:secret:db"),
        event("s2", 1, CI, "s3:GetObject").on("arn:aws:s3:::payroll/2024.csv"),
        event("s3", 2, CI, "s3:GetObject").on("arn:aws:s3:::public/x"),
    ];
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &events);
    let sensitive = of_kind(&findings, FindingKind::SensitiveAccess);
    assert_eq!(sensitive.len(), 1);
    assert_eq!(ids(sensitive[0]), ["s1", "s2"]);
    assert_eq!(sensitive[0].severity, Severity::Medium);
    let matched: Vec<_> = sensitive[0].evidence.detail["accessed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["matched"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        matched,
        [
            "secretsmanager:GetSecretValue",
            "resource arn:aws:s3:::payroll/*"
        ]
    );
    assert!(sensitive[0]
        .frameworks
        .iter()
        .any(|x| x == "MITRE-ATTACK:T1555.006"));
}

#[test]
fn workflow_runs_in_sessions_conform_and_deviations_are_explained() {
    let run_of = |session: &str, start: i64, prefix: &str| {
        [
            "sts:GetCallerIdentity",
            "ecr:GetAuthorizationToken",
            "ecr:BatchGetImage",
            "ecs:UpdateService",
            "ecs:DescribeServices",
        ]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            event(&format!("{prefix}{i}"), start + i as i64, CI, a)
                .session(session)
                .on("arn:aws:ecs:eu-west-1:1:service/prod/web")
        })
        .collect::<Vec<_>>()
    };
    // Two sessions interleaved, each in order: no deviation.
    let mut events: Vec<_> = run_of("build-1", 0, "a")
        .into_iter()
        .zip(run_of("build-2", 0, "b"))
        .flat_map(|(a, b)| [a, b])
        .collect();
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &events);
    assert!(
        of_kind(&findings, FindingKind::WorkflowDeviation).is_empty(),
        "{findings:#?}"
    );

    // A foreign step and a step out of order in one session: one finding, both explained.
    events = run_of("build-3", 60, "c");
    events.insert(2, event("x1", 62, CI, "s3:ListBuckets").session("build-3"));
    events.push(event("x2", 70, CI, "ecr:PutImage").session("build-3"));
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &events);
    let deviation = of_kind(&findings, FindingKind::WorkflowDeviation);
    assert_eq!(deviation.len(), 1, "{findings:#?}");
    assert_eq!(ids(deviation[0]), ["x1", "x2"]);
    assert_eq!(deviation[0].severity, Severity::Medium);
    let items = deviation[0].evidence.detail["deviations"]
        .as_array()
        .unwrap();
    assert_eq!(items[0]["problem"], "not a step of the workflow");
    assert_eq!(
        items[0]["context"],
        "after ecr:GetAuthorizationToken in session build-3"
    );
    assert_eq!(items[1]["problem"], "step out of order");
    assert_eq!(
        items[1]["context"],
        "after ecs:DescribeServices in session build-3; expected sts:GetCallerIdentity"
    );
    assert_eq!(deviation[0].evidence.detail["lens"], "expected");
}

#[test]
fn failed_calls_are_judged_but_do_not_move_the_run() {
    let step = |id: &str, minute: i64, action: &str| {
        event(id, minute, CI, action)
            .session("build-9")
            .on("arn:aws:ecs:eu-west-1:1:service/prod/web")
    };
    // The deploy call is throttled before the image push has finished, then retried: the
    // throttled call did not happen, so the push is still in order.
    let retried = [
        step("f1", 0, "sts:GetCallerIdentity"),
        step("f2", 1, "ecr:GetAuthorizationToken"),
        step("f3", 2, "ecr:BatchCheckLayerAvailability"),
        step("f4", 3, "ecs:UpdateService").failed("ThrottlingException"),
        step("f5", 4, "ecr:PutImage"),
        step("f6", 5, "ecs:UpdateService"),
        step("f7", 6, "ecs:DescribeServices"),
    ];
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &retried);
    assert!(
        of_kind(&findings, FindingKind::WorkflowDeviation).is_empty(),
        "{findings:#?}"
    );

    // A failed step that is itself out of order is still a deviation, and the steps after it
    // are judged from where the run really was.
    let mut jumped = retried.to_vec();
    jumped[3] = step("f4", 3, "ecs:DescribeServices").denied("AccessDenied");
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &jumped);
    let deviation = of_kind(&findings, FindingKind::WorkflowDeviation);
    assert_eq!(deviation.len(), 1, "{findings:#?}");
    assert_eq!(ids(deviation[0]), ["f4"]);

    // The same push after a deploy call that did happen is out of order.
    let mut done = retried.to_vec();
    done[3] = step("f4", 3, "ecs:UpdateService");
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &done);
    let deviation = of_kind(&findings, FindingKind::WorkflowDeviation);
    assert_eq!(deviation.len(), 1, "{findings:#?}");
    assert_eq!(ids(deviation[0])[0], "f5");
}

#[test]
fn workflow_restart_midway_and_window_expiry() {
    let events = [
        event("r1", 0, CI, "sts:GetCallerIdentity"),
        event("r2", 1, CI, "ecr:GetAuthorizationToken"),
        event("r3", 2, CI, "sts:GetCallerIdentity"),
        // 40 minutes later the 30-minute run is over: a late step starts nothing.
        event("r4", 42, CI, "ecs:DescribeServices"),
    ];
    let config = EngineConfig {
        episode_gap: 3_600 * crate::engine::SECOND,
        ..EngineConfig::default()
    };
    let findings = run(Some(DEPLOYER), config, &events);
    let deviation = of_kind(&findings, FindingKind::WorkflowDeviation);
    assert_eq!(deviation.len(), 1);
    assert_eq!(ids(deviation[0]), ["r3", "r4"]);
    let items = deviation[0].evidence.detail["deviations"]
        .as_array()
        .unwrap();
    assert_eq!(
        items[0]["problem"],
        "workflow restarted before the run finished"
    );
    assert_eq!(
        items[1]["context"],
        "at the start of a run; expected sts:GetCallerIdentity"
    );

    let restart_only = run(Some(DEPLOYER), EngineConfig::default(), &events[..3]);
    assert_eq!(
        of_kind(&restart_only, FindingKind::WorkflowDeviation)[0].severity,
        Severity::Low
    );
}

#[test]
fn time_anomaly_outside_approved_hours() {
    // Monday 10:00 + 5 days = Saturday 10:00.
    let saturday = 5 * 24 * 60;
    let events = [
        event("t0", 0, CI, "ecr:GetAuthorizationToken"),
        event("t1", saturday, CI, "ecr:GetAuthorizationToken"),
        event("t2", saturday + 3, CI, "ecr:PutImage"),
    ];
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &events);
    let time = of_kind(&findings, FindingKind::TimeAnomaly);
    assert_eq!(time.len(), 1);
    assert_eq!(ids(time[0]), ["t1", "t2"]);
    assert_eq!(
        time[0].severity,
        Severity::Medium,
        "an image was pushed out of hours"
    );
    assert_eq!(
        time[0].evidence.detail["approved_hours"],
        "Mon-Fri 05:00-21:00 UTC"
    );
}

#[test]
fn undeclared_identities_are_reported_once_when_required() {
    let yaml = format!("require_declared: true\n{DEPLOYER}");
    let stranger = "arn:aws:iam::1:role/stranger";
    let events = [
        event("u1", 0, stranger, "s3:ListBuckets"),
        event("u2", 1, stranger, "s3:GetObject"),
        event("u3", 300, stranger, "s3:GetObject"),
        event("k1", 301, CI, "ecr:GetAuthorizationToken"),
    ];
    let findings = run(Some(&yaml), EngineConfig::default(), &events);
    let undeclared = of_kind(&findings, FindingKind::OutOfScope);
    assert_eq!(undeclared.len(), 1, "{findings:#?}");
    assert_eq!(ids(undeclared[0]), ["u1", "u2"]);
    assert_eq!(undeclared[0].evidence.detail["check"], "declared_identity");
    assert_eq!(undeclared[0].severity, Severity::Medium);
    // Without the option, the stranger is watched but not a finding.
    let findings = run(Some(DEPLOYER), EngineConfig::default(), &events);
    assert!(of_kind(&findings, FindingKind::OutOfScope).is_empty());
}

#[test]
fn agent_sources_get_no_cloud_technique() {
    let yaml = "identities:\n  - match: agent\n    tools: [{name: read_file}]\n";
    let events = [event("g1", 0, "agent", "tool:send_money")
        .on("GB33BUKB20201555555555")
        .from(Source::AgentTrace)];
    let findings = run(Some(yaml), EngineConfig::default(), &events);
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0]
            .frameworks
            .iter()
            .all(|f| !f.starts_with("MITRE")),
        "{:?}",
        findings[0].frameworks
    );
    assert_eq!(
        findings[0].evidence.detail["permitted"][0],
        "tool read_file"
    );
}

#[test]
fn per_identity_state_stays_small() {
    let policy = std::sync::Arc::new(nhiwatch_policy::Policy::parse(DEPLOYER, "p", None).unwrap());
    let mut engine = crate::Engine::new(Some(policy), EngineConfig::default());
    for i in 0..1_000 {
        let id = format!("arn:aws:iam::{i}:role/ci-deployer");
        let e = event(&format!("e{i}"), i / 10, &id, "sts:GetCallerIdentity").session("s");
        engine.process(&e, &mut |_| {});
    }
    let per_identity = engine.state_bytes() / engine.stats().identities;
    assert!(
        per_identity < 16 * 1024,
        "{per_identity} bytes per identity"
    );
    assert_eq!(engine.stats().declared, 1_000);
}
