//! `nhiwatch ingest`: decode telemetry, run every lens over it, and keep events, findings and
//! risk history in the evidence store, batch by batch, each batch durable before the next.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{Event, Finding, Timestamp};
use nhiwatch_policy::Policy;
use nhiwatch_store::{Batch, Content, Counts, Options, Receipt, Retention, RiskPoint, Store};

use crate::cmd::normalize::EXIT_REJECTS;
use crate::input::{read_all, InputArgs};
use crate::output::sanitize;

/// Where the evidence store is: every store subcommand takes it.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// The store's data folder.
    #[arg(long, value_name = "DIR", default_value = "nhiwatch-data")]
    pub data: PathBuf,
}

impl DataArgs {
    /// Opens the store for reading (beside a running ingest, if any).
    pub fn open_read_only(&self) -> anyhow::Result<Store> {
        Store::open_read_only(&self.data).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))
    }
}

/// Arguments of `nhiwatch ingest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    store: DataArgs,
    /// The policy file: entitlements, workflows, hours, sensitive items.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// A baseline written by `nhiwatch learn` for the usual lens; without one each identity is
    /// learned as its events arrive.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Keep the baseline as loaded: do not learn from the events ingested.
    #[arg(long)]
    frozen: bool,
    /// Events of one identity at most this far apart form one finding (e.g. `30m`, `2h`).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = nhiwatch_policy::parse_duration)]
    window: i64,
    /// Commit a batch every this many events (each commit is an fsync).
    #[arg(long, value_name = "N", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..))]
    batch_events: u32,
    /// Keep events this long (e.g. `30d`), counted back from the newest event stored; expired
    /// events are not stored and stored ones are removed in the background. Default: forever.
    #[arg(long, value_name = "DURATION", value_parser = nhiwatch_policy::parse_duration)]
    retain_events: Option<i64>,
    /// Keep findings and risk history this long (e.g. `400d`). Default: forever.
    #[arg(long, value_name = "DURATION", value_parser = nhiwatch_policy::parse_duration)]
    retain_findings: Option<i64>,
}

/// Items removed per compaction transaction: small, so ingest's commits wait little.
const COMPACTION_BUDGET: usize = 4096;

/// Runs `ingest`: the chain head to standard output, a summary to standard error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let policy = args
        .policy
        .as_deref()
        .map(|path| Policy::load(path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string()))))
        .transpose()?
        .map(Arc::new);
    let baseline = args
        .baseline
        .as_deref()
        .map(crate::cmd::learn::load)
        .transpose()?
        .unwrap_or_default();
    let config = EngineConfig {
        episode_gap: args.window,
        ..EngineConfig::default()
    };
    let usual = UsualConfig {
        learn: !args.frozen,
        ..UsualConfig::default()
    };
    let mut engine = Engine::with_baseline(policy, config, baseline, usual);
    let retention = Retention {
        events: args.retain_events,
        findings: args.retain_findings,
    };
    let store = Store::open(&args.store.data, Options { retention })
        .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;

    let stop = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    let (stats, totals, compacted) = std::thread::scope(|scope| {
        let compactor = (retention != Retention::default())
            .then(|| scope.spawn(|| compact_until(&store, &stop)));
        // Batches are filled here and committed by a second thread, so that decoding and
        // detection go on while a batch is written and fsync'd.
        let (full, to_commit) = mpsc::sync_channel::<Batch>(1);
        let (give_back, empty) = mpsc::channel::<Batch>();
        let (store, failed) = (&store, &failed);
        let committer = scope.spawn(move || commit_all(store, to_commit, give_back, failed));
        let mut writer = Writer {
            batch: Batch::new(),
            batch_events: args.batch_events as usize,
            full,
            empty,
            failed,
        };
        let stats = read_all(&args.input, &mut |event: Event<'_>| {
            engine.process(&event, &mut |finding| writer.finding(&finding));
            writer.event(&event);
        });
        engine.finish(&mut |finding| writer.finding(&finding));
        writer.send();
        drop(writer);
        let totals = committer.join();
        stop.store(true, Ordering::Relaxed);
        let compacted = compactor.map(|handle| handle.join());
        (stats, totals, compacted)
    });
    let stats = stats?;
    let totals = match totals {
        Ok(totals) => totals?,
        Err(_) => anyhow::bail!("the committing thread panicked"),
    };
    let compacted = match compacted {
        Some(Ok(result)) => result?,
        Some(Err(_)) => anyhow::bail!("the compaction thread panicked"),
        None => 0,
    };

    let head = store.head()?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "nhiwatch: {} records read, {} events, {} rejected in {elapsed:.1} s ({:.0} events/s)",
        stats.records,
        stats.events,
        stats.rejects,
        stats.events as f64 / elapsed.max(1e-9)
    );
    eprintln!(
        "  stored {} events, {} findings, {} risk points in {} batches; already stored: {} events, {} findings; expired: {} events, {} findings; compaction removed {compacted}",
        totals.stored.events,
        totals.stored.findings,
        totals.stored.risks,
        totals.batches,
        totals.duplicates.events,
        totals.duplicates.findings,
        totals.expired.events,
        totals.expired.findings,
    );
    match head {
        Some(head) => {
            eprintln!(
                "  chain head {} (batch {}); keep it elsewhere and check later with `nhiwatch verify --expect-head {}`",
                head.hash, head.batch, head.hash
            );
            println!("{}", head.hash);
        }
        None => eprintln!("  the store is empty"),
    }
    Ok(if stats.rejects > 0 {
        ExitCode::from(EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}

/// Removes expired items in small transactions until told to stop; the items removed.
fn compact_until(store: &Store, stop: &AtomicBool) -> anyhow::Result<u64> {
    let mut removed = 0;
    loop {
        // Read before the step, so that the last step sees the last batch.
        let stopping = stop.load(Ordering::Relaxed);
        let step = store
            .compact_step(Timestamp::now(), COMPACTION_BUDGET)
            .context("retention compaction failed")?;
        removed += step.removed;
        if !step.more {
            if stopping {
                return Ok(removed);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What all the batches of a run did.
#[derive(Default)]
struct Totals {
    batches: u64,
    stored: Counts,
    duplicates: Counts,
    expired: Counts,
}

impl Totals {
    fn add(&mut self, receipt: &Receipt) {
        self.batches += u64::from(receipt.batch.is_some());
        for (total, part) in [
            (&mut self.stored, &receipt.stored),
            (&mut self.duplicates, &receipt.duplicates),
            (&mut self.expired, &receipt.expired),
        ] {
            total.events += part.events;
            total.findings += part.findings;
            total.risks += part.risks;
            total.profiles += part.profiles;
        }
    }
}

/// Commits each batch it receives, handing the emptied batch back for reuse; after a failure
/// it stores nothing more, raises `failed`, and returns the error once the sender is done.
fn commit_all(
    store: &Store,
    batches: Receiver<Batch>,
    give_back: Sender<Batch>,
    failed: &AtomicBool,
) -> anyhow::Result<Totals> {
    let mut totals = Totals::default();
    let mut error = None;
    for mut batch in batches {
        if error.is_some() {
            continue;
        }
        match store.append(&mut batch) {
            Ok(receipt) => totals.add(&receipt),
            Err(err) => {
                failed.store(true, Ordering::Relaxed);
                error = Some(anyhow::anyhow!(sanitize(&err.to_string())).context(format!(
                    "cannot store a batch in {}",
                    store.path().display()
                )));
            }
        }
        // The filling side may have finished; then the batch is simply dropped.
        let _ = give_back.send(batch);
    }
    match error {
        Some(err) => Err(err),
        None => Ok(totals),
    }
}

/// Fills batches as events and findings arrive and sends each full one to be committed.
struct Writer<'f> {
    batch: Batch,
    batch_events: usize,
    full: SyncSender<Batch>,
    empty: Receiver<Batch>,
    /// Raised by the committing thread on a failure: nothing more is stored.
    failed: &'f AtomicBool,
}

impl Writer<'_> {
    fn event(&mut self, event: &Event<'_>) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        self.batch.add_event(event);
        if self.batch.len_of(Content::Events) >= self.batch_events {
            self.send();
        }
    }

    /// A finding and the risk point it sets for its identity.
    fn finding(&mut self, finding: &Finding) {
        self.batch.add_risk(&RiskPoint::of(finding));
        if self.batch.add_finding(finding).is_err() {
            // A finding is plain data and always serialises; should it not, the run fails
            // rather than store a batch without it.
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    /// Sends the current batch to be committed and starts the next one.
    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let next = self.empty.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.batch, next);
        // The committing thread only stops when this side hangs up.
        let _ = self.full.send(full);
    }
}
