//! `nhiwatch policy check FILE`: validate a policy file and summarise it.

use std::path::PathBuf;
use std::process::ExitCode;

use nhiwatch_policy::{Policy, Summary};

use crate::output::sanitize;

/// How `policy check` prints its summary.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SummaryFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object, for machines.
    Json,
}

/// Arguments of `nhiwatch policy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PolicyCommand {
    /// Validate a policy file (and the IAM documents it names) and summarise it: identities,
    /// rules, workflows, IAM documents, and conditions nhiwatch cannot evaluate.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// The policy file (YAML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// How to print the summary.
    #[arg(long, value_enum, default_value_t)]
    format: SummaryFormat,
}

/// Runs `policy`. An invalid policy is an error naming the file, line and key.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Check(check) => {
            let policy =
                Policy::load(&check.file).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
            let summary = policy.summary();
            match check.format {
                SummaryFormat::Text => print!("{}", text(&summary)),
                SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn text(summary: &Summary) -> String {
    let mut out = format!(
        "{}: valid; {} identity {}, undeclared identities {}\n",
        sanitize(&summary.source),
        summary.identities,
        if summary.identities == 1 {
            "entry"
        } else {
            "entries"
        },
        if summary.require_declared {
            "are findings (require_declared)"
        } else {
            "are watched, not findings"
        }
    );
    for entry in &summary.entries {
        out.push_str(&format!("  [{}] {}", entry.index, sanitize(&entry.pattern)));
        if let Some(kind) = entry.kind {
            out.push_str(&format!(" ({kind})"));
        }
        if let Some(owner) = &entry.owner {
            out.push_str(&format!(" owner {}", sanitize(owner)));
        }
        out.push('\n');
        out.push_str(&format!(
            "      {} allow, {} deny, {} tools, {} IAM statements",
            entry.allow_rules, entry.deny_rules, entry.tools, entry.iam_statements
        ));
        if !entry.iam_documents.is_empty() {
            let docs: Vec<String> = entry.iam_documents.iter().map(|d| sanitize(d)).collect();
            out.push_str(&format!(" in {}", docs.join(", ")));
        }
        out.push_str(&format!(", {} sensitive\n", entry.sensitive));
        if let Some(workflow) = &entry.workflow {
            out.push_str(&format!(
                "      workflow: {} ({} steps, window {}s)\n",
                sanitize(&workflow.steps),
                workflow.positions,
                workflow.window_seconds
            ));
        }
        if let Some(hours) = &entry.hours {
            out.push_str(&format!("      hours: {}\n", sanitize(hours)));
        }
        if !entry.decision.is_empty() {
            let decisions: Vec<String> = entry
                .decision
                .iter()
                .map(|(s, d)| format!("{s} → {d}"))
                .collect();
            out.push_str(&format!("      decision: {}\n", decisions.join(", ")));
        }
    }
    if summary.unevaluable.is_empty() {
        out.push_str("every IAM condition can be evaluated from telemetry\n");
    } else {
        out.push_str(&format!(
            "{} IAM condition(s) or variable(s) cannot be evaluated from telemetry (an Allow that depends on one is assumed to hold, a Deny is not applied; findings say so):\n",
            summary.unevaluable.len()
        ));
        for item in &summary.unevaluable {
            out.push_str(&format!(
                "  [{}] {}: {}: {}\n",
                item.entry,
                sanitize(&item.identity),
                sanitize(&item.statement),
                sanitize(&item.what)
            ));
        }
    }
    for warning in &summary.warnings {
        out.push_str(&format!("warning: {}\n", sanitize(warning)));
    }
    out
}
