//! `nhiwatch demo`: the whole product in one command, with nothing to set up.
//!
//! Simulates a small labelled fleet (CloudTrail, Kubernetes audit, GitHub audit and AI-agent
//! OTLP traces, with attacks injected), learns baselines on the attack-free first days, runs
//! every lens over the rest with the simulated policy, and
//! prints the riskiest identities, their findings, and how the findings score against the
//! labels. The simulation is kept when `--out` is given, so each step can be re-run by hand.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use nhiwatch_baseline::Baseline;
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Event, Finding};
use nhiwatch_policy::Policy;
use nhiwatch_sim::eval::{evaluate, read_labels};
use nhiwatch_sim::{simulate, SimConfig, TELEMETRY_DIR};

use crate::cmd::detect::{learn_first_days, table_header, table_row};
use crate::input::{read_all, InputArgs};
use crate::output::sanitize;

/// Arguments of `nhiwatch demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep the simulated fleet in this folder (default: a temporary folder, removed at the end).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Identities in the simulated fleet.
    #[arg(long, default_value_t = 40)]
    identities: usize,
    /// Days of simulated activity; attacks start after day 10.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Findings to list (the riskiest first).
    #[arg(long, default_value_t = 15)]
    top: usize,
}

/// Runs `demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let temp;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    let config = SimConfig {
        seed: args.seed,
        identities: args.identities,
        days: args.days,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let manifest = simulate(&config, &out)?;
    eprintln!(
        "nhiwatch demo: simulated {} identities over {} days: {} events, {} injected incidents ({:.1} s)",
        config.identities,
        config.days,
        manifest.events,
        manifest.incidents,
        started.elapsed().as_secs_f64()
    );

    let policy_path = out.join("policy.yaml");
    let policy =
        Policy::load(&policy_path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    let mut findings = Vec::new();
    let input = InputArgs {
        paths: vec![out.join(TELEMETRY_DIR)],
        rejects: None,
        mapping: None,
        input_format: None,
        max_record_bytes: 16 << 20,
        max_document_bytes: 1 << 30,
        quiet: false,
    };
    // The usual lens learns the attack-free first days, then every lens judges the rest.
    let (baseline, from) = learn_first_days(&input, Baseline::default(), config.attack_after_days)?;
    let mut engine = Engine::with_baseline(
        Some(Arc::new(policy)),
        EngineConfig::default(),
        baseline,
        UsualConfig::default(),
    );
    let started = Instant::now();
    let mut judged = 0u64;
    let stats = read_all(&input, &mut |event: Event<'_>| {
        if from.is_none_or(|from| event.time >= from) {
            judged += 1;
            engine.process(&event, &mut |finding| findings.push(finding))
        }
    })?;
    engine.finish(&mut |finding| findings.push(finding));
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "nhiwatch demo: {} events read in {:.2} s ({:.0} events/s, gunzip and decode included), the {judged} after the learning days judged by every lens; {} rejected, {} findings",
        stats.events,
        seconds,
        stats.events as f64 / seconds.max(1e-9),
        stats.rejects,
        findings.len()
    );

    print!("{}", identities_by_risk(&findings, args.top));
    println!("\nRiskiest findings:");
    findings.sort_by(|a, b| b.risk.cmp(&a.risk).then_with(|| a.time.cmp(&b.time)));
    print!("{}", table_header());
    for finding in findings.iter().take(args.top) {
        print!("{}", table_row(finding));
    }

    let labels = read_labels(&out.join("labels.jsonl"))?;
    let report = evaluate(&labels, &findings, manifest.benign_events);
    println!("\nAgainst the simulation's labels:");
    print!("{}", report.to_table());
    if let Some(dir) = &args.out {
        println!(
            "\nThe fleet is kept in {0}; re-run a step by hand, e.g.\n  nhiwatch detect {0}/{TELEMETRY_DIR} --policy {0}/policy.yaml --format table",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The identities with findings, riskiest first: highest risk, then number of findings.
fn identities_by_risk(findings: &[Finding], top: usize) -> String {
    let mut per_identity: BTreeMap<&str, (u8, usize, &str)> = BTreeMap::new();
    for finding in findings {
        let entry =
            per_identity
                .entry(&finding.identity)
                .or_insert((0, 0, finding.decision.as_str()));
        if finding.risk >= entry.0 {
            *entry = (finding.risk, entry.1, finding.decision.as_str());
        }
        entry.1 += 1;
    }
    let mut ranked: Vec<_> = per_identity.into_iter().collect();
    ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(b.1 .1.cmp(&a.1 .1)));
    let mut text = format!(
        "\nIdentities by risk ({} with findings):\n  risk  decision  findings  identity\n",
        ranked.len()
    );
    for (identity, (risk, count, decision)) in ranked.into_iter().take(top) {
        text.push_str(&format!(
            "  {risk:>4}  {decision:<8}  {count:>8}  {}\n",
            sanitize(identity)
        ));
    }
    text
}
