//! The processing thread of one partition: its detection engine (with the usual lens's
//! profiles) and its evidence store, fed batches of messages by the partition's task.
//!
//! The engine is single-threaded (detectors are not `Send`), so each owned partition gets an OS
//! thread that owns its state for as long as the partition is owned; partitions of one worker
//! run in parallel on as many cores as there are.
//!
//! A batch is processed whole and committed to the store in one durable transaction (events,
//! the findings they closed, risk points) before the reply; only then does the task publish the
//! findings and acknowledge the messages. If the commit fails, the engine holds events the
//! store does not: the thread reports the error and the task discards the thread (the partition
//! is rebuilt by replay).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use nhiwatch_baseline::Baseline;
use nhiwatch_decode::normalised::NormalisedDecoder;
use nhiwatch_decode::RecordDecoder;
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Event, Finding};
use nhiwatch_policy::Policy;
use nhiwatch_store::{Batch, Receipt, RiskPoint, Store};
use serde_json::json;
use tokio::sync::oneshot;

use crate::StreamError;

/// Longest record kept in a rejects file line.
const MAX_REJECT_RECORD: usize = 64 << 10;

/// One message of a partition, as the thread needs it.
pub(crate) struct Inbound {
    /// Its stream sequence.
    pub seq: u64,
    /// Whether JetStream delivered it before (to anyone).
    pub redelivered: bool,
    /// The normalised event (empty for a control message).
    pub payload: Bytes,
    /// The end-of-input control message.
    pub finish: bool,
}

/// What a committed batch did.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// Findings closed by the batch (committed with it).
    pub findings: Vec<Finding>,
    /// Events run through the engine.
    pub events: u64,
    /// Redelivered events already processed and stored (passed over).
    pub skipped: u64,
    /// Messages that were not normalised events (kept in the rejects file).
    pub rejects: u64,
    /// What the store did.
    pub receipt: Receipt,
}

enum Job {
    /// Rebuild state: run through the engine, keep nothing.
    Replay(Vec<Inbound>),
    /// Process and commit.
    Batch(Vec<Inbound>),
    /// Snapshot the profiles; stop afterwards when `last`.
    Snapshot { last: bool },
}

enum Reply {
    Replayed,
    Batch(Box<Result<Done, StreamError>>),
    Snapshot(Result<Vec<u8>, StreamError>),
}

/// The handle of a partition's processing thread. Dropping it stops the thread after its
/// current job.
pub(crate) struct Processor {
    jobs: mpsc::Sender<(Job, oneshot::Sender<Reply>)>,
}

/// Everything a processing thread starts from.
pub(crate) struct Start {
    /// The partition.
    pub partition: u32,
    /// Its store, opened for writing.
    pub store: Store,
    /// Its folder (for the rejects file).
    pub dir: PathBuf,
    /// The policy.
    pub policy: Option<Arc<Policy>>,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Profiles to start from (learned from the partition's events up to some sequence; only
    /// later ones are replayed and processed).
    pub profiles: Baseline,
}

impl Processor {
    /// Starts the thread.
    pub fn start(start: Start) -> Result<Processor, StreamError> {
        let (jobs, queue) = mpsc::channel::<(Job, oneshot::Sender<Reply>)>();
        let name = format!("nhiwatch-p{}", start.partition);
        let dir = start.dir.clone();
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut state = State::new(start);
                while let Ok((job, reply)) = queue.recv() {
                    let answer = match job {
                        Job::Replay(messages) => {
                            state.replay(&messages);
                            Reply::Replayed
                        }
                        Job::Batch(messages) => Reply::Batch(Box::new(state.batch(&messages))),
                        Job::Snapshot { last } => {
                            let answer = Reply::Snapshot(state.snapshot());
                            if reply.send(answer).is_err() || last {
                                return;
                            }
                            continue;
                        }
                    };
                    if reply.send(answer).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| StreamError::Io { path: dir, source })?;
        Ok(Processor { jobs })
    }

    async fn ask(&self, job: Job) -> Option<Reply> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send((job, tx)).ok()?;
        rx.await.ok()
    }

    /// Runs already-committed messages through the engine, to rebuild its state.
    pub async fn replay(&self, messages: Vec<Inbound>) -> Result<(), StreamError> {
        match self.ask(Job::Replay(messages)).await {
            Some(Reply::Replayed) => Ok(()),
            _ => Err(stopped()),
        }
    }

    /// Processes and commits a batch.
    pub async fn batch(&self, messages: Vec<Inbound>) -> Result<Done, StreamError> {
        match self.ask(Job::Batch(messages)).await {
            Some(Reply::Batch(done)) => *done,
            _ => Err(stopped()),
        }
    }

    /// The partition's profile snapshot (see [`crate::snapshot`]).
    pub async fn snapshot(&self) -> Result<Vec<u8>, StreamError> {
        match self.ask(Job::Snapshot { last: false }).await {
            Some(Reply::Snapshot(bytes)) => bytes,
            _ => Err(stopped()),
        }
    }

    /// Stops the thread and returns the partition's profile snapshot.
    pub async fn release(self) -> Result<Vec<u8>, StreamError> {
        match self.ask(Job::Snapshot { last: true }).await {
            Some(Reply::Snapshot(bytes)) => bytes,
            _ => Err(stopped()),
        }
    }
}

fn stopped() -> StreamError {
    StreamError::Io {
        path: PathBuf::from("<partition thread>"),
        source: std::io::Error::other("the partition's processing thread stopped"),
    }
}

struct State {
    partition: u32,
    /// Every lens, as `nhiwatch detect` runs them; the usual lens learns as it goes.
    engine: Engine,
    /// The engine has seen every event up to this stream sequence.
    seen_to: u64,
    store: Store,
    batch: Batch,
    decoder: NormalisedDecoder,
    rejects_path: PathBuf,
    rejects: Option<File>,
    /// A commit failed: the engine holds events the store does not.
    poisoned: bool,
}

impl State {
    fn new(start: Start) -> State {
        State {
            partition: start.partition,
            engine: Engine::with_baseline(
                start.policy,
                start.engine,
                start.profiles,
                UsualConfig::default(),
            ),
            seen_to: 0,
            store: start.store,
            batch: Batch::new(),
            decoder: NormalisedDecoder::default(),
            rejects_path: start.dir.join("rejects.jsonl"),
            rejects: None,
            poisoned: false,
        }
    }

    fn replay(&mut self, messages: &[Inbound]) {
        let mut findings = Vec::new();
        for message in messages {
            self.apply(message, false, &mut findings);
            findings.clear();
        }
    }

    fn batch(&mut self, messages: &[Inbound]) -> Result<Done, StreamError> {
        if self.poisoned {
            return Err(self.store_error(nhiwatch_store::StoreError::Corrupt(
                "an earlier commit of this partition failed".into(),
            )));
        }
        let mut done = Done::default();
        let mut rejects = Vec::new();
        for message in messages {
            match self.apply(message, true, &mut done.findings) {
                Applied::Event => done.events += 1,
                Applied::Skipped => done.skipped += 1,
                Applied::Control => {}
                Applied::Rejected(reason) => rejects.push((message, reason)),
            }
        }
        if !rejects.is_empty() {
            done.rejects = rejects.len() as u64;
            self.write_rejects(&rejects)?;
        }
        for finding in &done.findings {
            self.batch
                .add_finding(finding)
                .map_err(|err| self.store_error(err))?;
            self.batch.add_risk(&RiskPoint::of(finding));
        }
        match self.store.append(&mut self.batch) {
            Ok(receipt) => {
                done.receipt = receipt;
                Ok(done)
            }
            Err(err) => {
                self.poisoned = true;
                self.batch.clear();
                Err(self.store_error(err))
            }
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, StreamError> {
        let empty = Baseline::new();
        let profiles = self.engine.baseline().unwrap_or(&empty);
        crate::snapshot::encode(self.partition, self.seen_to, profiles)
    }

    /// Runs one message through the engine (and into the store batch when `store`),
    /// collecting the findings it closes.
    fn apply(&mut self, message: &Inbound, store: bool, findings: &mut Vec<Finding>) -> Applied {
        if message.finish {
            self.engine.finish(&mut |f| findings.push(f));
            self.seen_to = self.seen_to.max(message.seq);
            return Applied::Control;
        }
        let Ok(text) = std::str::from_utf8(&message.payload) else {
            return Applied::Rejected("not UTF-8 text".into());
        };
        let State {
            engine,
            seen_to,
            store: evidence,
            batch,
            decoder,
            ..
        } = self;
        let mut applied = Applied::Event;
        let result = decoder.decode(text, &mut |event: Event<'_>| {
            if message.redelivered && message.seq <= *seen_to && stored(evidence, &event) {
                applied = Applied::Skipped;
                return;
            }
            engine.process(&event, &mut |f| findings.push(f));
            if store {
                batch.add_event(&event);
            }
        });
        if let Err(err) = result {
            return Applied::Rejected(err.to_string());
        }
        self.seen_to = self.seen_to.max(message.seq);
        applied
    }

    fn write_rejects(&mut self, rejects: &[(&Inbound, String)]) -> Result<(), StreamError> {
        let io = |source| StreamError::Io {
            path: self.rejects_path.clone(),
            source,
        };
        if self.rejects.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.rejects_path)
                .map_err(io)?;
            self.rejects = Some(file);
        }
        let Some(file) = self.rejects.as_mut() else {
            return Ok(());
        };
        let mut text = Vec::new();
        for (message, reason) in rejects {
            let record = String::from_utf8_lossy(
                &message.payload[..message.payload.len().min(MAX_REJECT_RECORD)],
            );
            let line = json!({
                "partition": self.partition,
                "stream_sequence": message.seq,
                "reason": reason,
                "record": record,
            });
            serde_json::to_writer(&mut text, &line).map_err(|e| io(e.into()))?;
            text.push(b'\n');
        }
        file.write_all(&text)
            .and_then(|()| file.sync_data())
            .map_err(|source| StreamError::Io {
                path: self.rejects_path.clone(),
                source,
            })
    }

    fn store_error(&self, source: nhiwatch_store::StoreError) -> StreamError {
        StreamError::Store {
            partition: self.partition,
            source,
        }
    }
}

enum Applied {
    Event,
    Skipped,
    Control,
    Rejected(String),
}

/// Whether the store already holds this event (same source and id).
fn stored(store: &Store, event: &Event<'_>) -> bool {
    store
        .find_events(&event.identity.id, &[&event.id], event.time, 0)
        .map(|found| found.iter().any(|e| e.source == event.source))
        .unwrap_or(false)
}

/// The folder of a partition's store under the worker's data folder.
pub fn partition_dir(data: &Path, partition: u32) -> PathBuf {
    data.join(format!("partition-{partition:04}"))
}
