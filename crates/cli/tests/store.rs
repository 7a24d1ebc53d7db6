//! End-to-end tests of the evidence store commands on a simulated fleet: `ingest`, `verify`,
//! `findings`, `investigate`, `export`, and idempotent re-ingest.

use std::path::Path;
use std::process::{Command, Output};

fn nhiwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(args)
        .output()
        .expect("the nhiwatch binary runs")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

#[test]
fn simulate_ingest_investigate_verify_export() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sim = dir.path().join("sim");
    let data = dir.path().join("data");
    ok(&nhiwatch(&[
        "simulate",
        "--out",
        path(&sim),
        "--identities",
        "10",
        "--days",
        "3",
    ]));
    let telemetry = sim.join("telemetry");
    let policy = sim.join("policy.yaml");

    // Ingest: the chain head alone on standard output.
    let output = nhiwatch(&[
        "ingest",
        path(&telemetry),
        "--data",
        path(&data),
        "--policy",
        path(&policy),
        "--batch-events",
        "4096",
    ]);
    let head = ok(&output).trim().to_owned();
    assert_eq!(head.len(), 64, "a BLAKE3 hex head: {head}");
    let summary = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(summary.contains("stored "), "{summary}");

    // Verify, anchored at the printed head.
    let verified = ok(&nhiwatch(&[
        "verify",
        "--data",
        path(&data),
        "--expect-head",
        &head,
    ]));
    assert!(verified.contains("\nOK"), "{verified}");
    assert!(verified.contains(&format!("head {head}")), "{verified}");
    let report: serde_json::Value = serde_json::from_str(&ok(&nhiwatch(&[
        "verify",
        "--data",
        path(&data),
        "--format",
        "json",
    ])))
    .expect("a JSON report");
    let events = report["items"]["events"].as_u64().expect("an event count");
    assert!(events > 10_000, "{report}");
    assert!(
        report["batches"].as_u64().unwrap() >= 3,
        "4096-event batches: {report}"
    );

    // Findings: every line JSON, filters narrow them.
    let all = ok(&nhiwatch(&[
        "findings",
        "--data",
        path(&data),
        "--format",
        "jsonl",
    ]));
    let findings: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON finding"))
        .collect();
    assert!(!findings.is_empty(), "the simulation's attacks are found");
    let risky = ok(&nhiwatch(&[
        "findings",
        "--data",
        path(&data),
        "--format",
        "jsonl",
        "--min-risk",
        "90",
    ]));
    assert!(risky.lines().count() < findings.len());
    for line in risky.lines() {
        let finding: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(finding["risk"].as_u64().unwrap() >= 90);
    }
    let kind = findings[0]["kind"].as_str().unwrap();
    let of_kind = ok(&nhiwatch(&[
        "findings",
        "--data",
        path(&data),
        "--format",
        "jsonl",
        "--kind",
        kind,
    ]));
    assert!(of_kind
        .lines()
        .all(|l| l.contains(&format!("\"kind\":\"{kind}\""))));
    let table = ok(&nhiwatch(&["findings", "--data", path(&data)]));
    assert!(table.starts_with("time "), "{table}");

    // Investigate the identity of the riskiest finding.
    let worst = findings
        .iter()
        .max_by_key(|f| f["risk"].as_u64())
        .expect("a finding");
    let identity = worst["identity"].as_str().unwrap();
    let text = ok(&nhiwatch(&[
        "investigate",
        identity,
        "--data",
        path(&data),
        "--policy",
        path(&policy),
    ]));
    for section in [
        "-- timeline",
        "session 1:",
        "-- findings",
        "-- permitted vs used",
        "-- risk over time",
    ] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
    assert!(text.contains(worst["id"].as_str().unwrap()), "{text}");
    let json: serde_json::Value = serde_json::from_str(&ok(&nhiwatch(&[
        "investigate",
        identity,
        "--data",
        path(&data),
        "--format",
        "json",
    ])))
    .expect("a JSON investigation");
    assert_eq!(json["identity"]["identity"], identity);
    let session_events: u64 = json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["events"].as_u64().unwrap())
        .sum();
    assert_eq!(session_events, json["identity"]["events"].as_u64().unwrap());
    assert!(json["findings"][0]["evidence_events"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    assert!(!json["risk"].as_array().unwrap().is_empty());
    assert!(json["used"][0]["action"].is_string());
    let unknown = nhiwatch(&["investigate", "nobody-at-all", "--data", path(&data)]);
    assert!(!unknown.status.success());

    // Re-ingesting the same telemetry stores nothing and keeps the head.
    let again = nhiwatch(&[
        "ingest",
        path(&telemetry),
        "--data",
        path(&data),
        "--policy",
        path(&policy),
    ]);
    assert_eq!(ok(&again).trim(), head);
    let summary = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(summary.contains("stored 0 events, 0 findings"), "{summary}");

    // Export: one normalised event per line, raw records included; as many as stored.
    let exported = dir.path().join("events.jsonl");
    ok(&nhiwatch(&[
        "export",
        "--data",
        path(&data),
        "--out",
        path(&exported),
    ]));
    let text = std::fs::read_to_string(&exported).expect("the export");
    assert_eq!(text.lines().count() as u64, events);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["raw"].is_object(), "{first}");
    let findings_export = ok(&nhiwatch(&[
        "export",
        "--data",
        path(&data),
        "--table",
        "findings",
    ]));
    assert_eq!(findings_export.lines().count(), findings.len());
}

#[test]
fn verify_fails_on_a_missing_store_and_names_no_batch() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let output = nhiwatch(&["verify", "--data", path(&dir.path().join("none"))]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no nhiwatch store"));
}
