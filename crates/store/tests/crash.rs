//! Kill -9 the writer at random points, many times, and check what was acknowledged.
//!
//! The test binary re-runs itself as the writer: `crash_writer_child`, started with
//! `NHIWATCH_STORE_CRASH_CHILD=DIR START`, appends batches of events `START..` forever and prints
//! `ACK FROM TO` after each commit returns. The parent kills it with SIGKILL after a random
//! delay (during open and recovery, during a commit, between commits), then starts the next
//! writer a little *before* the last acknowledged event, so every run also re-appends events
//! that are already stored. At the end every acknowledged event must be stored exactly once and
//! the chain must verify.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nhiwatch_store::{Batch, Options, Store};

const CHILD_ENV: &str = "NHIWATCH_STORE_CRASH_CHILD";

/// How long the whole test may run (the brief allows 60 s; leave room for a slow machine).
const BUDGET: Duration = Duration::from_secs(35);
const MAX_ITERATIONS: u32 = 60;

#[test]
fn crash_writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Not started as the writer: nothing to do.
    };
    let (dir, start) = spec.rsplit_once(' ').expect("DIR START");
    let mut n: u64 = start.parse().expect("START is a number");
    let mut out = std::io::stdout().lock();
    let store = match Store::open(Path::new(dir), Options::default()) {
        Ok(store) => store,
        Err(err) => {
            // The parent fails the test on this line: recovery must always succeed.
            writeln!(out, "OPENFAIL {err}").expect("stdout");
            return;
        }
    };
    let mut batch = Batch::new();
    let started = Instant::now();
    // Stop on its own after a while, should the parent die without killing it.
    while started.elapsed() < Duration::from_secs(20) {
        let size = 1 + (n % 37) * 5;
        for i in n..n + size {
            batch.add_event(&common::event(i, "crash-test"));
        }
        store.append(&mut batch).expect("append");
        writeln!(out, "ACK {n} {}", n + size).expect("stdout");
        out.flush().expect("stdout");
        n += size;
    }
}

/// Kills the child when dropped, so a failing parent leaves no writer behind.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// xorshift64*: enough randomness for kill delays, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().expect("the test binary");
    let started = Instant::now();
    let mut acked_until = 0u64;
    let mut iterations = 0u32;
    let mut acks = 0u64;
    while iterations < MAX_ITERATIONS && started.elapsed() < BUDGET {
        iterations += 1;
        let start = acked_until.saturating_sub(rng.next() % 60);
        let child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{} {start}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the writer starts");
        let mut writer = Writer(child);
        std::thread::sleep(Duration::from_millis(2 + rng.next() % 300));
        writer.0.kill().expect("SIGKILL");
        writer.0.wait().expect("the writer is reaped");
        let stdout = writer.0.stdout.take().expect("piped stdout");
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("utf-8 output");
            assert!(
                !line.contains("OPENFAIL"),
                "a writer could not reopen: {line}"
            );
            // libtest may have started the line with `test crash_writer_child ... `.
            let Some((_, ack)) = line.split_once("ACK ") else {
                continue;
            };
            let (from, to) = ack.split_once(' ').expect("ACK FROM TO");
            let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
            assert!(from <= acked_until, "acks are contiguous");
            acked_until = acked_until.max(to);
            acks += 1;
        }
    }
    eprintln!(
        "{iterations} writers killed in {:.1} s; {acks} acknowledged batches, events 0..{acked_until}",
        started.elapsed().as_secs_f64()
    );
    assert!(acked_until > 0, "no writer got as far as one commit");

    let store = Store::open_read_only(dir.path()).expect("the store opens after the crashes");
    let mut seen: HashMap<String, u32> = HashMap::new();
    store
        .export_events(false, &mut |event| {
            *seen.entry(event.id.to_string()).or_default() += 1;
            ControlFlow::Continue(())
        })
        .expect("export");
    for n in 0..acked_until {
        assert_eq!(
            seen.get(&common::id(n)),
            Some(&1),
            "acknowledged event {n} is stored exactly once"
        );
    }
    assert!(
        seen.values().all(|&count| count == 1),
        "nothing is duplicated"
    );
    let summaries: u64 = store
        .identities()
        .expect("identities")
        .iter()
        .map(|s| s.events)
        .sum();
    assert_eq!(
        summaries,
        seen.len() as u64,
        "summaries count each event once"
    );
    let report = store.verify(None).expect("verify runs");
    assert!(report.ok(), "verify: {:?}", report.problem);
    assert_eq!(report.items.events, seen.len() as u64);
}
