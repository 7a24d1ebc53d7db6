//! End-to-end cost of nhiwatch on simulated CloudTrail: decode + normalise + all three lenses
//! (permitted and expected against the simulation's policy, usual against a baseline learned on
//! the first days) and the per-identity risk score, on one thread.
//!
//! Setup (not timed): `nhiwatch-sim` writes a fleet of 200 identities over 8 days with every
//! attack scenario from day 5; its CloudTrail records are laid out as JSON lines in memory
//! (decompression is not part of the measure, as the decode benchmark); a baseline is learned
//! from the first 5 days. Timed: the records of days 6-8 read through the public `Reader` into
//! a fresh `Engine::with_baseline` per iteration (the baseline clone is included).
//!
//! Printed besides criterion's events/s: events, identities, findings, and the memory figures
//! of the quality bar: bytes per learned profile and per identity of all detector state.
//!
//! `cargo bench -p nhiwatch-detect --bench all_lenses`

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhiwatch_baseline::{Baseline, Learner};
use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::Event;
use nhiwatch_policy::Policy;
use nhiwatch_sim::{simulate, SimConfig, TELEMETRY_DIR};

const LEARN_DAYS: i64 = 5;
const DAY: i64 = 86_400 * 1_000_000_000;

/// Reads every record of `path` and hands it to `each`.
fn read(path: &Path, each: &mut dyn FnMut(Event<'_>)) {
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut on_reject = |_| {};
    let mut sinks = Sinks {
        event: each,
        reject: &mut on_reject,
    };
    reader.read_path(path, &mut sinks);
    reader.finish(&mut sinks);
}

/// The simulation's CloudTrail, split: a baseline learned before the cutoff, and the records
/// after it as JSON lines.
fn setup(dir: &Path) -> (Baseline, Vec<u8>, usize, Policy) {
    let config = SimConfig {
        identities: 200,
        days: 8,
        attack_after_days: LEARN_DAYS as u32,
        ..SimConfig::default()
    };
    simulate(&config, dir).expect("the simulation runs");
    let cloudtrail = dir.join(TELEMETRY_DIR).join("cloudtrail");
    assert!(cloudtrail.is_dir(), "the simulation wrote CloudTrail");
    let cutoff = (config.start_day + LEARN_DAYS) * DAY;
    let mut learner = Learner::new();
    let mut lines = Vec::new();
    let mut detected = 0usize;
    read(&cloudtrail, &mut |event| {
        if event.time.unix_nanos() < cutoff {
            learner.observe(&event);
        } else {
            lines.extend_from_slice(event.raw.get().as_bytes());
            lines.push(b'\n');
            detected += 1;
        }
    });
    assert!(detected > 0, "records after the learning days");
    let policy = Policy::load(&dir.join("policy.yaml")).expect("the simulated policy loads");
    (learner.finish(), lines, detected, policy)
}

fn run(baseline: &Baseline, policy: Option<&Arc<Policy>>, lines: &[u8]) -> (Engine, usize) {
    let mut engine = Engine::with_baseline(
        policy.cloned(),
        EngineConfig::default(),
        baseline.clone(),
        UsualConfig::default(),
    );
    let mut findings = 0usize;
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut on_event = |event: Event<'_>| engine.process(&event, &mut |_| findings += 1);
    let mut on_reject = |_| {};
    let mut sinks = Sinks {
        event: &mut on_event,
        reject: &mut on_reject,
    };
    reader.read_bytes("bench", lines, &mut sinks);
    reader.finish(&mut sinks);
    engine.finish(&mut |_| findings += 1);
    (engine, findings)
}

fn bench(c: &mut Criterion) {
    // Not a dot-folder (the default name): readers skip hidden folders.
    let dir = tempfile::Builder::new()
        .prefix("nhiwatch-all-lenses-")
        .tempdir()
        .expect("a temporary folder");
    let (baseline, lines, events, policy) = setup(dir.path());
    let policy = Arc::new(policy);
    let (engine, findings) = run(&baseline, Some(&policy), &lines);
    let stats = engine.stats();
    eprintln!(
        "all_lenses: learned {} identities ({} bytes per profile on average, {} bytes as a file); detecting on {events} CloudTrail events ({} bytes of JSON lines): {} identities, {findings} findings, {} bytes of detector state per identity",
        baseline.len(),
        baseline.profile_bytes() / baseline.len().max(1),
        baseline.to_bytes().map_or(0, |b| b.len()),
        lines.len(),
        stats.identities,
        engine.state_bytes() / stats.identities.max(1),
    );
    let mut group = c.benchmark_group("all_lenses");
    group.throughput(Throughput::Elements(events as u64));
    group.sample_size(10);
    group.bench_function("simulated_cloudtrail_decode_and_detect", |b| {
        b.iter(|| run(&baseline, Some(&policy), &lines).1)
    });
    // Without a policy: the usual lens (and provider denials) alone.
    group.bench_function("simulated_cloudtrail_decode_and_usual_lens", |b| {
        b.iter(|| run(&baseline, None, &lines).1)
    });
    // The same records decoded only: the difference is what the lenses cost.
    group.bench_function("simulated_cloudtrail_decode_only", |b| {
        b.iter(|| {
            let mut count = 0usize;
            let mut reader = Reader::new(ReadOptions::default(), None);
            let mut on_event = |event: Event<'_>| count += usize::from(!event.id.is_empty());
            let mut on_reject = |_| {};
            let mut sinks = Sinks {
                event: &mut on_event,
                reject: &mut on_reject,
            };
            reader.read_bytes("bench", &lines, &mut sinks);
            reader.finish(&mut sinks);
            count
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
