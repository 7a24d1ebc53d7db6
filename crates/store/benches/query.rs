//! Query latency: one identity's day (10,000 events) out of a large store — owned events
//! without raw records, borrowed (visited), and with raw records inflated. The store is built
//! once into `target/nhiwatch-store-bench/` and reused by later runs: up to
//! `NHIWATCH_BENCH_EVENTS` events (default 10,000,000), stopping early when building takes
//! longer than `NHIWATCH_BENCH_BUILD_SECS` (default 120). The size reached is printed.
//!
//! Run with `cargo bench -p nhiwatch-store --bench query`.

use std::borrow::Cow;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhiwatch_model::{ActionClass, Event, Identity, IdentityKind, Outcome, Source, Timestamp};
use nhiwatch_store::{Batch, Options, Store};
use serde_json::value::RawValue;

const DAY: i64 = 86_400 * 1_000_000_000;
/// 2026-03-02T00:00:00Z.
const T0: i64 = 1_772_409_600_000_000_000;
const BATCH_EVENTS: usize = 8192;

/// The identity whose day is queried: 1 event in 100, 10,000 a day.
const TARGET: &str = "arn:aws:iam::123456789012:role/query-target";
const PER_DAY: u64 = 1_000_000;
const OTHERS: u64 = 999;

/// Event `n` of the large store: a million a day, one in a hundred the target's.
fn big_event(n: u64) -> Event<'static> {
    let day = (n / PER_DAY) as i64;
    let within = (n % PER_DAY) as i64;
    let time = T0 + day * DAY + within * (DAY / PER_DAY as i64);
    let identity = if n.is_multiple_of(100) {
        TARGET.to_owned()
    } else {
        format!(
            "arn:aws:iam::123456789012:role/workload-{:03}",
            n.wrapping_mul(7919) % OTHERS
        )
    };
    let id = format!(
        "{:08x}-4c1d-4e2a-9b7f-{n:012x}",
        n.wrapping_mul(2_654_435_761) as u32
    );
    let key = format!("data/{}/part-{:05}.parquet", day, n % 4096);
    let raw = format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","arn":"{identity}","accountId":"123456789012"}},"eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"10.0.{}.{}","userAgent":"aws-sdk-java/2.25.26","requestParameters":{{"bucketName":"lake","key":"{key}"}},"requestID":"{:016X}","eventID":"{id}","readOnly":true,"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"123456789012","eventCategory":"Data"}}"#,
        n % 7,
        n % 251,
        n.wrapping_mul(104_729),
        time = Timestamp(time),
    );
    Event {
        id: id.into(),
        time: Timestamp(time),
        time_inferred: false,
        source: Source::Cloudtrail,
        identity: Identity {
            id: identity.into(),
            kind: IdentityKind::Role,
            session: Some(format!("session-{}", n / 3_600_000).into()),
            credential: None,
        },
        action: "s3:GetObject".into(),
        action_class: ActionClass::Read,
        resource: Some(format!("arn:aws:s3:::lake/{key}").into()),
        outcome: Outcome::Success,
        error: None,
        src_ip: Some(format!("10.0.{}.{}", n % 7, n % 251).into()),
        user_agent: Some("aws-sdk-java/2.25.26".into()),
        bytes_out: Some(4096),
        records: None,
        raw: Cow::Owned(RawValue::from_string(raw).expect("valid JSON")),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The large store, built if no complete one of this target size is kept; its event count.
fn big_store() -> (PathBuf, u64) {
    let wanted = env_number("NHIWATCH_BENCH_EVENTS", 10_000_000);
    let budget = Duration::from_secs(env_number("NHIWATCH_BENCH_BUILD_SECS", 120));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/nhiwatch-store-bench");
    let dir = root.join(format!("store-{wanted}"));
    let done = dir.join("built");
    if let Some(count) = std::fs::read_to_string(&done)
        .ok()
        .and_then(|t| t.trim().parse().ok())
    {
        return (dir, count);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, Options::default()).expect("open the bench store");
    let started = Instant::now();
    let mut batch = Batch::new();
    let mut n = 0;
    while n < wanted && started.elapsed() < budget {
        for i in n..(n + BATCH_EVENTS as u64).min(wanted) {
            batch.add_event(&big_event(i));
        }
        n = (n + BATCH_EVENTS as u64).min(wanted);
        store.append(&mut batch).expect("append");
    }
    let seconds = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(dir.join(nhiwatch_store::FILE_NAME)).map_or(0, |m| m.len());
    eprintln!(
        "built the query store: {n} events in {seconds:.1} s ({:.0} events/s, generation included), {:.2} GiB on disk{}",
        n as f64 / seconds,
        size as f64 / (1u64 << 30) as f64,
        if n < wanted { " (stopped at the time budget)" } else { "" }
    );
    std::fs::write(&done, n.to_string()).expect("mark the bench store built");
    (dir, n)
}

fn bench_query(c: &mut Criterion) {
    let (dir, stored) = big_store();
    let store = Store::open_read_only(&dir).expect("open the bench store");
    let (from, to) = (Timestamp(T0), Timestamp(T0 + DAY));
    let day = store.events(TARGET, from, to, false).expect("query");
    eprintln!(
        "query store: {stored} events; one identity's day holds {} of them",
        day.len()
    );
    let mut group = c.benchmark_group("query");
    group.throughput(Throughput::Elements(day.len() as u64));
    group.bench_function("identity_day_owned", |b| {
        b.iter(|| black_box(store.events(TARGET, from, to, false).expect("query").len()))
    });
    group.bench_function("identity_day_visited", |b| {
        b.iter(|| {
            let mut count = 0u64;
            store
                .visit_events(TARGET, from, to, false, &mut |event| {
                    black_box(event);
                    count += 1;
                    ControlFlow::Continue(())
                })
                .expect("query");
            count
        })
    });
    group.bench_function("identity_day_with_raw", |b| {
        b.iter(|| black_box(store.events(TARGET, from, to, true).expect("query").len()))
    });
    group.finish();
}

criterion_group!(benches, bench_query);
criterion_main!(benches);
