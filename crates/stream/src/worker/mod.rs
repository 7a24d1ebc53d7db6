//! The worker: owns partitions, consumes them, and hands them over when the fleet changes.
//!
//! ## Membership and leases
//!
//! Every worker writes `member.<name>` (with the partitions it may own) to the leases bucket
//! each heartbeat (a third of the lease time); an entry not renewed within the lease time
//! expires, so the live members are the keys present. Each worker computes, for every
//! partition, its owner among the live members that may own it ([`crate::partition::owner`],
//! rendezvous hashing), and:
//!
//! - takes a partition it should own by creating `partition.NNNN` (which fails while another
//!   worker holds it), then renews that lease each heartbeat with a compare-and-set on its
//!   revision;
//! - hands back a partition it should no longer own (a worker joined): finishes the batch in
//!   hand, snapshots the profiles, deletes the lease;
//! - stops at once when a renewal fails (the lease expired or another worker has it).
//!
//! Partitions are taken only when the member list was the same on two heartbeats in a row, so
//! a fleet starting together does not shuffle partitions around. A worker killed with `kill -9`
//! stops renewing; after the lease time its partitions are taken by the others, which replay
//! them to where it had durably got to (the module `worker::partition` describes how).
//!
//! ## Fencing
//!
//! A lease is a time-limited claim, so an owner paused longer than the lease time (a stopped
//! VM) may briefly overlap with its successor. Two things keep that harmless: a partition's
//! store is one redb file that only one process can hold open for writing, so the successor
//! waits for the predecessor to let go of it (when the data folder is shared, as it is on one
//! host or a shared volume); and re-created consumers, natural-key deduplication in the store
//! and finding ids as `Nats-Msg-Id` make repeated work idempotent.

mod partition;
mod processor;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use async_nats::Client;
use futures_util::StreamExt;
use nhiwatch_detect::EngineConfig;
use nhiwatch_policy::Policy;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::{Id as TaskId, JoinSet};

use crate::layout::{self, Layout};
use crate::partition::{owner, PartitionSet};
use crate::StreamError;

pub use processor::partition_dir;

use partition::{Directive, Exit};

/// How a partition's task ended: its partition and its result.
type Ended = (u32, Result<Exit, StreamError>);

/// Something a worker did that its operator may want to see.
#[derive(Clone, Debug)]
pub enum Notice {
    /// A partition was taken over.
    Acquired {
        /// The partition.
        partition: u32,
        /// The stream sequence consumption resumed from.
        from: u64,
        /// Messages replayed to rebuild its state.
        replayed: u64,
        /// How long the takeover took.
        elapsed: Duration,
    },
    /// A partition was handed back (profiles snapshotted, lease released).
    Released {
        /// The partition.
        partition: u32,
    },
    /// A partition's lease was lost; its processing stopped at once.
    Lost {
        /// The partition.
        partition: u32,
    },
    /// A partition failed and will be taken over again (rebuilt).
    Failed {
        /// The partition.
        partition: u32,
        /// Why.
        error: String,
    },
    /// A transient failure (NATS unreachable, a publish not acknowledged); retrying.
    Retrying {
        /// The partition.
        partition: u32,
        /// Why.
        error: String,
    },
}

/// A receiver of [`Notice`]s.
pub type Notify = Arc<dyn Fn(&Notice) + Send + Sync>;

/// Worker settings.
#[derive(Clone)]
pub struct WorkerConfig {
    /// This worker's name, unique in the fleet (letters, digits, `-`, `_`, `=`).
    pub name: String,
    /// The partitions this worker may own (`None`: all).
    pub partitions: Option<PartitionSet>,
    /// Where partition stores live: `<data>/partition-NNNN/`.
    pub data: PathBuf,
    /// The policy.
    pub policy: Option<Arc<Policy>>,
    /// Engine settings (as `nhiwatch detect` takes them).
    pub engine: EngineConfig,
    /// The layout to create the events stream with, when it does not exist yet; `None`
    /// requires the stream to exist.
    pub create: Option<Layout>,
    /// Most messages per batch (one store commit per batch).
    pub batch: usize,
    /// How long JetStream waits for an acknowledgement before redelivering.
    pub ack_wait: Duration,
    /// Lease time: a worker silent this long is taken as gone. The same for every worker of a
    /// fleet (it is the leases bucket's expiry).
    pub lease: Duration,
    /// Longest pause between polls of a quiet partition.
    pub idle_poll: Duration,
    /// How long the findings stream keeps findings.
    pub findings_retention: Duration,
    /// How long to wait for partitions to be handed back when stopping.
    pub grace: Duration,
    /// How often each partition's profiles are snapshotted to the object store (besides at
    /// hand-back), bounding what a crash costs once retention has dropped old events.
    pub snapshot_every: Duration,
    /// A partition taken over is rebuilt by replaying all its events (exact) only when it has
    /// at most this many; otherwise from its profile snapshot and the events after it.
    pub max_replay: u64,
    /// Where notices go.
    pub notify: Option<Notify>,
}

impl WorkerConfig {
    /// Defaults: all partitions, batches of 512, 30 s ack wait, 10 s leases, 30 days of
    /// findings, 30 s grace, profile snapshots every 10 minutes, full replays of at most 2
    /// million events.
    pub fn new(name: impl Into<String>, data: impl Into<PathBuf>) -> Self {
        WorkerConfig {
            name: name.into(),
            partitions: None,
            data: data.into(),
            policy: None,
            engine: EngineConfig::default(),
            create: None,
            batch: 512,
            ack_wait: Duration::from_secs(30),
            lease: Duration::from_secs(10),
            idle_poll: Duration::from_millis(250),
            findings_retention: Duration::from_secs(30 * 86_400),
            grace: Duration::from_secs(30),
            snapshot_every: Duration::from_secs(600),
            max_replay: 2_000_000,
            notify: None,
        }
    }
}

/// Counts of a worker's run, shared with whoever watches it.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events run through the engine and committed.
    pub events: AtomicU64,
    /// Findings committed and published.
    pub findings: AtomicU64,
    /// Events stored (new to the store).
    pub stored: AtomicU64,
    /// Events the store already held (redelivered after a crash, or re-published).
    pub duplicates: AtomicU64,
    /// Redelivered events passed over (already seen and stored).
    pub skipped: AtomicU64,
    /// Messages that were not normalised events (kept in `rejects.jsonl` of the partition).
    pub rejects: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Messages replayed to rebuild partitions taken over.
    pub replayed: AtomicU64,
    /// Partitions owned now.
    pub owned: AtomicU64,
}

impl Stats {
    fn add(&self, done: &processor::Done) {
        self.events.fetch_add(done.events, Ordering::Relaxed);
        self.findings
            .fetch_add(done.findings.len() as u64, Ordering::Relaxed);
        self.stored
            .fetch_add(done.receipt.stored.events, Ordering::Relaxed);
        self.duplicates
            .fetch_add(done.receipt.duplicates.events, Ordering::Relaxed);
        self.skipped.fetch_add(done.skipped, Ordering::Relaxed);
        self.rejects.fetch_add(done.rejects, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// A plain copy of the counts.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            events: get(&self.events),
            findings: get(&self.findings),
            stored: get(&self.stored),
            duplicates: get(&self.duplicates),
            skipped: get(&self.skipped),
            rejects: get(&self.rejects),
            batches: get(&self.batches),
            replayed: get(&self.replayed),
            owned: get(&self.owned),
        }
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::events`].
    pub events: u64,
    /// See [`Stats::findings`].
    pub findings: u64,
    /// See [`Stats::stored`].
    pub stored: u64,
    /// See [`Stats::duplicates`].
    pub duplicates: u64,
    /// See [`Stats::skipped`].
    pub skipped: u64,
    /// See [`Stats::rejects`].
    pub rejects: u64,
    /// See [`Stats::batches`].
    pub batches: u64,
    /// See [`Stats::replayed`].
    pub replayed: u64,
    /// See [`Stats::owned`].
    pub owned: u64,
}

/// What partition tasks share.
pub(crate) struct Shared {
    js: Context,
    events: Stream,
    profiles: ObjectStore,
    config: WorkerConfig,
    stats: Arc<Stats>,
}

impl Shared {
    fn notify(&self, notice: Notice) {
        if let Some(notify) = &self.config.notify {
            notify(&notice);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Member {
    partitions: String,
}

/// A worker, connected and set up, not yet running.
pub struct Worker {
    shared: Arc<Shared>,
    leases: kv::Store,
    eligible: PartitionSet,
    partitions: u32,
}

impl Worker {
    /// Sets up what the worker needs in JetStream (the events stream per `config.create`, the
    /// findings stream, the leases bucket, the profiles store).
    pub async fn start(client: Client, config: WorkerConfig) -> Result<Worker, StreamError> {
        if config.name.is_empty()
            || !config
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b))
        {
            return Err(StreamError::Options(format!(
                "worker name `{}`: use letters, digits, `-`, `_` and `=`",
                config.name
            )));
        }
        let js = async_nats::jetstream::new(client);
        let (events, partitions) = match &config.create {
            Some(layout) => (layout.ensure_events(&js).await?, layout.partitions),
            None => layout::open_events(&js).await?.ok_or_else(|| {
                StreamError::Layout(format!(
                    "there is no {} stream yet: publish events first, or give the number of \
                     partitions to create it with",
                    layout::EVENTS_STREAM
                ))
            })?,
        };
        let eligible = match &config.partitions {
            Some(set) => {
                if let Some(p) = set.iter().find(|&p| p >= partitions) {
                    return Err(StreamError::Layout(format!(
                        "partition {p} does not exist: the stream has {partitions} (0-{})",
                        partitions - 1
                    )));
                }
                set.clone()
            }
            None => PartitionSet::all(partitions),
        };
        let replicas = events.cached_info().config.num_replicas.max(1);
        layout::ensure_findings(
            &js,
            config.findings_retention,
            events.cached_info().config.duplicate_window,
            replicas,
        )
        .await?;
        let leases = layout::leases(&js, config.lease, replicas).await?;
        let profiles = layout::profiles(&js, replicas).await?;
        Ok(Worker {
            shared: Arc::new(Shared {
                js,
                events,
                profiles,
                config,
                stats: Arc::new(Stats::default()),
            }),
            leases,
            eligible,
            partitions,
        })
    }

    /// The counts, live.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// The stream's number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partitions this worker may own.
    pub fn eligible(&self) -> &PartitionSet {
        &self.eligible
    }

    /// Runs until `shutdown` completes, then hands every partition back (within the grace
    /// time) and leaves the fleet. Dropping the future instead stops at once, as a crash would:
    /// nothing unacknowledged is lost, the partitions are taken over after the lease time.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<StatsSnapshot, StreamError> {
        let mut fleet = Fleet {
            shared: self.shared.clone(),
            leases: self.leases,
            eligible: self.eligible,
            partitions: self.partitions,
            owned: BTreeMap::new(),
            running: BTreeSet::new(),
            tasks: JoinSet::new(),
            ids: HashMap::new(),
            members: Vec::new(),
            stopping: false,
        };
        let heartbeat = (self.shared.config.lease / 3).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut deadline = None;
        loop {
            tokio::select! {
                () = &mut shutdown, if deadline.is_none() => {
                    fleet.stop().await;
                    deadline = Some(Instant::now() + self.shared.config.grace);
                }
                _ = ticker.tick() => fleet.tick().await,
                Some(joined) = fleet.tasks.join_next_with_id() => fleet.ended(joined).await,
            }
            if let Some(deadline) = deadline {
                if fleet.running.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
        }
        fleet.tasks.shutdown().await;
        Ok(self.shared.stats.snapshot())
    }
}

struct Lease {
    revision: u64,
    renewed: Instant,
    directive: watch::Sender<Directive>,
}

struct Fleet {
    shared: Arc<Shared>,
    leases: kv::Store,
    eligible: PartitionSet,
    partitions: u32,
    /// Partitions whose lease this worker holds.
    owned: BTreeMap<u32, Lease>,
    /// Partitions whose task is still running (a lost lease's task may outlive it briefly).
    running: BTreeSet<u32>,
    tasks: JoinSet<Ended>,
    /// The partition of each task.
    ids: HashMap<TaskId, u32>,
    /// The members seen at the last heartbeat.
    members: Vec<(String, PartitionSet)>,
    stopping: bool,
}

fn lease_key(partition: u32) -> String {
    format!("partition.{partition:04}")
}

impl Fleet {
    fn member_key(&self) -> String {
        format!("member.{}", self.shared.config.name)
    }

    async fn tick(&mut self) {
        self.renew().await;
        if self.stopping {
            return;
        }
        let member = Member {
            partitions: self.eligible.to_string(),
        };
        if let Ok(value) = serde_json::to_vec(&member) {
            let _ = self.leases.put(self.member_key(), value.into()).await;
        }
        let Ok(members) = self.members().await else {
            return;
        };
        let stable = members == self.members;
        self.members = members;
        let me = self.shared.config.name.as_str();
        let desired: BTreeSet<u32> = self
            .eligible
            .iter()
            .filter(|&p| {
                owner(
                    p,
                    self.members
                        .iter()
                        .filter(|(_, set)| set.contains(p))
                        .map(|(name, _)| name.as_str()),
                ) == Some(me)
            })
            .collect();
        for (partition, lease) in &self.owned {
            if !desired.contains(partition) {
                lease.directive.send_if_modified(|d| {
                    let change = *d == Directive::Run;
                    if change {
                        *d = Directive::Release;
                    }
                    change
                });
            }
        }
        if !stable {
            return;
        }
        for partition in desired {
            if self.owned.contains_key(&partition) || self.running.contains(&partition) {
                continue;
            }
            let name = self.shared.config.name.clone();
            if let Ok(revision) = self.leases.create(lease_key(partition), name.into()).await {
                self.spawn(partition, revision);
            }
        }
    }

    /// The live members and the partitions each may own, sorted by name.
    async fn members(&self) -> Result<Vec<(String, PartitionSet)>, ()> {
        let mut keys = self.leases.keys().await.map_err(|_| ())?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            if let Some(name) = key.map_err(|_| ())?.strip_prefix("member.") {
                names.push(name.to_owned());
            }
        }
        let mut members = Vec::with_capacity(names.len());
        for name in names {
            let Some(value) = self
                .leases
                .get(format!("member.{name}"))
                .await
                .map_err(|_| ())?
            else {
                continue;
            };
            let set = serde_json::from_slice::<Member>(&value)
                .ok()
                .and_then(|m| PartitionSet::parse(&m.partitions, self.partitions).ok());
            if let Some(set) = set {
                members.push((name, set));
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(members)
    }

    /// Renews every lease; a lease that cannot be renewed is given up at once.
    async fn renew(&mut self) {
        let lease_time = self.shared.config.lease;
        let name = self.shared.config.name.clone();
        let mut lost = Vec::new();
        for (&partition, lease) in &mut self.owned {
            match self
                .leases
                .update(lease_key(partition), name.clone().into(), lease.revision)
                .await
            {
                Ok(revision) => {
                    lease.revision = revision;
                    lease.renewed = Instant::now();
                }
                Err(err) => {
                    if err.kind() == UpdateErrorKind::WrongLastRevision
                        || lease.renewed.elapsed() >= lease_time
                    {
                        lost.push(partition);
                    }
                }
            }
        }
        for partition in lost {
            if let Some(lease) = self.owned.remove(&partition) {
                let _ = lease.directive.send(Directive::Abort);
                self.shared.notify(Notice::Lost { partition });
            }
        }
        self.shared
            .stats
            .owned
            .store(self.owned.len() as u64, Ordering::Relaxed);
    }

    fn spawn(&mut self, partition: u32, revision: u64) {
        let (directive, receiver) = watch::channel(Directive::Run);
        self.owned.insert(
            partition,
            Lease {
                revision,
                renewed: Instant::now(),
                directive,
            },
        );
        self.running.insert(partition);
        self.shared
            .stats
            .owned
            .store(self.owned.len() as u64, Ordering::Relaxed);
        let shared = self.shared.clone();
        let task = self.tasks.spawn(async move {
            let result = partition::own(shared, partition, receiver).await;
            (partition, result)
        });
        self.ids.insert(task.id(), partition);
    }

    async fn ended(&mut self, joined: Result<(TaskId, Ended), tokio::task::JoinError>) {
        let (partition, result) = match joined {
            Ok((id, (partition, result))) => {
                self.ids.remove(&id);
                (partition, result)
            }
            Err(err) => {
                let Some(partition) = self.ids.remove(&err.id()) else {
                    return;
                };
                let error = StreamError::Io {
                    path: partition_dir(&self.shared.config.data, partition),
                    source: std::io::Error::other(format!("the partition's task failed: {err}")),
                };
                (partition, Err(error))
            }
        };
        self.running.remove(&partition);
        match result {
            Ok(Exit::Released) => self.shared.notify(Notice::Released { partition }),
            Ok(Exit::Aborted) => {}
            Err(err) => self.shared.notify(Notice::Failed {
                partition,
                error: err.to_string(),
            }),
        }
        if let Some(lease) = self.owned.remove(&partition) {
            let _ = self
                .leases
                .delete_expect_revision(lease_key(partition), Some(lease.revision))
                .await;
        }
        self.shared
            .stats
            .owned
            .store(self.owned.len() as u64, Ordering::Relaxed);
    }

    /// Leaves the fleet: hands every partition back.
    async fn stop(&mut self) {
        self.stopping = true;
        let _ = self.leases.delete(self.member_key()).await;
        for lease in self.owned.values() {
            let _ = lease.directive.send(Directive::Release);
        }
    }
}
