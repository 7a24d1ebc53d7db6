//! Scale-out throughput on this machine, against a real `nats-server -js` on loopback:
//! one-process detection (the reference), publishing, and 1, 2 and 3 workers over 12
//! partitions (each worker its own NATS connection, all in this process, so they share its
//! cores). Run with `cargo bench -p nhiwatch-stream --bench throughput`; set
//! `NHIWATCH_BENCH_IDENTITIES` / `NHIWATCH_BENCH_DAYS` to change the simulated fleet
//! (default 100 identities, 7 days).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nhiwatch_baseline::Baseline;
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_stream::testing::NatsServer;
use nhiwatch_stream::{NatsOptions, Worker, WorkerConfig};

const PARTITIONS: u32 = 12;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user and system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes of the files under a folder.
fn folder_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let identities = env("NHIWATCH_BENCH_IDENTITIES", 100);
    let days = env("NHIWATCH_BENCH_DAYS", 7) as u32;
    let started = Instant::now();
    let sim = simulate(identities, days);
    let n = sim.events.len() as f64;
    println!(
        "fleet: {identities} identities, {days} days, {} events (simulated in {:.1} s)",
        sim.events.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut engine = Engine::with_baseline(
        sim.policy.clone(),
        EngineConfig::default(),
        Baseline::new(),
        UsualConfig::default(),
    );
    let mut expected = 0u64;
    for event in &sim.events {
        engine.process(event, &mut |_| expected += 1);
    }
    engine.finish(&mut |_| expected += 1);
    let seconds = started.elapsed().as_secs_f64();
    let identities = engine.stats().identities.max(1);
    println!(
        "one process, engine only (events in memory): {:.0} events/s, {expected} findings; {} identities, {} bytes of detector state per identity (every lens, profiles included)",
        n / seconds,
        identities,
        engine.state_bytes() / identities
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for workers in 1..=3 {
        let nats = NatsServer::start()
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("the benchmark needs nats-server");
        let url = nats.url();
        runtime.block_on(async {
            let started = Instant::now();
            let (ours, theirs) = (cpu_seconds("self"), cpu_seconds(&nats.pid().to_string()));
            let published = publish(&url, &sim.events, PARTITIONS).await;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "publish (1 connection, pipelined): {:.0} events/s, {:.1} MB/s; CPU per event: publisher {:.1} µs, nats-server {:.1} µs",
                n / seconds,
                published.bytes as f64 / seconds / 1e6,
                (cpu_seconds("self") - ours) * 1e6 / n,
                (cpu_seconds(&nats.pid().to_string()) - theirs) * 1e6 / n
            );
            let data = tempfile::tempdir().unwrap();
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let mut runs = Vec::new();
            let mut stats = Vec::new();
            for w in 0..workers {
                let client = NatsOptions::new(&url).connect().await.unwrap();
                let mut config = WorkerConfig::new(format!("w{w}"), data.path());
                config.policy = sim.policy.clone();
                config.lease = Duration::from_secs(3);
                let worker = Worker::start(client, config).await.unwrap();
                stats.push(worker.stats());
                let mut stopped = stopped.clone();
                runs.push(tokio::spawn(worker.run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })));
            }
            let total = |stats: &[Arc<nhiwatch_stream::Stats>]| {
                stats.iter().map(|s| s.snapshot().events).sum::<u64>()
            };
            while total(&stats) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let first = Instant::now();
            let (ours, theirs) = (cpu_seconds("self"), cpu_seconds(&nats.pid().to_string()));
            let js = jetstream(&url).await;
            wait_drained(&js, PARTITIONS, Duration::from_secs(3600)).await;
            let seconds = first.elapsed().as_secs_f64();
            let (ours, theirs) = (
                cpu_seconds("self") - ours,
                cpu_seconds(&nats.pid().to_string()) - theirs,
            );
            let processed = total(&stats);
            stop.send(true).unwrap();
            for run in runs {
                run.await.unwrap().unwrap();
            }
            let found = published_findings(&js).await;
            let stream = js.get_stream(nhiwatch_stream::layout::EVENTS_STREAM).await.unwrap();
            let state = &stream.cached_info().state;
            println!(
                "  bytes per event: {:.0} published (JSON), {:.0} counted by the stream, {:.0} on the server's disk (S2, findings and buckets included), {:.0} in the partition stores",
                published.bytes as f64 / n,
                state.bytes as f64 / state.messages.max(1) as f64,
                folder_bytes(nats.store()) as f64 / n,
                folder_bytes(data.path()) as f64 / n
            );
            println!(
                "{workers} worker(s), {PARTITIONS} partitions: {:.0} events/s ({processed} events, {:.1} s from the first commit); CPU per event: workers {:.1} µs, nats-server {:.1} µs; findings {} (one process: {})",
                processed as f64 / seconds,
                seconds,
                ours * 1e6 / processed as f64,
                theirs * 1e6 / processed as f64,
                found.len(),
                expected
            );
        });
    }
}
