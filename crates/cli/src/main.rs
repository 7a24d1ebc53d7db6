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
    /// Learn per-identity baselines (what is usual for each identity) from history, for
    /// `detect --baseline`.
    Learn(cmd::learn::Args),
    /// Per identity: permitted but never used, used but not permitted, and a least-privilege IAM policy.
    AccessReport(cmd::access_report::Args),
    /// Check Sigma and native rule files, and test each rule against the example events kept
    /// beside it.
    Rules(cmd::rules::Args),
    /// Serve over HTTP: ingest (JSON lines, CloudTrail, OTLP), inline decisions for agents,
    /// identities and findings, Prometheus metrics, alerts to webhooks.
    Serve(cmd::serve::Args),
    /// Decode telemetry, run every lens, and keep events, findings and risk history in the
    /// evidence store (durable, hash-chained); prints the chain head.
    Ingest(cmd::ingest::Args),
    /// From the evidence store, one identity: its actions as sessions, findings and why,
    /// permitted against used, and its risk over time.
    Investigate(cmd::investigate::Args),
    /// List stored findings, by kind, risk, time and identity.
    Findings(cmd::findings::Args),
    /// Walk the evidence store's hash chain and report the first altered or missing batch.
    Verify(cmd::verify::Args),
    /// Export stored events, findings or risk history as JSON lines for a data lake.
    Export(cmd::export::Args),
    /// Publish telemetry (any supported format, normalised) to NATS JetStream, partitioned by
    /// identity, for a fleet of workers.
    Publish(cmd::publish::Args),
    /// Run as one worker of a scale-out fleet over NATS JetStream: own partitions, detect,
    /// store, publish findings to `nhiwatch.findings`.
    Worker(cmd::worker::Args),
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
        Command::Learn(args) => cmd::learn::run(args),
        Command::AccessReport(args) => cmd::access_report::run(args),
        Command::Rules(args) => cmd::rules::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Ingest(args) => cmd::ingest::run(args),
        Command::Investigate(args) => cmd::investigate::run(args),
        Command::Findings(args) => cmd::findings::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Publish(args) => cmd::publish::run(args),
        Command::Worker(args) => cmd::worker::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("nhiwatch: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
