//! The Kubernetes audit decoder reads records with its own pull reader; it used to read them
//! with serde_json. This test holds it to what the serde_json decoder made of a few thousand
//! records: the corpus's real ones (Falco's minikube traces, Panther's EKS, AKS and GKE rule
//! tests), and edited copies of realistic records in which each field the decoder reads is given
//! every JSON type, removed, or written twice, plus random edits of their text.
//!
//! `tests/data/k8s_agreement.jsonl.gz` (gzip: 400 KB of JSON lines, 32 KB so; read it with
//! `zcat`) holds, per record, what the serde_json decoder produced: the events, or the field an
//! error named and the head of its reason (the words before the first `: `: serde_json's
//! details, such as ``invalid type: integer `5` ``, are not kept; JSON syntax errors are
//! compared only as such). An edited record's result is written as what changed from its
//! unedited record's event. [`CHANGED`] lists the records the decoder now reads otherwise, on
//! purpose. After a deliberate change of behaviour, run this test with `NHIWATCH_BLESS=1` to
//! write the file again from the decoder as it is (and empty [`CHANGED`]).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use nhiwatch_decode::k8s::K8sAuditDecoder;
use nhiwatch_decode::RecordDecoder;
use nhiwatch_model::Event;
use serde_json::{json, Map, Value};

mod common;

use common::CORPUS;
const EXPECTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/k8s_agreement.jsonl.gz"
);

/// Records decoded otherwise than the serde_json decoder did, on purpose, with what they decode
/// to now.
const CHANGED: &[(&str, &str)] = &[
    // A lone UTF-16 surrogate escape (`\ud800`, which no JSON encoder writes: Go's writes
    // U+FFFD for bad text) in a string value the reader hands out is a JSON error, as in the
    // CloudTrail decoder: serde_json named the field when the decoder read it and let it pass
    // when it did not.
    ("lone surrogate read", r#"{"error":[null,"invalid JSON"]}"#),
    (
        "lone surrogate in a time not read",
        r#"{"error":[null,"invalid JSON"]}"#,
    ),
    // Containers nested more than 128 deep (the record's own object counts) are refused even
    // inside values the decoder skips, so that a record cannot exhaust the reader's stack:
    // serde_json skipped them at any depth.
    ("nested 128 deep", r#"{"error":[null,"invalid JSON"]}"#),
    ("nested 129 deep", r#"{"error":[null,"invalid JSON"]}"#),
];

/// A record to decode, named for failure messages, with the index of the unedited record it
/// was made from.
struct Case {
    label: String,
    text: String,
    base: Option<usize>,
}

/// A service account listing pods, as the simulator and kube-apiserver 1.29+ write it.
const LIST_PODS: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"09d0af3f-eb60-428e-b355-760fef5284cb","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/notifications/pods?limit=500","verb":"list","user":{"username":"system:serviceaccount:notifications:notifications-autoscaler","uid":"0000007e-5d2c-4f7e-9a61-5d072daab12d","groups":["system:serviceaccounts","system:serviceaccounts:notifications","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=c401d7-5d072daa"],"authentication.kubernetes.io/node-name":["ip-10-0-6-137.ec2.internal"],"authentication.kubernetes.io/pod-name":["notifications-autoscaler-c401d7"]}},"sourceIPs":["10.3.21.111"],"userAgent":"cert-sync/v1.4.2 (linux/amd64) kubernetes/4f1c2b","objectRef":{"resource":"pods","apiVersion":"v1","namespace":"notifications"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-03-14T00:00:02.264187Z","stageTimestamp":"2026-03-14T00:00:02.269187Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"notifications-autoscaler\" of Role \"notifications-autoscaler\" to ServiceAccount \"notifications-autoscaler/notifications\""}}"#;

/// A request RBAC refused, at RequestResponse level, with a request object.
const DENIED_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"7a1e-denied","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create","user":{"username":"system:serviceaccount:web:frontend","groups":["system:serviceaccounts","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=0a9b8c7d"],"authentication.kubernetes.io/pod-name":["frontend-6f7d9c8b5-m8r2x"]}},"impersonatedUser":{"username":"system:serviceaccount:kube-system:admin","groups":["system:serviceaccounts"]},"sourceIPs":["10.3.40.77","10.0.0.1"],"userAgent":"kubectl/v1.30.1 (linux/amd64) kubernetes/7a3e0a4","objectRef":{"resource":"clusterrolebindings","name":"pwn","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","message":"clusterrolebindings.rbac.authorization.k8s.io is forbidden: User \"system:serviceaccount:web:frontend\" cannot create resource \"clusterrolebindings\"","reason":"Forbidden","details":{"group":"rbac.authorization.k8s.io","kind":"clusterrolebindings"},"code":403},"requestObject":{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"pwn","creationTimestamp":null},"subjects":[{"kind":"ServiceAccount","name":"frontend","namespace":"web"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}},"requestReceivedTimestamp":"2024-05-01T10:00:00.123456Z","stageTimestamp":"2024-05-01T10:00:00.125001Z","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}"#;

/// A record as Panther stores it: no stage, times without an offset, `extra` keys rewritten,
/// EKS's `accessKeyId` and `sessionName`, a non-resource request.
const PANTHER: &str = r#"{"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""},"apiVersion":"audit.k8s.io/v1","auditID":"35506555-dffc-4337-b2b1-c4af52b88e18","kind":"Event","level":"Request","p_event_time":"2022-11-29 00:09:04.38","requestReceivedTimestamp":"2022-11-29 00:09:04.38","requestURI":"/version?timeout=32s","sourceIPs":["5.5.5.5"],"user":{"extra":{"accessKeyId":["ASIAEXAMPLE"],"arn":["arn:aws:sts::123412341234:assumed-role/DevAdministrator/1669680542"],"canonicalArn":["arn:aws:iam::123412341234:role/DevAdministrator"],"sessionName":["1669680542"],"authentication_kubernetes_io_slash_credential-id":["JTI=p1"],"authentication_kubernetes_io_slash_pod-name":["panther-pod"]},"groups":["system:authenticated"],"uid":"aws-iam-authenticator:123412341234:AROAEXAMPLE","username":"arn:aws:sts::123412341234:assumed-role/DevAdministrator/1669680542"},"userAgent":"kubectl/v1.25.4 (darwin/arm64) kubernetes/872a965","verb":"get","responseStatus":{"code":200}}"#;

/// An AKS diagnostic-log record.
const AKS: &str = r#"{"time":"2024-03-20T10:00:00.5Z","category":"kube-audit","operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read","properties":{"log":"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"auditID\":\"aks-1\",\"stage\":\"ResponseComplete\",\"verb\":\"create\",\"user\":{\"username\":\"system:serviceaccount:default:backdoor-sa\"},\"sourceIPs\":[\"1.2.3.4\"],\"objectRef\":{\"resource\":\"serviceaccounts\",\"subresource\":\"token\",\"namespace\":\"default\",\"name\":\"backdoor-sa\",\"apiVersion\":\"v1\"},\"responseStatus\":{\"code\":201}}","stream":"stdout","pod":"kube-apiserver-5f6"}}"#;

/// A GKE Cloud Audit Logs entry.
const GKE: &str = r#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"system:serviceaccount:prod:api"},"authorizationInfo":[{"granted":true,"permission":"io.k8s.core.v1.secrets.get","resource":"core/v1/namespaces/prod/secrets/tls"}],"methodName":"io.k8s.core.v1.secrets.get","requestMetadata":{"callerIp":"10.4.0.7","callerSuppliedUserAgent":"python-requests/2.31"},"resourceName":"core/v1/namespaces/prod/secrets/tls","serviceName":"k8s.io","status":{"code":0}},"insertId":"a1b2c3","resource":{"type":"k8s_cluster","labels":{"cluster_name":"c","location":"europe-west1","project_id":"p"}},"timestamp":"2024-02-02T08:00:00.000001Z","receiveTimestamp":"2024-02-02T08:00:01Z","logName":"projects/p/logs/cloudaudit.googleapis.com%2Fdata_access","operation":{"id":"9f1e","producer":"k8s.io","first":true,"last":true}}"#;

/// The keys a native record is read by, as paths.
const NATIVE_PATHS: &[&[&str]] = &[
    &["auditID"],
    &["stage"],
    &["verb"],
    &["requestURI"],
    &["userAgent"],
    &["sourceIPs"],
    &["user"],
    &["user", "username"],
    &["user", "extra"],
    &[
        "user",
        "extra",
        "authentication.kubernetes.io/credential-id",
    ],
    &[
        "user",
        "extra",
        "authentication_kubernetes_io_slash_credential-id",
    ],
    &["user", "extra", "authentication.kubernetes.io/pod-name"],
    &[
        "user",
        "extra",
        "authentication_kubernetes_io_slash_pod-name",
    ],
    &["user", "extra", "accessKeyId"],
    &["user", "extra", "sessionName"],
    &["impersonatedUser"],
    &["impersonatedUser", "username"],
    &["objectRef"],
    &["objectRef", "resource"],
    &["objectRef", "subresource"],
    &["objectRef", "namespace"],
    &["objectRef", "name"],
    &["responseStatus"],
    &["responseStatus", "code"],
    &["responseStatus", "reason"],
    &["responseStatus", "message"],
    &["annotations"],
    &["annotations", "authorization.k8s.io/decision"],
    &["stageTimestamp"],
    &["requestReceivedTimestamp"],
    &["timestamp"],
    &["p_event_time"],
    &["protoPayload"],
    &["properties"],
    &["time"],
    &["insertId"],
    &["operation"],
    &["receiveTimestamp"],
];

/// The keys of the wrappers.
const AKS_PATHS: &[&[&str]] = &[
    &["properties"],
    &["properties", "log"],
    &["time"],
    &["p_event_time"],
    &["protoPayload"],
];
const GKE_PATHS: &[&[&str]] = &[
    &["protoPayload"],
    &["protoPayload", "methodName"],
    &["protoPayload", "serviceName"],
    &["protoPayload", "authorizationInfo"],
    &["protoPayload", "status"],
    &["protoPayload", "status", "code"],
    &["insertId"],
    &["timestamp"],
    &["receiveTimestamp"],
    &["operation"],
    &["operation", "id"],
    &["operation", "first"],
    &["operation", "last"],
    &["properties"],
    &["verb"],
];

/// Values of every JSON type, and the ones that test a type's edges.
const VALUES: &[&str] = &[
    "null", "5", "70000", "2.5", "\"\"", "\"x\"", "true", "[]", "[\"a\"]", "[7]", "[null]", "{}",
];

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let push = |cases: &mut Vec<Case>, label: String, text: String, base: Option<usize>| {
        cases.push(Case { label, text, base });
    };

    // The corpus, record by record.
    let dir = format!("{CORPUS}/k8s_audit");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (n, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
            if !line.trim().is_empty() {
                push(
                    &mut cases,
                    format!("falco {name}:{}", n + 1),
                    line.into(),
                    None,
                );
            }
        }
    }
    let panther = Path::new(CORPUS).join("rule_tests/panther_rule_tests.Amazon.EKS.Audit.jsonl");
    for (n, line) in std::fs::read_to_string(panther)
        .unwrap()
        .lines()
        .enumerate()
    {
        let test: Value = serde_json::from_str(line).unwrap();
        let log = serde_json::to_string(&test["log"]).unwrap();
        push(&mut cases, format!("panther EKS:{}", n + 1), log, None);
    }

    // Records at the edges of the JSON grammar and of the types the decoder reads.
    let get = |rest: &str| format!(r#"{{"verb":"get","user":{{"username":"u"}}{rest}}}"#);
    let odd = [
        ("escaped key", r#"{"v\u0065rb":"get","user":{"username":"u"}}"#.into()),
        ("escaped value", get(r#","userAgent":"a\"b\/c\u00e9\ud83d\ude00""#)),
        ("lone surrogate read", get(r#","userAgent":"\ud800""#)),
        (
            "lone surrogate in a time not read",
            get(r#","stageTimestamp":"2024-05-01T10:00:00Z","timestamp":"\ud800""#),
        ),
        ("lone surrogate skipped", get(r#","requestObject":{"a":"\udc00"}"#)),
        ("lone surrogate in a key", get(r#","\ud800":1"#)),
        (
            "pretty",
            "{\n  \"verb\" : \"get\" ,\n\t\"user\":{ \"username\" : \"u\" } \r\n}\n".into(),
        ),
        ("unknown key twice", get(r#","kind":"Event","kind":"Event""#)),
        ("key twice in a skipped object", get(r#","requestObject":{"a":1,"a":2}"#)),
        (
            "both spellings of an extra key",
            r#"{"verb":"get","user":{"username":"u","extra":{"authentication.kubernetes.io/pod-name":["a"],"authentication_kubernetes_io_slash_pod-name":["b"]}}}"#.into(),
        ),
        ("trailing text", get("") + " x"),
        ("trailing comma", get(",")),
        ("empty object", "{}".into()),
        ("byte order mark", format!("\u{feff}{}", get(""))),
        ("huge number skipped", get(r#","requestObject":{"n":1e400}"#)),
        ("huge number read", get(r#","userAgent":1e400"#)),
    ];
    for (label, text) in odd {
        push(&mut cases, label.into(), text, None);
    }
    for code in [
        "0", "200.0", "2e2", "1E2", "-0", "-1", "65535", "65536", "1e400", " 403 ",
    ] {
        let text = get(&format!(r#","responseStatus":{{"code":{code}}}"#));
        push(&mut cases, format!("code {code}"), text, None);
    }
    for depth in [126, 127, 128, 129] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = get(&format!(r#","requestObject":{nested}"#));
        push(&mut cases, format!("nested {depth} deep"), text, None);
    }

    // Edited copies.
    let bases: [(&str, &str, &[&[&str]]); 5] = [
        ("list-pods", LIST_PODS, NATIVE_PATHS),
        ("denied-create", DENIED_CREATE, NATIVE_PATHS),
        ("panther", PANTHER, NATIVE_PATHS),
        ("aks", AKS, AKS_PATHS),
        ("gke", GKE, GKE_PATHS),
    ];
    for (name, text, paths) in bases {
        let base = cases.len();
        push(&mut cases, name.into(), text.into(), None);
        let record: Value = serde_json::from_str(text).unwrap();
        for path in paths {
            let at = path.join(".");
            for value in VALUES {
                let mut edited = record.clone();
                set(&mut edited, path, serde_json::from_str(value).unwrap());
                let label = format!("{name} {at}={value}");
                push(&mut cases, label, edited.to_string(), Some(base));
            }
            let mut removed = record.clone();
            remove(&mut removed, path);
            push(
                &mut cases,
                format!("{name} -{at}"),
                removed.to_string(),
                Some(base),
            );
            if let Some(twice) = twice(text, path) {
                push(&mut cases, format!("{name} {at} twice"), twice, Some(base));
            }
        }
        // Random edits of the text, as the decoders' "never panics" tests make them.
        let chars: Vec<char> = text.chars().collect();
        let mut rng = Lcg(0x9e37_79b9_7f4a_7c15 ^ base as u64);
        for n in 0..120 {
            let mut edited = chars.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(edited.len());
                let c = [
                    '"', '\\', ',', ':', '{', '}', '[', ']', '-', '.', 'e', '0', 'n', ' ', 'a',
                    'é', '\u{1}',
                ][rng.below(17)];
                match rng.below(3) {
                    0 => {
                        edited.remove(at);
                    }
                    1 => edited.insert(at, c),
                    _ => edited[at] = c,
                }
            }
            let label = format!("{name} random edit {n}");
            push(&mut cases, label, edited.into_iter().collect(), Some(base));
        }
    }
    cases
}

/// A small deterministic generator, so that the random edits are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Sets the value at `path`, making the objects on the way.
fn set(record: &mut Value, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().unwrap();
    let mut at = record;
    for key in parents {
        if !at.get(key).is_some_and(Value::is_object) {
            at[key] = Value::Object(Map::new());
        }
        at = at.get_mut(key).unwrap();
    }
    at[last] = value;
}

fn remove(record: &mut Value, path: &[&str]) {
    let (last, parents) = path.split_last().unwrap();
    let mut at = record;
    for key in parents {
        match at.get_mut(key) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(object) = at.as_object_mut() {
        object.shift_remove(*last);
    }
}

/// The record with the key at `path` written a second time (with another value) at the start
/// of its object, when the object is in the record.
fn twice(text: &str, path: &[&str]) -> Option<String> {
    let (last, parents) = path.split_last().unwrap();
    let open = match parents.last() {
        None => 0,
        Some(parent) => text.find(&format!("\"{parent}\":{{"))? + parent.len() + 3,
    };
    let mut out = text.to_owned();
    out.insert_str(open + 1, &format!("\"{last}\":\"x\","));
    Some(out)
}

/// What the decoder makes of one record, on its own.
fn decode(text: &str) -> Value {
    let mut decoder = K8sAuditDecoder::default();
    let mut events = Vec::new();
    let result = decoder.decode(text, &mut |event| events.push(summary(&event, text)));
    decoder.finish(&mut |event| events.push(summary(&event, text)));
    match result {
        Ok(()) => json!({ "events": events }),
        Err(err) => {
            let head = match err.reason.split_once(": ") {
                _ if err.reason.starts_with("invalid JSON") => "invalid JSON",
                Some((head, _)) => head,
                None => &err.reason,
            };
            json!({ "error": [err.field, head] })
        }
    }
}

fn summary(event: &Event<'_>, text: &str) -> Value {
    json!({
        "id": event.id,
        "time": (!event.time_inferred).then(|| event.time.to_string()),
        "identity": event.identity.id,
        "kind": event.identity.kind,
        "session": event.identity.session,
        "credential": event.identity.credential,
        "action": event.action,
        "class": event.action_class,
        "resource": event.resource,
        "outcome": event.outcome,
        "error": event.error,
        "src_ip": event.src_ip,
        "user_agent": event.user_agent,
        "raw_is_record": event.raw.get() == text.trim(),
    })
}

/// An edited record's result as what changed from its unedited record's single event.
fn relative(result: Value, base: &Value) -> Value {
    let (Some([event]), Some([base])) = (
        result["events"].as_array().map(Vec::as_slice),
        base["events"].as_array().map(Vec::as_slice),
    ) else {
        return result;
    };
    let changed: Map<String, Value> = event
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, value)| base.get(key.as_str()) != Some(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    json!({ "changed": changed })
}

#[test]
fn the_decoder_agrees_with_what_serde_json_decoded() {
    let cases = cases();
    let mut results: Vec<Value> = Vec::with_capacity(cases.len());
    for case in &cases {
        let result = decode(&case.text);
        let result = match case.base {
            Some(base) => relative(result, &results[base]),
            None => result,
        };
        results.push(result);
    }
    // Bases are kept whole in `results` (edited records refer to them); lines hold the rest.
    let lines: Vec<String> = cases
        .iter()
        .zip(&results)
        .map(|(case, result)| json!({ "case": case.label, "result": result }).to_string())
        .collect();

    if std::env::var_os("NHIWATCH_BLESS").is_some() {
        std::fs::create_dir_all(Path::new(EXPECTED).parent().unwrap()).unwrap();
        let mut gz = GzEncoder::new(File::create(EXPECTED).unwrap(), Compression::best());
        gz.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
        gz.finish().unwrap();
        return;
    }
    let mut expected = String::new();
    GzDecoder::new(File::open(EXPECTED).unwrap())
        .read_to_string(&mut expected)
        .unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(
        expected.len(),
        lines.len(),
        "the cases changed: bless again"
    );
    let mut differ = Vec::new();
    for ((was, got), case) in expected.iter().zip(&lines).zip(&cases) {
        let want = match CHANGED.iter().find(|(label, _)| *label == case.label) {
            Some((label, now)) => {
                assert_ne!(*was, got, "{label} decodes as it did: take it off CHANGED");
                json!({ "case": label, "result": serde_json::from_str::<Value>(now).unwrap() })
                    .to_string()
            }
            None => was.to_string(),
        };
        if want != *got {
            differ.push(format!("{}\n  want {want}\n  got  {got}", case.text));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} records decode otherwise than before:\n{}",
        differ.len(),
        lines.len(),
        differ[..differ.len().min(10)].join("\n")
    );
}
