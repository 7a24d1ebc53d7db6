//! End-to-end tests of learned baselines outliving the process that learned them: `nhiwatch
//! serve` keeps its learned profiles in the data folder across a graceful restart and a
//! SIGKILL, starts from `--baseline`, and `nhiwatch detect --save-baseline` writes what it
//! learned for `--baseline` to read.
//!
//! The proof that profiles were kept: three roles read their own bucket a dozen times a day for
//! four days, which makes their profiles mature. Then one of them scans a DynamoDB table, an
//! action it never performed: against the learned profile that is `novel_action`; against no
//! profile (an identity seen for the first time) the usual lens has nothing to compare with and
//! stays quiet.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use common::{eventually, get, http, Server};
use nhiwatch_baseline::Baseline;
use serde_json::{json, Value};

const ROLES: usize = 3;
/// Events per role: 12 a day (09:00 to 20:00 UTC) on 4 days, 2-5 March 2026.
const EVENTS_PER_ROLE: u64 = 48;

fn role(i: usize) -> String {
    format!("arn:aws:iam::111122223333:role/e2e-reader-{i}")
}

/// The roles' history, as normalised JSON lines.
fn history() -> Vec<u8> {
    let mut lines = Vec::new();
    for day in 2..6 {
        for hour in 9..21 {
            for i in 0..ROLES {
                let event = json!({
                    "id": format!("h-{i}-{day}-{hour}"),
                    "time": format!("2026-03-{day:02}T{hour:02}:15:00Z"),
                    "source": "cloudtrail",
                    "identity": {"id": role(i), "kind": "role"},
                    "action": "s3:GetObject",
                    "action_class": "read",
                    "resource": format!("arn:aws:s3:::reports-{i}/daily.csv"),
                    "outcome": "success",
                    "raw": {}
                });
                serde_json::to_writer(&mut lines, &event).expect("JSON");
                lines.push(b'\n');
            }
        }
    }
    lines
}

/// The action the first role never performed, the day after its history.
const NOVEL: &str = "dynamodb:Scan";
const NOVEL_AT: &str = "2026-03-06T10:30:00Z";
const NOVEL_TABLE: &str = "arn:aws:dynamodb:us-east-1:111122223333:table/customers";

/// `nhiwatch serve` keeping evidence in `data`, with `extra` arguments.
fn serve(data: &Path, extra: &[&str]) -> Server {
    let mut command = common::serve_command(data, None);
    command.args(extra);
    Server::start(command)
}

/// Posts the history and waits until the engine has judged all of it.
fn post_history(addr: SocketAddr) {
    let (status, answer) = http(addr, "POST", "/v1/events", &history());
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    eventually("the engine judges the history", || {
        let identities = get(addr, "/v1/identities");
        identities["identities"]
            .as_array()
            .is_some_and(|all| all.len() == ROLES && all.iter().all(|i| i["events"] == 48))
    });
}

/// The reasons `/v1/decide` gives for the first role's `action`.
fn reasons(addr: SocketAddr, action: &str, resource: &str, time: &str) -> String {
    let request =
        json!({"identity": role(0), "action": action, "resource": resource, "time": time});
    let (status, answer) = http(addr, "POST", "/v1/decide", request.to_string().as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: Value = serde_json::from_slice(&answer).expect("JSON");
    answer["reasons"].to_string()
}

/// Whether the first role's novel action is judged `novel_action` by this server.
fn knows_the_role(addr: SocketAddr) -> bool {
    reasons(addr, NOVEL, NOVEL_TABLE, NOVEL_AT).contains("novel_action")
}

/// Whether the snapshot in `data` holds every role's whole history (and maybe more).
fn snapshot_is_complete(data: &Path) -> bool {
    let path = data.join("baseline.bin");
    let Ok(baseline) = Baseline::load(&path) else {
        return false;
    };
    (0..ROLES).all(|i| {
        baseline
            .get(&role(i))
            .is_some_and(|p| p.events >= EVENTS_PER_ROLE)
    })
}

#[test]
fn serve_keeps_learned_profiles_across_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let addr = server.addr();
    post_history(addr);
    // Usual behaviour is usual.
    let usual = reasons(
        addr,
        "s3:GetObject",
        "arn:aws:s3:::reports-0/daily.csv",
        "2026-03-06T10:15:00Z",
    );
    assert!(!usual.contains("novel"), "{usual}");
    let log = server.stop();
    assert!(
        log.contains("wrote the learned profiles of 3 identities"),
        "{log}"
    );
    assert!(snapshot_is_complete(&data), "the snapshot at shutdown");

    let server = serve(&data, &[]);
    assert!(
        server
            .log()
            .contains("the usual lens starts from the learned profiles of 3 identities"),
        "{}",
        server.log()
    );
    assert!(
        knows_the_role(server.addr()),
        "the restarted server knows the role"
    );
    server.stop();

    // A fresh data folder, given nothing to start from, does not know it.
    let server = serve(&dir.path().join("fresh"), &[]);
    assert!(!knows_the_role(server.addr()));
    server.stop();
}

#[test]
fn serve_comes_back_with_the_last_periodic_snapshot_after_sigkill() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    let server = serve(&data, &["--snapshot-every", "200ms"]);
    let addr = server.addr();
    post_history(addr);
    eventually("a periodic snapshot of the whole history", || {
        snapshot_is_complete(&data)
    });
    let metrics = String::from_utf8(http(addr, "GET", "/metrics", b"").1).expect("text");
    assert!(
        metrics.contains("nhiwatch_baseline_snapshot_identities 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nhiwatch_baseline_snapshots_total{result=\"failed\"} 0\n"),
        "{metrics}"
    );
    server.kill();

    let server = serve(&data, &[]);
    assert!(knows_the_role(server.addr()), "{}", server.log());
    server.stop();
}

#[test]
fn an_unreadable_snapshot_is_set_aside_and_the_server_starts() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("a folder");
    std::fs::write(data.join("baseline.bin"), b"NHIWBASE and then nonsense").expect("written");
    let server = serve(&data, &[]);
    let log = server.log();
    assert!(log.contains("WARNING: the learned baseline"), "{log}");
    let aside: Vec<_> = std::fs::read_dir(&data)
        .expect("the folder")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("baseline.bin.unreadable-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{log}");
    let metrics = String::from_utf8(http(server.addr(), "GET", "/metrics", b"").1).expect("text");
    assert!(
        metrics.contains("nhiwatch_baseline_snapshot_set_aside 1\n"),
        "{metrics}"
    );
    server.stop();
}

/// Runs `nhiwatch` with `args`; its output, which must be a success.
fn nhiwatch(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(args)
        .output()
        .expect("nhiwatch runs");
    assert!(
        output.status.success(),
        "nhiwatch {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Whether `detect` over the novel action, judged against `baseline` (if any), finds it novel.
fn detect_finds_it_novel(novel: &Path, baseline: Option<&Path>) -> bool {
    let mut args = vec!["detect", novel.to_str().expect("UTF-8")];
    if let Some(baseline) = baseline {
        args.extend(["--baseline", baseline.to_str().expect("UTF-8")]);
    }
    let output = nhiwatch(&args);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a finding"))
        .any(|f| f["kind"] == "novel_action" && f["identity"] == role(0))
}

#[test]
fn detect_saves_what_it_learned_for_detect_and_serve_to_start_from() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = |name: &str| dir.path().join(name);
    let text = |name: &str| path(name).to_str().expect("UTF-8").to_owned();
    std::fs::write(path("history.jsonl"), history()).expect("written");
    let novel = json!({
        "id": "n-1", "time": NOVEL_AT, "source": "cloudtrail",
        "identity": {"id": role(0), "kind": "role"},
        "action": NOVEL, "action_class": "read", "resource": NOVEL_TABLE,
        "outcome": "success", "raw": {}
    });
    std::fs::write(path("novel.jsonl"), format!("{novel}\n")).expect("written");

    // Learned while detecting, saved, and read back.
    let output = nhiwatch(&[
        "detect",
        &text("history.jsonl"),
        "--save-baseline",
        &text("learned.bin"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("wrote the baseline of 3 identities"),
        "{stderr}"
    );
    let learned = Baseline::load(&path("learned.bin")).expect("a baseline");
    for i in 0..ROLES {
        let profile = learned.get(&role(i)).expect("every role");
        assert_eq!(profile.events, EVENTS_PER_ROLE);
        assert!(profile.is_mature());
    }
    assert!(!detect_finds_it_novel(&path("novel.jsonl"), None));
    assert!(detect_finds_it_novel(
        &path("novel.jsonl"),
        Some(&path("learned.bin"))
    ));

    // Learned from the first days with --learn-days, kept as learned (--frozen), saved.
    nhiwatch(&[
        "detect",
        &text("history.jsonl"),
        "--learn-days",
        "4",
        "--frozen",
        "--save-baseline",
        &text("learned-days.bin"),
    ]);
    let learned_days = Baseline::load(&path("learned-days.bin")).expect("a baseline");
    for i in 0..ROLES {
        let profile = learned_days.get(&role(i)).expect("every role");
        assert_eq!(profile.events, EVENTS_PER_ROLE);
    }
    assert!(detect_finds_it_novel(
        &path("novel.jsonl"),
        Some(&path("learned-days.bin"))
    ));
    // --frozen with nothing loaded or learned first: nothing is learned, nothing to judge by.
    nhiwatch(&[
        "detect",
        &text("history.jsonl"),
        "--frozen",
        "--save-baseline",
        &text("frozen.bin"),
    ]);
    let frozen = Baseline::load(&path("frozen.bin")).expect("a baseline");
    assert!(frozen.iter().all(|(_, profile)| profile.events == 0));
    assert!(!detect_finds_it_novel(
        &path("novel.jsonl"),
        Some(&path("frozen.bin"))
    ));

    // serve --baseline starts a fresh server from the saved file.
    let server = serve(&path("data"), &["--baseline", &text("learned.bin")]);
    assert!(
        server
            .log()
            .contains(&format!("3 from {}", text("learned.bin"))),
        "{}",
        server.log()
    );
    assert!(knows_the_role(server.addr()));
    server.stop();
}
