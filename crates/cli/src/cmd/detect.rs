//! `nhiwatch detect`: stream telemetry through the detection engine and print findings.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use nhiwatch_detect::{ocsf, Engine, EngineConfig};
use nhiwatch_model::{Event, Finding, FindingKind};
use nhiwatch_policy::Policy;

use crate::cmd::normalize::EXIT_REJECTS;
use crate::input::{read_all, InputArgs};
use crate::output::{cell, sanitize};

/// How `detect` prints findings.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FindingFormat {
    /// One finding per line, as JSON (the DESIGN.md contract).
    #[default]
    Jsonl,
    /// One OCSF Detection Finding (class 2004) per line.
    Ocsf,
    /// A fixed-width table for people.
    Table,
}

/// Arguments of `nhiwatch detect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// The policy file: entitlements, workflows, hours, sensitive items. Without one only
    /// provider denials are reported.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// How to print findings.
    #[arg(long, value_enum, default_value_t)]
    format: FindingFormat,
    /// Write findings to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Events of one identity at most this far apart form one finding (e.g. `30m`, `2h`).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = nhiwatch_policy::parse_duration)]
    window: i64,
}

/// Runs `detect`: findings to standard output (or `--out`), a summary to standard error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = args
        .policy
        .as_deref()
        .map(|path| Policy::load(path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string()))))
        .transpose()?
        .map(Arc::new);
    let config = EngineConfig {
        episode_gap: args.window,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(policy, config);
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    if args.format == FindingFormat::Table {
        out.write_all(table_header().as_bytes())?;
    }
    let mut write_error: Option<io::Error> = None;
    let format = args.format;
    let mut emit = |finding: Finding| {
        if write_error.is_none() {
            if let Err(err) = write_finding(&mut out, format, &finding) {
                write_error = Some(err);
            }
        }
    };
    let stats = read_all(&args.input, &mut |event: Event<'_>| {
        engine.process(&event, &mut emit)
    })?;
    engine.finish(&mut emit);
    match write_error {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Some(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Some(err) => return Err(err).context("cannot write findings"),
        None => {}
    }
    if let Err(err) = out.flush() {
        if err.kind() != io::ErrorKind::BrokenPipe {
            return Err(err).context("cannot write findings");
        }
    }
    let engine_stats = engine.stats();
    let mut summary = format!(
        "nhiwatch: {} records read, {} events, {} rejected; {} identities ({} declared); {} findings\n",
        stats.records,
        stats.events,
        stats.rejects,
        engine_stats.identities,
        engine_stats.declared,
        engine_stats.findings
    );
    for (kind, count) in FindingKind::ALL.iter().zip(engine_stats.per_kind) {
        if count > 0 {
            summary.push_str(&format!("  {:<20} {count:>8}\n", kind.as_str()));
        }
    }
    eprint!("{summary}");
    Ok(if stats.rejects > 0 {
        ExitCode::from(EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_finding(out: &mut impl Write, format: FindingFormat, finding: &Finding) -> io::Result<()> {
    match format {
        FindingFormat::Jsonl => {
            serde_json::to_writer(&mut *out, finding)?;
            out.write_all(b"\n")
        }
        FindingFormat::Ocsf => {
            serde_json::to_writer(&mut *out, &ocsf::detection_finding(finding))?;
            out.write_all(b"\n")
        }
        FindingFormat::Table => out.write_all(table_row(finding).as_bytes()),
    }
}

pub(crate) fn table_header() -> String {
    format!(
        "{} {} {} {} {} {} {} {}\n",
        cell("time", 24),
        cell("severity", 8),
        cell("kind", 18),
        cell("risk", 4),
        cell("decision", 8),
        cell("events", 6),
        cell("identity", 48),
        "summary"
    )
}

pub(crate) fn table_row(finding: &Finding) -> String {
    format!(
        "{} {} {} {} {} {} {} {}\n",
        cell(&finding.time.to_string(), 24),
        cell(finding.severity.as_str(), 8),
        cell(finding.kind.as_str(), 18),
        cell(&finding.risk.to_string(), 4),
        cell(finding.decision.as_str(), 8),
        cell(&finding.evidence.event_ids.len().to_string(), 6),
        cell(&finding.identity, 48),
        sanitize(&finding.summary)
    )
}
