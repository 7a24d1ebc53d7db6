//! `nhiwatch access-report`: per identity, what its entitlements grant that it never used, what
//! it used that they do not grant, and a least-privilege IAM policy from what it did.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use nhiwatch_detect::access::{AccessReport, IdentityAccess};
use nhiwatch_model::Event;
use nhiwatch_policy::Policy;

use crate::cmd::normalize::EXIT_REJECTS;
use crate::input::{read_all, InputArgs};
use crate::output::sanitize;

/// How `access-report` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportFormat {
    /// Sections for people.
    #[default]
    Text,
    /// One JSON array, for machines.
    Json,
}

/// Arguments of `nhiwatch access-report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// The policy file whose entitlements are compared with what was done.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t)]
    format: ReportFormat,
}

/// How many used actions the text report lists per identity.
const USED_SHOWN: usize = 20;

/// Runs `access-report`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy =
        Policy::load(&args.policy).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    let mut report = AccessReport::new(Arc::new(policy));
    let stats = read_all(&args.input, &mut |event: Event<'_>| report.observe(&event))?;
    let identities = report.finish();
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&identities)?),
        ReportFormat::Text => {
            for identity in &identities {
                print!("{}", text(identity)?);
            }
        }
    }
    eprintln!(
        "nhiwatch: {} records read, {} events, {} rejected; {} identities",
        stats.records,
        stats.events,
        stats.rejects,
        identities.len()
    );
    Ok(if stats.rejects > 0 {
        ExitCode::from(EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}

fn text(identity: &IdentityAccess) -> anyhow::Result<String> {
    let mut out = format!(
        "== {} ({}) — {} events\n",
        sanitize(&identity.identity),
        identity.entry.as_deref().map_or_else(
            || "no policy entry".to_owned(),
            |e| format!("entry `{}`", sanitize(e))
        ),
        identity.events
    );
    out.push_str("used:\n");
    for used in identity.used.iter().take(USED_SHOWN) {
        out.push_str(&format!(
            "  {:<48} {:>7} events ({} ok, {} denied, {} failed)\n",
            sanitize(&used.action),
            used.events,
            used.succeeded,
            used.denied,
            used.errored
        ));
    }
    if identity.used.len() > USED_SHOWN {
        out.push_str(&format!(
            "  … and {} more actions\n",
            identity.used.len() - USED_SHOWN
        ));
    }
    if identity.entry.is_some() {
        out.push_str("permitted but never used (candidates to remove):\n");
        if identity.permitted_unused.is_empty() {
            out.push_str("  none\n");
        }
        for grant in &identity.permitted_unused {
            out.push_str(&format!(
                "  {}  ({})\n",
                sanitize(&grant.pattern),
                sanitize(&grant.source)
            ));
        }
        out.push_str("used but not permitted:\n");
        if identity.used_not_permitted.is_empty() {
            out.push_str("  none\n");
        }
        for used in &identity.used_not_permitted {
            out.push_str(&format!(
                "  {} ×{}: {}\n",
                sanitize(&used.action),
                used.events,
                sanitize(used.reason.as_deref().unwrap_or("not permitted"))
            ));
        }
    }
    out.push_str("least-privilege IAM policy (from the actions carried out):\n");
    let policy = serde_json::to_string_pretty(&identity.least_privilege)?;
    for line in policy.lines() {
        out.push_str("  ");
        out.push_str(&sanitize(line));
        out.push('\n');
    }
    out.push('\n');
    Ok(out)
}
