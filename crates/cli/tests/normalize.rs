//! End-to-end tests of `nhiwatch normalize`: the real binary on the real corpus and on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus"
    ))
    .to_path_buf()
}

fn nhiwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(args)
        .output()
        .expect("the nhiwatch binary runs")
}

fn events(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every output line is a JSON event"))
        .collect()
}

#[test]
fn the_otrf_cloudtrail_zip_normalises_without_rejects() {
    let path = corpus().join("cloudtrail/ec2_proxy_s3_exfiltration.zip");
    let output = nhiwatch(&["normalize", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let events = events(&output);
    assert_eq!(events.len(), 103, "{stderr}");
    assert!(stderr.contains("103 events, 0 rejected"), "{stderr}");
    let waf: Vec<_> = events
        .iter()
        .filter(|e| {
            e["identity"]["id"]
                .as_str()
                .is_some_and(|id| id.contains("BankingWAFRole"))
        })
        .collect();
    assert!(!waf.is_empty());
    for event in &waf {
        let id = event["identity"]["id"].as_str().unwrap();
        assert!(
            id.starts_with("arn:aws:iam::") && id.contains(":role/"),
            "{id}"
        );
        assert_eq!(event["identity"]["kind"], "role");
        assert!(
            event["raw"]["eventID"].is_string(),
            "the raw record is kept"
        );
    }
}

#[test]
fn the_kubernetes_corpus_rejects_only_the_non_event() {
    let dir = corpus().join("k8s_audit");
    let rejects = tempfile::NamedTempFile::new().unwrap();
    let output = nhiwatch(&[
        "normalize",
        dir.to_str().unwrap(),
        "--rejects",
        rejects.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "exit 3 says records were rejected: {stderr}"
    );
    let kept = std::fs::read_to_string(rejects.path()).unwrap();
    let kept: Vec<serde_json::Value> = kept
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("fal_01_003.json"));
    assert_eq!(kept[0]["line"], 1);
    assert_eq!(kept[0]["record"], "{\"kind\": 0}");
    let events = events(&output);
    let json_files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    // 51 audit records in 46 files (one file holds six); two files log the same request
    // (same auditID, time, user and object), which is one event.
    assert_eq!(json_files, 47, "46 audit files and the reject");
    assert_eq!(events.len(), 50);
    let exec = events
        .iter()
        .find(|e| e["action"] == "k8s:create/pods/exec")
        .expect("pod exec");
    assert_eq!(exec["action_class"], "exec");
}

#[test]
fn bad_input_is_reported_counted_and_kept_aside_while_good_records_flow() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:build","arn":"arn:aws:sts::111122223333:assumed-role/ci-deployer/build","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/ci-deployer","accountId":"111122223333","userName":"ci-deployer"}}},"eventTime":"2024-03-01T10:00:00Z","eventSource":"ecr.amazonaws.com","eventName":"GetAuthorizationToken","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-cli/2.15.0","requestParameters":null,"responseElements":null,"eventID":"4c2e7f3a-0000-4000-8000-000000000001","eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;
    let input = format!(
        "{good}\n{{\"eventVersion\":\"1.08\",\"eventName\":\n\u{1}\u{2}\u{3} binary garbage\n{}\n{{\"eventName\": 42, \"eventSource\": \"s3.amazonaws.com\"}}\n{good}\n",
        "z".repeat(2_000)
    );
    let path = dir.path().join("mixed.json");
    std::fs::write(&path, input).unwrap();
    std::fs::write(dir.path().join("empty.json"), "").unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let output = nhiwatch(&[
        "normalize",
        path.to_str().unwrap(),
        dir.path().join("empty.json").to_str().unwrap(),
        "--max-record-bytes",
        "1000",
        "--rejects",
        rejects.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(
        events(&output).len(),
        2,
        "both good records survive: {stderr}"
    );
    let kept: Vec<serde_json::Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = kept.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 3, 4, 5], "{kept:?}");
    assert!(kept[2]["reason"]
        .as_str()
        .unwrap()
        .contains("over the 1000-byte limit"));
    assert!(
        kept[3]["field"].as_str().is_some(),
        "a wrong type names its field: {:?}",
        kept[3]
    );
    assert!(stderr.contains("4 rejected"), "{stderr}");
    assert!(
        stderr.contains("mixed.json:2"),
        "rejects are printed with file and line: {stderr}"
    );
}

#[test]
fn terminal_output_cannot_be_hijacked_by_hostile_identities() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = r#"{"action":"repo.create","actor":"evil\u001b[2J\u001b[31m<script>","created_at":1700000000000,"_document_id":"doc-1","repo":"acme/x"}"#;
    let path = dir.path().join("gh.json");
    std::fs::write(&path, hostile).unwrap();
    let output = nhiwatch(&["normalize", "--format", "table", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("evil\\u{1b}[2J"), "{stdout}");
}

#[test]
fn unknown_input_format_is_a_usage_error() {
    let output = nhiwatch(&["normalize", "--input-format", "syslog", "x"]);
    assert_eq!(output.status.code(), Some(2), "clap's usage errors exit 2");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown format `syslog`"));
}
