//! `nhiwatch`: behavioural telemetry for non-human identities.
//!
//! A thin shell over the nhiwatch libraries: each subcommand lives in its own module under
//! `cmd/`, parses its arguments with clap, and calls library code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod input;
mod output;

/// Behavioural telemetry for non-human identities: what did each service account, CI role,
/// API key, workload and AI agent actually do, and was that safe?
#[derive(Parser)]
#[command(name = "nhiwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a labelled fleet, run every lens over it, and show what nhiwatch finds.
    Demo(cmd::demo::Args),
    /// Decode provider telemetry and print normalised events.
    Normalize(cmd::normalize::Args),
    /// Write a labelled, simulated fleet of non-human identities in the providers' formats.
    Simulate(cmd::simulate::Args),
    /// Score findings against a simulation's labels: recall, precision, false findings, delay.
    Eval(cmd::eval::Args),
    /// Check a policy file: validate it and summarise identities, rules, workflows and IAM documents.
    Policy(cmd::policy::Args),
    /// Detect where identities leave their approved use: entitlements, denials, sensitive access,
    /// workflows, hours.
    Detect(cmd::detect::Args),
    /// Per identity: permitted but never used, used but not permitted, and a least-privilege IAM policy.
    AccessReport(cmd::access_report::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Normalize(args) => cmd::normalize::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Policy(args) => cmd::policy::run(args),
        Command::Detect(args) => cmd::detect::run(args),
        Command::AccessReport(args) => cmd::access_report::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("nhiwatch: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
