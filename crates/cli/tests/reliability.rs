//! Reliability of `nhiwatch serve` as a process, with the real binary on loopback:
//!
//! - **kill -9**: the server is killed with SIGKILL at random points (while it opens and
//!   recovers its store, and while a client streams events) and restarted on the same data
//!   folder, many times. Every acknowledged event must be stored exactly once, the chain must
//!   verify, and the findings must agree with the stored evidence.
//! - **a full disk**: the server runs under a file size limit, so that its store's writes fail
//!   as on a full disk. Clients must get a clear, retryable error, nothing acknowledged may be
//!   lost, and after a restart with space ingest must go on.
//! - **a soak**: a steady ingest rate for a bounded time (`NHIWATCH_SOAK_SECONDS`, 60 s by
//!   default; `NHIWATCH_SOAK_RATE` events per second, by default 1,000 on a debug build and
//!   5,000 on a release build), with the server's memory sampled; the rate must be held and the
//!   memory flat.
//!
//! The events are CloudTrail records of a synthetic fleet: a few hundred roles of six kinds,
//! each with its usual actions and a policy granting them, and now and then an action outside
//! the policy, a denied call or a call from a new address, so that every lens has work. Event
//! `n` is a pure function of `n`, so an event posted again is the same event.
//!
//! The tests take a lock so that they never run at the same time (the soak's figures are
//! the server's alone), and print what they measured (`--nocapture` shows it). A random seed
//! is printed; `NHIWATCH_RELIABILITY_SEED` replays one.

#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{get, http, try_http, Server};
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Event, FindingKind, Timestamp};
use nhiwatch_policy::Policy;
use nhiwatch_store::{FindingQuery, Store};
use serde_json::{json, Value};

/// One test at a time: they share two cores, and the soak measures the server alone.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = std::env::var("NHIWATCH_RELIABILITY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        println!("{test}: seed {seed} (NHIWATCH_RELIABILITY_SEED={seed} replays it)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// The synthetic fleet.

/// 2026-03-02T00:00:00Z: event `n` happens `n` seconds later.
const T0: i64 = 1_772_409_600_000_000_000;

/// A kind of role: its name, its SDK, and the actions it is for.
struct Kind {
    name: &'static str,
    agent: &'static str,
    usual: &'static [&'static str],
}

const KINDS: [Kind; 6] = [
    Kind {
        name: "ci-deployer",
        agent: "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79 exe/x86_64.amzn.2023",
        usual: &[
            "sts:GetCallerIdentity",
            "ecr:GetAuthorizationToken",
            "ecr:BatchGetImage",
            "ecr:PutImage",
            "ecs:RegisterTaskDefinition",
            "ecs:UpdateService",
            "ecs:DescribeServices",
        ],
    },
    Kind {
        name: "report-reader",
        agent: "aws-sdk-java/2.25.10 Linux/5.10 OpenJDK_64-Bit_Server_VM/21.0.2",
        usual: &[
            "s3:GetObject",
            "s3:ListBucket",
            "athena:StartQueryExecution",
            "athena:GetQueryResults",
            "glue:GetTable",
        ],
    },
    Kind {
        name: "backup-nightly",
        agent: "aws-sdk-go-v2/1.30.0 os/linux lang/go#1.22.1 md/GOOS#linux",
        usual: &[
            "ec2:CreateSnapshot",
            "ec2:DescribeSnapshots",
            "ec2:DescribeVolumes",
            "s3:PutObject",
            "kms:GenerateDataKey",
        ],
    },
    Kind {
        name: "orders-api",
        agent: "aws-sdk-js/3.540.0 ua/2.0 os/linux#5.10 lang/js md/nodejs#20.11.1",
        usual: &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "sqs:SendMessage",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "kms:Decrypt",
        ],
    },
    Kind {
        name: "monitoring",
        agent: "datadog-agent/7.52.0 aws-sdk-go/1.50.38",
        usual: &[
            "cloudwatch:GetMetricData",
            "cloudwatch:ListMetrics",
            "ec2:DescribeInstances",
            "logs:FilterLogEvents",
            "tag:GetResources",
        ],
    },
    Kind {
        name: "key-rotation",
        agent: "Boto3/1.34.60 md/Botocore#1.34.60 ua/2.0 os/linux#5.10 lang/python#3.12.2",
        usual: &[
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:DescribeSecret",
            "rds:ModifyDBInstance",
            "iam:ListAccessKeys",
        ],
    },
];

/// What no role may do: what stolen credentials try first.
const FORBIDDEN: [&str; 5] = [
    "iam:CreateAccessKey",
    "iam:AttachRolePolicy",
    "s3:PutBucketPolicy",
    "cloudtrail:StopLogging",
    "sts:AssumeRole",
];

const ACCOUNTS: [&str; 3] = ["111122223333", "444455556666", "777788889999"];

/// The policy of the fleet: each kind may do its usual actions.
fn policy_yaml() -> String {
    let mut yaml = String::from("identities:\n");
    for kind in &KINDS {
        yaml.push_str(&format!(
            "  - match: \"arn:aws:iam::*:role/{}-*\"\n    kind: role\n    allow:\n",
            kind.name
        ));
        for action in kind.usual {
            yaml.push_str(&format!("      - action: \"{action}\"\n"));
        }
        yaml.push_str(
            "    sensitive: [\"iam:Create*\", \"iam:Attach*\", \"cloudtrail:*\"]\n    decision: {critical: block, high: step_up, medium: review}\n",
        );
    }
    yaml
}

fn write_policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, policy_yaml()).expect("writes the policy");
    path
}

/// splitmix64: the fixed random draws of event `n`.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d1_049b_d111_49eb);
    z ^ (z >> 31)
}

/// A stream of events: event `n` has the CloudTrail `eventID` `PREFIX-n`, happens `n` seconds
/// after [`T0`], and is a pure function of `n`.
#[derive(Clone, Copy)]
struct Stream {
    prefix: &'static str,
    /// Roles the events are spread over.
    identities: u64,
    /// Events in 1,000 that leave the usual: an action outside the policy (a third), such an
    /// action denied (half), or a usual action from an address the role never used (a sixth).
    unusual: u64,
}

impl Stream {
    fn id(&self, n: u64) -> String {
        format!("{}-{n:08}", self.prefix)
    }

    /// Which event of this stream `id` is.
    fn number(&self, id: &str) -> Option<u64> {
        id.strip_prefix(self.prefix)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// Event `n` as a CloudTrail record.
    fn record(&self, n: u64) -> String {
        let draw = mix(n);
        let i = draw % self.identities;
        let kind = &KINDS[(i % KINDS.len() as u64) as usize];
        let account = ACCOUNTS[(i / KINDS.len() as u64 % 3) as usize];
        let role = format!("{}-{i}", kind.name);
        let unusual = (draw >> 20) % 1000 < self.unusual;
        let which = (draw >> 50) % 6;
        let forbidden = FORBIDDEN[((draw >> 40) % FORBIDDEN.len() as u64) as usize];
        let usual = kind.usual[((draw >> 40) % kind.usual.len() as u64) as usize];
        let (action, error) = match (unusual, which) {
            (true, 0..=1) => (forbidden, None),
            (true, 2..=4) => (forbidden, Some("AccessDenied")),
            _ => (usual, None),
        };
        let ip = if unusual && which == 5 {
            format!("203.0.113.{}", (draw >> 8) % 250)
        } else {
            format!("10.{}.{}.{}", i % 6, i / 250, i % 250 + 1)
        };
        let (service, name) = action.split_once(':').expect("service:Action");
        let read_only = ["Get", "List", "Describe", "Query", "Receive", "Filter"]
            .iter()
            .any(|p| name.starts_with(p));
        let bucket = format!("{}-{account}-{i}", kind.name);
        let mut record = json!({
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": format!("AROA{i:016}:{role}-session"),
                "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{role}-session"),
                "accountId": account,
                "accessKeyId": format!("ASIA{i:016}"),
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": format!("AROA{i:016}"),
                        "arn": format!("arn:aws:iam::{account}:role/{role}"),
                        "accountId": account,
                        "userName": role,
                    },
                    "attributes": {"creationDate": "2026-03-02T00:00:00Z", "mfaAuthenticated": "false"},
                },
            },
            "eventTime": Timestamp(T0 + n as i64 * 1_000_000_000).to_string(),
            "eventSource": format!("{service}.amazonaws.com"),
            "eventName": name,
            "awsRegion": "eu-west-1",
            "sourceIPAddress": ip,
            "userAgent": kind.agent,
            "requestParameters": if service == "s3" {
                json!({"bucketName": bucket, "key": format!("data/{}.parquet", draw % 5000)})
            } else {
                json!({})
            },
            "responseElements": null,
            "requestID": format!("{:032x}", (u128::from(draw) << 64) | u128::from(n)),
            "eventID": self.id(n),
            "readOnly": read_only,
            "eventType": "AwsApiCall",
            "managementEvent": service != "s3",
            "recipientAccountId": account,
            "eventCategory": if service == "s3" { "Data" } else { "Management" },
        });
        if let Some(code) = error {
            record["errorCode"] = json!(code);
            record["errorMessage"] = json!(format!(
                "User: arn:aws:sts::{account}:assumed-role/{role}/{role}-session is not authorized to perform: {action}"
            ));
        }
        record.to_string()
    }

    /// Events `from..to` as JSON lines.
    fn body(&self, from: u64, to: u64) -> Vec<u8> {
        let mut body = Vec::new();
        for n in from..to {
            body.extend_from_slice(self.record(n).as_bytes());
            body.push(b'\n');
        }
        body
    }

    /// Posts events `from..to`: whether they were acknowledged (202), and the answer otherwise.
    fn post(&self, addr: std::net::SocketAddr, from: u64, to: u64) -> Result<(), String> {
        match try_http(addr, "POST", "/v1/events", &self.body(from, to)) {
            Ok((202, _)) => Ok(()),
            Ok((status, answer)) => Err(format!("{status} {}", String::from_utf8_lossy(&answer))),
            Err(err) => Err(format!("no answer: {err}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the store and the API.

/// Events the server reports stored: the sum over its identities (read from the store when
/// it starts).
fn reported_events(addr: std::net::SocketAddr) -> u64 {
    let answer = get(addr, "/v1/identities?limit=10000");
    answer["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| i["events"].as_u64().expect("events"))
        .sum()
}

/// Stored events of a stream: how many times each `n` is stored, and the events themselves.
fn stored_events(data: &Path, stream: &Stream) -> (HashMap<u64, u32>, Vec<Event<'static>>) {
    let store = Store::open_read_only(data).expect("the store opens");
    let mut counts: HashMap<u64, u32> = HashMap::new();
    let mut events = Vec::new();
    store
        .export_events(false, &mut |event| {
            let n = stream
                .number(&event.id)
                .unwrap_or_else(|| panic!("a stored event that was never posted: {}", event.id));
            *counts.entry(n).or_default() += 1;
            events.push(event.clone().into_owned());
            ControlFlow::Continue(())
        })
        .expect("exports");
    (counts, events)
}

/// `nhiwatch verify` on the data folder: it must pass.
fn verify(data: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(["verify", "--data"])
        .arg(data)
        .output()
        .expect("nhiwatch verify runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "nhiwatch verify: {text}");
}

/// Kinds judged from one event and the policy alone, so that they do not depend on how the
/// stream was cut by restarts (the usual lens learns, and after a kill it starts again from its
/// last periodic snapshot, or empty).
const JUDGED: [FindingKind; 5] = [
    FindingKind::OutOfScope,
    FindingKind::DeniedAttempts,
    FindingKind::SensitiveAccess,
    FindingKind::PrivilegeEscalation,
    FindingKind::DefenseEvasion,
];

/// Identity and kind of every finding of the judged kinds that detection over `events`, in
/// time order, in one uninterrupted run, raises.
fn rederive(policy: &Path, mut events: Vec<Event<'static>>) -> BTreeSet<(String, FindingKind)> {
    events.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    let policy = Policy::load(policy).expect("the policy loads");
    let mut engine = Engine::new(Some(Arc::new(policy)), EngineConfig::default());
    let mut found = BTreeSet::new();
    let mut keep = |finding: nhiwatch_model::Finding| {
        if JUDGED.contains(&finding.kind) {
            found.insert((finding.identity, finding.kind));
        }
    };
    for event in &events {
        engine.process(event, &mut keep);
    }
    engine.finish(&mut keep);
    found
}

// ---------------------------------------------------------------------------------------------
// kill -9

/// Server starts, each followed by a SIGKILL.
const KILL_ROUNDS: usize = 14;

#[test]
fn acknowledged_events_survive_kill_9_of_the_server() {
    let _serial = serial();
    const STREAM: Stream = Stream {
        prefix: "k9",
        identities: 60,
        unusual: 6,
    };
    let started = Instant::now();
    let mut rng = Rng::seeded("kill -9");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    let policy = write_policy(dir.path());
    // Per event: 0 never posted, 1 posted, 2 acknowledged.
    let mut state: Vec<u8> = Vec::new();
    let mark = |state: &mut Vec<u8>, from: u64, to: u64, value: u8| {
        if state.len() < to as usize {
            state.resize(to as usize, 0);
        }
        for s in &mut state[from as usize..to as usize] {
            *s = (*s).max(value);
        }
    };
    let count = |state: &[u8], value: u8| state.iter().filter(|&&s| s >= value).count() as u64;
    let mut acked_until = 0u64;
    let (mut early_kills, mut posts) = (0, 0u64);

    for round in 0..KILL_ROUNDS {
        let mut server = Server::spawn(common::serve_command(&data, Some(&policy)));
        if round > 0 && rng.below(4) == 0 {
            // Killed while it opens the store (and recovers it from the last kill).
            std::thread::sleep(Duration::from_millis(rng.below(60)));
            server.kill();
            early_kills += 1;
            continue;
        }
        let addr = server
            .wait_listening()
            .unwrap_or_else(|log| panic!("round {round}: no restart after kill -9: {log}"));
        let reported = reported_events(addr);
        assert!(
            count(&state, 2) <= reported && reported <= count(&state, 1),
            "round {round}: the restarted server reports {reported} stored events; {} were acknowledged, {} posted",
            count(&state, 2),
            count(&state, 1)
        );

        // A client streams batches from a little before the last acknowledged event (so
        // acknowledged events are posted again) until the server is gone.
        let start = acked_until.saturating_sub(rng.below(300));
        let client_seed = rng.next();
        let client = std::thread::spawn(move || {
            let mut rng = Rng(client_seed | 1);
            let mut n = start;
            let mut posted = Vec::new();
            loop {
                let to = n + 1 + rng.below(150);
                let result = STREAM.post(addr, n, to);
                posted.push((n, to, result.is_ok()));
                match result {
                    Ok(()) => n = to,
                    // A full engine queue: the same batch again, shortly.
                    Err(answer) if answer.contains("\"overloaded\"") => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(answer) if answer.starts_with("no answer") => return posted,
                    Err(answer) => panic!("events {n}..{to}: {answer}"),
                }
            }
        });
        std::thread::sleep(Duration::from_millis(100 + rng.below(1400)));
        server.kill();
        for (from, to, acked) in client.join().expect("the client ends with the server") {
            posts += 1;
            mark(&mut state, from, to, if acked { 2 } else { 1 });
            if acked {
                assert!(from <= acked_until, "acknowledgements are contiguous");
                acked_until = acked_until.max(to);
            }
        }
    }

    // A last start: the view it reloads from the store matches the store, posting goes on,
    // and a graceful stop closes every open finding.
    let server = Server::start(common::serve_command(&data, Some(&policy)));
    let addr = server.addr();
    let reported = reported_events(addr);
    assert!(count(&state, 2) <= reported && reported <= count(&state, 1));
    let listed: BTreeSet<String> = get(addr, "/v1/findings?limit=10000")["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect();
    let stored: BTreeSet<String> = Store::open_read_only(&data)
        .expect("a reader opens beside the server")
        .findings(&FindingQuery::default())
        .expect("findings")
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(
        listed, stored,
        "the restarted server lists the stored findings"
    );
    // Enough events (some 18 unusual ones) that findings are sure to be raised, and stored
    // at the stop.
    let from = acked_until.saturating_sub(100);
    for start in (from..acked_until + 3_000).step_by(500) {
        STREAM
            .post(addr, start, start + 500)
            .expect("the last batches are taken");
        mark(&mut state, start, start + 500, 2);
    }
    server.stop();

    // Every acknowledged event exactly once, nothing twice, nothing never posted.
    verify(&data);
    let (counts, events) = stored_events(&data, &STREAM);
    for (n, s) in state.iter().enumerate() {
        let stored = counts.get(&(n as u64)).copied().unwrap_or(0);
        match s {
            2 => assert_eq!(stored, 1, "acknowledged event {n} is stored exactly once"),
            1 => assert!(
                stored <= 1,
                "unacknowledged event {n} is stored {stored} times"
            ),
            _ => assert_eq!(stored, 0, "event {n} was never posted"),
        }
    }
    let store = Store::open_read_only(&data).expect("the store opens");
    let report = store.verify(None).expect("verify runs");
    assert!(report.ok(), "verify: {:?}", report.problem);
    assert_eq!(report.items.events, events.len() as u64);
    let summed: u64 = store
        .identities()
        .expect("identities")
        .iter()
        .map(|s| s.events)
        .sum();
    assert_eq!(
        summed,
        events.len() as u64,
        "summaries count each event once"
    );

    // Findings: each stored once, each resting on stored events, each re-derived by an
    // uninterrupted run over the stored events.
    let findings = store.findings(&FindingQuery::default()).expect("findings");
    let ids: HashSet<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids.len(), findings.len(), "no finding is stored twice");
    let stored_ids: HashSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    for finding in &findings {
        for id in &finding.evidence.event_ids {
            assert!(
                stored_ids.contains(id),
                "finding {} rests on event {id}, which is not stored",
                finding.id
            );
        }
    }
    let judged: Vec<_> = findings
        .iter()
        .filter(|f| JUDGED.contains(&f.kind))
        .collect();
    assert!(!judged.is_empty(), "the stream raised findings");
    let stored_events = events.len();
    let rederived = rederive(&policy, events);
    for finding in &judged {
        assert!(
            rederived.contains(&(finding.identity.clone(), finding.kind)),
            "finding {} ({} of {}) is not re-derived from the stored events",
            finding.id,
            finding.kind,
            finding.identity
        );
    }
    let live: BTreeSet<_> = judged
        .iter()
        .map(|f| (f.identity.clone(), f.kind))
        .collect();
    // Nothing lost: a restart judges again what the engine held only in memory at a kill
    // (acknowledged events still queued, open episodes), so every finding an uninterrupted
    // run raises is stored too.
    let lost: Vec<_> = rederived.difference(&live).collect();
    assert!(
        lost.is_empty(),
        "{} identity/kind pairs lost across kills, among them {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    println!(
        "kill -9: {KILL_ROUNDS} kills ({early_kills} while opening the store), {posts} posts, {} events acknowledged, {} stored; verify ok; {} findings stored, their {} identity/kind pairs the same as the {} re-derived; {:.1} s",
        count(&state, 2),
        stored_events,
        findings.len(),
        live.len(),
        rederived.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// A full disk

/// The file size limit: room for a store of a thousand events or two.
const LIMIT: u64 = 3 << 20;
/// Events `nhiwatch ingest` is given under the limit: more than fit.
const INGESTED: u64 = 5_000;

#[test]
fn a_full_disk_is_refused_clearly_and_loses_nothing_acknowledged() {
    let _serial = serial();
    const STREAM: Stream = Stream {
        prefix: "full",
        identities: 30,
        unusual: 6,
    };
    const BATCH: u64 = 200;
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    let policy = write_policy(dir.path());

    // The server, under the limit, takes batches until its store cannot grow.
    let command = common::with_file_size_limit(&common::serve_command(&data, Some(&policy)), LIMIT);
    let server = Server::start(command);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .expect("the server's limits");
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max file size") && l.contains(&LIMIT.to_string())),
        "{limits}"
    );
    let addr = server.addr();
    let mut acked_until = 0;
    let refusal = loop {
        assert!(acked_until < 100 * BATCH, "the store never filled up");
        let (status, answer) = http(
            addr,
            "POST",
            "/v1/events",
            &STREAM.body(acked_until, acked_until + BATCH),
        );
        if status != 202 {
            break (status, String::from_utf8_lossy(&answer).to_string());
        }
        acked_until += BATCH;
    };
    assert!(
        acked_until > 0,
        "the store took nothing before it filled up"
    );
    let storage_error = |(status, answer): &(u16, String), code: &str| {
        assert_eq!(*status, 503, "{answer}");
        let error: Value = serde_json::from_str(answer).expect("a JSON error");
        assert_eq!(error["error"]["code"], code, "{answer}");
        let message = error["error"]["message"].as_str().expect("a message");
        assert!(
            message.contains("evidence store")
                && message.contains("nothing from this request was stored"),
            "{message}"
        );
        assert!(!message.contains(&data.display().to_string()), "{message}");
        message.to_owned()
    };
    let first = storage_error(&refusal, "storage_full");
    assert!(first.contains("out of disk space"), "{first}");
    // The store takes no more writes; clients keep being told so, and retry later.
    let again = http(
        addr,
        "POST",
        "/v1/events",
        &STREAM.body(acked_until, acked_until + 1),
    );
    let again = (again.0, String::from_utf8_lossy(&again.1).to_string());
    storage_error(&again, "storage_failed");
    let (status, health) = http(addr, "GET", "/healthz", b"");
    assert_eq!(
        (status, String::from_utf8_lossy(&health).to_string()),
        (503, r#"{"status":"storage_failed"}"#.to_owned())
    );
    // Decisions do not wait for the store.
    let decision = json!({"identity": "arn:aws:iam::111122223333:role/orders-api-3", "action": "dynamodb:GetItem"});
    let (status, answer) = http(addr, "POST", "/v1/decide", decision.to_string().as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let log = server.stop();
    assert!(
        log.contains(&format!(
            "cannot store a batch of {BATCH} events: no space to write the store at {}",
            data.join("nhiwatch.redb").display()
        )),
        "the log names the cause:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    // The store verifies, and once there is space the server takes events again.
    verify(&data);
    let server = Server::start(common::serve_command(&data, Some(&policy)));
    let addr = server.addr();
    assert_eq!(
        reported_events(addr),
        acked_until,
        "every acknowledged event is kept, nothing of the refused request"
    );
    let (status, health) = http(addr, "GET", "/healthz", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&health));
    let end = acked_until + 3 * BATCH;
    STREAM
        .post(addr, acked_until - 50, end)
        .expect("ingest goes on");
    server.stop();
    verify(&data);
    let (counts, events) = stored_events(&data, &STREAM);
    for n in 0..end {
        assert_eq!(
            counts.get(&n),
            Some(&1),
            "acknowledged event {n} is stored exactly once"
        );
    }
    assert_eq!(events.len() as u64, end, "nothing else is stored");

    // `nhiwatch ingest` under the limit stops with the cause, and the store it leaves verifies
    // and takes the same input again, without the limit, in full.
    let file = dir.path().join("events.jsonl");
    let input = Stream {
        prefix: "ingest",
        ..STREAM
    };
    std::fs::write(&file, input.body(0, INGESTED)).expect("writes the input");
    let store = dir.path().join("ingest-data");
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_nhiwatch"));
    ingest
        .args(["ingest", "--quiet", "--data"])
        .arg(&store)
        .arg(&file);
    let output = common::with_file_size_limit(&ingest, LIMIT)
        .output()
        .expect("ingest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "ingest cannot fit: {stderr}");
    assert!(
        stderr.contains("no space to write the store at") && !stderr.contains("panicked"),
        "{stderr}"
    );
    verify(&store);
    let output = ingest.output().expect("ingest runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (counts, _) = stored_events(&store, &input);
    assert_eq!(counts.len() as u64, INGESTED);
    assert!(counts.values().all(|&c| c == 1));
    println!(
        "disk full: {acked_until} events acknowledged under a {LIMIT}-byte file size limit, then 503 `storage_full`: \"{first}\"; after a restart with space {} more taken; every acknowledged event stored once, verify ok; {:.1} s",
        end - acked_until,
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Soak

/// Events per request in the soak.
const SOAK_BATCH: u64 = 100;
/// Requests in flight at most (each on its own connection).
const SOAK_SENDERS: usize = 4;
/// The soak's events: 300 roles, one event in 1,000 unusual (a busy fleet, not an alert storm:
/// the server keeps the latest 10,000 findings in memory, and a storm would fill that bound for
/// the whole run).
const SOAK: Stream = Stream {
    prefix: "soak",
    identities: 300,
    unusual: 1,
};
/// The default rate: what a debug build (as in CI) holds with room to spare on two cores, and
/// what a release build does.
const SOAK_RATE: u64 = if cfg!(debug_assertions) { 1_000 } else { 5_000 };
/// Seconds between samples of the server's memory.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// The resident set of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[test]
fn a_steady_ingest_rate_is_held_with_flat_memory() {
    let _serial = serial();
    let seconds = env_number("NHIWATCH_SOAK_SECONDS", 60);
    let rate = env_number("NHIWATCH_SOAK_RATE", SOAK_RATE);
    assert!(
        seconds >= 10 && rate >= SOAK_BATCH,
        "soak at least 10 s and one batch a second"
    );
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    let policy = write_policy(dir.path());
    let server = Server::start(common::serve_command(&data, Some(&policy)));
    let (addr, pid) = (server.addr(), server.pid());

    // Batch `k` is due at `k * SOAK_BATCH / rate` seconds; a sender takes the next batch,
    // waits until it is due (or sends at once when behind) and posts it.
    let batches = seconds * rate / SOAK_BATCH;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    samples.push((start.elapsed(), kib));
                }
                let wake = start + SAMPLE_EVERY * samples.len() as u32;
                while Instant::now() < wake && !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            samples
        })
    };
    let senders: Vec<_> = (0..SOAK_SENDERS)
        .map(|_| {
            let (next, errors) = (Arc::clone(&next), Arc::clone(&errors));
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut acked = 0u64;
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= batches {
                        return (latencies, acked);
                    }
                    let due =
                        start + Duration::from_secs_f64((k * SOAK_BATCH) as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let from = k * SOAK_BATCH;
                    let body = SOAK.body(from, from + SOAK_BATCH);
                    let sent = Instant::now();
                    match try_http(addr, "POST", "/v1/events", &body) {
                        Ok((202, _)) => acked += SOAK_BATCH,
                        Ok((status, answer)) => errors.lock().unwrap().push(format!(
                            "batch {k}: {status} {}",
                            String::from_utf8_lossy(&answer)
                        )),
                        Err(err) => errors.lock().unwrap().push(format!("batch {k}: {err}")),
                    }
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut acked = 0;
    for sender in senders {
        let (mut l, a) = sender.join().expect("a sender");
        latencies.append(&mut l);
        acked += a;
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("the sampler");
    let stop_log = server.stop();
    assert!(!stop_log.contains("cannot store"), "{stop_log}");
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let achieved = acked as f64 / elapsed.as_secs_f64();

    // Memory. The first quarter is warm-up (the allocator's arenas, the store's page cache,
    // the state of each identity as it first appears). The plateau is the highest sample of
    // the second quarter, the end the highest of the last quarter. A leak grows with the events
    // taken: half the run's events pass between the two, so a leak of L bytes per event adds
    // L * rate * seconds / 2 to the end. Flat means the end is within 10 % + 16 MiB of the
    // plateau (some 22 MiB over a plateau near 55 MiB). In CI (1,000 events/s for 60 s) that
    // fails a leak of about 750 bytes per event, less than keeping each event (a record is
    // some 1.3 KB); 600 s at 5,000 events/s by hand fails one of 15 bytes per event. Bounded
    // state that fills slowly (the latest 10,000 findings the server lists) must fit in it too.
    // Only the samples decide, so the outcome does not depend on the machine's speed.
    let quarter = |q: usize| {
        let n = samples.len();
        samples[n * q / 4..n * (q + 1) / 4]
            .iter()
            .map(|&(_, kib)| kib)
            .max()
            .expect("samples in every quarter")
    };
    assert!(samples.len() >= 4, "too few memory samples: {samples:?}");
    let (first, plateau, end) = (samples[0].1, quarter(1), quarter(3));
    let allowed = plateau + plateau / 10 + 16 * 1024;
    let trace: Vec<String> = samples
        .iter()
        .map(|(t, kib)| format!("{:.0}s {:.0}", t.as_secs_f64(), mib(*kib)))
        .collect();
    println!(
        "soak: target {rate} events/s for {seconds} s, achieved {achieved:.0} events/s ({acked} events in {:.1} s, {} requests of {SOAK_BATCH}, {} errors); \
         request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         server RSS start {:.1} MiB, plateau (2nd quarter) {:.1} MiB, end (last quarter) {:.1} MiB, allowed {:.1} MiB; store {:.0} MiB\n  RSS MiB: {}",
        elapsed.as_secs_f64(),
        latencies.len(),
        errors.lock().unwrap().len(),
        percentile(0.5).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |l| l.as_secs_f64() * 1e3),
        mib(first),
        mib(plateau),
        mib(end),
        mib(allowed),
        std::fs::metadata(data.join(nhiwatch_store::FILE_NAME)).map_or(0.0, |m| m.len() as f64 / 1048576.0),
        trace.join(", ")
    );
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, the first: {}",
        errors.len(),
        errors[0]
    );
    assert!(
        achieved >= 0.95 * rate as f64,
        "the rate was not held: {achieved:.0} of {rate} events/s"
    );
    assert!(
        end <= allowed,
        "memory grew: plateau {:.1} MiB, end {:.1} MiB (allowed {:.1} MiB)",
        mib(plateau),
        mib(end),
        mib(allowed)
    );
}
