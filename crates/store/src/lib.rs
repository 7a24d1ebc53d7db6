//! # nhiwatch-store
//!
//! The evidence store: what nhiwatch saw (normalised events with their raw records), what it
//! found (findings), how each identity's risk moved (risk history) and what it learned (identity
//! profiles, opaque versioned blobs), kept in one [redb](https://www.redb.org) file in a data
//! folder, append-only, hash-chained, and indexed for investigation.
//!
//! ```text
//! Batch (events, findings, risk points, profiles; encoded and deflated by the caller)
//!   └─► Store::append ── one write transaction ──► items clustered by (identity, time)
//!                                                   natural keys (idempotent re-ingest)
//!                                                   finding-kind index, identity summaries,
//!                                                   actions used
//!                                                   batch header chained by BLAKE3
//!                        commit: fsync before Ok ──► Receipt (batch number, head hash)
//! ```
//!
//! ## Durability
//!
//! Every commit uses redb's [`redb::Durability::Immediate`] in two phases (the store runs in
//! redb's single-writer multi-process mode, which always commits in two phases, and sets *quick
//! repair*): the new tree pages and the commit slot are written and `fsync`ed, then the slot is
//! made primary and `fsync`ed again. [`Store::append`] returns `Ok` only after that, so a batch
//! acknowledged to a caller survives `kill -9` and, as far as the disk honours `fsync`, power
//! loss. A commit torn by a crash is never used: on open redb falls back to the last complete
//! commit (pages carry checksums), and the store then verifies the last batch of the chain and
//! refuses to append to a chain whose end does not verify. The batch that was being written when
//! the process died is absent as a whole; re-ingesting the input stores it again, and
//! everything that was already stored is skipped by its natural key.
//!
//! A write that finds no space (a full disk, a quota, the process's file size limit) fails with
//! [`StoreError::NoSpace`] and leaves the last commit as it was. redb then refuses every further
//! operation on that open database ([`StoreError::Failed`]); opening the store again, once there
//! is space, recovers the last commit and appends go on.
//!
//! ## Idempotence
//!
//! Every item has a natural key: an event its source and the source's own event id (ids are
//! unique only within a source, so a CloudTrail `eventID` and a Kubernetes `auditID` that happen
//! to be equal are two events), a finding its stable id, a risk point its identity, time and
//! cause, a profile its identity, time, version and bytes. Items are keyed by identity, time and
//! natural key, so the check is a lookup next to where the item would go; an item already
//! stored is skipped, and re-ingesting a file adds nothing and commits no batch. An event
//! without a timestamp of its own (its time is when it was read, different on every run) is
//! found again by its natural key alone, through a small index of such events. The same source
//! id under another identity or time (a decoder that changed its mind) is a different event.
//!
//! ## Tamper evidence: what `verify` proves and what it does not
//!
//! [`Store::verify`] walks the chain from batch 0: each batch present without gaps, each header
//! hashing to its recorded hash and naming the previous batch's hash, each content's items
//! hashing (BLAKE3, over every stored byte, in order) to the root its header records, each item
//! filed under the identity and time it states, the recorded head naming the last batch, and no
//! items stored outside a committed batch. It reports the first batch that fails, with its
//! number and time range.
//!
//! It proves that the stored evidence is what was committed, *given the head hash*: any change
//! to a stored event, finding, risk point or profile, any removed or reordered item, any removed
//! batch in the middle, and a truncation of the chain's end are detected. It does not prove more
//! than that:
//!
//! - someone who can write the file can rewrite every batch from the altered one to the end and
//!   recompute every hash; the chain is then consistent. Only a head kept elsewhere catches
//!   this: `nhiwatch ingest` prints the head after each run; keep it (a ticket, a log shipped off
//!   the host, a signed note) and check with `nhiwatch verify --expect-head HASH`, which requires
//!   a batch with exactly that hash;
//! - it says nothing about events nhiwatch never received: a source that dropped or forged
//!   records before ingest is outside its reach;
//! - indexes and summaries (identity summaries, actions used, the finding-kind index, natural
//!   keys) are derived data, not evidence; a query answered from them is as good as they are.
//!   The items themselves, which `verify` covers, are what an investigation should rest on;
//! - retention removes items on purpose. A batch whose content retention removed keeps that
//!   content's root in its header, so the chain still verifies and the report counts what was
//!   removed; someone with write access could mark a batch as pruned and delete its content,
//!   which the report then shows as pruned, but they cannot replace it with other content.
//!
//! ## Retention and compaction
//!
//! [`Retention`] keeps events for one window and findings and risk history for another,
//! measured back from the newest stored item time (never later than the wall clock). Expired
//! items are not stored on append; [`Store::compact_step`] removes those already stored in
//! small transactions so that a writer appending batches is never held up for long (redb has a
//! single writer lock; compaction takes it for at most a few thousand deletions at a time).
//! Profiles are kept.

#![warn(missing_docs)]

mod batch;
mod chain;
mod codec;
mod error;
mod query;
mod store;
mod tables;
#[cfg(test)]
mod tests;
mod verify;

use nhiwatch_model::{Decision, Timestamp};
use serde::Serialize;

pub use batch::Batch;
pub use chain::{BatchHeader, Content, Hash, Section};
pub use error::StoreError;
pub use query::{EventVisitor, FindingQuery, EVIDENCE_LOOKBACK};
pub use store::{Compaction, Options, Retention, Store, FILE_NAME};
pub use tables::{ActionUse, IdentitySummary, LatestRisk};
pub use verify::{Problem, VerifyReport};

/// The end of the chain: the last batch and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Head {
    /// The last batch's number.
    pub batch: u64,
    /// Its hash.
    pub hash: Hash,
}

/// A count per content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Events.
    pub events: u64,
    /// Findings.
    pub findings: u64,
    /// Risk points.
    pub risks: u64,
    /// Profiles.
    pub profiles: u64,
}

/// What [`Store::append`] did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The committed batch; `None` when nothing in it was new.
    pub batch: Option<BatchHeader>,
    /// Items stored.
    pub stored: Counts,
    /// Items skipped because the store (or the batch) already held them.
    pub duplicates: Counts,
    /// Items skipped because retention had already expired them.
    pub expired: Counts,
    /// For each event the batch took ([`Batch::add_event`] returned `true`), in that order:
    /// whether the store already held it, so that it was not stored again (a client's retry
    /// of an acknowledged request). Empty when the batch held no events.
    #[serde(skip)]
    pub events_held: Vec<bool>,
}

/// One point of an identity's risk history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RiskPoint {
    /// The identity.
    pub identity: String,
    /// When the risk was assessed.
    pub time: Timestamp,
    /// Risk 0-100.
    pub risk: u8,
    /// The decision taken.
    pub decision: Decision,
    /// What moved it: a finding id, or a scorer's name.
    pub cause: String,
}

impl RiskPoint {
    /// The point a finding sets for its identity: its risk and decision at its time.
    pub fn of(finding: &nhiwatch_model::Finding) -> Self {
        RiskPoint {
            identity: finding.identity.clone(),
            time: finding.time,
            risk: finding.risk,
            decision: finding.decision,
            cause: finding.id.clone(),
        }
    }
}

/// A version of an identity's profile: bytes whose meaning belongs to the caller (the baseline
/// lens), tagged with the caller's format version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The identity.
    pub identity: String,
    /// The time the profile describes the identity up to.
    pub time: Timestamp,
    /// The caller's format version of `data`.
    pub version: u32,
    /// The profile.
    #[serde(skip)]
    pub data: Vec<u8>,
}
