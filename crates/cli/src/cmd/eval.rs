//! `nhiwatch eval`: score findings against a simulation's labels.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nhiwatch_sim::eval::{evaluate, read_findings, read_labels};
use nhiwatch_sim::Manifest;

/// How `eval` prints its report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportFormat {
    /// A table for people.
    #[default]
    Text,
    /// One JSON object, for machines.
    Json,
}

/// Arguments of `nhiwatch eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The simulation's `labels.jsonl`.
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// The simulation's `manifest.json` (for the benign event count); default: beside the labels.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Findings files (JSON lines, DESIGN.md format). None: every incident is missed.
    #[arg(value_name = "FINDINGS")]
    findings: Vec<PathBuf>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t)]
    format: ReportFormat,
}

/// Runs `eval`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let labels = read_labels(&args.labels)?;
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| args.labels.with_file_name("manifest.json"));
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read manifest {}", manifest_path.display()))?,
    )
    .with_context(|| format!("{} is not a simulation manifest", manifest_path.display()))?;
    let mut findings = Vec::new();
    for path in &args.findings {
        findings.extend(read_findings(path)?);
    }
    let report = evaluate(&labels, &findings, manifest.benign_events);
    match args.format {
        ReportFormat::Text => print!("{}", report.to_table()),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}
