//! The server over real loopback HTTP: ingest (CloudTrail gzip, OTLP protobuf and JSON),
//! decisions, tokens and scopes, limits, backpressure, graceful shutdown, durability across a
//! restart, alert delivery with retries and dead letters, metrics, TLS, and the OpenAPI
//! description against the real routes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use nhiwatch_detect::{Detector, Draft, Engine, EngineConfig, Names, Observation, StreamPosition};
use nhiwatch_model::Decision;
use nhiwatch_server::auth::Scope;
use nhiwatch_server::config::{Secret, TokenSpec, WebhookFormat, WebhookSpec};
use nhiwatch_server::durable::{EvidenceSink, SinkError, SinkFailure};
use nhiwatch_server::{Config, Running, Server, ROUTES};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-0123456789";
const INGEST: &str = "ingest-token-0123456789";
const DECIDE: &str = "decide-token-0123456789";
const READ: &str = "read-token-0123456789";

const ROLE: &str = "arn:aws:iam::111122223333:role/report-reader";

const POLICY: &str = r#"
identities:
  - match: "arn:aws:iam::*:role/report-reader"
    kind: role
    allow:
      - action: "s3:GetObject"
      - action: "s3:ListBucket"
    decision: {high: block, medium: review}
  - match: "coding-agent"
    kind: agent
    allow:
      - action: "tool:read_file"
      - action: "tool:search"
    sensitive: ["tool:get_secret"]
    decision: {high: block, medium: review}
"#;

fn token(name: &str, secret: &str, scopes: &[Scope]) -> TokenSpec {
    TokenSpec {
        name: name.into(),
        secret: Secret::Plain(secret.into()),
        scopes: scopes.to_vec(),
        rate: None,
        burst: None,
    }
}

/// Settings for a test server: port 0, the four tokens, the policy, no stdout alerts.
fn config(dir: &Path) -> Config {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        policy: Some(policy),
        tokens: vec![
            token("admin", ADMIN, &[Scope::Admin]),
            token("ingest", INGEST, &[Scope::Ingest]),
            token("decide", DECIDE, &[Scope::Decide]),
            token("read", READ, &[Scope::Read]),
        ],
        ..Config::default()
    };
    config.alerts.stdout = nhiwatch_server::config::StdoutFormat::None;
    config
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    fn post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path, READ).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    /// GETs `path` until `done` holds of the answer (the engine works behind the queue).
    async fn settled(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..500 {
            let response = self.get(path, READ).send().await.unwrap();
            if response.status() == StatusCode::OK {
                let value: Value = response.json().await.unwrap();
                if done(&value) {
                    return value;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("GET {path} never settled");
    }

    async fn decide(&self, body: Value) -> Value {
        let response = self
            .post("/v1/decide", DECIDE)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

async fn start(config: Config) -> (Running, Client) {
    let running = Server::new(config).start().await.unwrap();
    let client = Client::new(running.local_addr());
    (running, client)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A CloudTrail record of the role.
fn cloudtrail(id: &str, minute: u32, source: &str, name: &str) -> Value {
    cloudtrail_at(id, &format!("2026-03-02T10:{minute:02}:00Z"), source, name)
}

/// A CloudTrail record of the role at `time` (RFC 3339).
fn cloudtrail_at(id: &str, time: &str, source: &str, name: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:reports",
            "arn": "arn:aws:sts::111122223333:assumed-role/report-reader/reports",
            "accountId": "111122223333",
            "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"sessionIssuer": {
                "type": "Role", "principalId": "AROAEXAMPLE",
                "arn": ROLE, "accountId": "111122223333", "userName": "report-reader"
            }}
        },
        "eventTime": time,
        "eventSource": format!("{source}.amazonaws.com"),
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-sdk-go/1.44",
        "requestParameters": null,
        "responseElements": null,
        "requestID": format!("req-{id}"),
        "eventID": id,
        "eventType": "AwsApiCall",
        "recipientAccountId": "111122223333"
    })
}

/// A CloudTrail file with two permitted reads and two out-of-scope IAM changes.
fn records_file() -> Vec<u8> {
    let records = vec![
        cloudtrail("e-1", 0, "s3", "ListBucket"),
        cloudtrail("e-2", 1, "s3", "GetObject"),
        cloudtrail("e-3", 2, "iam", "CreateAccessKey"),
        cloudtrail("e-4", 3, "iam", "AttachRolePolicy"),
    ];
    serde_json::to_vec(&json!({ "Records": records })).unwrap()
}

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// An OTLP export of the agent's tool calls.
fn otlp(tools: &[(&str, &str)]) -> ExportTraceServiceRequest {
    let spans = tools
        .iter()
        .enumerate()
        .map(|(i, (tool, args))| Span {
            trace_id: vec![0x5b; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, i as u8 + 1],
            name: format!("execute_tool {tool}"),
            start_time_unix_nano: 1_772_445_600_000_000_000 + i as u64 * 1_000_000_000,
            end_time_unix_nano: 1_772_445_600_500_000_000 + i as u64 * 1_000_000_000,
            attributes: vec![
                attr("gen_ai.operation.name", "execute_tool"),
                attr("gen_ai.tool.name", tool),
                attr("gen_ai.tool.call.arguments", args),
                attr("gen_ai.agent.id", "coding-agent"),
            ],
            ..Span::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attr("service.name", "agent-runtime")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// Prometheus text to (series, value) pairs; panics on a line that does not parse.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.split_whitespace();
            let keyword = words.next().unwrap();
            assert!(keyword == "HELP" || keyword == "TYPE", "{line}");
            if keyword == "TYPE" {
                let kind = words.nth(1).unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line}");
            for label in series[name_end + 1..series.len() - 1].split(',') {
                let (key, quoted) = label.split_once('=').unwrap();
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
            }
        }
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().unwrap_or_else(|_| panic!("{line}"))
        };
        out.push((series.to_owned(), value));
    }
    out
}

fn metric(series: &[(String, f64)], name: &str) -> f64 {
    series
        .iter()
        .find(|(s, _)| s == name)
        .unwrap_or_else(|| panic!("no series {name}"))
        .1
}

/// Posts `body` to the ingest endpoint, which must accept it; the answer.
async fn post_accepted(client: &Client, body: Vec<u8>) -> Value {
    let response = client
        .post("/v1/events", INGEST)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().await.unwrap()
}

/// Posts [`records_file`], which must be accepted; the answer.
async fn post_records_file(client: &Client) -> Value {
    post_accepted(client, records_file()).await
}

#[tokio::test]
async fn cloudtrail_gzip_is_ingested_durably_and_findings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.data = Some(dir.path().join("data"));
    let (running, client) = start(settings.clone()).await;

    // Declared by Content-Encoding.
    let response = client
        .post("/v1/events", INGEST)
        .header("content-encoding", "gzip")
        .body(gzip(&records_file()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 4);
    assert_eq!(body["rejected"], 0);
    assert_eq!(body["durable"], true);

    // Recognised by its magic bytes, with one bad line kept aside and reported.
    let mut lines = serde_json::to_vec(&cloudtrail("e-5", 4, "s3", "GetObject")).unwrap();
    lines.extend_from_slice(b"\n{\"eventID\": \n");
    let response = client
        .post("/v1/events", INGEST)
        .body(gzip(&lines))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["rejects"][0]["line"], 2);

    // A client retrying the first request (its answer lost): acknowledged again, stored and
    // judged once (the counts below and the engine's stay at 5).
    assert_eq!(post_records_file(&client).await["accepted"], 4);
    let repeated = metric(&series(&client).await, "nhiwatch_events_repeated_total");
    assert_eq!(repeated, 4.0);

    // Acknowledged means durable and queued; the engine takes it a moment later.
    let identities = client
        .settled("/v1/identities", |v| v["identities"][0]["events"] == 5)
        .await;
    assert_eq!(identities["total"], 1);
    assert_eq!(identities["identities"][0]["identity"], ROLE);
    let encoded = ROLE.replace('/', "%2F");
    let one = client.json(&format!("/v1/identities/{encoded}")).await;
    assert_eq!(one["identity"]["kind"], "role");

    // The out-of-scope episode is open; shutting down closes it and stores the finding.
    let summary = running.shutdown().await.unwrap();
    assert_eq!(summary.engine.events, 5);
    assert!(summary.engine.findings >= 1);
    let kept = std::fs::read_to_string(dir.path().join("data/rejects.jsonl")).unwrap();
    assert_eq!(kept.lines().count(), 1);
    assert!(kept.contains("\"received_from\":\"ingest\""));

    // A new server on the same data folder answers from the store.
    let (running, client) = start(settings).await;
    let findings = client.json("/v1/findings?kind=out_of_scope").await;
    let finding = &findings["findings"][0];
    assert_eq!(finding["identity"], ROLE);
    assert_eq!(finding["evidence"]["event_ids"], json!(["e-3", "e-4"]));
    assert_eq!(finding["decision"], "block");
    let identities = client.json("/v1/identities").await;
    assert_eq!(identities["identities"][0]["events"], 5);
    // Re-sending the same file stores nothing twice (natural keys), is still accepted, and
    // the new server's engine does not judge what the store already held.
    post_records_file(&client).await;
    let summary = running.shutdown().await.unwrap();
    assert_eq!(summary.engine.events, 0);
}

#[tokio::test]
async fn otlp_protobuf_and_json_exports_are_accepted_as_a_collector_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(config(dir.path())).await;
    let export = otlp(&[
        ("read_file", r#"{"path": "src/main.rs"}"#),
        ("search", r#"{"query": "tests"}"#),
    ]);

    let response = client
        .post("/v1/otlp/v1/traces", INGEST)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&export.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let answer = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert!(answer.partial_success.is_none());

    // The same spans as OTLP JSON (other span ids), as the collector's JSON encoding writes them.
    let mut json_export =
        serde_json::to_value(otlp(&[("read_file", r#"{"path": "README.md"}"#)])).unwrap();
    json_export["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] =
        json!("00000000000000aa");
    json_export["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] =
        json!("5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b");
    let response = client
        .post("/v1/otlp/v1/traces", INGEST)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json_export).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));

    // A malformed protobuf export: 400 with a google.rpc.Status, nothing accepted.
    let response = client
        .post("/v1/otlp/v1/traces", INGEST)
        .header("content-type", "application/x-protobuf")
        .body(vec![0x0a, 0xff, 0xff, 0x01])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let status = Status::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3);
    assert!(status.message.contains("OTLP"), "{}", status.message);

    // An unauthenticated collector gets a Status too.
    let response = client
        .http
        .post(format!("{}/v1/otlp/v1/traces", client.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["code"], 16);

    // An empty export is a valid one.
    let response = client
        .post("/v1/otlp/v1/traces", INGEST)
        .header("content-type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let agent = client
        .settled("/v1/identities/coding-agent", |v| {
            v["identity"]["events"] == 3
        })
        .await;
    assert_eq!(agent["identity"]["kind"], "agent");
    let summary = running.shutdown().await.unwrap();
    assert_eq!(summary.events, 3);
}

#[tokio::test]
async fn decide_blocks_an_out_of_scope_sensitive_action_and_allows_a_permitted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(config(dir.path())).await;
    let allowed = client
        .decide(json!({"identity": "coding-agent", "action": "tool:read_file", "resource": "src/lib.rs"}))
        .await;
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["risk"], 0);
    assert_eq!(allowed["finding_ids"], json!([]));

    let blocked = client
        .decide(json!({
            "identity": "coding-agent", "action": "tool:get_secret",
            "resource": "prod/payments/db-password", "id": "call_42"
        }))
        .await;
    assert_eq!(blocked["decision"], "block");
    assert_eq!(blocked["event_id"], "call_42");
    assert!(blocked["risk"].as_u64().unwrap() >= 75);
    let reasons = blocked["reasons"].as_array().unwrap();
    assert!(reasons
        .iter()
        .any(|r| r.as_str().unwrap().starts_with("out_of_scope (high)")));
    assert!(reasons
        .iter()
        .any(|r| r.as_str().unwrap().starts_with("sensitive_access")));
    assert_eq!(
        blocked["finding_ids"].as_array().unwrap().len(),
        reasons.len()
    );

    // A malformed request names its fault; the identity's risk is the latest decision.
    let response = client
        .post("/v1/decide", DECIDE)
        .json(&json!({"identity": "coding-agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("action"));
    client
        .settled("/v1/identities/coding-agent", |v| {
            v["identity"]["risk"]["decision"] == "block"
        })
        .await;

    // The finding a decision names is the finding emitted when its episode closes.
    let running_metrics = Arc::clone(running.metrics());
    assert_eq!(running_metrics.decide_latency.count(), 2);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn tokens_scopes_and_rates_are_enforced_and_errors_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.tokens.push(TokenSpec {
        rate: Some(1.0),
        burst: Some(2.0),
        ..token("slow", "slow-token-0123456789", &[Scope::Read])
    });
    let (running, client) = start(settings).await;
    let url = format!("{}/v1/findings", client.base);

    let missing = client.http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");

    for wrong in [
        "Bearer nope",
        "Bearer admin-token-012345678",
        "Basic YWRtaW4=",
    ] {
        let response = client
            .http
            .get(&url)
            .header("authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let forbidden = client.get("/v1/findings", INGEST).send().await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let forbidden = client
        .post("/v1/events", READ)
        .body(records_file())
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let body = forbidden.text().await.unwrap();
    assert!(body.contains("`ingest` scope"), "{body}");
    assert!(!body.contains('/'), "no path in an error: {body}");
    assert_eq!(
        client
            .get("/v1/findings", ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        client
            .get("/v1/findings", READ)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // The rate-limited token: a burst of 2, then 429 with Retry-After.
    let slow = |c: &Client| c.get("/v1/findings", "slow-token-0123456789").send();
    assert_eq!(slow(&client).await.unwrap().status(), StatusCode::OK);
    assert_eq!(slow(&client).await.unwrap().status(), StatusCode::OK);
    let limited = slow(&client).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");

    // Public routes need no token; unknown routes answer a JSON 404.
    assert_eq!(
        client
            .http
            .get(format!("{}/healthz", client.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let unknown = client.get("/v1/nothing", ADMIN).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );

    // Nothing was stored from the refused requests.
    let series = series(&client).await;
    let ingested: f64 = series
        .iter()
        .filter(|(s, _)| s.starts_with("nhiwatch_events_ingested_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(ingested, 0.0);
    assert!(
        metric(
            &series,
            "nhiwatch_requests_refused_total{reason=\"unauthenticated\"}"
        ) >= 4.0
    );
    assert_eq!(
        metric(
            &series,
            "nhiwatch_requests_refused_total{reason=\"forbidden\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &series,
            "nhiwatch_requests_refused_total{reason=\"rate_limited\"}"
        ),
        1.0
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversize_and_malformed_bodies_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.limits.max_body_bytes = 4096;
    settings.limits.max_decoded_bytes = 64 << 10;
    settings.limits.max_decide_bytes = 256;
    let (running, client) = start(settings).await;

    let big = vec![b' '; 8192];
    let response = client
        .post("/v1/events", INGEST)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("4096-byte limit"));

    // A small gzip body that inflates past the decoded limit.
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < 4096);
    let response = client
        .post("/v1/events", INGEST)
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let response = client
        .post("/v1/decide", DECIDE)
        .body(format!(
            r#"{{"identity": "{}", "action": "tool:x"}}"#,
            "a".repeat(300)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let response = client
        .post("/v1/events", INGEST)
        .body("{\"not\": \"telemetry\"}\nnot json either\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no record could be decoded (2 rejected)"),
        "{message}"
    );
    assert!(message.contains("line 1"), "{message}");

    let response = client
        .post("/v1/events", INGEST)
        .body(b"PK\x03\x04zip".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let summary = running.shutdown().await.unwrap();
    assert_eq!(summary.events, 0);
    assert_eq!(summary.engine.events, 0);
}

/// A detector that holds the engine until the test opens the gate, one event at a time.
struct Gate(Arc<Mutex<std_mpsc::Receiver<()>>>);

impl Detector for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn observe(&mut self, _: &Observation<'_, '_>, _: &Names<'_>, _: &mut Vec<Draft>) {
        let _ = self.0.lock().unwrap().recv();
    }
    fn sweep(&mut self, _: StreamPosition, _: &Names<'_>, _: &mut Vec<Draft>) {}
    fn flush(&mut self, _: &Names<'_>, _: &mut Vec<Draft>) {}
    fn state_bytes(&self) -> usize {
        0
    }
}

#[tokio::test]
async fn full_queues_answer_503_with_retry_after_and_shutdown_drains_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.limits.ingest_queue = 1;
    settings.limits.decide_queue = 1;
    let (open, gate) = std_mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let running = Server::new(settings)
        .with_engine(Arc::new(move || {
            Engine::with_detectors(
                None,
                EngineConfig::default(),
                vec![Box::new(Gate(Arc::clone(&gate)))],
            )
        }))
        .start()
        .await
        .unwrap();
    let client = Client::new(running.local_addr());
    let one = |id: &str| serde_json::to_vec(&cloudtrail(id, 0, "s3", "GetObject")).unwrap();

    // The first batch is taken by the engine, which stops at its first event.
    let first = client
        .post("/v1/events", INGEST)
        .body(one("q-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let mut waited = 0;
    while running.metrics().events_total() < 1 || queue_depth(&client).await != 0.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
        assert!(waited < 500, "the engine never took the first batch");
    }
    // The second waits in the queue; the third finds it full.
    let second = client
        .post("/v1/events", INGEST)
        .body(one("q-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let third = client
        .post("/v1/events", INGEST)
        .body(one("q-3"))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers()["retry-after"], "1");
    assert_eq!(
        third.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );

    // One decision waits in its queue; the next is refused.
    let decide = |c: &Client| {
        c.post("/v1/decide", DECIDE)
            .json(&json!({"identity": "a", "action": "tool:search"}))
            .send()
    };
    let waiting = tokio::spawn(decide(&client));
    let mut waited = 0;
    while decide_depth(&client).await != 1.0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
        assert!(waited < 500, "the decision never queued");
    }
    let refused = decide(&client).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");

    // Shutting down waits for what was accepted: open the gate for every event.
    let stopping = tokio::spawn(running.shutdown());
    for _ in 0..3 {
        let _ = open.send(());
    }
    drop(open);
    let summary = stopping.await.unwrap().unwrap();
    assert_eq!(summary.engine.events, 3, "two batches and the decision");
    assert_eq!(waiting.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// A store whose disk is full: the first write finds no space, every later one is refused
/// (as redb does after a failed write).
struct FullDisk(Mutex<u32>);

impl EvidenceSink for FullDisk {
    fn append(
        &self,
        _events: &[nhiwatch_model::Event<'static>],
        _findings: &[nhiwatch_model::Finding],
        _risks: &[nhiwatch_store::RiskPoint],
    ) -> Result<Vec<bool>, SinkError> {
        let mut calls = self.0.lock().unwrap();
        *calls += 1;
        let kind = if *calls == 1 {
            SinkFailure::NoSpace
        } else {
            SinkFailure::Stopped
        };
        Err(SinkError {
            kind,
            message: "no space to write the store at /secret/path/nhiwatch.redb".into(),
        })
    }
}

#[tokio::test]
async fn a_store_out_of_space_answers_503_naming_it_and_health_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let running = Server::new(config(dir.path()))
        .with_sink(Arc::new(FullDisk(Mutex::new(0))))
        .start()
        .await
        .unwrap();
    let client = Client::new(running.local_addr());
    let health = client.get("/healthz", READ).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    for (n, code) in [(1, "storage_full"), (2, "storage_failed")] {
        let body =
            serde_json::to_vec(&cloudtrail(&format!("full-{n}"), n, "s3", "GetObject")).unwrap();
        let answer = client
            .post("/v1/events", INGEST)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()["retry-after"], "30");
        let error = answer.json::<Value>().await.unwrap()["error"].clone();
        assert_eq!(error["code"], code, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("evidence store"), "{message}");
        assert!(
            message.contains("nothing from this request was stored"),
            "{message}"
        );
        assert!(!message.contains("/secret"), "no internal path: {message}");
    }
    assert!(client.json("/v1/findings").await["findings"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(running.metrics().events_total(), 0, "nothing was accepted");
    let health = client.get("/healthz", READ).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        health.json::<Value>().await.unwrap()["status"],
        "storage_failed"
    );
    // Decisions do not wait for the store, and go on.
    let decision = client
        .decide(json!({"identity": ROLE, "action": "s3:GetObject"}))
        .await;
    assert_eq!(decision["decision"], "allow", "{decision}");
    let series = series(&client).await;
    // Both refused batches; the decided event's write may have failed by now too.
    assert!(metric(&series, "nhiwatch_store_batches_total{result=\"failed\"}") >= 2.0);
    // Refused for the store (both batches and the health check), not for load.
    assert_eq!(
        metric(
            &series,
            "nhiwatch_requests_refused_total{reason=\"storage\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &series,
            "nhiwatch_requests_refused_total{reason=\"overloaded\"}"
        ),
        0.0
    );
    running.shutdown().await.unwrap();
}

/// The server's metrics, parsed.
async fn series(client: &Client) -> Vec<(String, f64)> {
    let text = client
        .get("/metrics", READ)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metrics(&text)
}

async fn queue_depth(client: &Client) -> f64 {
    metric(
        &series(client).await,
        "nhiwatch_queue_depth{queue=\"ingest\"}",
    )
}

async fn decide_depth(client: &Client) -> f64 {
    metric(
        &series(client).await,
        "nhiwatch_queue_depth{queue=\"decide\"}",
    )
}

/// A webhook receiver: answers 500 to the first `failures` calls, then 200; keeps the bodies.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<usize>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0usize));
    let (b, c) = (Arc::clone(&bodies), Arc::clone(&calls));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (bodies, calls) = (Arc::clone(&b), Arc::clone(&c));
            async move {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    *calls += 1;
                    *calls
                };
                if n <= failures {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                bodies
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies, calls)
}

#[tokio::test]
async fn alerts_are_retried_and_dead_lettered_after_the_last_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    let (flaky, flaky_bodies, flaky_calls) = receiver(2).await;
    let (broken, _, broken_calls) = receiver(usize::MAX).await;
    let (slack, slack_bodies, _) = receiver(0).await;
    settings.alerts.webhooks = vec![
        WebhookSpec {
            name: "flaky".into(),
            url: flaky,
            format: WebhookFormat::Json,
        },
        WebhookSpec {
            name: "broken".into(),
            url: broken,
            format: WebhookFormat::Json,
        },
        WebhookSpec {
            name: "slack".into(),
            url: slack,
            format: WebhookFormat::Slack,
        },
    ];
    settings.alerts.attempts = 3;
    settings.alerts.backoff = Duration::from_millis(10);
    let dead_letter = dir.path().join("dead.jsonl");
    settings.alerts.dead_letter = Some(dead_letter.clone());
    let (running, client) = start(settings).await;
    post_records_file(&client).await;
    // The out-of-scope finding (high) closes at shutdown and is an alert.
    let summary = running.shutdown().await.unwrap();

    // Every high finding is an alert (other detectors may add some beside out_of_scope).
    let delivered = flaky_bodies.lock().unwrap().clone();
    let alerts = delivered.len();
    let out_of_scope: Vec<&Value> = delivered
        .iter()
        .filter(|f| f["kind"] == "out_of_scope")
        .collect();
    assert_eq!(out_of_scope.len(), 1, "{delivered:?}");
    assert_eq!(out_of_scope[0]["identity"], ROLE);
    assert_eq!(
        *flaky_calls.lock().unwrap(),
        2 + alerts,
        "two failures, then each delivered"
    );
    let slack = slack_bodies.lock().unwrap().clone();
    assert_eq!(slack.len(), alerts);
    assert!(slack.iter().any(|m| {
        let text = m["text"].as_str().unwrap();
        text.starts_with("nhiwatch ")
            && text.contains(" out_of_scope: arn:aws:iam::111122223333:role/report-reader (risk ")
    }));

    assert_eq!(*broken_calls.lock().unwrap(), 3 * alerts);
    let dead = std::fs::read_to_string(&dead_letter).unwrap();
    let lines: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), alerts);
    for line in &lines {
        assert_eq!(line["webhook"], "broken");
        assert_eq!(line["attempts"], 3);
        assert_eq!(line["error"], "the webhook answered HTTP 500");
    }
    assert!(lines.iter().any(|l| l["finding"]["kind"] == "out_of_scope"));
    assert!(
        !dead.contains("127.0.0.1"),
        "webhook URLs stay out of the file"
    );
    let alerts = alerts as u64;
    assert_eq!(summary.alerts, (2 * alerts, 2 + 2 * alerts, alerts));
}

#[tokio::test]
async fn metrics_exposition_parses_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(config(dir.path())).await;
    client
        .post("/v1/events", INGEST)
        .body(records_file())
        .send()
        .await
        .unwrap();
    client
        .decide(json!({"identity": "coding-agent", "action": "tool:get_secret"}))
        .await;
    client
        .settled("/v1/identities", |v| {
            v["total"] == 2 && v["identities"][1]["events"] == 4
        })
        .await;
    let response = client.get("/metrics", READ).send().await.unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let series = parse_metrics(&response.text().await.unwrap());
    assert_eq!(
        metric(
            &series,
            "nhiwatch_events_ingested_total{source=\"cloudtrail\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(&series, "nhiwatch_decisions_total{decision=\"block\"}"),
        1.0
    );
    assert_eq!(
        metric(&series, "nhiwatch_decide_latency_seconds_count"),
        1.0
    );
    assert_eq!(
        metric(
            &series,
            "nhiwatch_decide_latency_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&series, "nhiwatch_queue_capacity{queue=\"ingest\"}"),
        64.0
    );
    assert_eq!(metric(&series, "nhiwatch_identities"), 2.0);
    assert!(series
        .iter()
        .any(|(s, _)| s.starts_with("nhiwatch_findings_total{kind=\"out_of_scope\"}")));
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn learned_profiles_are_snapshotted_while_serving_and_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    let data = dir.path().join("data");
    settings.data = Some(data.clone());
    settings.snapshot_every = Duration::from_millis(50);
    let (running, client) = start(settings.clone()).await;
    post_records_file(&client).await;
    let snapshot = nhiwatch_server::profiles::snapshot_path(&data);
    let mut waited = 0;
    let series = loop {
        let text = client.get("/metrics", READ).send().await.unwrap();
        let series = parse_metrics(&text.text().await.unwrap());
        if metric(&series, "nhiwatch_baseline_snapshot_identities") == 1.0 {
            break series;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 500, "no snapshot was written");
    };
    let written = metric(
        &series,
        "nhiwatch_baseline_snapshots_total{result=\"written\"}",
    );
    assert!(written >= 1.0);
    assert_eq!(
        metric(&series, "nhiwatch_baseline_snapshot_bytes"),
        std::fs::metadata(&snapshot).unwrap().len() as f64
    );
    assert!(metric(&series, "nhiwatch_baseline_snapshot_timestamp_seconds") > 1.7e9);
    let profile = |path: &Path| {
        let baseline = nhiwatch_baseline::Baseline::load(path).unwrap();
        baseline.get(ROLE).map(|p| p.events)
    };
    assert_eq!(profile(&snapshot), Some(4));

    // A decision is judged, learned, and in the snapshot written at shutdown.
    client
        .decide(json!({"identity": ROLE, "action": "s3:GetObject", "time": "2026-03-02T10:09:00Z"}))
        .await;
    running.shutdown().await.unwrap();
    assert_eq!(profile(&snapshot), Some(5));

    // A server given its own engine does not take a baseline it could not load into it.
    settings.baseline = Some(snapshot);
    let refused = Server::new(settings)
        .with_engine(Arc::new(|| Engine::new(None, EngineConfig::default())))
        .start()
        .await;
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("baseline"), "{err}");
}

/// Posts CloudTrail records; the server must accept them.
async fn ingest(client: &Client, records: Vec<Value>) {
    post_accepted(
        client,
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
    )
    .await;
}

/// A server over a new data folder, without a policy, that served a week of the role's
/// reads (2 to 8 March, 10:00-10:05: enough for a mature profile) and then, at 10:30 on
/// 9 March, one call of IAM's `action`, and stopped (closing its episodes). Returns the
/// folder (kept while it lives) and the settings to serve it again.
async fn served_a_week_then(id: &str, action: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.policy = None;
    settings.data = Some(dir.path().join("data"));
    let (running, client) = start(settings.clone()).await;
    let mut history = Vec::new();
    for day in 2..9 {
        for minute in 0..6 {
            let name = ["GetObject", "ListBucket"][minute % 2];
            let time = format!("2026-03-{day:02}T10:{minute:02}:00Z");
            history.push(cloudtrail_at(
                &format!("h-{day}-{minute}"),
                &time,
                "s3",
                name,
            ));
        }
    }
    history.push(cloudtrail_at(id, "2026-03-09T10:30:00Z", "iam", action));
    ingest(&client, history).await;
    running.shutdown().await.unwrap();
    (dir, settings)
}

#[tokio::test]
async fn a_restart_is_no_amnesty_each_identity_resumes_its_stored_risk() {
    let (_dir, settings) = served_a_week_then("esc-1", "AttachRolePolicy").await;

    // An hour later, after a restart, a new lookup alone would score low and be allowed; on
    // top of the escalation's risk it is not.
    let (running, client) = start(settings).await;
    let answer = client
        .decide(
            json!({"identity": ROLE, "action": "iam:ListRoles", "time": "2026-03-09T11:30:00Z"}),
        )
        .await;
    let risk = answer["risk"].as_u64().unwrap();
    assert!(risk >= 65, "{answer}");
    assert_ne!(answer["decision"], "allow", "{answer}");
    running.shutdown().await.unwrap();
}

/// The role's novel-action findings, once `count` of them are there.
async fn novel_actions(client: &Client, count: usize) -> Vec<Value> {
    let path = "/v1/findings?kind=novel_action";
    let answer = client
        .settled(path, |v| {
            v["findings"].as_array().map(Vec::len) == Some(count)
        })
        .await;
    answer["findings"].as_array().unwrap().clone()
}

/// Waits until the engine has taught `findings` benign findings in all, and returns the
/// new behaviours it learned from them.
async fn taught(client: &Client, findings: f64) -> f64 {
    for _ in 0..500 {
        let series = series(client).await;
        if metric(&series, "nhiwatch_benign_findings_total") == findings {
            return metric(&series, "nhiwatch_benign_behaviours_learned_total");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the engine never learned from {findings} benign findings");
}

#[tokio::test]
async fn a_finding_marked_benign_in_the_ui_is_usual_from_then_on_and_after_a_restart() {
    // A mature profile, then a new action.
    let (dir, settings) = served_a_week_then("new-1", "ListRoles").await;
    let (running, client) = start(settings.clone()).await;
    let flagged = novel_actions(&client, 1).await;
    assert_eq!(flagged[0]["evidence"]["event_ids"], json!(["new-1"]));
    let path = format!("/v1/identities/{}", ROLE.replace('/', "%2F"));
    let risk = |v: &Value| v["identity"]["risk"]["risk"].as_u64();
    assert_eq!(flagged[0]["risk"], 30);
    let form = format!(
        "id={}&identity={}&mark=benign&note=inventory+job",
        flagged[0]["id"].as_str().unwrap(),
        ROLE.replace(':', "%3A").replace('/', "%2F")
    );
    let marked = client
        .post("/ui/finding/mark", ADMIN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    // The answer sends the browser back to the finding's page.
    assert_eq!(marked.status(), StatusCode::OK);
    assert_eq!(marked.url().path(), "/ui/finding");
    assert_eq!(
        taught(&client, 1.0).await,
        2.0,
        "the action and the transition into it"
    );
    // The identity's risk no longer counts the finding (the engine restarted since it was
    // raised, so nothing else is left), and the risk history says why.
    let lowered = client.settled(&path, |v| risk(v) == Some(0)).await;
    assert_eq!(lowered["identity"]["risk"]["decision"], "allow");
    // Day 10: the benign action again, and one never seen.
    ingest(
        &client,
        vec![
            cloudtrail_at("new-2", "2026-03-10T10:30:00Z", "iam", "ListRoles"),
            cloudtrail_at("new-3", "2026-03-10T10:31:00Z", "iam", "ListUsers"),
        ],
    )
    .await;
    running.shutdown().await.unwrap();

    let history = nhiwatch_store::Store::open_read_only(&dir.path().join("data"))
        .unwrap()
        .risk_history(
            ROLE,
            nhiwatch_model::Timestamp(0),
            nhiwatch_model::Timestamp(i64::MAX),
        )
        .unwrap();
    let last = history.last().expect("a risk point");
    assert_eq!((last.risk, last.decision), (0, Decision::Allow));
    assert_eq!(
        last.cause,
        format!("benign:{}", flagged[0]["id"].as_str().unwrap())
    );

    // Only the action never seen is flagged. The restart teaches the mark again (its risk is
    // not taken back twice), and the snapshot written at shutdown already holds what it taught.
    let (running, client) = start(settings).await;
    assert_eq!(taught(&client, 1.0).await, 0.0);
    let flagged = novel_actions(&client, 2).await;
    let ids: Vec<&Value> = flagged
        .iter()
        .map(|f| &f["evidence"]["event_ids"])
        .collect();
    assert!(ids.contains(&&json!(["new-3"])), "{ids:?}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_serves_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut settings = config(dir.path());
    settings.tls = Some(nhiwatch_server::config::TlsFiles {
        cert: fixtures.join("localhost.crt"),
        key: fixtures.join("localhost.key"),
    });
    let running = Server::new(settings).start().await.unwrap();
    let port = running.local_addr().port();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(fixtures.join("ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{port}/v1/identities"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn openapi_describes_every_route_and_only_those() {
    let spec: Value = serde_norway::from_str(nhiwatch_server::OPENAPI).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    let mut described = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            described.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    described.sort();
    served.sort();
    assert_eq!(described, served);
    for route in ROUTES {
        let operation = &paths[route.path][route.method.to_lowercase()];
        let summary = operation["summary"].as_str().unwrap();
        match route.scope {
            Some(scope) => assert!(summary.contains(&format!("scope {scope}")), "{summary}"),
            None => assert_eq!(operation["security"], json!([]), "{}", route.path),
        }
    }

    // And each described route answers on the real router (not the JSON 404 of no route).
    let dir = tempfile::tempdir().unwrap();
    let (running, client) = start(config(dir.path())).await;
    for route in ROUTES {
        let path = route.path.replace("{id}", "coding-agent");
        let request = match route.method {
            "GET" => client.get(&path, ADMIN),
            _ => client.post(&path, ADMIN).body("{}"),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("no such endpoint") && status != StatusCode::METHOD_NOT_ALLOWED,
            "{} {path}: {status} {body}",
            route.method
        );
    }
    let served = client
        .http
        .get(format!("{}/v1/openapi", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(served.text().await.unwrap(), nhiwatch_server::OPENAPI);
    running.shutdown().await.unwrap();
}
