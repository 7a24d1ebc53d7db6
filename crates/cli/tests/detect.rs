//! End-to-end tests of `nhiwatch policy check`, `detect` and `access-report`: the real binary on
//! the real corpus.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus"
    ))
    .to_path_buf()
}

fn otrf() -> String {
    corpus()
        .join("cloudtrail/ec2_proxy_s3_exfiltration.zip")
        .display()
        .to_string()
}

fn nhiwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(args)
        .output()
        .expect("the nhiwatch binary runs")
}

fn json_lines(text: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every output line is JSON"))
        .collect()
}

/// A folder with a WAF-only policy for the OTRF role, entitlements in an IAM document.
fn waf_policy() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir(dir.path().join("iam")).expect("iam folder");
    std::fs::write(
        dir.path().join("iam/waf.json"),
        r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"WafOnly","Effect":"Allow","Action":["waf:*","waf-regional:*","wafv2:*"],"Resource":"*"},
            {"Sid":"Mfa","Effect":"Deny","Action":"*","Resource":"*","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}}]}"#,
    )
    .expect("IAM document");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "identities:\n  - match: \"arn:aws:iam::*:role/*BankingWAFRole*\"\n    kind: role\n    iam_policy: iam/waf.json\n    decision: {high: block}\n",
    )
    .expect("policy");
    let path = policy.display().to_string();
    (dir, path)
}

#[test]
fn policy_check_summarises_and_reports_unevaluable_conditions() {
    let (_dir, policy) = waf_policy();
    let output = nhiwatch(&["policy", "check", &policy]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("valid; 1 identity entry"), "{stdout}");
    assert!(stdout.contains("2 IAM statements"), "{stdout}");
    assert!(
        stdout.contains("Sid \"Mfa\": condition BoolIfExists aws:MultiFactorAuthPresent"),
        "{stdout}"
    );

    let output = nhiwatch(&["policy", "check", "--format", "json", &policy]);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON summary");
    assert_eq!(summary["identities"], 1);
    assert_eq!(
        summary["unevaluable"][0]["what"],
        "condition BoolIfExists aws:MultiFactorAuthPresent"
    );
}

#[test]
fn policy_check_names_the_line_and_key_of_an_error() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "identities:\n  - match: x\n    workflow:\n      steps: \"a:b (c:d\"\n",
    )
    .expect("policy");
    let output = nhiwatch(&["policy", "check", &bad.display().to_string()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains(
            "bad.yaml:4:14: identities[0].workflow.steps: a `(` in the workflow is never closed"
        ),
        "{stderr}"
    );
}

#[test]
fn detect_reports_the_otrf_role_out_of_scope_in_every_format() {
    let (dir, policy) = waf_policy();
    let output = nhiwatch(&["detect", "--policy", &policy, &otrf()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("103 events, 0 rejected"), "{stderr}");
    let findings = json_lines(&output.stdout);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    assert_eq!(finding["kind"], "out_of_scope");
    assert_eq!(finding["severity"], "high");
    assert_eq!(finding["decision"], "block");
    assert_eq!(
        finding["evidence"]["event_ids"].as_array().map(Vec::len),
        Some(11)
    );
    assert!(finding["identity"]
        .as_str()
        .is_some_and(|id| id.contains("BankingWAFRole")));

    let out = dir.path().join("findings.ocsf.jsonl");
    let output = nhiwatch(&[
        "detect",
        "--policy",
        &policy,
        "--format",
        "ocsf",
        "--out",
        &out.display().to_string(),
        &otrf(),
    ]);
    assert!(output.status.success());
    assert!(output.stdout.is_empty(), "findings went to --out");
    let ocsf = json_lines(&std::fs::read(&out).expect("the --out file"));
    assert_eq!(ocsf.len(), 1);
    assert_eq!(ocsf[0]["class_uid"], 2004);
    assert_eq!(ocsf[0]["type_uid"], 200_401);
    assert_eq!(ocsf[0]["finding_info"]["uid"], finding["id"]);
    assert_eq!(ocsf[0]["evidences"].as_array().map(Vec::len), Some(11));

    let output = nhiwatch(&["detect", "--policy", &policy, "--format", "table", &otrf()]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.starts_with("time "), "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.contains("out_of_scope") && row.contains("block")),
        "{table}"
    );
}

#[test]
fn detect_without_a_policy_reports_denials_and_escapes_control_characters() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let input = dir.path().join("denied.jsonl");
    let record = |id: &str| {
        format!(
            r#"{{"eventVersion":"1.08","eventID":"{id}","eventTime":"2024-01-15T10:45:23Z","eventSource":"s3.amazonaws.com","eventName":"PutBucketPolicy","awsRegion":"us-east-1","sourceIPAddress":"1.2.3.4","userAgent":"x","errorCode":"AccessDenied","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::1:user/evil\u001b[31m","accountId":"1","accessKeyId":"AKIA"}},"requestParameters":{{"bucketName":"b"}},"recipientAccountId":"1"}}"#
        )
    };
    std::fs::write(&input, format!("{}\n{}\n", record("d1"), record("d2"))).expect("input");
    let output = nhiwatch(&["detect", "--format", "table", &input.display().to_string()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(!table.contains('\u{1b}'), "raw escape in {table:?}");
    assert!(table.contains("denied_attempts"), "{table}");
    assert!(table.contains("\\u{1b}"), "{table}");
}

#[test]
fn access_report_lists_unused_grants_and_unpermitted_use() {
    let (_dir, policy) = waf_policy();
    let output = nhiwatch(&[
        "access-report",
        "--policy",
        &policy,
        "--format",
        "json",
        &otrf(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("JSON report");
    let role = report
        .iter()
        .find(|r| {
            r["identity"]
                .as_str()
                .is_some_and(|id| id.contains("BankingWAFRole"))
        })
        .expect("the role is in the report");
    let unused: Vec<&str> = role["permitted_unused"]
        .as_array()
        .expect("list")
        .iter()
        .map(|g| g["pattern"].as_str().expect("pattern"))
        .collect();
    assert_eq!(unused, ["waf:*", "waf-regional:*", "wafv2:*"]);
    let refused: Vec<&str> = role["used_not_permitted"]
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["action"].as_str().expect("action"))
        .collect();
    assert!(refused.contains(&"s3:GetObject"), "{refused:?}");
    let statements = role["least_privilege"]["Statement"]
        .as_array()
        .expect("statements");
    assert!(statements
        .iter()
        .any(|s| s["Action"] == serde_json::json!(["s3:GetObject"])
            && s["Resource"]
                .as_str()
                .is_some_and(|r| r.starts_with("arn:aws:s3:::"))));

    let output = nhiwatch(&["access-report", "--policy", &policy, &otrf()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("permitted but never used (candidates to remove):\n  waf:*"),
        "{text}"
    );
    assert!(text.contains("least-privilege IAM policy"), "{text}");
}
