//! Durability: where accepted events, and the findings they lead to, are kept.
//!
//! Ingest is acknowledged only once its events are durable ([`EvidenceSink::append`] has
//! returned). Findings and the events of inline decisions are written behind the engine by the
//! writer, a thread that gathers whatever is waiting into one append (a group commit), so
//! that a decision never waits for a disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nhiwatch_decode::Reject;
use nhiwatch_model::{Event, Finding};
use nhiwatch_store::{Batch, RiskPoint, Store, StoreError};

use crate::metrics::Metrics;

/// A durable home for events and findings.
pub trait EvidenceSink: Send + Sync + 'static {
    /// Appends events, findings and risk points; returns once they are durable, with, for each
    /// event, whether the sink already held it (an earlier request's, or an earlier one of
    /// these): such an event is acknowledged again but not stored twice, nor judged twice. On
    /// error nothing of them is stored.
    fn append(
        &self,
        events: &[Event<'static>],
        findings: &[Finding],
        risks: &[RiskPoint],
    ) -> Result<Vec<bool>, SinkError>;
}

/// What kind of failure kept evidence from being stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkFailure {
    /// No space left: the disk is full, or a quota or the file size limit was reached. The
    /// client may retry later; an operator must free space.
    NoSpace,
    /// The storage refuses writes since an earlier write failed (redb takes no more writes on
    /// a database whose write failed): nothing more is stored until the server is restarted,
    /// once the cause is fixed.
    Stopped,
    /// Anything else: a fault of the server.
    Other,
}

/// Why evidence could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What kind of failure.
    pub kind: SinkFailure,
    /// What failed, for the server's log (it may name paths): never sent to a client.
    pub message: String,
}

impl SinkError {
    /// A failure that is the server's fault.
    pub fn other(message: impl Into<String>) -> Self {
        SinkError {
            kind: SinkFailure::Other,
            message: message.into(),
        }
    }
}

impl From<StoreError> for SinkError {
    fn from(err: StoreError) -> Self {
        let kind = match err {
            StoreError::NoSpace { .. } => SinkFailure::NoSpace,
            StoreError::Failed(_) => SinkFailure::Stopped,
            _ => SinkFailure::Other,
        };
        SinkError {
            kind,
            message: err.to_string(),
        }
    }
}

impl EvidenceSink for Store {
    fn append(
        &self,
        events: &[Event<'static>],
        findings: &[Finding],
        risks: &[RiskPoint],
    ) -> Result<Vec<bool>, SinkError> {
        let mut batch = Batch::new();
        let taken: Vec<bool> = events.iter().map(|event| batch.add_event(event)).collect();
        for finding in findings {
            batch
                .add_finding(finding)
                .map_err(|err| SinkError::other(format!("finding {}: {err}", finding.id)))?;
        }
        for point in risks {
            batch.add_risk(point);
        }
        let receipt = Store::append(self, &mut batch)?;
        // The receipt speaks of the events the batch took, in order; the others repeated one.
        let mut held = receipt.events_held.into_iter();
        Ok(taken
            .into_iter()
            .map(|taken| !taken || held.next().unwrap_or(false))
            .collect())
    }
}

/// Records that could not be decoded, kept aside as JSON lines (`rejects.jsonl` in the data
/// folder): where they came from, why, and the record itself, cut to 64 KiB.
#[derive(Debug)]
pub struct RejectLog {
    file: Mutex<File>,
    path: PathBuf,
}

impl RejectLog {
    /// Opens (creating) the log for appending.
    pub fn open(path: &Path) -> std::io::Result<RejectLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(RejectLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends rejects received from `who` (a token name), one line each.
    pub fn append(&self, who: &str, rejects: &[Reject]) -> std::io::Result<()> {
        let mut text = Vec::new();
        for reject in rejects {
            serde_json::to_writer(
                &mut text,
                &serde_json::json!({"received_from": who, "reject": reject}),
            )?;
            text.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&text)?;
        file.sync_data()
    }
}

/// What the engine hands to the writer.
pub(crate) enum Output {
    /// The event of an inline decision.
    Event(Box<Event<'static>>),
    /// An emitted finding (stored with the point of risk history it sets).
    Finding(Box<Finding>),
    /// A decision other than allow, as a point of the identity's risk history.
    Risk(Box<RiskPoint>),
}

/// Most items gathered into one append.
const GROUP_MAX: usize = 4096;

/// The writer thread behind the engine.
pub(crate) struct Writer {
    sender: SyncSender<Output>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the thread; `capacity` items may wait before the engine waits for the disk.
    pub fn start(
        sink: Arc<dyn EvidenceSink>,
        metrics: Arc<Metrics>,
        capacity: usize,
    ) -> std::io::Result<Writer> {
        let (sender, receiver) = sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name("nhiwatch-writer".into())
            .spawn(move || write_loop(&*sink, &metrics, &receiver))?;
        Ok(Writer { sender, thread })
    }

    /// A handle for the engine.
    pub fn sender(&self) -> SyncSender<Output> {
        self.sender.clone()
    }

    /// Waits for everything sent so far (by every handle, once they are all dropped) to be
    /// written.
    pub fn finish(self) {
        drop(self.sender);
        if self.thread.join().is_err() {
            eprintln!("nhiwatch: the store writer stopped with a panic");
        }
    }
}

/// Sends to the writer; when it is behind, waits for it (the engine slows, its queues fill,
/// and clients are told to retry) rather than holding an unbounded backlog.
pub(crate) fn send(sender: &SyncSender<Output>, output: Output) {
    match sender.try_send(output) {
        Ok(()) => {}
        Err(TrySendError::Full(output)) => {
            let _ = sender.send(output);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn write_loop(sink: &dyn EvidenceSink, metrics: &Metrics, receiver: &Receiver<Output>) {
    let mut events: Vec<Event<'static>> = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut risks: Vec<RiskPoint> = Vec::new();
    loop {
        let Ok(first) = receiver.recv() else {
            return;
        };
        let mut take = |output: Output| match output {
            Output::Event(event) => events.push(*event),
            Output::Finding(finding) => {
                // As `nhiwatch ingest` and the scale-out workers do: the identity's stored
                // risk follows its findings (and a restart resumes from it).
                risks.push(RiskPoint::of(&finding));
                findings.push(*finding);
            }
            Output::Risk(point) => risks.push(*point),
        };
        take(first);
        for _ in 1..GROUP_MAX {
            match receiver.try_recv() {
                Ok(output) => take(output),
                Err(_) => break,
            }
        }
        let result = sink.append(&events, &findings, &risks);
        metrics.store_write(result.as_ref().err());
        if let Err(err) = result {
            eprintln!(
                "nhiwatch: cannot store {} decided events and {} findings: {err}",
                events.len(),
                findings.len()
            );
        }
        events.clear();
        findings.clear();
        risks.clear();
    }
}
