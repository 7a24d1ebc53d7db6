//! Ingest throughput: a simulated fleet's telemetry (every format the simulator writes), held in
//! memory, through the reader and the detection engine — in memory only, then with every event,
//! finding and risk point stored (8,192-event batches, each an fsync'd commit into a fresh
//! store) — and the store alone on already decoded events. Criterion reports events/s.
//!
//! Run with `cargo bench -p nhiwatch-store --bench ingest`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Event, Finding};
use nhiwatch_store::{Batch, Content, Options, RiskPoint, Store};

const BATCH_EVENTS: usize = 8192;

/// The simulated fleet's telemetry files, in memory.
fn fleet() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = nhiwatch_sim::SimConfig {
        identities: 40,
        days: 5,
        attack_after_days: 3,
        ..nhiwatch_sim::SimConfig::default()
    };
    nhiwatch_sim::simulate(&config, dir.path()).expect("the simulator runs");
    let mut files = Vec::new();
    let mut stack = vec![dir.path().join("telemetry")];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("a telemetry folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("a telemetry file");
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    files.sort();
    files
}

/// Reads every file through the reader, handing each event to `on_event`.
fn read(files: &[(String, Vec<u8>)], on_event: &mut dyn FnMut(Event<'_>)) -> u64 {
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut sinks = Sinks {
        event: on_event,
        reject: &mut |reject| panic!("bench input rejected: {reject}"),
    };
    for (name, bytes) in files {
        reader.read_bytes(name, bytes, &mut sinks);
    }
    reader.finish(&mut sinks);
    reader.stats().events
}

/// Decode, detect and (with a store) store, as `nhiwatch ingest` does; events processed.
fn ingest(files: &[(String, Vec<u8>)], store: Option<&Store>) -> u64 {
    let mut engine = Engine::new(None, EngineConfig::default());
    let mut batch = Batch::new();
    let mut findings: Vec<Finding> = Vec::new();
    let flush = |batch: &mut Batch, findings: &mut Vec<Finding>, store: &Store| {
        for finding in findings.drain(..) {
            batch.add_risk(&RiskPoint {
                identity: finding.identity.clone(),
                time: finding.time,
                risk: finding.risk,
                decision: finding.decision,
                cause: finding.id.clone(),
            });
            batch.add_finding(&finding).expect("a finding serialises");
        }
        store.append(batch).expect("append");
    };
    let events = read(files, &mut |event| {
        engine.process(&event, &mut |finding| findings.push(finding));
        if let Some(store) = store {
            batch.add_event(&event);
            if batch.len_of(Content::Events) >= BATCH_EVENTS {
                flush(&mut batch, &mut findings, store);
            }
        } else {
            black_box(findings.drain(..).count());
        }
    });
    engine.finish(&mut |finding| findings.push(finding));
    if let Some(store) = store {
        flush(&mut batch, &mut findings, store);
    }
    events
}

fn bench_ingest(c: &mut Criterion) {
    let files = fleet();
    let events = read(&files, &mut |_| {});
    let mut owned: Vec<Event<'static>> = Vec::with_capacity(events as usize);
    read(&files, &mut |event| owned.push(event.into_owned()));
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    eprintln!(
        "ingest input: {events} events in {} files, {:.1} MiB",
        files.len(),
        bytes as f64 / (1 << 20) as f64
    );
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("decode_detect_in_memory", |b| {
        b.iter(|| black_box(ingest(&files, None)))
    });
    group.bench_function("decode_detect_store", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let store = Store::open(dir.path(), Options::default()).expect("open");
                let started = Instant::now();
                black_box(ingest(&files, Some(&store)));
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("store_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let store = Store::open(dir.path(), Options::default()).expect("open");
                let started = Instant::now();
                let mut batch = Batch::new();
                for chunk in owned.chunks(BATCH_EVENTS) {
                    for event in chunk {
                        batch.add_event(event);
                    }
                    store.append(&mut batch).expect("append");
                }
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);
