//! End-to-end: `nhiwatch publish` and two `nhiwatch worker` processes over a real
//! `nats-server -js` on loopback (see `nhiwatch_stream::testing`) find what `nhiwatch detect`
//! finds; an unreachable server is reported with its URL.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use nhiwatch_stream::testing::NatsServer;

fn nhiwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(args)
        .output()
        .expect("the nhiwatch binary runs")
}

fn worker(url: &str, data: &Path, policy: &Path, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args([
            "worker",
            "--nats",
            url,
            "--partition-count",
            "6",
            "--lease",
            "2s",
        ])
        .args(["--name", name, "--data"])
        .arg(data)
        .arg("--policy")
        .arg(policy)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts")
}

/// Stops a worker with SIGTERM and returns what it printed.
fn stop(mut child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("the worker stops");
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    assert!(status.success(), "{status}\n{text}");
    text
}

/// The number after `label` in a summary line.
fn count_before(text: &str, label: &str) -> u64 {
    text.split(label)
        .next()
        .and_then(|head| head.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{label}` in:\n{text}"))
}

#[test]
fn publish_and_two_workers_find_what_detect_finds() {
    let Some(nats) = NatsServer::start().unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let url = nats.url();
    let sim = tempfile::tempdir().unwrap();
    let out = nhiwatch(&[
        "simulate",
        "--out",
        &sim.path().display().to_string(),
        "--identities",
        "12",
        "--days",
        "2",
        "--attack-after-days",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let telemetry = sim.path().join("telemetry").display().to_string();
    let policy = sim.path().join("policy.yaml");
    let detect = nhiwatch(&[
        "detect",
        &telemetry,
        "--policy",
        &policy.display().to_string(),
        "-q",
    ]);
    let expected = String::from_utf8_lossy(&detect.stdout).lines().count() as u64;
    assert!(expected > 0, "{}", String::from_utf8_lossy(&detect.stderr));

    let data = tempfile::tempdir().unwrap();
    let workers = [
        worker(&url, data.path(), &policy, "w1"),
        worker(&url, data.path(), &policy, "w2"),
    ];
    let published = nhiwatch(&[
        "publish",
        &telemetry,
        "--nats",
        &url,
        "--partitions",
        "6",
        "--finish",
        "--wait",
        "-q",
    ]);
    let said = String::from_utf8_lossy(&published.stderr);
    assert!(published.status.success(), "{said}");
    assert!(
        said.contains("events/s") && said.contains("processed everything"),
        "{said}"
    );
    let events = count_before(&said, "events (");

    let mut findings = 0;
    let mut processed = 0;
    for child in workers {
        let text = stop(child);
        let summary = text
            .lines()
            .find(|l| l.contains("stopped after"))
            .unwrap_or_else(|| panic!("no summary in:\n{text}"));
        findings += count_before(summary, "findings");
        processed += count_before(summary, "events (");
    }
    assert_eq!(processed, events);
    assert_eq!(findings, expected);
}

#[test]
fn an_unreachable_server_is_named() {
    let out = nhiwatch(&[
        "worker",
        "--nats",
        "nats://127.0.0.1:1",
        "--data",
        "/nonexistent",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{said}"
    );
    assert!(said.contains("is nats-server running there"), "{said}");
}
