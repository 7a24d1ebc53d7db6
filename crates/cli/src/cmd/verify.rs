//! `nhiwatch verify`: walk the evidence store's hash chain and report the first altered or
//! missing batch; with `--expect-head`, check the chain against a head recorded elsewhere.

use std::process::ExitCode;

use nhiwatch_store::{Hash, VerifyReport};

use crate::cmd::ingest::DataArgs;
use crate::cmd::investigate::print_stdout;
use crate::output::sanitize;

/// Exit status when the store does not verify.
pub const EXIT_TAMPERED: u8 = 4;

/// How `verify` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyFormat {
    /// Lines for a terminal.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// Arguments of `nhiwatch verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    store: DataArgs,
    /// A head printed by an earlier `nhiwatch ingest` and kept outside the store: some batch
    /// must have exactly this hash, or the chain was rewritten or truncated since.
    #[arg(long, value_name = "HASH", value_parser = parse_hash)]
    expect_head: Option<Hash>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    format: VerifyFormat,
}

fn parse_hash(text: &str) -> Result<Hash, String> {
    text.parse()
}

/// Runs `verify`: exit status 0 when the chain verifies, 4 when it does not.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open_read_only()?;
    let report = store.verify(args.expect_head)?;
    let text = match args.format {
        VerifyFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        VerifyFormat::Text => text(&report),
    };
    print_stdout(&text)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_TAMPERED)
    })
}

fn text(report: &VerifyReport) -> String {
    let items = report.items;
    let mut out = format!(
        "verified {} batches: {} events, {} findings, {} risk points, {} profiles hash to their chain\n",
        report.batches, items.events, items.findings, items.risks, items.profiles
    );
    let pruned = report.pruned;
    if pruned.events + pruned.findings + pruned.risks > 0 {
        out.push_str(&format!(
            "removed by retention (their hashes still chain): {} events, {} findings, {} risk points\n",
            pruned.events, pruned.findings, pruned.risks
        ));
    }
    if let Some(head) = report.head {
        out.push_str(&format!("head {} (batch {})\n", head.hash, head.batch));
    }
    if let (Some(anchor), Some(head)) = (report.anchor, report.head) {
        out.push_str(&format!(
            "the expected head is batch {anchor}; {} batches were appended after it\n",
            head.batch - anchor
        ));
    }
    match &report.problem {
        None => out.push_str("OK\n"),
        Some(problem) => out.push_str(&format!("FAILED: {}\n", sanitize(&problem.to_string()))),
    }
    out
}
