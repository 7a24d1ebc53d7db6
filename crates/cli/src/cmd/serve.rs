//! `nhiwatch serve`: the engine as an HTTP service (ingest, OTLP, inline decisions, reads,
//! metrics, alerts). A thin shell over `nhiwatch_server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use nhiwatch_server::config::{self, TlsFiles, TOKENS_ENV};
use nhiwatch_server::{Config, Server};

use crate::output::sanitize;

/// Arguments of `nhiwatch serve`. Flags override the settings file.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Settings file (YAML): tokens, limits, alerts, TLS; see the nhiwatch-server docs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7410, loopback only].
    #[arg(long, value_name = "ADDR", value_parser = config::parse_bind)]
    bind: Option<SocketAddr>,
    /// The policy file: entitlements, workflows, hours, sensitive items.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The evidence store's folder: ingest is acknowledged once durable there. The profiles the
    /// usual lens learns are kept there too (DIR/baseline.bin), and read back at start.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A baseline written by `nhiwatch learn` (or `detect --save-baseline`) for the usual lens
    /// to start from. Per identity, profiles learned before and kept in --data win; this file
    /// adds the identities they do not know.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    baseline: Option<PathBuf>,
    /// How often the learned profiles are written to --data, besides at shutdown
    /// [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = config::parse_interval, conflicts_with = "url")]
    snapshot_every: Option<std::time::Duration>,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Events of one identity at most this far apart form one finding (e.g. `30m`).
    #[arg(long, value_name = "DURATION", value_parser = nhiwatch_policy::parse_duration)]
    window: Option<i64>,
    /// Serve without API tokens (every caller has every scope); loopback addresses only.
    #[arg(long)]
    no_auth: bool,
    /// Do not serve the web UI (by default it is at /ui/ when --data is given).
    #[arg(long)]
    no_ui: bool,
    /// Scale-out: with --nats, run as one worker of a fleet over NATS JetStream instead of
    /// serving HTTP (as `nhiwatch worker`, with --data, --policy and --window).
    #[command(flatten)]
    nats: crate::cmd::worker::NatsArgs,
    #[command(flatten)]
    fleet: crate::cmd::worker::FleetArgs,
}

/// Runs `serve` until SIGTERM or Ctrl-C; prints a summary on standard error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.nats.url.is_some() {
        let Some(data) = args.data.as_deref() else {
            anyhow::bail!("serve --nats needs --data DIR for the partitions' stores");
        };
        let window = args.window.unwrap_or(30 * 60 * 1_000_000_000);
        return crate::cmd::worker::run_fleet(
            &args.nats,
            &args.fleet,
            data,
            args.policy.as_deref(),
            window,
        );
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?,
        None => Config::default(),
    };
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if args.policy.is_some() {
        config.policy = args.policy;
    }
    if args.data.is_some() {
        config.data = args.data;
    }
    if args.baseline.is_some() {
        config.baseline = args.baseline;
    }
    if let Some(every) = args.snapshot_every {
        config.snapshot_every = every;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    if let Some(window) = args.window {
        config.window = window;
    }
    config.no_auth |= args.no_auth;
    if let Ok(tokens) = std::env::var(TOKENS_ENV) {
        config
            .add_env_tokens(&tokens)
            .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let ui = config.data.is_some() && !args.no_ui;
    let mut server = Server::new(config);
    if args.no_ui {
        server = server.without_ui();
    }
    let summary = nhiwatch_server::run(server, |addr| {
        eprintln!("nhiwatch: listening on {scheme}://{addr}");
        if ui {
            eprintln!("nhiwatch: web UI at {scheme}://{addr}/ui/");
        }
    })
    .map_err(|e| anyhow::anyhow!(sanitize(&e.to_string())))?;
    let (delivered, _, dead) = summary.alerts;
    eprintln!(
        "nhiwatch: stopped; {} events accepted, {} processed, {} identities, {} findings; {delivered} alerts delivered, {dead} dead-lettered",
        summary.events,
        summary.engine.events,
        summary.engine.identities,
        summary.engine.findings
    );
    Ok(ExitCode::SUCCESS)
}
