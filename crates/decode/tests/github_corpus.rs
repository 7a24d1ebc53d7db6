//! GitHub audit log decoding against Panther's hand-written, schema-true rule tests
//! (../shared/corpus/rule_tests), read through the public `Reader`.

use nhiwatch_decode::{Format, ReadOptions, Reader, Reject, Sinks};
use nhiwatch_model::{ActionClass, Event, IdentityKind, Outcome, Source};
use serde_json::Value;

const TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/rule_tests/panther_rule_tests.GitHub.Audit.jsonl"
);

/// (test name, log) per line.
fn panther() -> Vec<(String, Value)> {
    std::fs::read_to_string(TESTS)
        .expect("the Panther rule tests are in the corpus")
        .lines()
        .map(|line| {
            let wrapper: Value = serde_json::from_str(line).unwrap();
            (
                wrapper["test_name"].as_str().unwrap().to_owned(),
                wrapper["log"].clone(),
            )
        })
        .collect()
}

fn read(lines: &str, format: Option<Format>) -> (Vec<Event<'static>>, Vec<Reject>) {
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    let options = ReadOptions {
        format,
        ..ReadOptions::default()
    };
    let mut reader = Reader::new(options, None);
    let mut sinks = Sinks {
        event: &mut |event| events.push(event.into_owned()),
        reject: &mut |reject| rejects.push(reject),
    };
    reader.read_bytes("panther", lines.as_bytes(), &mut sinks);
    reader.finish(&mut sinks);
    (events, rejects)
}

fn lines(tests: &[(String, Value)]) -> String {
    tests.iter().map(|(_, log)| format!("{log}\n")).collect()
}

#[test]
fn every_panther_github_rule_test_log_normalises() {
    let tests = panther();
    assert_eq!(tests.len(), 101);
    // Read as a GitHub audit log (`--input-format github_audit`): one record is a bare
    // `{"action": ...}` that nothing could recognise on its own.
    let (events, rejects) = read(&lines(&tests), Some(Format::GithubAudit));
    assert!(rejects.is_empty(), "rejected: {rejects:#?}");
    assert_eq!(events.len(), tests.len());

    for ((name, log), event) in tests.iter().zip(&events) {
        assert_eq!(event.source, Source::GithubAudit, "{name}");
        assert_eq!(event.raw.get(), log.to_string(), "{name}");
        assert_eq!(
            event.action,
            format!("github:{}", log["action"].as_str().unwrap()),
            "{name}"
        );
        if let Some(id) = log["_document_id"].as_str() {
            assert_eq!(event.id, id, "{name}");
        }
        match log["actor"].as_str().filter(|a| !a.is_empty()) {
            Some(actor) => assert_eq!(event.identity.id, actor, "{name}"),
            None => assert_eq!(
                (event.identity.id.as_ref(), event.identity.kind),
                ("unknown", IdentityKind::Unknown),
                "{name}"
            ),
        }
        if let Some(repo) = log["repo"].as_str() {
            assert_eq!(event.resource.as_deref(), Some(repo), "{name}");
        }
        if let Some(ip) = log["actor_ip"].as_str() {
            assert_eq!(event.src_ip.as_deref(), Some(ip), "{name}");
        }
        if let Some(millis) = log["@timestamp"].as_i64() {
            assert_eq!(event.time.unix_nanos(), millis * 1_000_000, "{name}");
        }
        let timed = [
            "@timestamp",
            "created_at",
            "at_sign_timestamp",
            "p_event_time",
        ]
        .iter()
        .any(|key| !log[key].is_null());
        if !timed {
            assert!(event.time_inferred, "{name}");
        }
    }
}

#[test]
fn auto_detection_recognises_all_but_the_bare_action() {
    let tests = panther();
    let (events, rejects) = read(&lines(&tests), None);
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(
        rejects[0].record,
        r#"{"action":"not_repository_vulnerability_alert.dismiss"}"#
    );
    assert_eq!(events.len(), tests.len() - 1);
}

#[test]
fn panther_github_records_normalise_to_the_expected_fields() {
    let tests = panther();
    let (events, _) = read(&lines(&tests), Some(Format::GithubAudit));
    let by_test = |name: &str| -> &Event<'static> {
        let index = tests
            .iter()
            .position(|(test, _)| test == name)
            .unwrap_or_else(|| panic!("no rule test named {name:?}"));
        &events[index]
    };

    let dispatch = by_test("GitHub App Manual Workflow Dispatch by Bot");
    assert_eq!(dispatch.identity.id, "github-actions[bot]");
    assert_eq!(dispatch.identity.kind, IdentityKind::Bot);
    assert_eq!(
        dispatch.identity.credential.as_deref(),
        Some("1111111111111")
    );
    assert_eq!(dispatch.action, "github:workflows.created_workflow_run");
    assert_eq!(dispatch.action_class, ActionClass::Exec);
    assert_eq!(dispatch.resource.as_deref(), Some("YourCompany/YourRepo"));
    assert_eq!(dispatch.user_agent.as_deref(), Some("launch/production"));
    assert_eq!(dispatch.time.to_string(), "2025-10-15T18:45:47.048Z");

    let clone = by_test("git.clone-false");
    assert_eq!(clone.identity.id, "acme-inc-user");
    assert_eq!(clone.identity.kind, IdentityKind::ApiKey, "an OAuth token");
    assert_eq!(clone.identity.credential.as_deref(), Some("0123456789"));
    assert_eq!(clone.action, "github:git.clone");
    assert_eq!(clone.action_class, ActionClass::Read);
    assert_eq!(clone.resource.as_deref(), Some("acme-inc/a-repo"));
    assert_eq!(clone.src_ip.as_deref(), Some("5.6.7.8"));
    assert_eq!(clone.time.to_string(), "2023-11-20T21:20:09.423Z");

    let pat = by_test("Rust Cargo User Agent - Repository Clone");
    assert_eq!(pat.identity.kind, IdentityKind::ApiKey);
    assert_eq!(pat.action_class, ActionClass::Delete);
    assert!(pat.time_inferred);

    let scanning = by_test("secret_scanning_alert.create-true");
    assert_eq!(scanning.identity.kind, IdentityKind::Workload);
    assert_eq!(scanning.identity.id, "github");

    let person = by_test("Public Repo Created");
    assert_eq!(person.identity.kind, IdentityKind::User);
    assert_eq!(person.action_class, ActionClass::Write);
    assert_eq!(person.id, "abCD");

    let member = by_test("GitHub - Org - User Removed");
    assert_eq!(member.action_class, ActionClass::Permission);
    assert_eq!(member.resource.as_deref(), Some("orgs/my-org/people/bob"));
    assert_eq!(member.time.to_string(), "2021-05-18T02:31:58.553Z");

    let enterprise = by_test("Enterprise Log - business_advanced_security.disabled");
    assert_eq!(
        enterprise.resource.as_deref(),
        Some("enterprises/example-enterprise/people/bobert")
    );
    assert_eq!(enterprise.src_ip.as_deref(), Some("12.12.12.12"));

    let failed = by_test("GitHub Action Failed - Monitored Action Configured");
    assert_eq!(
        (failed.outcome, failed.error.as_deref()),
        (Outcome::Error, Some("failure"))
    );
    assert_eq!(failed.time.to_string(), "2023-01-31T18:58:27.638Z");

    let hook = by_test("GitHub - Webhook Created");
    assert_eq!(
        hook.resource.as_deref(),
        Some("my-org/my-repo"),
        "from `repository`"
    );
    assert_eq!(hook.action_class, ActionClass::Write);

    let float = by_test("Repository Archived");
    assert_eq!(float.time.to_string(), "2021-05-18T02:31:58.553Z");

    let dismissed = by_test("GitHub Dependabot Vulnerability Dismissed");
    assert_eq!(
        dismissed.time.to_string(),
        "2024-04-09T06:17:55.186Z",
        "@timestamp, not the alert's created_at"
    );
}
