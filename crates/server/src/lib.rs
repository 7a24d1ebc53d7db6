//! # nhiwatch-server
//!
//! `nhiwatch serve`: the engine as a service. Providers and agents push telemetry; an agent
//! gateway asks, before every tool call, whether the identity's next action is still trusted.
//!
//! | endpoint | scope | what |
//! |---|---|---|
//! | `POST /v1/events` | ingest | JSON lines of any supported format, a CloudTrail `{"Records": [...]}` file, OTLP; gzip by `Content-Encoding` or magic bytes |
//! | `POST /v1/otlp/v1/traces` | ingest | OTLP/HTTP traces, protobuf or JSON (an OpenTelemetry Collector `otlphttp` exporter with `endpoint: http://HOST:7410/v1/otlp`) |
//! | `POST /v1/decide` | decide | one proposed action → `{decision, risk, reasons, finding_ids}`, judged by every lens before it runs, and recorded |
//! | `GET /v1/identities`, `/v1/identities/{id}` | read | identity summaries (latest risk, counts) and an identity's findings |
//! | `GET /v1/findings` | read | recent findings, filtered by identity, kind, severity, time |
//! | `GET /metrics` | read | Prometheus text: events in, rejects, refusals, findings by kind, decisions, decision latency, queue depth, snapshots of the learned baseline |
//! | `GET /healthz`, `GET /v1/openapi` | none | liveness; the OpenAPI description (`openapi.yaml`) |
//!
//! ## Shape
//!
//! ```text
//! HTTP (axum, HTTP/1.1, rustls) ── guard: token (BLAKE3, constant time), scope, rate ──► handler
//!   ingest:  body ≤ limit ─► gunzip ≤ limit ─► Reader (decode) ─► room in queue? ─► store (fsync) ─► 202
//!   decide:  body ─► Event ─► decide queue ──┐
//!                      ingest queue ─────────┴─► engine thread (decisions first) ─► view, store writer, alerts
//! ```
//!
//! The [`Engine`] is single-threaded state, owned by one thread
//! (`worker`) fed by two bounded queues. When a queue is full the server answers 503 with
//! `Retry-After` instead of growing memory; a token over its rate gets 429. Ingest is
//! acknowledged only after its events are durable in the evidence store (with `--data`).
//! When the store cannot write (a full disk, a quota or file size limit), ingest answers 503
//! `storage_full`, and from then on `storage_failed` (the store takes no writes after a failed
//! one), with `Retry-After`, storing nothing of the request; the server log names the cause,
//! `GET /healthz` answers 503 `storage_failed`, and a restart once there is space recovers the
//! store's last commit and goes on.
//! On SIGTERM or Ctrl-C the server stops accepting, finishes the requests in flight, lets the
//! engine drain its queues and close every open episode, writes what it emitted and (with
//! `--data`) the profiles it learned, and gives alert delivery a grace period.
//!
//! The usual lens starts from `--baseline` and from the profiles it learned before, which it
//! keeps in the data folder ([`profiles`]: periodic, atomic snapshots, read back at start).
//! After a crash, the engine first judges again the stored events that its snapshot had not
//! learned, and those of the episodes open at the crash (`replay`), without reporting twice
//! what the store already holds.

#![warn(missing_docs)]

pub mod alerts;
pub mod auth;
mod benign;
pub mod config;
mod decide;
pub mod durable;
mod error;
mod ingest;
pub mod metrics;
pub mod profiles;
mod replay;
mod routes;
mod tls;
mod ui;
mod worker;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nhiwatch_baseline::Baseline;
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig, EngineStats};
use nhiwatch_policy::Policy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use config::{Config, ConfigError};
pub use routes::{Route, OPENAPI, ROUTES};
pub use worker::{EngineFactory, FindingFilter, KeptFinding, View};

use crate::alerts::Alerts;
use crate::auth::Tokens;
use crate::durable::{EvidenceSink, RejectLog, Writer};
use crate::metrics::Metrics;
use crate::profiles::Snapshots;
use crate::routes::App;

/// How long alert delivery may go on after the engine has stopped.
const ALERT_GRACE: Duration = Duration::from_secs(10);

/// Items the store writer may hold before the engine waits for it.
const WRITER_QUEUE: usize = 65_536;

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The settings are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The policy file could not be loaded.
    #[error("{0}")]
    Policy(String),
    /// The baseline file, or the snapshot of learned profiles in the data folder, could not be
    /// read.
    #[error("{0}")]
    Baseline(String),
    /// The evidence store could not be opened.
    #[error("cannot open the evidence store: {0}")]
    Store(String),
    /// TLS certificates could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Something else in the operating system failed.
    #[error("{0}")]
    Io(String),
}

/// What a server run did, reported when it stops.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The engine's counts.
    pub engine: EngineStats,
    /// Events accepted over HTTP.
    pub events: u64,
    /// Alerts delivered, retried and dead-lettered.
    pub alerts: (u64, u64, u64),
}

/// Installs rustls's ring provider as the process default (for the webhook client); a
/// provider already installed is kept.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server to start: its settings, and optionally how to build its engine and where to keep
/// evidence (both default from the settings).
pub struct Server {
    config: Config,
    engine: Option<EngineFactory>,
    sink: Option<Arc<dyn EvidenceSink>>,
    ui: bool,
}

impl Server {
    /// A server with these settings.
    pub fn new(config: Config) -> Self {
        Server {
            config,
            engine: None,
            sink: None,
            ui: true,
        }
    }

    /// Serves without the web UI (`nhiwatch_ui`, on by default when there is a data folder).
    pub fn without_ui(mut self) -> Self {
        self.ui = false;
        self
    }

    /// Builds the engine with `factory` (called once, on the engine's thread) instead of the
    /// standard detectors over the configured policy: the way to add detectors or a scorer.
    /// Such an engine starts as the factory makes it: the configured `baseline` is refused,
    /// and learned profiles are neither read from nor written to the data folder.
    pub fn with_engine(mut self, factory: EngineFactory) -> Self {
        self.engine = Some(factory);
        self
    }

    /// Keeps evidence in `sink` instead of the store in the configured data folder.
    pub fn with_sink(mut self, sink: Arc<dyn EvidenceSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Binds, starts the engine, the store writer and alert delivery, and serves in the
    /// background on the current tokio runtime.
    pub async fn start(self) -> Result<Running, ServerError> {
        let Server {
            config,
            engine,
            sink,
            ui,
        } = self;
        config.validate()?;
        install_crypto_provider();
        let metrics = Arc::new(Metrics::default());
        if engine.is_some() && config.baseline.is_some() {
            return Err(ServerError::Config(ConfigError::Invalid {
                place: "baseline".into(),
                message: "a server given its own engine starts it as built; load the baseline into that engine".into(),
            }));
        }
        // The standard engine's policy, read first: a mistake in it is the likeliest.
        let policy = match engine {
            Some(_) => None,
            None => load_policy(&config)?,
        };
        let tls = config
            .tls
            .as_ref()
            .map(tls::acceptor)
            .transpose()
            .map_err(ServerError::Tls)?;
        let mut view = View::new(config.limits.findings_kept);
        let (sink, rejects, store) = match (sink, &config.data) {
            (Some(sink), _) => (Some(sink), None, None),
            (None, Some(dir)) => {
                let (store, rejects) = open_store(dir, &mut view).await?;
                (Some(Arc::clone(&store) as _), Some(rejects), Some(store))
            }
            (None, None) => (None, None, None),
        };
        // Read once the store is open: the data folder is this server's (the store is locked).
        let (factory, snapshots, replay): (_, _, Option<replay::Replay>) = match engine {
            Some(factory) => (factory, None, None),
            None => {
                let baseline = starting_baseline(&config, &metrics).await?;
                let (baseline, replay) = match &store {
                    Some(store) => {
                        let (baseline, replay) =
                            replay_plan(store, baseline, config.window).await?;
                        (baseline, Some(replay))
                    }
                    None => (baseline, None),
                };
                let snapshots = config.data.as_deref().map(|dir| {
                    Snapshots::new(
                        profiles::snapshot_path(dir),
                        config.snapshot_every,
                        Arc::clone(&metrics),
                    )
                });
                (default_engine(&config, policy, baseline), snapshots, replay)
            }
        };
        // The UI's benign marks go to the engine through their own queue.
        let (vouch, vouch_rx) = tokio::sync::mpsc::channel(benign::QUEUE);
        let replay_planned = replay.is_some();
        let ui = match store.filter(|_| ui) {
            Some(store) => {
                let teach = benign::hook(Arc::clone(&store), vouch);
                Some(ui::router(&config, store, teach)?)
            }
            None => None,
        };
        let tcp = TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = tcp
            .local_addr()
            .map_err(|e| ServerError::Io(e.to_string()))?;
        let (alert_sender, alerts) =
            Alerts::start(&config.alerts, config.dead_letter(), Arc::clone(&metrics))
                .map_err(ServerError::Io)?;
        let writer = sink
            .as_ref()
            .map(|sink| Writer::start(Arc::clone(sink), Arc::clone(&metrics), WRITER_QUEUE))
            .transpose()
            .map_err(|e| ServerError::Io(format!("cannot start the store writer: {e}")))?;
        let view = Arc::new(RwLock::new(view));
        let (queues, worker) = worker::start(
            factory,
            worker::Sinks {
                view: Arc::clone(&view),
                metrics: Arc::clone(&metrics),
                alerts: alert_sender,
                writer: writer.as_ref().map(Writer::sender),
            },
            (snapshots, replay),
            (config.limits.ingest_queue, config.limits.decide_queue),
            vouch_rx,
        )
        .map_err(|e| ServerError::Io(format!("cannot start the engine: {e}")))?;
        let app = Arc::new(App {
            tokens: (!config.no_auth).then(|| Tokens::new(&config.tokens)),
            limits: config.limits.clone(),
            queues,
            view,
            metrics: Arc::clone(&metrics),
            sink,
            rejects: rejects.map(Arc::new),
            decide_seq: AtomicU64::new(0),
        });
        let router = match ui {
            Some(ui) => routes::router(app).merge(ui),
            None => routes::router(app),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let server = match tls {
            Some(acceptor) => {
                let listener = tls::TlsListener::new(tcp, acceptor)
                    .map_err(|e| ServerError::Io(e.to_string()))?;
                tokio::spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                })
            }
            None => {
                use axum::serve::ListenerExt;
                let listener = tcp.tap_io(|stream| {
                    let _ = stream.set_nodelay(true);
                });
                tokio::spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                })
            }
        };
        Ok(Running {
            addr,
            stop,
            server,
            worker,
            writer,
            alerts,
            metrics,
            clean_stop: replay_planned.then_some(config.data).flatten(),
        })
    }
}

/// The profiles the usual lens starts from ([`profiles::starting_baseline`]), read off the
/// runtime's threads; says on standard error where they came from, and warns of a snapshot
/// set aside.
async fn starting_baseline(config: &Config, metrics: &Metrics) -> Result<Baseline, ServerError> {
    let (given, data) = (config.baseline.clone(), config.data.clone());
    let start = tokio::task::spawn_blocking(move || {
        let start = profiles::starting_baseline(given.as_deref(), data.as_deref());
        start.map(|start| {
            let line = start.describe(given.as_deref(), data.as_deref());
            (start, line)
        })
    })
    .await
    .map_err(|e| ServerError::Io(e.to_string()))?;
    let (start, line) = start?;
    if let Some(aside) = &start.set_aside {
        eprintln!("nhiwatch: WARNING: {aside}");
        metrics.snapshot_set_aside();
    }
    if let Some(line) = line {
        eprintln!("nhiwatch: {line}");
    }
    Ok(start.baseline)
}

/// What the standard engine resumes from before it serves ([`replay::plan`]): stored risk,
/// and after a crash the events to judge again. Read off the runtime's threads; `baseline`
/// comes back unchanged.
async fn replay_plan(
    store: &Arc<nhiwatch_store::Store>,
    baseline: Baseline,
    gap: i64,
) -> Result<(Baseline, replay::Replay), ServerError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let data = store.path().parent().unwrap_or(Path::new("."));
        let clean = replay::take_clean_stop(data).map_err(|e| {
            ServerError::Io(format!(
                "cannot remove {}: {e}",
                data.join(replay::CLEAN_STOP).display()
            ))
        })?;
        let replay = replay::plan(&store, &baseline, gap, clean)
            .map_err(|e| ServerError::Store(format!("cannot read what to judge again: {e}")))?;
        Ok((baseline, replay))
    })
    .await
    .map_err(|e| ServerError::Io(e.to_string()))?
}

/// The standard engine over the configured policy: every lens, the usual lens starting from
/// `baseline` and learning as it goes, and the per-identity risk scorer (as `nhiwatch detect`).
fn default_engine(
    config: &Config,
    policy: Option<Arc<Policy>>,
    baseline: Baseline,
) -> EngineFactory {
    let engine_config = EngineConfig {
        episode_gap: config.window,
        ..EngineConfig::default()
    };
    // The factory is called once; the baseline moves into that engine, no copy stays here.
    let baseline = std::sync::Mutex::new(Some(baseline));
    Arc::new(move || {
        let baseline = baseline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        Engine::with_baseline(
            policy.clone(),
            engine_config.clone(),
            baseline,
            UsualConfig::default(),
        )
    })
}

/// The configured policy, loaded.
fn load_policy(config: &Config) -> Result<Option<Arc<Policy>>, ServerError> {
    let policy = config
        .policy
        .as_deref()
        .map(|path| Policy::load(path).map_err(|e| ServerError::Policy(e.to_string())))
        .transpose()?;
    Ok(policy.map(Arc::new))
}

/// Opens the store in `dir`, and fills the view with what it holds.
async fn open_store(
    dir: &Path,
    view: &mut View,
) -> Result<(Arc<nhiwatch_store::Store>, RejectLog), ServerError> {
    let dir = dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        let store = nhiwatch_store::Store::open(&dir, nhiwatch_store::Options::default())
            .map_err(|e| ServerError::Store(e.to_string()))?;
        let identities = store
            .identities()
            .map_err(|e| ServerError::Store(e.to_string()))?;
        let findings = store
            .findings(&nhiwatch_store::FindingQuery::default())
            .map_err(|e| ServerError::Store(e.to_string()))?;
        let rejects = RejectLog::open(&dir.join("rejects.jsonl")).map_err(|e| {
            ServerError::Store(format!(
                "cannot open {}: {e}",
                dir.join("rejects.jsonl").display()
            ))
        })?;
        Ok::<_, ServerError>((store, identities, findings, rejects))
    })
    .await
    .map_err(|e| ServerError::Io(e.to_string()))??;
    let (store, identities, findings, rejects) = opened;
    view.preload(identities, findings);
    Ok((Arc::new(store), rejects))
}

/// A server running in the background.
pub struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    worker: std::thread::JoinHandle<EngineStats>,
    writer: Option<Writer>,
    alerts: Alerts,
    metrics: Arc<Metrics>,
    /// The data folder in which a graceful stop is recorded ([`replay`]).
    clean_stop: Option<std::path::PathBuf>,
}

impl Running {
    /// The address it listens on (the port the system chose, when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn until_signal(self) -> Result<Summary, ServerError> {
        self.until(StopSignals::listen()).await
    }

    /// Serves until one of `signals` arrives, then shuts down gracefully.
    async fn until(self, signals: StopSignals) -> Result<Summary, ServerError> {
        signals.wait().await;
        self.shutdown().await
    }

    /// Stops accepting, finishes the requests in flight, drains the engine's queues and closes
    /// its open episodes, writes what it emitted, and delivers or dead-letters queued alerts.
    pub async fn shutdown(self) -> Result<Summary, ServerError> {
        let Running {
            addr: _,
            stop,
            server,
            worker,
            writer,
            alerts,
            metrics,
            clean_stop,
        } = self;
        let _ = stop.send(());
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("nhiwatch: the HTTP server stopped with an error: {err}"),
            Err(err) => eprintln!("nhiwatch: the HTTP server task failed: {err}"),
        }
        // The router, and with it every sender into the engine, is gone: the worker drains.
        let joined = tokio::task::spawn_blocking(move || {
            let stats = worker.join();
            if let Some(writer) = writer {
                writer.finish();
            }
            stats
        })
        .await
        .map_err(|e| ServerError::Io(e.to_string()))?;
        let engine =
            joined.map_err(|_| ServerError::Io("the engine stopped with a panic".into()))?;
        // Every episode is closed and written, the profiles snapshotted: the next start has
        // nothing to judge again.
        if let Some(data) = clean_stop {
            if let Err(err) = replay::mark_clean_stop(&data) {
                eprintln!(
                    "nhiwatch: cannot record the graceful stop in {}: {err}; the next start judges the latest events again",
                    data.display()
                );
            }
        }
        alerts.finish(ALERT_GRACE).await;
        Ok(Summary {
            engine,
            events: metrics.events_total(),
            alerts: metrics.alerts(),
        })
    }
}

/// SIGTERM and Ctrl-C (SIGINT), listened for from the moment [`StopSignals::listen`] returns:
/// a signal that arrives once the server says it listens stops it gracefully, however soon.
struct StopSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening (on Unix; elsewhere Ctrl-C is listened for once waited on).
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(err) => {
                    eprintln!("nhiwatch: cannot listen for {name}: {err}");
                    None
                }
            };
            StopSignals {
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for the first signal.
    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(self.terminate) => {}
                () = recv(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serves with `config` until SIGTERM or Ctrl-C, on the current tokio runtime.
pub async fn serve(config: Config) -> Result<Summary, ServerError> {
    let running = Server::new(config).start().await?;
    eprintln!("nhiwatch: serving on {}", running.local_addr());
    running.until_signal().await
}

/// Builds a multi-threaded tokio runtime and serves the server on it until SIGTERM or Ctrl-C:
/// the entry point for a command line. `ready` is called once it listens.
pub fn run(server: Server, ready: impl FnOnce(SocketAddr)) -> Result<Summary, ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServerError::Io(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let running = server.start().await?;
        let signals = StopSignals::listen();
        ready(running.local_addr());
        running.until(signals).await
    })
}
