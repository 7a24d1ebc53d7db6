//! The engine worker: one thread that owns the [`Engine`] (its state is single-threaded),
//! fed by two bounded queues, and the in-memory [`View`] that read requests are answered from.
//!
//! Inline decisions go first: the worker waits on both queues but takes a decision before a
//! batch, and while it works through a batch it answers waiting decisions between chunks of
//! [`CHUNK`] events, so a decision never waits for a whole large batch.
//!
//! What the engine emits goes three ways, none of which the engine waits for: the view (under
//! a short write lock), the store writer ([`crate::durable`]), and the alert dispatcher.
//!
//! With a data folder the worker also snapshots the usual lens's learned profiles
//! ([`crate::profiles`]): a timer among the queues, taken first when due, so that the profiles
//! are copied for the snapshot between batches, never while the engine changes them.

use std::collections::VecDeque;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use nhiwatch_detect::{Assessment, Engine, EngineStats};
use nhiwatch_model::{Decision, Event, Finding, FindingKind, Severity, Timestamp};
use nhiwatch_store::{IdentitySummary, LatestRisk, RiskPoint};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::alerts::AlertSender;
use crate::benign::VouchJob;
use crate::durable::{self, Output};
use crate::metrics::Metrics;
use crate::profiles::Snapshots;
use crate::replay::{Replay, Reported};

/// Events processed between looks at the decision queue.
pub(crate) const CHUNK: usize = 256;

/// Builds the engine, on the worker thread (an engine's detectors need not be `Send`).
pub type EngineFactory = Arc<dyn Fn() -> Engine + Send + Sync>;

/// One proposed action waiting for its judgement.
pub(crate) struct DecideJob {
    pub event: Event<'static>,
    pub reply: oneshot::Sender<Assessment>,
}

/// The two queues of the HTTP API into the engine.
#[derive(Clone)]
pub(crate) struct Queues {
    pub ingest: mpsc::Sender<Vec<Event<'static>>>,
    pub decide: mpsc::Sender<DecideJob>,
}

/// Identity summaries and recent findings, as the engine has seen them.
#[derive(Debug)]
pub struct View {
    identities: FxHashMap<String, IdentitySummary>,
    findings: VecDeque<Arc<KeptFinding>>,
    keep: usize,
}

/// A finding as the view keeps it: what requests filter on, and the finding itself as the JSON
/// the API answers with. (Kept as a [`Finding`], its `detail` tree of `serde_json` values would
/// take about ten times as much memory, and the view keeps up to `findings_kept` of them.)
#[derive(Debug)]
pub struct KeptFinding {
    /// The identity.
    pub identity: String,
    /// The kind.
    pub kind: FindingKind,
    /// The severity.
    pub severity: Severity,
    /// The time of its last evidence event.
    pub time: Timestamp,
    /// The finding, as JSON.
    pub json: Box<RawValue>,
}

impl KeptFinding {
    /// Keeps `finding`; `None` (and a line on standard error) if it cannot be written as JSON.
    pub fn new(finding: &Finding) -> Option<KeptFinding> {
        match serde_json::value::to_raw_value(finding) {
            Ok(json) => Some(KeptFinding {
                identity: finding.identity.clone(),
                kind: finding.kind,
                severity: finding.severity,
                time: finding.time,
                json,
            }),
            Err(err) => {
                eprintln!("nhiwatch: finding {} cannot be listed: {err}", finding.id);
                None
            }
        }
    }
}

impl Serialize for KeptFinding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// Which findings [`View::findings`] returns.
#[derive(Clone, Debug, Default)]
pub struct FindingFilter {
    /// Only this identity's.
    pub identity: Option<String>,
    /// Only this kind.
    pub kind: Option<nhiwatch_model::FindingKind>,
    /// Only at or above this severity.
    pub min_severity: Option<Severity>,
    /// Only those at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl View {
    /// An empty view keeping the latest `keep` findings.
    pub fn new(keep: usize) -> Self {
        View {
            identities: FxHashMap::default(),
            findings: VecDeque::new(),
            keep: keep.max(1),
        }
    }

    /// Starts from what the store holds: identities and the latest findings.
    pub fn preload(&mut self, identities: Vec<IdentitySummary>, findings: Vec<Finding>) {
        for summary in identities {
            self.identities.insert(summary.identity.clone(), summary);
        }
        let skip = findings.len().saturating_sub(self.keep);
        self.findings.extend(
            findings
                .iter()
                .skip(skip)
                .filter_map(KeptFinding::new)
                .map(Arc::new),
        );
    }

    fn observe(&mut self, event: &Event<'_>) {
        let id: &str = &event.identity.id;
        let summary = match self.identities.get_mut(id) {
            Some(summary) => summary,
            None => self
                .identities
                .entry(id.to_owned())
                .or_insert_with(|| IdentitySummary {
                    identity: id.to_owned(),
                    kind: event.identity.kind,
                    events: 0,
                    first_seen: None,
                    last_seen: None,
                    findings: 0,
                    risk: None,
                }),
        };
        summary.kind = event.identity.kind;
        summary.events += 1;
        summary.first_seen = Some(summary.first_seen.map_or(event.time, |t| t.min(event.time)));
        summary.last_seen = Some(summary.last_seen.map_or(event.time, |t| t.max(event.time)));
    }

    fn risk(&mut self, identity: &str, latest: LatestRisk) {
        if let Some(summary) = self.identities.get_mut(identity) {
            if summary.risk.is_none_or(|r| r.time <= latest.time) {
                summary.risk = Some(latest);
            }
        }
    }

    fn add_finding(&mut self, finding: &Finding) {
        if let Some(summary) = self.identities.get_mut(&finding.identity) {
            summary.findings += 1;
        }
        self.risk(
            &finding.identity,
            LatestRisk {
                time: finding.time,
                risk: finding.risk,
                decision: finding.decision,
            },
        );
        let Some(kept) = KeptFinding::new(finding) else {
            return;
        };
        if self.findings.len() == self.keep {
            self.findings.pop_front();
        }
        self.findings.push_back(Arc::new(kept));
    }

    /// Identities, highest latest risk first, then most events.
    pub fn identities(&self, limit: usize) -> (usize, Vec<IdentitySummary>) {
        let mut all: Vec<&IdentitySummary> = self.identities.values().collect();
        all.sort_by(|a, b| {
            let risk = |s: &IdentitySummary| s.risk.map_or(0, |r| r.risk);
            risk(b)
                .cmp(&risk(a))
                .then(b.events.cmp(&a.events))
                .then(a.identity.cmp(&b.identity))
        });
        (all.len(), all.into_iter().take(limit).cloned().collect())
    }

    /// One identity.
    pub fn identity(&self, id: &str) -> Option<IdentitySummary> {
        self.identities.get(id).cloned()
    }

    /// How many identities.
    pub fn identity_count(&self) -> usize {
        self.identities.len()
    }

    /// Findings matching the filter, newest first.
    pub fn findings(&self, filter: &FindingFilter) -> Vec<Arc<KeptFinding>> {
        self.findings
            .iter()
            .rev()
            .filter(|f| {
                filter.identity.as_deref().is_none_or(|id| f.identity == id)
                    && filter.kind.is_none_or(|k| f.kind == k)
                    && filter.min_severity.is_none_or(|s| f.severity >= s)
                    && filter.since.is_none_or(|t| f.time >= t)
            })
            .take(filter.limit)
            .cloned()
            .collect()
    }
}

/// Where the worker sends what the engine emits.
pub(crate) struct Sinks {
    pub view: Arc<RwLock<View>>,
    pub metrics: Arc<Metrics>,
    pub alerts: AlertSender,
    pub writer: Option<SyncSender<Output>>,
}

struct Worker {
    engine: Engine,
    sinks: Sinks,
    emitted: Vec<Finding>,
    snapshots: Option<Snapshots>,
    /// Findings the store held at start, which a replayed episode must not report again.
    reported: Reported,
}

/// Waits for the next snapshot tick; forever when there are no snapshots.
async fn snapshot_due(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Starts the worker thread. It first judges `replay` again ([`crate::replay`]), then runs
/// until its queues (the two it makes, and `vouch` from the web UI's benign marks) are closed
/// and drained, then finishes the engine (closing every open episode), writes the last
/// snapshot of its learned profiles (when `snapshots` is given), and returns its counts.
pub(crate) fn start(
    factory: EngineFactory,
    sinks: Sinks,
    (snapshots, replay): (Option<Snapshots>, Option<Replay>),
    (ingest_capacity, decide_capacity): (usize, usize),
    mut vouch_rx: mpsc::Receiver<VouchJob>,
) -> std::io::Result<(Queues, JoinHandle<EngineStats>)> {
    let (ingest, mut ingest_rx) = mpsc::channel::<Vec<Event<'static>>>(ingest_capacity);
    let (decide, mut decide_rx) = mpsc::channel::<DecideJob>(decide_capacity);
    let thread = std::thread::Builder::new()
        .name("nhiwatch-engine".into())
        .spawn(move || {
            let mut worker = Worker {
                engine: factory(),
                sinks,
                emitted: Vec::new(),
                snapshots,
                reported: Reported::default(),
            };
            if let Some(replay) = replay {
                worker.replay(replay);
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(async {
                    let mut timer = worker.snapshots.as_ref().map(|s| {
                        let every = s.every();
                        let mut timer =
                            tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        timer
                    });
                    let (mut ingest_open, mut decide_open, mut vouch_open) = (true, true, true);
                    while ingest_open || decide_open || vouch_open {
                        tokio::select! {
                            biased;
                            () = snapshot_due(&mut timer) => worker.snapshot(),
                            job = decide_rx.recv(), if decide_open => match job {
                                Some(job) => worker.decide(job),
                                None => decide_open = false,
                            },
                            batch = ingest_rx.recv(), if ingest_open => match batch {
                                Some(batch) => worker.ingest(&batch, &mut decide_rx),
                                None => ingest_open = false,
                            },
                            job = vouch_rx.recv(), if vouch_open => match job {
                                Some(job) => worker.vouch(job),
                                None => vouch_open = false,
                            },
                        }
                    }
                }),
                Err(err) => eprintln!("nhiwatch: cannot start the engine worker: {err}"),
            }
            worker.finish()
        })?;
    Ok((Queues { ingest, decide }, thread))
}

impl Worker {
    /// The periodic snapshot of the learned profiles.
    fn snapshot(&mut self) {
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.tick(&self.engine);
        }
    }

    /// Notes that the engine judged something, for the next snapshot.
    fn touch(&mut self) {
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.touch();
        }
    }

    fn decide(&mut self, job: DecideJob) {
        self.touch();
        let emitted = &mut self.emitted;
        let assessment = self.engine.decide(&job.event, &mut |f| emitted.push(f));
        let (risk, decision) = (assessment.risk, assessment.decision);
        let cause = assessment
            .findings
            .first()
            .map(|f| f.id.clone())
            .unwrap_or_else(|| format!("decide:{}", job.event.id));
        // Answer first; the bookkeeping below is not the caller's wait.
        let _ = job.reply.send(assessment);
        self.sinks.metrics.decision(decision);
        let time = job.event.time;
        {
            let mut view = self.sinks.view.write().unwrap_or_else(|e| e.into_inner());
            view.observe(&job.event);
            view.risk(
                &job.event.identity.id,
                LatestRisk {
                    time,
                    risk,
                    decision,
                },
            );
        }
        if let Some(writer) = &self.sinks.writer {
            if decision != Decision::Allow {
                let point = RiskPoint {
                    identity: job.event.identity.id.to_string(),
                    time,
                    risk,
                    decision,
                    cause,
                };
                durable::send(writer, Output::Risk(Box::new(point)));
            }
            durable::send(writer, Output::Event(Box::new(job.event)));
        }
        self.emit();
    }

    fn ingest(&mut self, batch: &[Event<'static>], decide_rx: &mut mpsc::Receiver<DecideJob>) {
        self.touch();
        for chunk in batch.chunks(CHUNK) {
            let emitted = &mut self.emitted;
            for event in chunk {
                self.engine.process(event, &mut |f| emitted.push(f));
            }
            {
                let mut view = self.sinks.view.write().unwrap_or_else(|e| e.into_inner());
                for event in chunk {
                    view.observe(event);
                }
            }
            self.emit();
            while let Ok(job) = decide_rx.try_recv() {
                self.decide(job);
            }
        }
    }

    /// Resumes stored risk, and judges again what the engine held only in memory before this
    /// start.
    fn replay(&mut self, replay: Replay) {
        let Replay {
            risks,
            events,
            reported,
        } = replay;
        for (identity, latest) in &risks {
            self.engine.resume_risk(identity, latest.risk, latest.time);
        }
        self.reported = reported;
        if events.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        for chunk in events.chunks(CHUNK) {
            let emitted = &mut self.emitted;
            for (event, learn) in chunk {
                self.engine.replay(event, *learn, &mut |f| emitted.push(f));
            }
            self.emit();
        }
        self.touch();
        self.sinks.metrics.replayed(events.len() as u64);
        eprintln!(
            "nhiwatch: judged {} stored events again that the engine held only in memory before this start ({:.3} s)",
            events.len(),
            started.elapsed().as_secs_f64()
        );
    }

    /// Learns from a benign finding (the next snapshot keeps what was learned) and records the
    /// identity's lowered risk.
    fn vouch(&mut self, job: VouchJob) {
        let learned = self.engine.vouch(&job.finding, &job.context);
        if learned > 0 {
            self.touch();
        }
        self.sinks.metrics.benign(learned as u64);
        let forgiven = job.forgive.then(|| self.engine.forgive(&job.finding));
        let Some((risk, decision)) = forgiven.flatten() else {
            return;
        };
        let (identity, time) = (job.finding.identity, Timestamp::now());
        let latest = LatestRisk {
            time,
            risk,
            decision,
        };
        self.sinks
            .view
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .risk(&identity, latest);
        if let Some(writer) = &self.sinks.writer {
            let point = RiskPoint {
                identity,
                time,
                risk,
                decision,
                cause: format!("benign:{}", job.finding.id),
            };
            durable::send(writer, Output::Risk(Box::new(point)));
        }
    }

    /// Hands the findings the engine emitted to the view, the metrics, the alerts and the store.
    fn emit(&mut self) {
        if self.emitted.is_empty() {
            return;
        }
        if !self.reported.is_empty() {
            let (reported, metrics) = (&self.reported, &self.sinks.metrics);
            self.emitted.retain(|finding| {
                let known = reported.covers(finding);
                if known {
                    metrics.finding_known();
                }
                !known
            });
        }
        {
            let mut view = self.sinks.view.write().unwrap_or_else(|e| e.into_inner());
            for finding in &self.emitted {
                view.add_finding(finding);
            }
        }
        for finding in self.emitted.drain(..) {
            let finding = Arc::new(finding);
            self.sinks.metrics.finding(finding.kind);
            self.sinks.alerts.offer(&finding);
            if let Some(writer) = &self.sinks.writer {
                let finding = Arc::try_unwrap(finding).unwrap_or_else(|shared| (*shared).clone());
                durable::send(writer, Output::Finding(Box::new(finding)));
            }
        }
    }

    fn finish(mut self) -> EngineStats {
        let emitted = &mut self.emitted;
        self.engine.finish(&mut |f| emitted.push(f));
        self.emit();
        if let Some(snapshots) = self.snapshots.take() {
            snapshots.finish(&self.engine);
        }
        self.engine.stats()
    }
}

#[cfg(test)]
mod tests {
    use nhiwatch_model::{Evidence, FindingKind};

    use super::*;

    fn finding(n: i64, identity: &str, kind: FindingKind) -> Finding {
        Finding {
            id: format!("f-{n}"),
            time: Timestamp(n),
            identity: identity.into(),
            kind,
            severity: Severity::High,
            risk: 70,
            decision: Decision::Review,
            summary: "a summary".into(),
            evidence: Evidence {
                event_ids: vec![format!("e-{n}")],
                detail: serde_json::json!({"actions": [{"action": "s3:GetObject", "events": 3}]}),
            },
            frameworks: vec!["OWASP-NHI-06".into()],
        }
    }

    #[test]
    fn the_view_keeps_the_latest_findings_as_the_api_writes_them() {
        let mut view = View::new(2);
        let kept: Vec<Finding> = (0..3)
            .map(|n| finding(n, if n == 1 { "b" } else { "a" }, FindingKind::OutOfScope))
            .collect();
        view.preload(Vec::new(), kept[..1].to_vec());
        for finding in &kept[1..] {
            view.add_finding(finding);
        }
        let all = view.findings(&FindingFilter {
            limit: 10,
            ..FindingFilter::default()
        });
        assert_eq!(all.len(), 2, "the oldest is dropped");
        assert_eq!(
            serde_json::to_value(&*all[0]).unwrap(),
            serde_json::to_value(&kept[2]).unwrap(),
            "newest first, written as the finding itself"
        );
        let of_b = view.findings(&FindingFilter {
            identity: Some("b".into()),
            limit: 10,
            ..FindingFilter::default()
        });
        assert_eq!(of_b.len(), 1);
        assert_eq!(of_b[0].identity, "b");
    }
}
