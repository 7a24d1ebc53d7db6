//! `nhiwatch detect`: stream telemetry through the detection engine and print findings.
//!
//! All three lenses run: permitted and expected (with `--policy`) and usual (always: against
//! `--baseline`, against the first `--learn-days` of the input, or learned as events arrive),
//! and each identity's risk is scored across them.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use nhiwatch_baseline::{Baseline, Learner};
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{ocsf, Engine, EngineConfig};
use nhiwatch_model::{Event, Finding, FindingKind, Timestamp};
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
    /// A baseline written by `nhiwatch learn`: the usual lens judges each identity against it.
    /// Without one (and without `--learn-days`) every identity is learned from scratch as
    /// events arrive.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Learn from the first N days of the input (from the day of its earliest event, UTC),
    /// added to `--baseline` if given, and detect on the rest. Reads the input three times,
    /// so it needs files, not standard input.
    #[arg(long, value_name = "N")]
    learn_days: Option<u32>,
    /// Keep the baseline as loaded or learned: do not learn from the events detected on.
    #[arg(long)]
    frozen: bool,
    /// After detection, write the baseline as the usual lens holds it then: loaded or learned
    /// (`--baseline`, `--learn-days`), and updated while detecting unless `--frozen`. The file
    /// is replaced atomically; `--baseline` and `nhiwatch serve --baseline` read it.
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    /// Sigma or native rule files or directories to run beside the lenses (findings of kind
    /// `rule`); repeatable. See `nhiwatch rules check`.
    #[arg(long, value_name = "PATH")]
    rules: Vec<PathBuf>,
}

/// Nanoseconds per day.
const DAY: i64 = 86_400 * 1_000_000_000;

/// The baseline the usual lens starts from, and the time detection starts at (events before
/// it were learned, not judged).
fn prepare(args: &Args) -> anyhow::Result<(Baseline, Option<Timestamp>)> {
    let loaded = args
        .baseline
        .as_deref()
        .map(crate::cmd::learn::load)
        .transpose()?
        .unwrap_or_default();
    match args.learn_days {
        Some(days) => learn_first_days(&args.input, loaded, days),
        None => Ok((loaded, None)),
    }
}

/// Learns `loaded` further from the events of the input's first `days` days (UTC, from the
/// earliest event), and returns it with the time detection starts at.
pub(crate) fn learn_first_days(
    input: &InputArgs,
    loaded: Baseline,
    days: u32,
) -> anyhow::Result<(Baseline, Option<Timestamp>)> {
    if input.paths.iter().any(|p| p.as_os_str() == "-") {
        anyhow::bail!("--learn-days reads the input more than once: give files, not `-`");
    }
    // Earlier passes stay quiet: rejects are reported once, by the detection pass.
    let quiet = InputArgs {
        quiet: true,
        rejects: None,
        ..input.clone()
    };
    let mut earliest = i64::MAX;
    read_all(&quiet, &mut |event: Event<'_>| {
        if !event.time_inferred {
            earliest = earliest.min(event.time.unix_nanos());
        }
    })?;
    if earliest == i64::MAX {
        return Ok((loaded, None));
    }
    let cutoff = earliest
        .div_euclid(DAY)
        .saturating_add(i64::from(days))
        .saturating_mul(DAY);
    let mut learner = Learner::resume(loaded);
    read_all(&quiet, &mut |event: Event<'_>| {
        if event.time.unix_nanos() < cutoff {
            learner.observe(&event);
        }
    })?;
    let learned = learner.events();
    let baseline = learner.finish();
    let cutoff = Timestamp(cutoff);
    eprintln!(
        "nhiwatch: learned {learned} events before {cutoff} into {} identities; detecting from {cutoff}",
        baseline.len()
    );
    Ok((baseline, Some(cutoff)))
}

/// Runs `detect`: findings to standard output (or `--out`), a summary to standard error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = args
        .policy
        .as_deref()
        .map(|path| Policy::load(path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string()))))
        .transpose()?
        .map(Arc::new);
    let rules = if args.rules.is_empty() {
        None
    } else {
        let set =
            nhiwatch_rules::RuleSet::load(&args.rules, &nhiwatch_rules::LoadOptions::default())
                .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
        Some(Arc::new(set))
    };
    let config = EngineConfig {
        episode_gap: args.window,
        ..EngineConfig::default()
    };
    let (baseline, from) = prepare(&args)?;
    let usual = UsualConfig {
        learn: !args.frozen,
        ..UsualConfig::default()
    };
    let mut engine = Engine::with_baseline(policy, config, baseline, usual);
    if let Some(rules) = rules {
        let detector = nhiwatch_rules::RulesDetector::new(rules, engine.config());
        engine.add_detector(Box::new(detector));
    }
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
    let mut skipped = 0u64;
    let stats = read_all(&args.input, &mut |event: Event<'_>| {
        if from.is_some_and(|from| event.time < from) {
            skipped += 1;
        } else {
            engine.process(&event, &mut emit)
        }
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
    if let (Some(path), Some(baseline)) = (&args.save_baseline, engine.baseline()) {
        let size = baseline
            .save(path)
            .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
        eprintln!(
            "nhiwatch: wrote the baseline of {} identities to {} ({size} bytes)",
            baseline.len(),
            sanitize(&path.display().to_string())
        );
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
    if skipped > 0 {
        summary.push_str(&format!(
            "  {skipped} events before the detection period were learned, not judged; {} judged\n",
            engine_stats.events
        ));
    }
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

pub(crate) fn write_finding(
    out: &mut impl Write,
    format: FindingFormat,
    finding: &Finding,
) -> io::Result<()> {
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
