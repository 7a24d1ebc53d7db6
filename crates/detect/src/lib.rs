//! # nhiwatch-detect
//!
//! The streaming engine of nhiwatch and the detectors of its first two lenses (DESIGN.md):
//! *permitted* (was the action allowed: `out_of_scope`, `denied_attempts`, `sensitive_access`,
//! undeclared identities) and *expected* (was it part of the approved workflow, at the approved
//! time: `workflow_deviation`, `time_anomaly`).
//!
//! - [`Engine`] takes events one at a time (constant memory per identity), judges each against
//!   the identity's policy entry once, and hands the result to every [`Detector`]; see
//!   [`engine`] for the component model the baseline lens (issue 5) plugs into.
//! - [`episode`] groups an identity's flagged events into one finding per episode.
//! - [`detectors`] are the detectors themselves, the usual lens ([`detectors::Usual`]: learned
//!   baselines from `nhiwatch-baseline`, the catalogue of dangerous actions) among them.
//! - [`risk`] scores each identity's risk from its findings and decides.
//! - [`ocsf`] writes findings as OCSF Detection Findings; [`access`] builds the access report
//!   (permitted but unused, used but not permitted, a least-privilege IAM policy).

#![warn(missing_docs)]

pub mod access;
pub mod attack;
pub mod detectors;
pub mod engine;
pub mod episode;
pub mod ocsf;
pub mod risk;

pub use engine::{
    Assessment, Detector, Draft, Engine, EngineConfig, EngineStats, Names, Observation, Scorer,
    SeverityScorer, StreamPosition,
};
pub use risk::RiskScorer;
