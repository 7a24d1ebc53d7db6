//! Loading, matching and judging whole policies.

use std::io::Write;

use nhiwatch_model::{Decision, IdentityKind, Severity, Timestamp};

use super::*;

const DESIGN: &str = r#"
identities:
  - match: "arn:aws:iam::*:role/ci-deployer"
    kind: role
    owner: platform-team
    allow:
      - action: "ecr:*"
      - action: "ecs:UpdateService"
        resource: "arn:aws:ecs:*:*:service/prod/*"
    deny:
      - action: "iam:*"
    workflow:
      steps: "sts:GetCallerIdentity ecr:GetAuthorizationToken ecr:*+ ecs:UpdateService ecs:Describe*"
      window: 30m
    hours: "Mon-Fri 05:00-21:00 UTC"
    sensitive: ["secretsmanager:GetSecretValue", "k8s:get/secrets"]
    decision:
      high: block
      medium: review
"#;

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, "policy.yaml", None).unwrap_or_else(|e| panic!("{e}"))
}

fn error(yaml: &str) -> PolicyError {
    Policy::parse(yaml, "policy.yaml", None).expect_err("the policy should be refused")
}

fn judge(policy: &Policy, identity: &str, action: &str, resource: Option<&str>) -> Judgement {
    let entry = policy
        .entry(policy.entry_for(identity).expect("a matching entry"))
        .unwrap();
    entry.judge(&entry.profile(action), resource, &RequestContext::default())
}

#[test]
fn the_design_example_loads_and_judges() {
    let p = policy(DESIGN);
    let ci = "arn:aws:iam::123456789012:role/ci-deployer";
    let entry = p.entry(p.entry_for(ci).unwrap()).unwrap();
    assert_eq!(entry.kind(), Some(IdentityKind::Role));
    assert_eq!(entry.owner(), Some("platform-team"));
    assert_eq!(entry.workflow_window(), 1_800_000_000_000);
    assert_eq!(entry.decision(Severity::High), Some(Decision::Block));
    assert_eq!(entry.decision(Severity::Low), None);
    assert!(p
        .entry_for("arn:aws:iam::123456789012:role/other")
        .is_none());

    let permitted = |action, resource| judge(&p, ci, action, resource).verdict;
    assert_eq!(
        permitted("ecr:PutImage", None),
        Verdict::Permitted(Grant::Allow(0))
    );
    assert_eq!(
        permitted(
            "ECS:updateservice",
            Some("arn:aws:ecs:eu-west-1:1:service/prod/web")
        ),
        Verdict::Permitted(Grant::Allow(1))
    );
    assert_eq!(
        permitted(
            "ecs:UpdateService",
            Some("arn:aws:ecs:eu-west-1:1:service/staging/web")
        ),
        Verdict::NotPermitted(Refusal::NoGrant)
    );
    assert_eq!(
        permitted("iam:PassRole", None),
        Verdict::NotPermitted(Refusal::Deny(0))
    );
    assert_eq!(
        permitted("s3:GetObject", Some("arn:aws:s3:::b/k")),
        Verdict::NotPermitted(Refusal::NoGrant)
    );
    // No resource on the event: the resource-constrained grant gets the benefit of the doubt.
    let unknown = judge(&p, ci, "ecs:UpdateService", None);
    assert_eq!(unknown.verdict, Verdict::Permitted(Grant::Allow(1)));
    assert!(unknown.resource_unknown);

    let profile = entry.profile("secretsmanager:GetSecretValue");
    assert_eq!(entry.sensitive_match(&profile, None), Some(0));
    assert_eq!(
        entry.sensitive_match(&entry.profile("ecr:PutImage"), None),
        None
    );
    assert_ne!(entry.profile("ecr:BatchGetImage").workflow, 0);
    assert_eq!(entry.profile("iam:ListRoles").workflow, 0);
    // 2024-01-06 was a Saturday.
    assert!(entry.outside_hours(Timestamp::parse_rfc3339("2024-01-06T12:00:00Z").unwrap()));
    assert!(!entry.outside_hours(Timestamp::parse_rfc3339("2024-01-05T12:00:00Z").unwrap()));
}

#[test]
fn first_matching_entry_wins_and_shadowing_is_reported() {
    let p = policy(
        r#"
identities:
  - match: "arn:aws:iam::*:role/ci-*"
    allow: [{action: "ecr:*"}]
  - match: "arn:aws:iam::*:role/*"
    allow: [{action: "s3:Get*"}]
  - match: "arn:aws:iam::1:role/ci-deployer"
    allow: [{action: "*"}]
  - match: "arn:aws:iam::*:role/*"
"#,
    );
    assert_eq!(
        p.entry_for("arn:aws:iam::1:role/ci-deployer"),
        Some(EntryId(0))
    );
    assert_eq!(p.entry_for("arn:aws:iam::1:role/reader"), Some(EntryId(1)));
    let warnings = p.summary().warnings;
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].starts_with("identities[2]"), "{}", warnings[0]);
    assert!(warnings[0].contains("identities[0]"), "{}", warnings[0]);
    assert!(warnings[1].starts_with("identities[3]"), "{}", warnings[1]);
}

#[test]
fn errors_name_the_file_line_and_key() {
    let cases: [(&str, usize, &str); 10] = [
        (
            "identities:\n  - match: x\n    alow: []\n",
            3,
            "identities[0]: unknown field `alow`",
        ),
        (
            "identities:\n  - match: x\n    allow:\n      - action: \"ecs:[\"\n",
            4,
            "identities[0].allow[0].action: `ecs:[` is not a valid glob",
        ),
        (
            "identities:\n  - match: x\n    workflow:\n      steps: \"a:b (c:d\"\n",
            4,
            "identities[0].workflow.steps: a `(` in the workflow is never closed",
        ),
        (
            "identities:\n  - match: x\n    workflow: {steps: a:b, window: 30 minutes}\n",
            3,
            "identities[0].workflow.window: `30 minutes` is not a duration",
        ),
        (
            "identities:\n  - match: x\n    hours: \"Mon-Fri 9-5\"\n",
            3,
            "identities[0].hours:",
        ),
        (
            "identities:\n  - match: x\n    kind: robot\n",
            3,
            "identities[0].kind: unknown variant `robot`",
        ),
        (
            "identities:\n  - match: x\n    decision: {severe: block}\n",
            3,
            "identities[0].decision: unknown variant `severe`",
        ),
        (
            "identities:\n  - match: x\n    iam_policy: missing.json\n",
            3,
            "identities[0].iam_policy: IAM policy file `missing.json` not found",
        ),
        (
            "identities:\n  - match: x\n    tools:\n      - name: read_file\n        paths: \"/a/[\"\n",
            5,
            "identities[0].tools[0].paths: `/a/[` is not a valid glob",
        ),
        ("require_declared: yes please\n", 1, "require_declared"),
    ];
    for (yaml, line, message) in cases {
        let e = error(yaml);
        assert_eq!(e.file, "policy.yaml");
        assert_eq!(e.line, Some(line), "{yaml}: {e}");
        assert!(e.message.starts_with(message), "{yaml}: {e}");
        assert!(
            e.to_string().starts_with(&format!("policy.yaml:{line}:")),
            "{e}"
        );
    }
}

#[test]
fn iam_policy_files_resolve_against_the_policy_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("iam")).unwrap();
    let mut doc = std::fs::File::create(dir.path().join("iam/waf.json")).unwrap();
    doc.write_all(
        br#"{"Version":"2012-10-17","Statement":[
        {"Sid":"Waf","Effect":"Allow","Action":["waf:*","waf-regional:*","wafv2:*"],"Resource":"*"},
        {"Sid":"Tagged","Effect":"Allow","Action":"s3:GetObject","Resource":"*",
         "Condition":{"StringEquals":{"s3:ExistingObjectTag/public":"yes"}}}]}"#,
    )
    .unwrap();
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(
        &policy_path,
        "identities:\n  - match: \"*BankingWAFRole*\"\n    iam_policy: iam/waf.json\n",
    )
    .unwrap();
    let p = Policy::load(&policy_path).unwrap();
    let role = "arn:aws:iam::1:role/Stack-BankingWAFRole-X";
    assert!(matches!(
        judge(&p, role, "wafv2:GetWebACL", None).verdict,
        Verdict::Permitted(Grant::Iam(_))
    ));
    assert_eq!(
        judge(&p, role, "s3:ListBuckets", None).verdict,
        Verdict::NotPermitted(Refusal::NoGrant)
    );
    let tagged = judge(&p, role, "s3:GetObject", Some("arn:aws:s3:::b/k"));
    assert!(matches!(tagged.verdict, Verdict::Permitted(Grant::Iam(_))));
    assert!(
        tagged.uncertain.is_some(),
        "the allow rests on an unevaluable condition"
    );

    let summary = p.summary();
    assert_eq!(summary.entries[0].iam_statements, 2);
    assert_eq!(summary.unevaluable.len(), 1);
    assert_eq!(
        summary.unevaluable[0].what,
        "condition StringEquals s3:ExistingObjectTag/public"
    );
    assert!(summary.unevaluable[0]
        .statement
        .ends_with("waf.json Sid \"Tagged\""));

    // The same relative path from elsewhere is not found, and the error says where it looked.
    let e = Policy::parse(
        "identities:\n  - match: x\n    iam_policy: [iam/waf.json]\n",
        "other.yaml",
        Some(Path::new("/nonexistent")),
    )
    .unwrap_err();
    assert!(e.message.contains("/nonexistent/iam/waf.json"), "{e}");
    assert_eq!(e.line, Some(3));

    std::fs::write(
        dir.path().join("iam/bad.json"),
        r#"{"Statement":{"Effect":"Permit"}}"#,
    )
    .unwrap();
    let e = Policy::parse(
        "identities:\n  - match: x\n    iam_policy: iam/bad.json\n",
        "p.yaml",
        Some(dir.path()),
    )
    .unwrap_err();
    assert!(e.message.contains("is not valid"), "{e}");
}

#[test]
fn tool_scope_judges_tool_calls_only() {
    let p = policy(
        r#"
identities:
  - match: "agent/*"
    kind: agent
    tools:
      - name: read_file
        paths: ["/workspace/**"]
      - name: "tool:http_get"
        hosts: ["*.example.com"]
      - name: send_money
        targets: "DE89*"
      - name: "search_*"
    sensitive: ["tool:send_money", {resource: "/workspace/.env"}]
"#,
    );
    let agent = "agent/banking";
    let verdict = |action, resource| judge(&p, agent, action, resource).verdict;
    assert_eq!(
        verdict("tool:read_file", Some("/workspace/src/main.rs")),
        Verdict::Permitted(Grant::Tool(0))
    );
    assert_eq!(
        verdict("tool:read_file", Some("/etc/passwd")),
        Verdict::NotPermitted(Refusal::NoGrant)
    );
    assert_eq!(
        verdict("tool:http_get", Some("https://API.example.com/v1")),
        Verdict::Permitted(Grant::Tool(1))
    );
    assert_eq!(
        verdict("tool:http_get", Some("https://evil.test/x")),
        Verdict::NotPermitted(Refusal::NoGrant)
    );
    assert_eq!(
        verdict("tool:send_money", Some("GB33BUKB20201555555555")),
        Verdict::NotPermitted(Refusal::NoGrant)
    );
    assert_eq!(
        verdict("tool:search_web", Some("anything")),
        Verdict::Permitted(Grant::Tool(3))
    );
    assert_eq!(
        verdict("tool:delete_file", None),
        Verdict::NotPermitted(Refusal::NoGrant)
    );
    // Not a tool call: outside the tool scope's domain, so not judged.
    assert_eq!(verdict("otel:chat", None), Verdict::Unjudged);

    let entry = p.entry(EntryId(0)).unwrap();
    let read = entry.profile("tool:read_file");
    assert_eq!(
        entry.sensitive_match(&read, Some("/workspace/.env")),
        Some(1)
    );
    assert_eq!(entry.sensitive_match(&read, Some("/workspace/a.rs")), None);
    assert_eq!(
        entry.sensitive_match(&entry.profile("tool:send_money"), None),
        Some(0)
    );
    assert_eq!(
        entry.describe_grant(Grant::Tool(1)),
        "tools[1] http_get hosts *.example.com"
    );
}

#[test]
fn deny_rules_alone_and_no_entitlements() {
    let p = policy(
        "identities:\n  - match: gh\n    deny: [{action: \"github:repo.destroy\"}]\n  - match: plain\n",
    );
    assert_eq!(
        judge(&p, "gh", "github:repo.destroy", None).verdict,
        Verdict::NotPermitted(Refusal::Deny(0))
    );
    assert_eq!(
        judge(&p, "gh", "github:git.clone", None).verdict,
        Verdict::Unjudged
    );
    assert_eq!(
        judge(&p, "plain", "s3:GetObject", None).verdict,
        Verdict::Unjudged
    );
    assert_eq!(p.summary().warnings.len(), 1);
}

#[test]
fn a_deny_with_a_resource_needs_the_resource() {
    let p = policy(
        r#"
identities:
  - match: r
    allow: [{action: "s3:*"}]
    deny: [{action: "s3:GetObject", resource: ["arn:aws:s3:::payroll/*"]}]
"#,
    );
    assert_eq!(
        judge(
            &p,
            "r",
            "s3:GetObject",
            Some("arn:aws:s3:::payroll/2024.csv")
        )
        .verdict,
        Verdict::NotPermitted(Refusal::Deny(0))
    );
    let unknown = judge(&p, "r", "s3:GetObject", None);
    assert_eq!(unknown.verdict, Verdict::Permitted(Grant::Allow(0)));
    assert!(unknown.resource_unknown);
}

#[test]
fn an_empty_policy_and_the_declaration_option() {
    let p = policy("");
    assert!(p.entries().is_empty());
    assert!(!p.require_declared());
    let p = policy("require_declared: true\nidentities: []\n");
    assert!(p.require_declared());
    assert_eq!(p.entry_for("anything"), None);
}

#[test]
fn the_simulators_policy_loads() {
    // The shape `nhiwatch simulate` writes (crates/sim), which this crate must accept.
    let p = policy(
        r#"
identities:
  - match: "arn:aws:iam::111111111111:role/ci-deploy-payments"
    kind: role
    owner: payments-team
    workflow:
      steps: "sts:GetCallerIdentity ecr:GetAuthorizationToken ecr:*+ ecs:RegisterTaskDefinition? ecs:UpdateService+ ecs:Describe*+"
      window: 30m
    hours: "Mon-Fri 06:00-22:00 UTC"
    sensitive: ["iam:*", "secretsmanager:GetSecretValue", "cloudtrail:*"]
    decision:
      critical: block
      high: step_up
      medium: review
  - match: "system:serviceaccount:payments:controller"
    kind: service_account
    allow:
      - action: "k8s:list/pods"
        resource: "k8s:payments/*"
"#,
    );
    let summary = p.summary();
    assert_eq!(summary.identities, 2);
    assert_eq!(summary.entries[0].workflow.as_ref().unwrap().positions, 6);
    assert_eq!(
        summary.entries[0].decision,
        vec![
            ("medium".to_owned(), "review".to_owned()),
            ("high".to_owned(), "step_up".to_owned()),
            ("critical".to_owned(), "block".to_owned())
        ]
    );
}
