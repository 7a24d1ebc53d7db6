//! # nhiwatch-baseline
//!
//! The *usual* lens's memory (DESIGN.md): per identity, what it normally does, learned from
//! normalised events, so that detectors can say how far an event stands from it.
//!
//! A [`Profile`] holds, per identity: action and resource frequencies (stable 64-bit keys,
//! bounded heavy-hitter maps), action transitions per session (a bigram Markov chain with
//! additive smoothing), hour-of-week activity, per-window rate, data volume and distinct
//! lookup targets (log-scale histograms: medians, MADs and quantiles), source networks (/24,
//! /64) and user-agent families, denied and error counts, first and last seen, and a
//! membership filter of everything ever seen. A profile stays under 16 KiB however busy the
//! identity; a typical one is 2-5 KiB.
//!
//! - **Mergeable**: [`Profile::merge`] / [`Baseline::merge`] of profiles learned on disjoint
//!   event sets is the profile of the union (exactly, except that count maps keep their
//!   heaviest keys once full), commutative and associative: learning parallelises and shards
//!   move.
//! - **Persisted** compactly and versioned ([`Baseline::save`], [`store`] has the format).
//! - **Updated while detecting** behind a poisoning guard ([`guard::Quarantine`]).
//! - **Peer groups** ([`peer`]) merge the profiles of identities expected to behave alike.
//!
//! [`Learner`] builds a baseline from events; [`Tracker`] is the per-identity streaming state
//! (sessions, windows) that learning and detection share.

#![warn(missing_docs)]

pub mod features;
pub mod guard;
pub mod hash;
mod learn;
pub mod peer;
mod profile;
pub mod sketch;
pub mod store;
pub mod track;

pub use features::{Features, OriginCache};
pub use guard::Quarantine;
pub use learn::Learner;
pub use profile::{cap, Feature, Novelty, Profile, MATURE_DAYS, MATURE_EVENTS, QUIET_HOUR_SHARE};
pub use store::{write_atomically, Baseline, BaselineError, Peers, FORMAT_VERSION, MAGIC};
pub use track::{Step, Tracker, WindowStats};

#[cfg(test)]
mod tests;
