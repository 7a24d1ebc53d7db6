//! Inline-decision latency and ingest throughput (DESIGN.md's bars: decide p99 ≤ 20 µs in
//! process, ≤ 1 ms over loopback HTTP at 10k requests/s).
//!
//! `cargo bench -p nhiwatch-server --bench decide` runs, bounded in count and time, on
//! loopback only:
//!
//! 1. in process: `Engine::decide` for 1,000 agents and roles with history, 200k decisions;
//! 2. over HTTP: `POST /v1/decide` at a fixed rate (default 10k/s for 5 s) from a load
//!    generator in the same process, over 8 keep-alive connections (a gateway's pool);
//!    latency is measured from each request's scheduled time (so a server that falls behind
//!    is charged for it; tokio's timer adds up to 1 ms of its own) and from its actual send,
//!    with the CPU time the process used per request;
//! 3. ingest: CloudTrail JSON lines in batches of 5,000 events, without and with the evidence
//!    store, until the engine has processed every event.
//!
//! `NHIWATCH_BENCH_RATE`, `NHIWATCH_BENCH_SECONDS` and `NHIWATCH_BENCH_CONNECTIONS` change the
//! HTTP run.

use std::sync::Arc;

use axum::body::Bytes;
use std::time::{Duration, Instant};

use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::Event;
use nhiwatch_policy::Policy;
use nhiwatch_server::auth::Scope;
use nhiwatch_server::config::{Secret, StdoutFormat, TokenSpec};
use nhiwatch_server::{Config, Server};

const TOKEN: &str = "bench-token-0123456789";
const AGENTS: usize = 500;
const ROLES: usize = 500;

const POLICY: &str = r#"
identities:
  - match: "agent-*"
    kind: agent
    allow:
      - action: "tool:read_file"
      - action: "tool:search"
      - action: "tool:run_tests"
      - action: "tool:create_pull_request"
    sensitive: ["tool:get_secret"]
    decision: {high: block, medium: review}
  - match: "arn:aws:iam::*:role/svc-*"
    kind: role
    allow:
      - action: "s3:GetObject"
      - action: "s3:ListBucket"
      - action: "sqs:*"
    sensitive: ["secretsmanager:GetSecretValue"]
    decision: {high: block}
"#;

/// CPU seconds this process has used (user and system), from /proc; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), so 11 and 12 from the state; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "{name:<44} n={:>7}  p50={:>9.1?}  p90={:>9.1?}  p99={:>9.1?}  p99.9={:>9.1?}  max={:>9.1?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples.last().copied().unwrap_or_default()
    );
}

/// The `i`-th decide request: mostly permitted tool calls and reads, one in 50 out of scope.
fn decide_body(i: usize, time: &str) -> String {
    let odd = i % 50 == 49;
    if i.is_multiple_of(2) {
        let tools = ["read_file", "search", "run_tests", "create_pull_request"];
        let tool = if odd {
            "get_secret"
        } else {
            tools[i / 2 % tools.len()]
        };
        format!(
            r#"{{"identity":"agent-{}","action":"tool:{tool}","resource":"repo/file-{}.rs","time":"{time}"}}"#,
            i / 2 % AGENTS,
            i % 97
        )
    } else {
        let action = if odd {
            "iam:CreateAccessKey"
        } else {
            ["s3:GetObject", "s3:ListBucket", "sqs:SendMessage"][i / 2 % 3]
        };
        format!(
            r#"{{"identity":"arn:aws:iam::111122223333:role/svc-{}","action":"{action}","resource":"arn:aws:s3:::bucket/key-{}","time":"{time}"}}"#,
            i / 2 % ROLES,
            i % 89
        )
    }
}

/// A normalised event line for the in-process run (the decide body, as an event).
fn event_line(i: usize, minute: usize) -> String {
    let body = decide_body(
        i,
        &format!(
            "2026-03-02T{:02}:{:02}:00Z",
            8 + minute / 60 % 12,
            minute % 60
        ),
    );
    let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let action = value["action"].as_str().unwrap_or_default();
    let tool = action.starts_with("tool:");
    serde_json::json!({
        "id": format!("e-{i}"),
        "time": value["time"],
        "source": if tool { "agent_trace" } else { "cloudtrail" },
        "identity": {"id": value["identity"], "kind": if tool { "agent" } else { "role" }},
        "action": action,
        "action_class": "read",
        "resource": value["resource"],
        "outcome": "success",
        "raw": {},
    })
    .to_string()
}

fn owned_events(text: &str) -> Vec<Event<'static>> {
    let mut events = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut on_event = |e: Event<'_>| events.push(e.into_owned());
    let mut on_reject = |r: nhiwatch_decode::Reject| panic!("{r}");
    let mut sinks = Sinks {
        event: &mut on_event,
        reject: &mut on_reject,
    };
    reader.read_bytes("bench", text.as_bytes(), &mut sinks);
    reader.finish(&mut sinks);
    events
}

fn in_process(policy: &Arc<Policy>) {
    // The engine `nhiwatch serve` runs: every lens, learning, the per-identity risk scorer.
    let mut engine = Engine::with_baseline(
        Some(Arc::clone(policy)),
        EngineConfig::default(),
        nhiwatch_baseline::Baseline::new(),
        nhiwatch_detect::detectors::UsualConfig::default(),
    );
    let history: String = (0..100_000)
        .map(|i| event_line(i, i / 1000) + "\n")
        .collect();
    for event in owned_events(&history) {
        engine.process(&event, &mut |_| {});
    }
    let probe: String = (0..200_000)
        .map(|i| event_line(100_000 + i, 100 + i / 1000) + "\n")
        .collect();
    let events = owned_events(&probe);
    let mut samples = Vec::with_capacity(events.len());
    let mut blocked = 0usize;
    for event in &events {
        let start = Instant::now();
        let assessment = engine.decide(event, &mut |_| {});
        samples.push(start.elapsed());
        blocked += usize::from(assessment.decision == nhiwatch_model::Decision::Block);
    }
    report("in-process Engine::decide", samples);
    println!("  ({blocked} of {} decisions were block)", events.len());
}

fn config(data: Option<std::path::PathBuf>, policy: &std::path::Path) -> Config {
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        policy: Some(policy.to_path_buf()),
        data,
        tokens: vec![TokenSpec {
            name: "bench".into(),
            secret: Secret::Plain(TOKEN.into()),
            scopes: vec![Scope::Admin],
            rate: None,
            burst: None,
        }],
        ..Config::default()
    };
    config.alerts.stdout = StdoutFormat::None;
    config.limits.decide_queue = 65_536;
    config
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn http_decide(policy_file: &std::path::Path) {
    let rate = env_or("NHIWATCH_BENCH_RATE", 10_000).max(1);
    let seconds = env_or("NHIWATCH_BENCH_SECONDS", 5).clamp(1, 60);
    let connections = env_or("NHIWATCH_BENCH_CONNECTIONS", 8).clamp(1, 1024) as usize;
    let running = Server::new(config(None, policy_file))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/v1/decide", running.local_addr());
    let total = (rate * seconds) as usize;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..4096)
            .map(|i| Bytes::from(decide_body(i, "2026-03-02T10:00:00Z")))
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // Warm up: open the connections, intern the identities.
    for i in 0..4096 {
        let _ = client
            .post(&url)
            .bearer_auth(TOKEN)
            .body(bodies[i].clone())
            .send()
            .await;
    }
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let (client, url, bodies) = (client.clone(), url.clone(), Arc::clone(&bodies));
        tasks.push(tokio::spawn(async move {
            let mut scheduled_lat = Vec::new();
            let mut service_lat = Vec::new();
            let mut errors = 0usize;
            let mut i = worker;
            while i < total {
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due).await;
                let sent = Instant::now();
                let ok = match client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .body(bodies[i % bodies.len()].clone())
                    .send()
                    .await
                {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                let done = Instant::now();
                errors += usize::from(!ok);
                service_lat.push(done - sent);
                scheduled_lat.push(done.saturating_duration_since(due.into_std()));
                i += connections;
            }
            (scheduled_lat, service_lat, errors)
        }));
    }
    let began = Instant::now();
    let cpu_before = cpu_seconds();
    let mut scheduled = Vec::with_capacity(total);
    let mut service = Vec::with_capacity(total);
    let mut errors = 0;
    for task in tasks {
        let (a, b, e) = task.await.unwrap_or_default();
        scheduled.extend(a);
        service.extend(b);
        errors += e;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "HTTP decide: target {rate}/s for {seconds} s over {connections} keep-alive connections: {} requests in {elapsed:.2} s = {:.0}/s, {errors} errors; CPU {:.1} µs per request (load generator and server together)",
        service.len(),
        service.len() as f64 / elapsed,
        cpu * 1e6 / service.len().max(1) as f64
    );
    report("  latency from scheduled time", scheduled);
    report("  latency from send", service);
    let server_side = running.metrics().decide_latency.count();
    println!("  server histogram observations: {server_side}");
    let _ = running.shutdown().await;
}

/// CloudTrail JSON lines: `count` events of 1,000 roles.
fn cloudtrail_lines(count: usize, offset: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in offset..offset + count {
        let name = ["GetObject", "ListBucket", "PutObject", "GetBucketAcl"][i % 4];
        let line = serde_json::json!({
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "arn": format!("arn:aws:sts::111122223333:assumed-role/svc-{}/s", i % 1000),
                "accountId": "111122223333",
                "sessionContext": {"sessionIssuer": {
                    "type": "Role", "arn": format!("arn:aws:iam::111122223333:role/svc-{}", i % 1000),
                    "accountId": "111122223333", "userName": format!("svc-{}", i % 1000)
                }}
            },
            "eventTime": format!("2026-03-02T{:02}:{:02}:{:02}Z", 8 + i / 3_600_000 % 12, i / 60_000 % 60, i / 1000 % 60),
            "eventSource": "s3.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.7",
            "userAgent": "aws-sdk-go/1.44",
            "requestParameters": {"bucketName": "reports", "key": format!("k-{}", i % 5000)},
            "responseElements": null,
            "eventID": format!("00000000-0000-4000-8000-{i:012}"),
            "eventType": "AwsApiCall",
            "recipientAccountId": "111122223333"
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

async fn http_ingest(policy_file: &std::path::Path, data: Option<std::path::PathBuf>) {
    const BATCH: usize = 5_000;
    const BATCHES: usize = 40;
    let label = if data.is_some() {
        "with store"
    } else {
        "no store"
    };
    let running = Server::new(config(data, policy_file))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/v1/events", running.local_addr());
    let bodies: Vec<Bytes> = (0..BATCHES)
        .map(|b| Bytes::from(cloudtrail_lines(BATCH, b * BATCH)))
        .collect();
    let client = reqwest::Client::new();
    let began = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..2 {
        let (client, url) = (client.clone(), url.clone());
        let mine: Vec<Bytes> = bodies.iter().skip(lane).step_by(2).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for body in mine {
                loop {
                    let response = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .body(body.clone())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().as_u16() == 202 => break,
                        Ok(r) if r.status().as_u16() == 503 => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Ok(r) => panic!("ingest answered {}", r.status()),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for task in tasks {
        refused += task.await.unwrap_or_default();
    }
    let acknowledged = began.elapsed().as_secs_f64();
    let summary = running.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    let processed = began.elapsed().as_secs_f64();
    let events = (BATCH * BATCHES) as f64;
    println!(
        "HTTP ingest ({label}): {} events in {BATCHES} requests: acknowledged in {acknowledged:.2} s ({:.0} events/s), processed in {processed:.2} s ({:.0} events/s); {refused} requests retried after 503",
        summary.engine.events,
        events / acknowledged,
        events / processed
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag and
    // wants it quick: then only the smallest run.
    let benching = std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, POLICY).unwrap_or_else(|e| panic!("{e}"));
    if !benching {
        println!("decide bench: pass --bench (cargo bench) to run it");
        return;
    }
    let policy =
        Arc::new(Policy::parse(POLICY, "policy.yaml", None).unwrap_or_else(|e| panic!("{e}")));
    in_process(&policy);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        http_decide(&policy_file).await;
        http_ingest(&policy_file, None).await;
        http_ingest(&policy_file, Some(dir.path().join("data"))).await;
    });
}
