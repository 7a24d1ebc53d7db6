//! CloudTrail decoding against telemetry written by others (../shared/corpus): Panther's
//! hand-written rule tests, OTRF's recorded EC2-proxy S3 exfiltration, and a CloudTrail-to-S3
//! delivery file, all read through the public `Reader`.

use std::io::Write;
use std::path::Path;

use nhiwatch_model::{ActionClass, Event, IdentityKind, Outcome, Source};

mod common;

use common::{read, CORPUS};

#[test]
fn every_panther_cloudtrail_rule_test_log_normalises() {
    let path = format!("{CORPUS}/rule_tests/panther_rule_tests.AWS.CloudTrail.jsonl");
    let wrappers: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .expect("the Panther rule tests are in the corpus")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a rule-test wrapper"))
        .collect();
    let lines: String = wrappers
        .iter()
        .map(|wrapper| format!("{}\n", wrapper["log"]))
        .collect();

    let out = read(|reader, sinks| reader.read_bytes("panther", lines.as_bytes(), sinks));
    assert!(out.rejects.is_empty(), "rejected: {:#?}", out.rejects);
    assert_eq!(out.events.len(), wrappers.len());
    assert_eq!(out.events.len(), 463);

    // One event per record, in order: each can be checked against its log.
    for (wrapper, event) in wrappers.iter().zip(&out.events) {
        let log = &wrapper["log"];
        assert_eq!(event.source, Source::Cloudtrail);
        if let Some(id) = log["eventID"].as_str().filter(|id| !id.is_empty()) {
            assert_eq!(event.id, id, "{}", wrapper["test_name"]);
        }
        if let Some(time) = log["eventTime"]
            .as_str()
            .filter(|time| time.ends_with('Z') && time.contains('T'))
        {
            assert!(!event.time_inferred, "{}", wrapper["test_name"]);
            assert_eq!(
                event.time.unix_seconds(),
                parse_seconds(time),
                "{}",
                wrapper["test_name"]
            );
        }
        match log["errorCode"].as_str() {
            Some(
                code @ ("AccessDenied" | "UnauthorizedOperation" | "Client.UnauthorizedOperation"),
            ) => {
                assert_eq!(
                    (event.outcome, event.error.as_deref()),
                    (Outcome::Denied, Some(code))
                );
            }
            Some(code @ ("NoSuchEntity" | "ValidationError" | "BucketNotEmpty")) => {
                assert_eq!(
                    (event.outcome, event.error.as_deref()),
                    (Outcome::Error, Some(code))
                );
            }
            _ => {}
        }
        assert_eq!(event.raw.get(), log.to_string());
    }

    let by_test = |name: &str| {
        let index = wrappers
            .iter()
            .position(|wrapper| wrapper["test_name"] == name)
            .unwrap_or_else(|| panic!("no rule test named {name:?}"));
        &out.events[index]
    };

    let lambda = by_test("IAM User Updates Lambda Configuration with Layers");
    assert_eq!(
        lambda.identity.id,
        "arn:aws:iam::123456789012:user/john.developer"
    );
    assert_eq!(lambda.identity.kind, IdentityKind::ApiKey);
    assert_eq!(
        lambda.identity.credential.as_deref(),
        Some("AKIAI123456789EXAMPLE")
    );
    assert_eq!(lambda.action, "lambda:UpdateFunctionConfiguration");
    assert_eq!(lambda.action_class, ActionClass::Write);
    assert_eq!(
        lambda.resource.as_deref(),
        Some("arn:aws:lambda:us-west-2:123456789012:function:production-api")
    );

    // Panther's lower-cased keys.
    let records = wrappers
        .iter()
        .position(|wrapper| wrapper["log"]["eventname"] == "GetRecords");
    let records = &out.events[records.expect("a lower-cased GetRecords log")];
    assert_eq!(records.action, "dynamodb:GetRecords");
    assert_eq!(records.id, "5d4b45ed-a15c-41b6-80e9-031729fa060d");
    assert_eq!(records.time.to_string(), "2023-01-10T21:04:02Z");

    let root_logins: Vec<&Event<'_>> = out
        .events
        .iter()
        .filter(|event| {
            event.action == "signin:ConsoleLogin" && event.identity.id.ends_with(":root")
        })
        .collect();
    assert!(!root_logins.is_empty());
    for login in root_logins {
        assert_eq!(
            (login.identity.kind, login.action_class),
            (IdentityKind::User, ActionClass::Auth)
        );
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time, by a route independent of the decoder's.
fn parse_seconds(time: &str) -> i64 {
    let value = serde_json::Value::String(time.to_owned());
    let parsed: nhiwatch_model::Timestamp =
        serde_json::from_value(value).expect("an RFC 3339 time");
    parsed.unix_seconds()
}

#[test]
fn otrf_ec2_proxy_exfiltration_is_attributed_to_the_stolen_role() {
    let zip = Path::new(CORPUS).join("cloudtrail/ec2_proxy_s3_exfiltration.zip");
    let out = read(|reader, sinks| reader.read_path(&zip, sinks));
    assert!(out.rejects.is_empty(), "rejected: {:#?}", out.rejects);
    assert_eq!(out.events.len(), 103);

    const ROLE: &str =
        "arn:aws:iam::123456789123:role/MordorNginxStack-BankingWAFRole-9S3E0UAE1MM0";
    let stolen: Vec<&Event<'_>> = out
        .events
        .iter()
        .filter(|event| event.identity.id == ROLE)
        .collect();
    assert_eq!(
        stolen.len(),
        11,
        "2 ListBuckets, 7 ListObjects and 2 GetObject calls"
    );
    for event in &stolen {
        assert_eq!(event.identity.kind, IdentityKind::Role);
        assert_eq!(
            event.identity.session.as_deref(),
            Some("i-0317f6c6b66ae9c40")
        );
        assert_eq!(
            event.identity.credential.as_deref(),
            Some("ASIA5FLZVX4OPVKKVBMX")
        );
        assert_eq!(event.src_ip.as_deref(), Some("1.2.3.4"));
        assert!(event
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.contains("aws-cli/1.18.136")));
    }
    let actions = |name: &str| stolen.iter().filter(|event| event.action == name).count();
    assert_eq!(
        (
            actions("s3:ListBuckets"),
            actions("s3:ListObjects"),
            actions("s3:GetObject")
        ),
        (2, 7, 2)
    );

    let get = stolen
        .iter()
        .find(|event| event.id == "edc2222c-5063-47fb-9fc0-c2ffb86b9d15")
        .expect("the second GetObject of ring.txt");
    assert_eq!(get.action_class, ActionClass::Read);
    assert_eq!(
        get.resource.as_deref(),
        Some("arn:aws:s3:::mordors3stack-s3bucket-llp2yingx64a/ring.txt")
    );
    assert_eq!(get.bytes_out, Some(89));
    assert_eq!(
        get.time.to_string(),
        "2020-09-14T01:13:20Z",
        "from the ELK @timestamp"
    );
    assert!(!get.time_inferred);

    let list = stolen
        .iter()
        .find(|event| event.action == "s3:ListObjects")
        .expect("a ListObjects");
    assert_eq!(list.action_class, ActionClass::List);
    assert_eq!(
        list.resource.as_deref(),
        Some("arn:aws:s3:::mordors3stack-s3bucket-llp2yingx64a")
    );

    // The recording has no refused call: nothing may come out denied.
    assert!(out
        .events
        .iter()
        .all(|event| event.outcome == Outcome::Success && event.error.is_none()));

    // The instance role's credentials were issued by EC2 assuming the role.
    let issued: Vec<&Event<'_>> = out
        .events
        .iter()
        .filter(|event| event.action == "sts:AssumeRole" && event.resource.as_deref() == Some(ROLE))
        .collect();
    assert_eq!(issued.len(), 3);
    for event in issued {
        assert_eq!(
            (event.identity.id.as_ref(), event.identity.kind),
            ("ec2.amazonaws.com", IdentityKind::Workload)
        );
        assert_eq!(event.action_class, ActionClass::Auth);
    }

    // The benign background: pedro's console session.
    let pedro: Vec<&Event<'_>> = out
        .events
        .iter()
        .filter(|event| event.identity.id == "arn:aws:iam::123456789123:user/pedro")
        .collect();
    assert_eq!(pedro.len(), 87);
    for event in &pedro {
        assert_eq!(
            event.identity.kind,
            IdentityKind::User,
            "{} is a console call",
            event.id
        );
        assert_eq!(
            event.identity.credential.as_deref(),
            Some("ASIA5FLZVX4OI4ZDQJOL")
        );
    }
    assert!(pedro
        .iter()
        .any(|event| event.action == "cloudwatch:DescribeAlarms"));
    assert!(pedro
        .iter()
        .any(|event| event.action == "ec2:DescribeInstances"
            && event.resource.as_deref()
                == Some("arn:aws:ec2:us-east-1:123456789123:instance/i-044b1baf4c96e1b62")));
    assert!(pedro
        .iter()
        .all(|event| event.action_class == ActionClass::List
            || event.action_class == ActionClass::Read));
}

/// Two records as CloudTrail delivers them to S3: the second refused.
const DELIVERY: &str = r#"{"Records":[{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLEID:deploy-7","arn":"arn:aws:sts::111122223333:assumed-role/ci-deployer/deploy-7","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEKEY","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLEID","arn":"arn:aws:iam::111122223333:role/ci-deployer","accountId":"111122223333","userName":"ci-deployer"},"attributes":{"creationDate":"2024-05-01T08:00:00Z","mfaAuthenticated":"false"}}},"eventTime":"2024-05-01T08:01:02Z","eventSource":"ecr.amazonaws.com","eventName":"GetAuthorizationToken","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.4","userAgent":"aws-cli/2.15.30","requestParameters":{"registryIds":["111122223333"]},"responseElements":null,"requestID":"1c7e7f0b","eventID":"0f9e5a1c-1111-4b6e-9a52-8f3b0c2d4e01","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"},{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLEID:deploy-7","arn":"arn:aws:sts::111122223333:assumed-role/ci-deployer/deploy-7","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEKEY","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLEID","arn":"arn:aws:iam::111122223333:role/ci-deployer","accountId":"111122223333","userName":"ci-deployer"}}},"eventTime":"2024-05-01T08:01:09Z","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.4","userAgent":"aws-cli/2.15.30","errorCode":"AccessDenied","errorMessage":"User: arn:aws:sts::111122223333:assumed-role/ci-deployer/deploy-7 is not authorized to perform: iam:CreateAccessKey on resource: user admin","requestParameters":null,"responseElements":null,"requestID":"2d8f8a1c","eventID":"0f9e5a1c-2222-4b6e-9a52-8f3b0c2d4e02","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}]}"#;

#[test]
fn a_gzipped_records_envelope_from_s3_decodes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir
        .path()
        .join("111122223333_CloudTrail_eu-west-1_20240501T0805Z_x1.json.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(DELIVERY.as_bytes())
        .expect("compressing in memory");
    std::fs::write(&path, gz.finish().expect("compressing in memory"))
        .expect("writing the delivery file");

    let out = read(|reader, sinks| reader.read_path(dir.path(), sinks));
    assert!(out.rejects.is_empty(), "rejected: {:#?}", out.rejects);
    let [token, refused] = out.events.as_slice() else {
        panic!("expected two events, got {}", out.events.len());
    };
    for event in [token, refused] {
        assert_eq!(
            event.identity.id,
            "arn:aws:iam::111122223333:role/ci-deployer"
        );
        assert_eq!(event.identity.session.as_deref(), Some("deploy-7"));
    }
    assert_eq!(
        (token.action.as_ref(), token.action_class),
        ("ecr:GetAuthorizationToken", ActionClass::Auth)
    );
    assert_eq!(token.outcome, Outcome::Success);

    assert_eq!(refused.action, "iam:CreateAccessKey");
    assert_eq!(refused.action_class, ActionClass::Permission);
    assert_eq!(
        (refused.outcome, refused.error.as_deref()),
        (Outcome::Denied, Some("AccessDenied"))
    );
    assert_eq!(refused.time.to_string(), "2024-05-01T08:01:09Z");
    assert!(
        refused.raw.get().starts_with(r#"{"eventVersion":"1.09""#)
            && refused
                .raw
                .get()
                .ends_with(r#""eventCategory":"Management"}"#)
    );
}

#[test]
fn a_bad_record_in_an_envelope_is_rejected_alone() {
    let bad = DELIVERY.replacen(r#""eventName":"GetAuthorizationToken","#, "", 1);
    let out = read(|reader, sinks| reader.read_bytes("delivery.json", bad.as_bytes(), sinks));
    assert_eq!(out.events.len(), 1, "the good record still flows");
    let [reject] = out.rejects.as_slice() else {
        panic!("expected one reject: {:#?}", out.rejects);
    };
    assert_eq!(
        (reject.index, reject.field.as_deref()),
        (Some(0), Some("eventName"))
    );
    assert!(
        reject.reason.starts_with("cloudtrail record: is missing"),
        "{reject}"
    );
}
