//! # nhiwatch-sim
//!
//! A deterministic, labelled simulation of a fleet of non-human identities, written in the
//! providers' real formats, and the evaluation of findings against its labels.
//!
//! The public data sets have real attacks but little benign history; nhiwatch needs weeks of
//! believable behaviour to learn from and to measure false findings against. [`simulate`] writes
//! the telemetry under `telemetry/` (so that one path reads it all, and nothing else):
//!
//! - `telemetry/cloudtrail/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/*.json.gz` — `{"Records":[...]}`
//!   files per account and hour, as CloudTrail delivers them to S3;
//! - `telemetry/k8s/audit-YYYY-MM-DD.jsonl` — Kubernetes `audit.k8s.io/v1` `Event` lines;
//! - `telemetry/github/audit-YYYY-MM-DD.jsonl` — GitHub organisation audit log entries;
//! - `telemetry/agents/otlp-YYYY-MM-DD.jsonl` — one OTLP JSON trace export per agent session, GenAI spans;
//! - `policy.yaml` and `iam/*.json` — the approved use of every identity (DESIGN.md format);
//! - `labels.jsonl` — one line per injected incident with the ids of its malicious events;
//! - `manifest.json` — parameters and event counts.
//!
//! Everything is a pure function of [`SimConfig`]: the same seed gives the same bytes. Each
//! identity draws from its own random stream, so adding identities does not change the others.
//!
//! [`eval::evaluate`] scores findings against `labels.jsonl`.

#![warn(missing_docs)]

mod act;
mod attack;
pub mod eval;
mod fleet;
mod render;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use attack::Scenario;

/// The folder of a simulation's output that holds its telemetry, and nothing else.
pub const TELEMETRY_DIR: &str = "telemetry";

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// How many identities in the fleet.
    pub identities: usize,
    /// How many days of activity.
    pub days: u32,
    /// Which attack scenarios to inject.
    pub attacks: Vec<Scenario>,
    /// How many incidents of each scenario (each on a different identity where possible).
    pub incidents_per_scenario: usize,
    /// First day, as days since 1970-01-01 (UTC midnight). Default: 2026-03-02, a Monday.
    pub start_day: i64,
    /// Attacks start no earlier than this many days into the simulation, leaving clean
    /// history to learn from.
    pub attack_after_days: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 7,
            identities: 200,
            days: 14,
            attacks: Scenario::ALL.to_vec(),
            incidents_per_scenario: 2,
            start_day: 20_514, // 2026-03-02
            attack_after_days: 10,
        }
    }
}

/// What a simulation wrote.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The configuration that produced it.
    pub config: Option<SimConfig>,
    /// Events written, per source (`cloudtrail`, `k8s_audit`, `github_audit`, `otel`).
    pub events_per_source: std::collections::BTreeMap<String, u64>,
    /// All events written.
    pub events: u64,
    /// Events not part of any incident.
    pub benign_events: u64,
    /// Injected incidents.
    pub incidents: u64,
    /// Identities per kind.
    pub identities_per_kind: std::collections::BTreeMap<String, u64>,
    /// Files written.
    pub files: u64,
}

/// Why a simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The configuration cannot be simulated.
    #[error("{0}")]
    Config(String),
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Simulates the fleet into `out` (created if missing) and returns the manifest it wrote.
pub fn simulate(config: &SimConfig, out: &Path) -> Result<Manifest, SimError> {
    if config.identities < 6 {
        return Err(SimError::Config(
            "--identities must be at least 6 (one of each archetype)".into(),
        ));
    }
    if config.days == 0 || config.days > 366 {
        return Err(SimError::Config("--days must be between 1 and 366".into()));
    }
    fs::create_dir_all(out).map_err(io_error(out))?;
    let fleet = fleet::Fleet::new(config);
    let incidents = attack::plan(config, &fleet);
    let mut writer = render::Writer::new(&out.join(TELEMETRY_DIR), config.seed);
    let mut labels: Vec<attack::Label> = incidents.iter().map(attack::Incident::label).collect();
    for day in 0..config.days {
        let mut acts = fleet.day(day);
        for incident in &incidents {
            incident.inject(day, &fleet, &mut acts);
        }
        acts.sort_by(|a, b| a.time.cmp(&b.time).then(a.actor.cmp(&b.actor)));
        writer.write_day(
            config.start_day + i64::from(day),
            &fleet,
            &mut acts,
            &mut labels,
        )?;
    }
    fleet::write_policy(out, &fleet)?;
    let labels_path = out.join("labels.jsonl");
    let mut text = String::new();
    for label in &labels {
        text.push_str(&serde_json::to_string(label).map_err(|e| SimError::Config(e.to_string()))?);
        text.push('\n');
    }
    fs::write(&labels_path, text).map_err(io_error(&labels_path))?;
    let malicious: u64 = labels.iter().map(|l| l.event_ids.len() as u64).sum();
    let manifest = Manifest {
        config: Some(config.clone()),
        events_per_source: writer.events_per_source.clone(),
        events: writer.events,
        benign_events: writer.events - malicious,
        incidents: labels.len() as u64,
        identities_per_kind: fleet.kinds(),
        files: writer.files + 2 + fleet.iam_documents() as u64,
    };
    let manifest_path = out.join("manifest.json");
    let json =
        serde_json::to_string_pretty(&manifest).map_err(|e| SimError::Config(e.to_string()))?;
    fs::write(&manifest_path, json).map_err(io_error(&manifest_path))?;
    Ok(manifest)
}
