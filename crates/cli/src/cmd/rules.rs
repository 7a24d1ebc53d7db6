//! `nhiwatch rules`: check Sigma and native rule files, and run the example events kept next
//! to each rule (`<rule>.tests.yml`).

use std::path::PathBuf;
use std::process::ExitCode;

use nhiwatch_rules::{run_tests, LoadErrors, LoadOptions, RuleKind, RuleSet};

use crate::output::sanitize;

/// Arguments of `nhiwatch rules`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Load rules (files or directories, e.g. a SigmaHQ checkout's `rules/cloud`) and report
    /// what runs, what is skipped and why, and every error with its file and line.
    Check(Common),
    /// Run every rule against the example events in the `<rule>.tests.yml` file beside it;
    /// fails when a rule fires where it should not, or stays silent where it should fire.
    Test(Common),
}

#[derive(clap::Args, Debug)]
struct Common {
    /// Rule files or directories (walked recursively for `.yml` and `.yaml`).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Values for `%placeholders%` used with the `expand` modifier: a YAML map of name to a
    /// value or list of values.
    #[arg(long, value_name = "FILE")]
    placeholders: Option<PathBuf>,
    /// List every rule (`check`) or every case (`test`), not only problems.
    #[arg(long, short)]
    verbose: bool,
}

impl Common {
    fn options(&self) -> anyhow::Result<LoadOptions> {
        let options = LoadOptions::default();
        match &self.placeholders {
            Some(path) => options
                .with_placeholders_file(path)
                .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string()))),
            None => Ok(options),
        }
    }
}

/// Runs `rules check` or `rules test`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Check(common) => check(&common),
        Command::Test(common) => test(&common),
    }
}

fn report_errors(errors: &LoadErrors) -> ExitCode {
    for error in &errors.0 {
        eprintln!("{}", sanitize(&error.to_string()));
    }
    eprintln!("nhiwatch: {} rule error(s)", errors.0.len());
    ExitCode::from(1)
}

fn check(common: &Common) -> anyhow::Result<ExitCode> {
    let set = match RuleSet::load(&common.paths, &common.options()?) {
        Ok(set) => set,
        Err(errors) => return Ok(report_errors(&errors)),
    };
    let count = |kind: RuleKind| set.rules().iter().filter(|r| r.kind == kind).count();
    println!(
        "{} rules load: {} Sigma, {} Sigma correlation, {} native event, {} native sequence; {} skipped",
        set.len(),
        count(RuleKind::Sigma),
        count(RuleKind::Correlation),
        count(RuleKind::Event),
        count(RuleKind::Sequence),
        set.skipped().len()
    );
    if common.verbose {
        for rule in set.rules() {
            let sources: Vec<&str> = rule.sources.iter().map(|s| s.as_str()).collect();
            println!(
                "  {:<17} {:<13} {:<40} {} [{}]{}",
                rule.kind.as_str(),
                rule.level.as_str(),
                sanitize(&rule.id),
                sanitize(&rule.title),
                sources.join(","),
                if rule.generate {
                    ""
                } else {
                    " (feeds a correlation)"
                }
            );
        }
    }
    for skipped in set.skipped() {
        println!(
            "  skipped {}:{} {}: {}",
            sanitize(&skipped.file),
            skipped.line,
            sanitize(&skipped.title),
            sanitize(&skipped.reason)
        );
    }
    for summary in set.index_summary() {
        let keys: Vec<String> = summary
            .keys
            .iter()
            .map(|k| format!("{} ({} rules under {} values)", k.field, k.rules, k.values))
            .collect();
        println!(
            "  index {}: {}; {} rules tried on every event",
            summary.source,
            if keys.is_empty() {
                "no key field".to_owned()
            } else {
                keys.join(", ")
            },
            summary.unindexed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn test(common: &Common) -> anyhow::Result<ExitCode> {
    let report = match run_tests(&common.paths, &common.options()?) {
        Ok(report) => report,
        Err(errors) => return Ok(report_errors(&errors)),
    };
    for case in &report.cases {
        if common.verbose || !case.passed() {
            println!(
                "{} {}: {} (expected {}, {})",
                if case.passed() { "ok  " } else { "FAIL" },
                sanitize(&case.file),
                sanitize(&case.name),
                if case.expect { "a match" } else { "no match" },
                if case.rules_fired.is_empty() {
                    "no rule fired".to_owned()
                } else {
                    format!("fired: {}", sanitize(&case.rules_fired.join(", ")))
                }
            );
        }
        for note in &case.notes {
            println!("     note: {}", sanitize(note));
        }
    }
    for file in &report.untested {
        println!("  untested: {} has no .tests.yml beside it", sanitize(file));
    }
    println!(
        "rules: {} passed, {} failed",
        report.passed(),
        report.failed()
    );
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
