//! `nhiwatch learn`: learn per-identity baselines from history and write them to a file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nhiwatch_baseline::{Baseline, Learner};
use nhiwatch_model::Event;

use crate::cmd::normalize::EXIT_REJECTS;
use crate::input::{read_all, InputArgs};
use crate::output::sanitize;

/// Arguments of `nhiwatch learn`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// Write the baseline to this file.
    #[arg(long, value_name = "BASELINE")]
    out: PathBuf,
    /// Baselines to merge in (learned elsewhere, e.g. on other shards or earlier history);
    /// may be given several times.
    #[arg(long, value_name = "BASELINE")]
    merge: Vec<PathBuf>,
}

/// Loads a baseline file, with its error made safe for a terminal.
pub fn load(path: &std::path::Path) -> anyhow::Result<Baseline> {
    Baseline::load(path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))
}

/// Runs `learn`: the baseline to `--out`, a summary to standard error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut start = Baseline::new();
    for path in &args.merge {
        start.merge(&load(path)?);
    }
    let merged = start.len();
    let mut learner = Learner::resume(start);
    let stats = read_all(&args.input, &mut |event: Event<'_>| learner.observe(&event))?;
    let events = learner.events();
    let baseline = learner.finish();
    let size = baseline
        .save(&args.out)
        .with_context(|| format!("cannot write the baseline {}", args.out.display()))?;
    let mature = baseline.iter().filter(|(_, p)| p.is_mature()).count();
    eprintln!(
        "nhiwatch: learned {events} events ({} records read, {} rejected) into {} identities ({mature} with enough history to judge{}); {} peer groups; {} bytes per profile in memory on average; wrote {} ({size} bytes)",
        stats.records,
        stats.rejects,
        baseline.len(),
        if merged > 0 { format!(", {merged} from merged baselines") } else { String::new() },
        baseline.peers().len(),
        baseline.profile_bytes() / baseline.len().max(1),
        args.out.display(),
    );
    Ok(if stats.rejects > 0 {
        ExitCode::from(EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}
