//! Counters and the decision-latency histogram, written in the Prometheus text exposition
//! format (version 0.0.4) for `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nhiwatch_model::{Decision, FindingKind, Source};

use crate::durable::{SinkError, SinkFailure};

/// Upper bounds of the decision-latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 1.0,
];

/// The decisions, in contract order.
const DECISIONS: [Decision; 4] = [
    Decision::Allow,
    Decision::Review,
    Decision::StepUp,
    Decision::Block,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last slot is above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn write(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Why a request was refused, for `nhiwatch_requests_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or an unknown one (401).
    Unauthenticated,
    /// A token without the scope (403).
    Forbidden,
    /// Over the token's rate (429).
    RateLimited,
    /// Body over a size or count limit (413).
    TooLarge,
    /// Not a body the endpoint reads (400, 415).
    Malformed,
    /// The engine's queue is full, or the engine is gone (503).
    Overloaded,
    /// The evidence store is out of space or stopped after a failed write (503
    /// `storage_full`, `storage_failed`).
    Storage,
    /// The server failed (500).
    Internal,
}

impl Refusal {
    const ALL: [Refusal; 8] = [
        Refusal::Unauthenticated,
        Refusal::Forbidden,
        Refusal::RateLimited,
        Refusal::TooLarge,
        Refusal::Malformed,
        Refusal::Overloaded,
        Refusal::Storage,
        Refusal::Internal,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Forbidden => "forbidden",
            Refusal::RateLimited => "rate_limited",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::Overloaded => "overloaded",
            Refusal::Storage => "storage",
            Refusal::Internal => "internal",
        }
    }

    /// The refusal an error answer stands for, by its status and, for a 503, its error code
    /// (the server's error answers carry it).
    pub fn of_response(status: u16, code: Option<&str>) -> Option<Refusal> {
        if status == 503 && matches!(code, Some("storage_full" | "storage_failed")) {
            return Some(Refusal::Storage);
        }
        Refusal::of_status(status)
    }

    /// The refusal an error status stands for.
    pub fn of_status(status: u16) -> Option<Refusal> {
        Some(match status {
            401 => Refusal::Unauthenticated,
            403 => Refusal::Forbidden,
            429 => Refusal::RateLimited,
            413 => Refusal::TooLarge,
            400 | 404 | 405 | 415 | 422 => Refusal::Malformed,
            503 => Refusal::Overloaded,
            500..=599 => Refusal::Internal,
            _ => return None,
        })
    }
}

/// Every counter the server keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    events: [AtomicU64; Source::ALL.len()],
    rejected_records: AtomicU64,
    repeated_events: AtomicU64,
    benign_findings: AtomicU64,
    replayed_events: AtomicU64,
    known_findings: AtomicU64,
    benign_learned: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    findings: [AtomicU64; FindingKind::ALL.len()],
    decisions: [AtomicU64; DECISIONS.len()],
    /// Time to answer `POST /v1/decide`, from the body read to the answer written.
    pub decide_latency: Histogram,
    durable_batches: AtomicU64,
    store_errors: AtomicU64,
    store_stopped: AtomicBool,
    alerts_delivered: AtomicU64,
    alerts_retried: AtomicU64,
    alerts_dead_lettered: AtomicU64,
    snapshots_written: AtomicU64,
    snapshots_failed: AtomicU64,
    snapshot_unix_seconds: AtomicU64,
    snapshot_bytes: AtomicU64,
    snapshot_identities: AtomicU64,
    snapshot_pause_nanos: AtomicU64,
    snapshot_write_nanos: AtomicU64,
    snapshot_set_aside: AtomicBool,
}

/// A snapshot of the learned baseline, as written to the data folder
/// ([`crate::profiles`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotWritten {
    /// Bytes of the file.
    pub bytes: u64,
    /// Identities it holds.
    pub identities: u64,
    /// Time the engine thread spent on it (copying the profiles; it judges nothing meanwhile).
    pub pause: Duration,
    /// Time spent encoding and writing it, off the engine thread.
    pub write: Duration,
    /// When it was written (Unix time, seconds).
    pub unix_seconds: u64,
}

/// Gauges read when the exposition is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    /// Ingest batches waiting for the engine.
    pub ingest_queue: usize,
    /// Its capacity.
    pub ingest_capacity: usize,
    /// Decisions waiting for the engine.
    pub decide_queue: usize,
    /// Its capacity.
    pub decide_capacity: usize,
    /// Identities seen.
    pub identities: usize,
}

impl Metrics {
    /// Counts accepted events of a source.
    pub fn events_in(&self, source: Source, count: u64) {
        if let Some(i) = Source::ALL.iter().position(|s| *s == source) {
            self.events[i].fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Events accepted so far, all sources.
    pub fn events_total(&self) -> u64 {
        self.events.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Counts records that could not be decoded.
    pub fn rejected(&self, count: u64) {
        self.rejected_records.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts accepted events the store already held (a retried request), which the engine
    /// does not see again.
    pub fn repeated(&self, count: u64) {
        self.repeated_events.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts a finding marked benign that the engine learned from, and the new behaviours it
    /// learned (0 when they were already known: a mark taught again at start).
    pub fn benign(&self, learned: u64) {
        self.benign_findings.fetch_add(1, Ordering::Relaxed);
        self.benign_learned.fetch_add(learned, Ordering::Relaxed);
    }

    /// Counts stored events judged again at start, after a crash.
    pub fn replayed(&self, events: u64) {
        self.replayed_events.fetch_add(events, Ordering::Relaxed);
    }

    /// Counts a finding of a replayed episode that the store already held, not reported again.
    pub fn finding_known(&self) {
        self.known_findings.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused request.
    pub fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an emitted finding.
    pub fn finding(&self, kind: FindingKind) {
        if let Some(i) = FindingKind::ALL.iter().position(|k| *k == kind) {
            self.findings[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an inline decision.
    pub fn decision(&self, decision: Decision) {
        if let Some(i) = DECISIONS.iter().position(|d| *d == decision) {
            self.decisions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a batch made durable (`None`), or a store write that failed; remembers a failure
    /// of the storage itself ([`Metrics::store_stopped`]).
    pub fn store_write(&self, failed: Option<&SinkError>) {
        let counter = match failed {
            None => &self.durable_batches,
            Some(err) => {
                if err.kind != SinkFailure::Other {
                    self.store_stopped.store(true, Ordering::Relaxed);
                }
                &self.store_errors
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the store has stopped taking writes (a write found no space, or failed so that
    /// the store refuses more) until the server is restarted; `GET /healthz` answers 503.
    pub fn store_stopped(&self) -> bool {
        self.store_stopped.load(Ordering::Relaxed)
    }

    /// Counts an alert delivered, retried, or given up (dead-lettered).
    pub fn alert(&self, outcome: AlertOutcome) {
        let counter = match outcome {
            AlertOutcome::Delivered => &self.alerts_delivered,
            AlertOutcome::Retried => &self.alerts_retried,
            AlertOutcome::DeadLettered => &self.alerts_dead_lettered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Alerts delivered, retried and dead-lettered so far.
    pub fn alerts(&self) -> (u64, u64, u64) {
        (
            self.alerts_delivered.load(Ordering::Relaxed),
            self.alerts_retried.load(Ordering::Relaxed),
            self.alerts_dead_lettered.load(Ordering::Relaxed),
        )
    }

    /// Records a snapshot of the learned baseline written to the data folder.
    pub fn snapshot_written(&self, written: SnapshotWritten) {
        self.snapshot_bytes.store(written.bytes, Ordering::Relaxed);
        self.snapshot_identities
            .store(written.identities, Ordering::Relaxed);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.snapshot_pause_nanos
            .store(nanos(written.pause), Ordering::Relaxed);
        self.snapshot_write_nanos
            .store(nanos(written.write), Ordering::Relaxed);
        self.snapshot_unix_seconds
            .store(written.unix_seconds, Ordering::Relaxed);
        self.snapshots_written.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a snapshot of the learned baseline that could not be encoded or written.
    pub fn snapshot_failed(&self) {
        self.snapshots_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers that the snapshot found at start could not be read and was set aside.
    pub fn snapshot_set_aside(&self) {
        self.snapshot_set_aside.store(true, Ordering::Relaxed);
    }

    /// Snapshots of the learned baseline written and failed so far.
    pub fn snapshots(&self) -> (u64, u64) {
        (
            self.snapshots_written.load(Ordering::Relaxed),
            self.snapshots_failed.load(Ordering::Relaxed),
        )
    }

    /// The exposition, in the Prometheus text format.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            &mut out,
            "nhiwatch_events_ingested_total",
            "counter",
            "Events accepted, by source format.",
        );
        for (source, count) in Source::ALL.iter().zip(&self.events) {
            let _ = writeln!(
                out,
                "nhiwatch_events_ingested_total{{source=\"{source}\"}} {}",
                load(count)
            );
        }
        family(
            &mut out,
            "nhiwatch_records_rejected_total",
            "counter",
            "Records that could not be decoded.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_records_rejected_total {}",
            load(&self.rejected_records)
        );
        family(
            &mut out,
            "nhiwatch_events_repeated_total",
            "counter",
            "Accepted events the evidence store already held (retried requests); not judged again.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_events_repeated_total {}",
            load(&self.repeated_events)
        );
        family(
            &mut out,
            "nhiwatch_replayed_events_total",
            "counter",
            "Stored events judged again at start: what the engine held only in memory before it.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_replayed_events_total {}",
            load(&self.replayed_events)
        );
        family(
            &mut out,
            "nhiwatch_replayed_findings_known_total",
            "counter",
            "Findings of replayed episodes that the store already held; not reported again.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_replayed_findings_known_total {}",
            load(&self.known_findings)
        );
        family(
            &mut out,
            "nhiwatch_benign_findings_total",
            "counter",
            "Findings marked benign whose evidence the usual lens learned from (again at each start).",
        );
        let _ = writeln!(
            out,
            "nhiwatch_benign_findings_total {}",
            load(&self.benign_findings)
        );
        family(
            &mut out,
            "nhiwatch_benign_behaviours_learned_total",
            "counter",
            "New behaviours (actions, transitions, resources, origins, hours) learned from benign marks.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_benign_behaviours_learned_total {}",
            load(&self.benign_learned)
        );
        family(
            &mut out,
            "nhiwatch_requests_refused_total",
            "counter",
            "Requests refused, by reason.",
        );
        for (why, count) in Refusal::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "nhiwatch_requests_refused_total{{reason=\"{}\"}} {}",
                why.as_str(),
                load(count)
            );
        }
        family(
            &mut out,
            "nhiwatch_findings_total",
            "counter",
            "Findings emitted, by kind.",
        );
        for (kind, count) in FindingKind::ALL.iter().zip(&self.findings) {
            let _ = writeln!(
                out,
                "nhiwatch_findings_total{{kind=\"{kind}\"}} {}",
                load(count)
            );
        }
        family(
            &mut out,
            "nhiwatch_decisions_total",
            "counter",
            "Inline decisions answered, by decision.",
        );
        for (decision, count) in DECISIONS.iter().zip(&self.decisions) {
            let _ = writeln!(
                out,
                "nhiwatch_decisions_total{{decision=\"{}\"}} {}",
                decision.as_str(),
                load(count)
            );
        }
        family(
            &mut out,
            "nhiwatch_decide_latency_seconds",
            "histogram",
            "Time to answer POST /v1/decide, from the request body read to the answer.",
        );
        self.decide_latency
            .write(&mut out, "nhiwatch_decide_latency_seconds");
        family(
            &mut out,
            "nhiwatch_queue_depth",
            "gauge",
            "Work waiting for the engine, by queue.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_queue_depth{{queue=\"ingest\"}} {}",
            gauges.ingest_queue
        );
        let _ = writeln!(
            out,
            "nhiwatch_queue_depth{{queue=\"decide\"}} {}",
            gauges.decide_queue
        );
        family(
            &mut out,
            "nhiwatch_queue_capacity",
            "gauge",
            "Capacity of each engine queue.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_queue_capacity{{queue=\"ingest\"}} {}",
            gauges.ingest_capacity
        );
        let _ = writeln!(
            out,
            "nhiwatch_queue_capacity{{queue=\"decide\"}} {}",
            gauges.decide_capacity
        );
        family(&mut out, "nhiwatch_identities", "gauge", "Identities seen.");
        let _ = writeln!(out, "nhiwatch_identities {}", gauges.identities);
        family(
            &mut out,
            "nhiwatch_store_batches_total",
            "counter",
            "Batches written to the evidence store, by result.",
        );
        let _ = writeln!(
            out,
            "nhiwatch_store_batches_total{{result=\"durable\"}} {}",
            load(&self.durable_batches)
        );
        let _ = writeln!(
            out,
            "nhiwatch_store_batches_total{{result=\"failed\"}} {}",
            load(&self.store_errors)
        );
        family(
            &mut out,
            "nhiwatch_alerts_total",
            "counter",
            "Alert deliveries to webhooks, by outcome.",
        );
        let (delivered, retried, dead) = self.alerts();
        for (outcome, count) in [
            ("delivered", delivered),
            ("retried", retried),
            ("dead_lettered", dead),
        ] {
            let _ = writeln!(
                out,
                "nhiwatch_alerts_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        self.render_snapshots(&mut out);
        out
    }

    fn render_snapshots(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            out,
            "nhiwatch_baseline_snapshots_total",
            "counter",
            "Snapshots of the usual lens's learned baseline written to the data folder, by result.",
        );
        let (written, failed) = self.snapshots();
        for (result, count) in [("written", written), ("failed", failed)] {
            let _ = writeln!(
                out,
                "nhiwatch_baseline_snapshots_total{{result=\"{result}\"}} {count}"
            );
        }
        let gauges = [
            (
                "nhiwatch_baseline_snapshot_timestamp_seconds",
                "Unix time the last snapshot was written (0: none yet).",
                load(&self.snapshot_unix_seconds).to_string(),
            ),
            (
                "nhiwatch_baseline_snapshot_bytes",
                "Size of the last snapshot written.",
                load(&self.snapshot_bytes).to_string(),
            ),
            (
                "nhiwatch_baseline_snapshot_identities",
                "Identities in the last snapshot written.",
                load(&self.snapshot_identities).to_string(),
            ),
            (
                "nhiwatch_baseline_snapshot_pause_seconds",
                "Time the engine spent on the last periodic snapshot (copying the profiles), judging nothing meanwhile.",
                (load(&self.snapshot_pause_nanos) as f64 / 1e9).to_string(),
            ),
            (
                "nhiwatch_baseline_snapshot_write_seconds",
                "Time spent encoding and writing the last snapshot, off the engine thread.",
                (load(&self.snapshot_write_nanos) as f64 / 1e9).to_string(),
            ),
            (
                "nhiwatch_baseline_snapshot_set_aside",
                "1 when the snapshot found at start could not be read and was set aside.",
                u8::from(self.snapshot_set_aside.load(Ordering::Relaxed)).to_string(),
            ),
        ];
        for (name, help, value) in gauges {
            family(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

/// What became of one alert delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertOutcome {
    /// The webhook took it.
    Delivered,
    /// It failed and will be tried again.
    Retried,
    /// It failed for good and went to the dead-letter file.
    DeadLettered,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.decide_latency.observe(Duration::from_micros(30));
        metrics.decide_latency.observe(Duration::from_micros(700));
        metrics.decide_latency.observe(Duration::from_secs(3));
        let text = metrics.render(Gauges::default());
        assert!(text.contains("nhiwatch_decide_latency_seconds_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("nhiwatch_decide_latency_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("nhiwatch_decide_latency_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("nhiwatch_decide_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("nhiwatch_decide_latency_seconds_count 3\n"));
    }

    #[test]
    fn snapshots_are_counted_and_described() {
        let metrics = Metrics::default();
        let text = metrics.render(Gauges::default());
        assert!(text.contains("nhiwatch_baseline_snapshots_total{result=\"written\"} 0\n"));
        assert!(text.contains("nhiwatch_baseline_snapshot_timestamp_seconds 0\n"));
        metrics.snapshot_written(SnapshotWritten {
            bytes: 4096,
            identities: 3,
            pause: Duration::from_millis(1500),
            write: Duration::from_millis(250),
            unix_seconds: 1_770_000_000,
        });
        metrics.snapshot_failed();
        metrics.snapshot_set_aside();
        let text = metrics.render(Gauges::default());
        for line in [
            "nhiwatch_baseline_snapshots_total{result=\"written\"} 1\n",
            "nhiwatch_baseline_snapshots_total{result=\"failed\"} 1\n",
            "nhiwatch_baseline_snapshot_timestamp_seconds 1770000000\n",
            "nhiwatch_baseline_snapshot_bytes 4096\n",
            "nhiwatch_baseline_snapshot_identities 3\n",
            "nhiwatch_baseline_snapshot_pause_seconds 1.5\n",
            "nhiwatch_baseline_snapshot_write_seconds 0.25\n",
            "nhiwatch_baseline_snapshot_set_aside 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(metrics.snapshots(), (1, 1));
    }

    #[test]
    fn statuses_map_to_refusals() {
        assert_eq!(Refusal::of_status(401), Some(Refusal::Unauthenticated));
        assert_eq!(Refusal::of_status(503), Some(Refusal::Overloaded));
        assert_eq!(Refusal::of_status(502), Some(Refusal::Internal));
        assert_eq!(Refusal::of_status(202), None);
        assert_eq!(
            Refusal::of_response(503, Some("storage_full")),
            Some(Refusal::Storage)
        );
        assert_eq!(
            Refusal::of_response(503, Some("storage_failed")),
            Some(Refusal::Storage)
        );
        assert_eq!(
            Refusal::of_response(503, Some("overloaded")),
            Some(Refusal::Overloaded)
        );
        assert_eq!(Refusal::of_response(503, None), Some(Refusal::Overloaded));
    }
}
