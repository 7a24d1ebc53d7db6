//! # nhiwatch-stream
//!
//! Scale-out on NATS JetStream (DESIGN.md, "Data flow": the engine shards by identity, fed by an
//! existing distributed log). When one machine is not enough, nhiwatch runs as many workers
//! over JetStream subjects partitioned by identity:
//!
//! ```text
//!  nhiwatch publish ──► nhiwatch.events.<partition_of(identity.id)>   (stream NHIWATCH_EVENTS,
//!   (any input format,     │                                           Nats-Msg-Id = source:id)
//!    normalised)           ▼
//!                     durable pull consumer per partition (cumulative ack)
//!                          │   owned by one worker at a time (leases, rendezvous hashing)
//!                          ▼
//!  worker ── partition thread: detect Engine ─► store commit (durable) ─► findings published
//!                          │                    (per-partition redb)      to nhiwatch.findings
//!                          └─ ack only after both: at-least-once delivery, deduplicated by event
//!                             id in the store and by finding id in JetStream = effectively once
//!  partition moves ─► profiles snapshotted to the object store, loaded (merged) by the next owner,
//!                     detection state rebuilt by replaying the partition's retained events
//! ```
//!
//! - [`partition`]: the stable partition function and rendezvous ownership.
//! - [`connect`]: NATS URLs, credentials, TLS, errors that say what was tried.
//! - [`layout`]: the streams, consumers, bucket and object store, and creating them.
//! - [`publish`]: pipelined publishing of normalised events.
//! - [`worker`]: membership, leases, partition takeover and hand-back, consumption.
//! - [`snapshot`]: profile snapshots.
//! - [`testing`]: a throwaway `nats-server` for tests and benchmarks.
//!
//! docs/scale-out.md has the capacity model and measurements.

#![warn(missing_docs)]

pub mod connect;
mod error;
pub mod layout;
pub mod partition;
pub mod publish;
pub mod snapshot;
pub mod testing;
pub mod worker;

pub use connect::NatsOptions;
pub use error::StreamError;
pub use layout::Layout;
pub use partition::{partition_of, PartitionSet};
pub use publish::{Outgoing, PublishStats, Publisher};
pub use worker::{Notice, Stats, StatsSnapshot, Worker, WorkerConfig};
