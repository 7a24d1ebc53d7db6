//! `nhiwatch publish`: read telemetry in any supported format, normalise it, and publish each
//! event to its identity's partition of the NATS JetStream events stream, for a fleet of
//! `nhiwatch worker`s. A thin shell over `nhiwatch_stream::Publisher`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nhiwatch_model::Event;
use nhiwatch_stream::layout::{backlog, stream_partitions, DEFAULT_PARTITIONS, EVENTS_STREAM};
use nhiwatch_stream::{Layout, Outgoing, Publisher};

use crate::cmd::normalize::EXIT_REJECTS;
use crate::cmd::worker::NatsArgs;
use crate::input::{read_all, InputArgs};
use crate::output::sanitize;

/// Events handed from the reading thread to the publisher at a time.
const CHUNK: usize = 256;

/// Arguments of `nhiwatch publish`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    nats: NatsArgs,
    /// Partitions of the events stream. A new stream is created with this many [default: 12];
    /// an existing one must have this many (omit it to use the stream's own count).
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
    /// This is the end of the input: workers close every open episode of every partition when
    /// they reach this point, as `nhiwatch detect` does at the end of its files. Leave it out
    /// when other publishers keep feeding the stream.
    #[arg(long)]
    finish: bool,
    /// Then wait until the workers have durably processed everything in the stream (backlog
    /// zero), printing the backlog as it falls.
    #[arg(long)]
    wait: bool,
}

/// Runs `publish`: a summary with the throughput on standard error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = args.nats.options("nhiwatch publish")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let client = runtime
        .block_on(options.connect())
        .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    let existing = runtime
        .block_on(stream_partitions(&client))
        .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    let partitions = args.partitions.or(existing).unwrap_or(DEFAULT_PARTITIONS);
    let layout = Layout::new(partitions).map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let mut publisher = runtime
        .block_on(Publisher::new(client, &layout))
        .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;

    let sent = Arc::new(AtomicU64::new(0));
    let (chunks, mut incoming) = tokio::sync::mpsc::channel::<Vec<Outgoing>>(64);
    let (read, published) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut unencodable = 0u64;
            let stats = read_all(&args.input, &mut |event: Event<'_>| {
                match Outgoing::event(&event, partitions) {
                    Ok(out) => chunk.push(out),
                    Err(_) => unencodable += 1,
                }
                if chunk.len() == CHUNK {
                    // A closed channel means publishing failed; its error is reported.
                    let _ = chunks
                        .blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            });
            if !chunk.is_empty() {
                let _ = chunks.blocking_send(chunk);
            }
            drop(chunks);
            stats.map(|stats| (stats, unencodable))
        });
        let sent = sent.clone();
        let published = runtime.block_on(async {
            let progress = (!std::io::stderr().is_terminal()).then(|| {
                let sent = sent.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        eprintln!("nhiwatch: {} events sent", sent.load(Ordering::Relaxed));
                    }
                })
            });
            let result = async {
                while let Some(chunk) = incoming.recv().await {
                    for out in chunk {
                        publisher.send(out).await?;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if args.finish {
                    publisher.finish_partitions(&run_id()).await?;
                }
                publisher.flush().await
            }
            .await;
            incoming.close();
            if let Some(progress) = progress {
                progress.abort();
            }
            result
        });
        (reader.join(), published)
    });
    let published = published.map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    let (read, unencodable) = match read {
        Ok(read) => read?,
        Err(_) => anyhow::bail!("the input reader failed"),
    };
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let marks = if args.finish {
        u64::from(partitions)
    } else {
        0
    };
    let events = published.events - marks;
    eprintln!(
        "nhiwatch: published {events} events ({} already in the stream) from {} records to {partitions} partitions of {EVENTS_STREAM} in {seconds:.1} s: {:.0} events/s, {:.1} MB/s; {} rejected{}",
        published.duplicates,
        read.records,
        events as f64 / seconds,
        published.bytes as f64 / seconds / 1e6,
        read.rejects,
        if args.finish { "; end of input marked" } else { "" }
    );
    if args.wait {
        runtime.block_on(wait_for_workers(&args.nats))?;
    }
    if unencodable > 0 {
        anyhow::bail!("{unencodable} events could not be encoded as JSON");
    }
    Ok(if read.rejects > 0 {
        ExitCode::from(EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits until the stream's backlog is zero.
async fn wait_for_workers(nats: &NatsArgs) -> anyhow::Result<()> {
    let client = nats
        .options("nhiwatch publish")?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let left = backlog(&client)
            .await
            .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?
            .unwrap_or(0);
        if left == 0 {
            eprintln!(
                "nhiwatch: the workers have processed everything ({:.1} s after publishing)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if said.elapsed() >= Duration::from_secs(5) {
            eprintln!("nhiwatch: {left} events not yet processed by the workers");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Names this run's end-of-input marks (so a retried `--finish` is deduplicated within the
/// run, and another run's marks are not).
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}
