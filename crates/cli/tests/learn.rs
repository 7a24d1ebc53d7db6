//! End-to-end tests of `nhiwatch learn` and the usual lens in `nhiwatch detect` (`--baseline`,
//! `--learn-days`): the real binary on CloudTrail records written here.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

const ROLE: &str = "report-exporter";

fn nhiwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(args)
        .output()
        .expect("the nhiwatch binary runs")
}

/// One CloudTrail record of the role, as CloudTrail writes an assumed-role call.
#[allow(clippy::too_many_arguments)] // the record's fields, each named at the call
fn record(
    out: &mut String,
    id: &str,
    time: &str,
    source: &str,
    name: &str,
    ip: &str,
    agent: &str,
    params: &str,
) {
    let _ = writeln!(
        out,
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:run","arn":"arn:aws:sts::111122223333:assumed-role/{ROLE}/run","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/{ROLE}","accountId":"111122223333","userName":"{ROLE}"}},"attributes":{{"creationDate":"{time}","mfaAuthenticated":"false"}}}}}},"eventTime":"{time}","eventSource":"{source}.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"{ip}","userAgent":"{agent}","requestParameters":{params},"responseElements":null,"requestID":"{id}","eventID":"{id}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333"}}"#
    );
}

const USUAL_IP: &str = "52.39.110.218";
const USUAL_AGENT: &str = "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210";

/// Day `day` (March 2026, from the 2nd) of the role's usual work: every 10 minutes from 08:00 to
/// 18:00 it reads the day's part from its bucket.
fn usual_day(out: &mut String, day: u32) {
    for slot in 0..60 {
        let time = format!(
            "2026-03-{:02}T{:02}:{:02}:00Z",
            2 + day,
            8 + slot / 6,
            slot % 6 * 10
        );
        let params = format!(
            r#"{{"bucketName":"acme-reports","key":"daily/2026-03-{:02}/part-{slot}.csv"}}"#,
            2 + day
        );
        record(
            out,
            &format!("u-{day}-{slot}"),
            &time,
            "s3",
            "GetObject",
            USUAL_IP,
            USUAL_AGENT,
            &params,
        );
    }
}

/// The input: seven usual days in `history.jsonl`; on the eighth, the usual work plus trail
/// logging stopped and reads from another network and client, in `today.jsonl`.
fn inputs(dir: &Path) -> (String, String) {
    let mut history = String::new();
    for day in 0..7 {
        usual_day(&mut history, day);
    }
    let mut today = String::new();
    usual_day(&mut today, 7);
    record(
        &mut today,
        "x-1",
        "2026-03-09T12:01:00Z",
        "cloudtrail",
        "StopLogging",
        USUAL_IP,
        USUAL_AGENT,
        r#"{"name":"org-trail"}"#,
    );
    for n in 0..3 {
        let params =
            format!(r#"{{"bucketName":"acme-reports","key":"daily/2026-03-09/part-{n}.csv"}}"#);
        record(
            &mut today,
            &format!("x-{}", n + 2),
            &format!("2026-03-09T12:0{}:00Z", n + 2),
            "s3",
            "GetObject",
            "185.220.101.4",
            "aws-cli/2.13.0 Python/3.11.4 Darwin/22.6.0",
            &params,
        );
    }
    let history_path = dir.join("history.jsonl");
    let today_path = dir.join("today.jsonl");
    std::fs::write(&history_path, history).expect("write history");
    std::fs::write(&today_path, today).expect("write today");
    (
        history_path.display().to_string(),
        today_path.display().to_string(),
    )
}

fn kinds(output: &Output) -> Vec<(String, Vec<String>)> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let finding: serde_json::Value = serde_json::from_str(line).expect("JSON finding");
            let ids = finding["evidence"]["event_ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_str().unwrap_or_default().to_owned())
                .collect();
            (finding["kind"].as_str().unwrap_or_default().to_owned(), ids)
        })
        .collect()
}

fn assert_attack_found(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found = kinds(output);
    let kinds: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"defense_evasion"), "{found:?}");
    assert!(kinds.contains(&"new_origin"), "{found:?}");
    for (kind, ids) in &found {
        assert!(
            ids.iter().all(|id| id.starts_with("x-")),
            "{kind} holds usual work: {ids:?}"
        );
    }
}

#[test]
fn learn_then_detect_against_the_baseline() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (history, today) = inputs(dir.path());
    let baseline = dir.path().join("fleet.nhib").display().to_string();
    let learned = nhiwatch(&["learn", &history, "--out", &baseline]);
    let stderr = String::from_utf8_lossy(&learned.stderr);
    assert!(learned.status.success(), "{stderr}");
    assert!(
        stderr.contains("learned 420 events") && stderr.contains("1 identities"),
        "{stderr}"
    );
    let bytes = std::fs::read(&baseline).expect("the baseline was written");
    assert_eq!(&bytes[..8], b"NHIWBASE");
    assert_attack_found(&nhiwatch(&["detect", "--baseline", &baseline, &today]));
}

#[test]
fn learn_days_learns_the_start_of_the_input_and_judges_the_rest() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (history, today) = inputs(dir.path());
    let output = nhiwatch(&["detect", "--learn-days", "7", &history, &today]);
    assert_attack_found(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("learned 420 events before 2026-03-09T00:00:00Z"),
        "{stderr}"
    );
    let stdin = nhiwatch(&["detect", "--learn-days", "7", "-"]);
    assert!(!stdin.status.success());
    assert!(String::from_utf8_lossy(&stdin.stderr).contains("give files"));
}

#[test]
fn a_damaged_baseline_is_refused_with_its_name_and_cause() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (history, today) = inputs(dir.path());
    let baseline = dir.path().join("fleet.nhib");
    let path = baseline.display().to_string();
    assert!(nhiwatch(&["learn", &history, "--out", &path])
        .status
        .success());
    let mut bytes = std::fs::read(&baseline).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&baseline, &bytes).expect("write");
    let output = nhiwatch(&["detect", "--baseline", &path, &today]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("fleet.nhib") && stderr.contains("corrupted"),
        "{stderr}"
    );
    let output = nhiwatch(&["detect", "--baseline", &history, &today]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an nhiwatch baseline"));
}
