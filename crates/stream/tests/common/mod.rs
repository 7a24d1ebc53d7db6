//! Shared by the scale-out tests and the throughput benchmark: a simulated fleet, the single
//! `detect`-style run to compare with, publishing, and reading back what the workers did.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, Context};
use futures_util::StreamExt;
use nhiwatch_baseline::Baseline;
use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Event, Finding, FindingKind, Source};
use nhiwatch_policy::Policy;
use nhiwatch_sim::{SimConfig, TELEMETRY_DIR};
use nhiwatch_store::Store;
use nhiwatch_stream::layout::{self, FINDINGS_STREAM};
use nhiwatch_stream::partition::subject;
use nhiwatch_stream::worker::partition_dir;
use nhiwatch_stream::{Layout, NatsOptions, Outgoing, PublishStats, Publisher};

/// A simulated fleet, read back as normalised events in input order.
pub struct Sim {
    pub dir: tempfile::TempDir,
    pub events: Vec<Event<'static>>,
    pub policy: Option<Arc<Policy>>,
}

/// The fleet every test shares (30 identities, 3 days, every attack scenario from day 2) and
/// the findings of one detect run over it, made once per test binary.
pub fn fleet() -> &'static (Sim, Vec<Key>) {
    static FLEET: OnceLock<(Sim, Vec<Key>)> = OnceLock::new();
    FLEET.get_or_init(|| {
        let sim = simulate(30, 3);
        let expected = detect(&sim);
        (sim, expected)
    })
}

pub fn simulate(identities: usize, days: u32) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        identities,
        days,
        attack_after_days: 1,
        ..SimConfig::default()
    };
    nhiwatch_sim::simulate(&config, dir.path()).unwrap();
    let mut events = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut rejects = 0u64;
    {
        let mut on_event = |event: Event<'_>| events.push(event.into_owned());
        let mut on_reject = |_| rejects += 1;
        let mut sinks = Sinks {
            event: &mut on_event,
            reject: &mut on_reject,
        };
        reader.read_path(&dir.path().join(TELEMETRY_DIR), &mut sinks);
        reader.finish(&mut sinks);
    }
    let policy = Policy::load(&dir.path().join("policy.yaml"))
        .ok()
        .map(Arc::new);
    Sim {
        dir,
        events,
        policy,
    }
}

/// What makes a finding the same finding: identity, kind, evidence ids (and the id derived
/// from them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub identity: String,
    pub kind: FindingKind,
    pub events: Vec<String>,
    pub id: String,
}

pub fn key(finding: &Finding) -> Key {
    Key {
        identity: finding.identity.clone(),
        kind: finding.kind,
        events: finding.evidence.event_ids.clone(),
        id: finding.id.clone(),
    }
}

/// The findings of one `nhiwatch detect` run over the same events.
pub fn detect(sim: &Sim) -> Vec<Key> {
    let mut engine = Engine::with_baseline(
        sim.policy.clone(),
        EngineConfig::default(),
        Baseline::new(),
        UsualConfig::default(),
    );
    let mut found = Vec::new();
    for event in &sim.events {
        engine.process(event, &mut |f| found.push(key(&f)));
    }
    engine.finish(&mut |f| found.push(key(&f)));
    found.sort();
    found
}

pub async fn jetstream(url: &str) -> Context {
    jetstream::new(NatsOptions::new(url).connect().await.unwrap())
}

/// Publishes every event, then the end-of-input marks.
pub async fn publish(url: &str, events: &[Event<'static>], partitions: u32) -> PublishStats {
    publish_part(url, events, partitions, true).await
}

/// Publishes events, and the end-of-input marks when `finish`.
pub async fn publish_part(
    url: &str,
    events: &[Event<'static>],
    partitions: u32,
    finish: bool,
) -> PublishStats {
    let client = NatsOptions::new(url).connect().await.unwrap();
    let mut publisher = Publisher::new(client, &Layout::new(partitions).unwrap())
        .await
        .unwrap();
    for event in events {
        publisher
            .send(Outgoing::event(event, partitions).unwrap())
            .await
            .unwrap();
    }
    if finish {
        publisher.finish_partitions("test").await.unwrap();
    }
    publisher.flush().await.unwrap()
}

/// Waits until every partition's consumer has acknowledged the last message of its subject.
pub async fn wait_drained(js: &Context, partitions: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let stream = js.get_stream(layout::EVENTS_STREAM).await.unwrap();
    loop {
        let mut drained = true;
        for p in 0..partitions {
            let last = match stream.get_last_raw_message_by_subject(&subject(p)).await {
                Ok(message) => message.sequence,
                Err(_) => continue,
            };
            let floor = stream
                .consumer_info(layout::consumer_name(p))
                .await
                .map(|info| info.ack_floor.stream_sequence)
                .unwrap_or(0);
            if floor < last {
                drained = false;
                break;
            }
        }
        if drained {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partitions not drained within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every finding published to `nhiwatch.findings` (each id once), sorted.
pub async fn published_findings(js: &Context) -> Vec<Key> {
    let stream = js.get_stream(FINDINGS_STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut pending = consumer.cached_info().num_pending;
    let mut by_id = BTreeMap::new();
    if pending > 0 {
        let mut messages = consumer.messages().await.unwrap();
        while pending > 0 {
            let message = messages.next().await.unwrap().unwrap();
            pending = message.info().unwrap().pending;
            let finding: Finding = serde_json::from_slice(&message.payload).unwrap();
            by_id.insert(finding.id.clone(), key(&finding));
        }
    }
    let mut keys: Vec<Key> = by_id.into_values().collect();
    keys.sort();
    keys
}

/// Every event stored in the partition stores, as (source, id), with how often each is stored.
pub fn stored_events(data: &Path, partitions: u32) -> BTreeMap<(Source, String), u32> {
    let mut stored = BTreeMap::new();
    for p in 0..partitions {
        let dir = partition_dir(data, p);
        if !dir.exists() {
            continue;
        }
        let store = Store::open_read_only(&dir).unwrap();
        store
            .export_events(false, &mut |event| {
                *stored
                    .entry((event.source, event.id.to_string()))
                    .or_insert(0) += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
    }
    stored
}

/// The (source, id) of each event, with how often it occurs in the input.
pub fn event_keys(events: &[Event<'static>]) -> BTreeMap<(Source, String), u32> {
    let mut keys = BTreeMap::new();
    for event in events {
        *keys
            .entry((event.source, event.id.to_string()))
            .or_insert(0) += 1;
    }
    keys
}
