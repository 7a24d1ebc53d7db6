//! `nhiwatch worker`: one worker of a scale-out fleet over NATS JetStream. It owns some of the
//! events stream's partitions (the fleet shares them out and moves them when workers come and
//! go), runs every lens over them, keeps each partition's evidence store under `--data`, and
//! publishes findings to `nhiwatch.findings`. A thin shell over `nhiwatch_stream`; see
//! docs/scale-out.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nhiwatch_detect::EngineConfig;
use nhiwatch_policy::Policy;
use nhiwatch_stream::layout::stream_partitions;
use nhiwatch_stream::{Layout, NatsOptions, Notice, PartitionSet, Worker, WorkerConfig};

use crate::output::sanitize;

/// Where the NATS password is read from (never from the command line, where `ps` shows it).
pub const PASSWORD_ENV: &str = "NHIWATCH_NATS_PASSWORD";
/// Where the NATS token is read from.
pub const TOKEN_ENV: &str = "NHIWATCH_NATS_TOKEN";

/// How to reach NATS; shared by `publish`, `worker` and `serve --nats`.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL, or several separated by commas (`nats://host:4222`, `tls://host:4222`).
    #[arg(long = "nats", value_name = "URL")]
    pub url: Option<String>,
    /// A NATS credentials file (`.creds`: JWT and NKey seed, as `nsc` writes it).
    #[arg(long = "nats-creds", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// NATS user; the password is read from the environment variable NHIWATCH_NATS_PASSWORD.
    /// (A token, if the server wants one, from NHIWATCH_NATS_TOKEN.)
    #[arg(long = "nats-user", value_name = "USER")]
    pub user: Option<String>,
    /// CA certificate (PEM) to verify the NATS server with.
    #[arg(long = "nats-ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients; needs --nats-key.
    #[arg(long = "nats-cert", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs --nats-cert.
    #[arg(long = "nats-key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    #[arg(long = "nats-tls")]
    pub require_tls: bool,
}

impl NatsArgs {
    /// The connection options, with secrets from the environment; `client` names this process
    /// to the server.
    pub fn options(&self, client: &str) -> anyhow::Result<NatsOptions> {
        let Some(url) = &self.url else {
            anyhow::bail!("--nats URL is required (e.g. --nats nats://127.0.0.1:4222)");
        };
        let mut options = NatsOptions::new(url.clone());
        options.credentials = self.creds.clone();
        options.user = self.user.clone();
        options.password = std::env::var(PASSWORD_ENV).ok();
        if options.user.is_some() && options.password.is_none() {
            anyhow::bail!(
                "--nats-user needs the password in the environment variable {PASSWORD_ENV}"
            );
        }
        if options.user.is_none() {
            options.password = None;
        }
        options.token = std::env::var(TOKEN_ENV).ok();
        options.tls_ca = self.ca.clone();
        options.tls_cert = self.cert.clone();
        options.tls_key = self.key.clone();
        options.require_tls = self.require_tls;
        options.name = client.to_owned();
        Ok(options)
    }
}

/// Which partitions a worker takes, and how it behaves in the fleet; shared with `serve --nats`.
#[derive(clap::Args, Debug, Clone)]
pub struct FleetArgs {
    /// The partitions this worker may own: `0-7`, `0-3,8,10-11` or `all`. Live workers share
    /// these out between them (rendezvous hashing) and take over those of a worker that stops.
    #[arg(long, value_name = "SET", default_value = "all")]
    pub partitions: String,
    /// Create the events stream with this many partitions when it does not exist yet (an
    /// existing stream keeps its own count).
    #[arg(long, value_name = "N")]
    pub partition_count: Option<u32>,
    /// This worker's name, unique in the fleet [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Most events per batch; each batch is one durable commit before it is acknowledged.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub batch: usize,
    /// Lease time: a worker not heard from for this long is replaced (e.g. `10s`); the same for
    /// every worker of the fleet.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub lease: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let nanos = nhiwatch_policy::parse_duration(text)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("`{text}` is negative"))
}

/// Arguments of `nhiwatch worker`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Folder of the partitions' evidence stores (`partition-NNNN/` each). Share it between
    /// workers (one host, or a shared volume) so that a partition's store moves with it.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The policy file: entitlements, workflows, hours, sensitive items.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Events of one identity at most this far apart form one finding (e.g. `30m`, `2h`).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = nhiwatch_policy::parse_duration)]
    window: i64,
}

/// Runs `worker` until SIGTERM or Ctrl-C, then hands its partitions back.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_fleet(
        &args.nats,
        &args.fleet,
        &args.data,
        args.policy.as_deref(),
        args.window,
    )
}

/// Runs one worker of the fleet (for `worker`, and for `serve --nats`).
pub fn run_fleet(
    nats: &NatsArgs,
    fleet: &FleetArgs,
    data: &Path,
    policy: Option<&Path>,
    window: i64,
) -> anyhow::Result<ExitCode> {
    let policy = policy
        .map(|path| Policy::load(path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string()))))
        .transpose()?
        .map(Arc::new);
    let name = match &fleet.name {
        Some(name) => name.clone(),
        None => host_name(),
    };
    let options = nats.options(&format!("nhiwatch worker {name}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = options.connect().await.map_err(error)?;
        let partitions = match stream_partitions(&client).await.map_err(error)? {
            Some(count) => count,
            None => fleet.partition_count.ok_or_else(|| {
                anyhow::anyhow!(
                    "there is no events stream yet: publish first (`nhiwatch publish`), or give \
                     --partition-count N to create it"
                )
            })?,
        };
        let set = PartitionSet::parse(&fleet.partitions, partitions)
            .map_err(|e| anyhow::anyhow!("--partitions: {e}"))?;
        let mut config = WorkerConfig::new(name.clone(), data);
        config.partitions = Some(set.clone());
        config.policy = policy;
        config.engine = EngineConfig {
            episode_gap: window,
            ..EngineConfig::default()
        };
        config.create = fleet
            .partition_count
            .map(Layout::new)
            .transpose()
            .map_err(error)?;
        config.batch = fleet.batch.max(1);
        config.lease = fleet.lease;
        config.notify = Some(Arc::new(|notice: &Notice| {
            eprintln!("nhiwatch: {}", sanitize(&describe(notice)));
        }));
        let worker = Worker::start(client, config).await.map_err(error)?;
        eprintln!(
            "nhiwatch: worker {name} joined: may own partitions {set} of {partitions}; stores under {}",
            data.display()
        );
        let stats = worker.stats();
        let started = Instant::now();
        let progress = tokio::spawn(async move {
            let mut last = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let now = stats.snapshot();
                eprintln!(
                    "nhiwatch: {} partitions, {} events ({:.0}/s), {} findings, {} rejects",
                    now.owned,
                    now.events,
                    (now.events - last) as f64 / 10.0,
                    now.findings,
                    now.rejects
                );
                last = now.events;
            }
        });
        let done = worker.run(shutdown()).await.map_err(error)?;
        progress.abort();
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "nhiwatch: worker {name} stopped after {seconds:.1} s: {} events ({:.0}/s), {} stored, {} already stored, {} findings, {} rejects, {} replayed",
            done.events,
            done.events as f64 / seconds.max(1e-9),
            done.stored,
            done.duplicates + done.skipped,
            done.findings,
            done.rejects,
            done.replayed
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn error(err: nhiwatch_stream::StreamError) -> anyhow::Error {
    anyhow::anyhow!(sanitize(&err.to_string()))
}

fn describe(notice: &Notice) -> String {
    match notice {
        Notice::Acquired {
            partition,
            from,
            replayed,
            elapsed,
        } => format!(
            "took partition {partition} from stream sequence {from} ({replayed} events replayed, {} ms)",
            elapsed.as_millis()
        ),
        Notice::Released { partition } => format!("handed partition {partition} back"),
        Notice::Lost { partition } => format!("lost the lease of partition {partition}; stopped it"),
        Notice::Failed { partition, error } => {
            format!("partition {partition} failed and will be taken again: {error}")
        }
        Notice::Retrying { partition, error } => {
            format!("partition {partition}: {error}; retrying")
        }
    }
}

/// The host name, as a worker name (characters a NATS key allows).
fn host_name() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "worker".to_owned()
    } else {
        name
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
