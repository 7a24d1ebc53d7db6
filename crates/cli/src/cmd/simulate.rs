//! `nhiwatch simulate`: write a labelled, simulated NHI fleet in the providers' formats.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use nhiwatch_model::Timestamp;
use nhiwatch_sim::{simulate, Scenario, SimConfig};

/// Arguments of `nhiwatch simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of every random choice: the same seed writes the same bytes.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Identities in the fleet (at least 6).
    #[arg(long, default_value_t = 200)]
    identities: usize,
    /// Days of activity.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Attack scenarios to inject: `all`, `none`, or a comma-separated list (`S1,S4` or full names).
    #[arg(long, default_value = "all", value_parser = parse_attacks)]
    attacks: Attacks,
    /// Incidents per scenario (each on a different identity where possible).
    #[arg(long, default_value_t = 2)]
    incidents_per_scenario: usize,
    /// First day, `YYYY-MM-DD` (UTC).
    #[arg(long, default_value = "2026-03-02", value_parser = parse_day)]
    start: i64,
    /// Attacks begin no earlier than this many days in, leaving clean history to learn from.
    #[arg(long, default_value_t = 10)]
    attack_after_days: u32,
}

/// The parsed `--attacks` list.
#[derive(Clone, Debug)]
pub struct Attacks(Vec<Scenario>);

fn parse_attacks(text: &str) -> Result<Attacks, String> {
    match text {
        "all" => Ok(Attacks(Scenario::ALL.to_vec())),
        "none" => Ok(Attacks(Vec::new())),
        list => list
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map(Attacks),
    }
}

fn parse_day(text: &str) -> Result<i64, String> {
    Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z"))
        .map(|t| t.unix_seconds() / 86_400)
        .map_err(|err| format!("`{text}` is not a YYYY-MM-DD date: {err}"))
}

/// Builds the library configuration from the arguments.
pub fn config(args: &Args) -> SimConfig {
    SimConfig {
        seed: args.seed,
        identities: args.identities,
        days: args.days,
        attacks: args.attacks.0.clone(),
        incidents_per_scenario: args.incidents_per_scenario,
        start_day: args.start,
        attack_after_days: args.attack_after_days,
    }
}

/// Runs `simulate` and prints what it wrote.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let manifest = simulate(&config(&args), &args.out)?;
    eprintln!(
        "nhiwatch: simulated {} identities over {} days into {} in {:.1} s: {} events ({} benign), {} incidents, {} files",
        args.identities,
        args.days,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        manifest.events,
        manifest.benign_events,
        manifest.incidents,
        manifest.files
    );
    for (source, count) in &manifest.events_per_source {
        eprintln!("  {source:<14} {count:>10} events");
    }
    Ok(ExitCode::SUCCESS)
}
