//! Server settings: a YAML file (`--config`), tokens from `NHIWATCH_TOKENS`, and command-line
//! overrides applied by the caller.
//!
//! ```yaml
//! bind: 127.0.0.1:7410            # the default: loopback only
//! policy: policy.yaml             # entitlements, workflows, hours (relative to this file)
//! data: /var/lib/nhiwatch         # the evidence store; ingest is acknowledged once durable here
//! baseline: learned.bin           # profiles the usual lens starts from (`nhiwatch learn`)
//! snapshot_every: 5m              # how often learned profiles are saved to data/baseline.bin
//! window: 30m                     # events of one identity this far apart form one finding
//! tls: {cert: server.crt, key: server.key}
//! tokens:
//!   - name: otel-collector
//!     token: "at-least-16-characters"      # or `blake3: <64 hex digits>`, the token's BLAKE3 hash
//!     scopes: [ingest]
//!     rate: 200                            # requests per second (a token bucket); absent: no limit
//!     burst: 400                           # bucket size; default: one second of `rate`
//! limits:
//!   max_body_bytes: 16777216
//!   max_decoded_bytes: 268435456
//!   max_events_per_request: 1000000
//!   max_decide_bytes: 65536
//!   ingest_queue: 64
//!   decide_queue: 4096
//! alerts:
//!   min_severity: high
//!   stdout: ocsf                  # ocsf, jsonl or none
//!   webhooks:
//!     - {name: soc, url: "https://hooks.example/nhiwatch", format: json}
//!     - {name: slack, url: "https://hooks.slack.com/services/...", format: slack}
//!   attempts: 5
//!   backoff: 500ms
//!   dead_letter: alerts-dead-letter.jsonl
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nhiwatch_model::Severity;
use serde::Deserialize;

use crate::auth::Scope;

/// The default port; the default address is `127.0.0.1:7410`, loopback only, so nothing is
/// exposed until a person says so.
pub const DEFAULT_PORT: u16 = 7410;

/// The environment variable read for API tokens: whitespace-separated `SCOPES:TOKEN` entries,
/// scopes joined by commas, e.g. `ingest,read:0123456789abcdef decide:fedcba9876543210`.
pub const TOKENS_ENV: &str = "NHIWATCH_TOKENS";

/// Shortest token accepted, so that a configured token cannot be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// TLS certificate chain and key (PEM files); plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// The policy file.
    pub policy: Option<PathBuf>,
    /// The evidence store's folder; without it nothing is durable and ingest is acknowledged
    /// once queued.
    pub data: Option<PathBuf>,
    /// A baseline file (`nhiwatch learn`, `nhiwatch detect --save-baseline`) the usual lens
    /// starts from; how it combines with the snapshot in the data folder is
    /// [`crate::profiles::starting_baseline`]'s rule.
    pub baseline: Option<PathBuf>,
    /// How often the usual lens's learned profiles are written to the data folder
    /// ([`crate::profiles::SNAPSHOT_FILE`]), besides once at shutdown.
    pub snapshot_every: Duration,
    /// Events of one identity at most this far apart (nanoseconds) form one finding.
    pub window: i64,
    /// API tokens.
    pub tokens: Vec<TokenSpec>,
    /// Serve without tokens: every request has every scope. Refused unless `bind` is loopback.
    pub no_auth: bool,
    /// Size, count and queue limits.
    pub limits: Limits,
    /// Alert delivery.
    pub alerts: AlertSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            tls: None,
            policy: None,
            data: None,
            baseline: None,
            snapshot_every: crate::profiles::DEFAULT_SNAPSHOT_EVERY,
            window: 30 * 60 * 1_000_000_000,
            tokens: Vec::new(),
            no_auth: false,
            limits: Limits::default(),
            alerts: AlertSettings::default(),
        }
    }
}

/// TLS certificate and key files.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How a token is given: the token itself, or its BLAKE3 hash (so the file holds no secret).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The token as clients send it.
    Plain(String),
    /// The BLAKE3 hash of the token.
    Blake3([u8; 32]),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Plain(<redacted>)"),
            Secret::Blake3(_) => f.write_str("Blake3(<hash>)"),
        }
    }
}

/// One API token and what it may do.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpec {
    /// A name for logs and metrics (never the token).
    pub name: String,
    /// The token.
    pub secret: Secret,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Requests per second allowed (token bucket); `None` for no limit.
    pub rate: Option<f64>,
    /// Bucket size: how many requests may come at once; default one second of `rate` (at least 1).
    pub burst: Option<f64>,
}

/// Size, count and queue limits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body as sent (compressed or not), in bytes.
    pub max_body_bytes: usize,
    /// Largest body once gzip is undone, in bytes.
    pub max_decoded_bytes: usize,
    /// Most events one ingest request may carry.
    pub max_events_per_request: usize,
    /// Largest `/v1/decide` body, in bytes.
    pub max_decide_bytes: usize,
    /// Ingest batches waiting for the engine before ingest is refused with 503.
    pub ingest_queue: usize,
    /// Decisions waiting for the engine before `/v1/decide` is refused with 503.
    pub decide_queue: usize,
    /// Findings kept in memory for `GET /v1/findings`.
    pub findings_kept: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 256 << 20,
            max_events_per_request: 1_000_000,
            max_decide_bytes: 64 << 10,
            ingest_queue: 64,
            decide_queue: 4096,
            findings_kept: 10_000,
        }
    }
}

/// How alerts are printed on standard output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    /// One OCSF Detection Finding (class 2004) per line, for SIEM pipelines.
    #[default]
    Ocsf,
    /// One finding per line, as nhiwatch's own JSON.
    Jsonl,
    /// Nothing.
    None,
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The finding as nhiwatch's JSON (the DESIGN.md contract).
    #[default]
    Json,
    /// A Slack-compatible `{"text": ...}` message.
    Slack,
}

/// One webhook.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// A name for logs, metrics and the dead-letter file (the URL may hold a secret and is
    /// never written out). Default `webhook-N`.
    #[serde(default)]
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// The body it receives.
    #[serde(default)]
    pub format: WebhookFormat,
}

impl fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("name", &self.name)
            .field("url", &"<redacted>")
            .field("format", &self.format)
            .finish()
    }
}

/// Alert delivery settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSettings {
    /// Findings at or above this severity are alerts.
    pub min_severity: Severity,
    /// What goes to standard output.
    pub stdout: StdoutFormat,
    /// Webhooks to post each alert to.
    pub webhooks: Vec<WebhookSpec>,
    /// Tries per alert and webhook before it goes to the dead-letter file.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one, up to 30 s.
    pub backoff: Duration,
    /// Timeout of one delivery.
    pub timeout: Duration,
    /// Alerts that could not be delivered, one JSON object per line. Default:
    /// `alerts-dead-letter.jsonl` in the data folder, else none (they are reported on stderr).
    pub dead_letter: Option<PathBuf>,
    /// Alerts waiting for delivery, per webhook, before more go straight to the dead-letter file.
    pub queue: usize,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            min_severity: Severity::High,
            stdout: StdoutFormat::Ocsf,
            webhooks: Vec::new(),
            attempts: 5,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            dead_letter: None,
            queue: 1024,
        }
    }
}

/// Why settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file or a value in it is wrong.
    #[error("{place}: {message}")]
    Invalid {
        /// The file (and field) at fault.
        place: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn invalid(place: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            place: place.into(),
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    tls: Option<TlsFiles>,
    policy: Option<PathBuf>,
    data: Option<PathBuf>,
    baseline: Option<PathBuf>,
    snapshot_every: Option<String>,
    window: Option<String>,
    #[serde(default)]
    tokens: Vec<FileToken>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    alerts: FileAlerts,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    name: Option<String>,
    token: Option<String>,
    blake3: Option<String>,
    scopes: Vec<String>,
    rate: Option<f64>,
    burst: Option<f64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAlerts {
    min_severity: Option<Severity>,
    stdout: Option<StdoutFormat>,
    #[serde(default)]
    webhooks: Vec<WebhookSpec>,
    attempts: Option<u32>,
    backoff: Option<String>,
    timeout: Option<String>,
    dead_letter: Option<PathBuf>,
    queue: Option<usize>,
}

impl Config {
    /// Reads a YAML settings file; relative paths in it are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string(), path.parent())
    }

    /// Parses YAML settings named `name` in messages; relative paths are joined to `base`.
    pub fn parse(text: &str, name: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let file: FileConfig = serde_norway::from_str(text)
            .map_err(|err| ConfigError::invalid(name, err.to_string()))?;
        let place = |field: &str| format!("{name}: {field}");
        let rebase = |p: PathBuf| match base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };
        let mut config = Config::default();
        if let Some(bind) = file.bind {
            config.bind = parse_bind(&bind).map_err(|m| ConfigError::invalid(place("bind"), m))?;
        }
        config.tls = file.tls.map(|tls| TlsFiles {
            cert: rebase(tls.cert),
            key: rebase(tls.key),
        });
        config.policy = file.policy.map(rebase);
        config.data = file.data.map(rebase);
        config.baseline = file.baseline.map(rebase);
        if let Some(every) = file.snapshot_every {
            config.snapshot_every = parse_interval(&every)
                .map_err(|m| ConfigError::invalid(place("snapshot_every"), m))?;
        }
        if let Some(window) = file.window {
            config.window = nhiwatch_policy::parse_duration(&window)
                .map_err(|m| ConfigError::invalid(place("window"), m))?;
        }
        for (i, token) in file.tokens.into_iter().enumerate() {
            let at = place(&format!("tokens[{i}]"));
            config.tokens.push(token_spec(token, i, &at)?);
        }
        config.limits = file.limits;
        check_limits(&config.limits).map_err(|m| ConfigError::invalid(place("limits"), m))?;
        let alerts = file.alerts;
        let defaults = AlertSettings::default();
        config.alerts =
            AlertSettings {
                min_severity: alerts.min_severity.unwrap_or(defaults.min_severity),
                stdout: alerts.stdout.unwrap_or(defaults.stdout),
                webhooks: alerts.webhooks,
                attempts: alerts.attempts.unwrap_or(defaults.attempts).max(1),
                backoff: match alerts.backoff {
                    Some(text) => duration(&text)
                        .map_err(|m| ConfigError::invalid(place("alerts.backoff"), m))?,
                    None => defaults.backoff,
                },
                timeout: match alerts.timeout {
                    Some(text) => duration(&text)
                        .map_err(|m| ConfigError::invalid(place("alerts.timeout"), m))?,
                    None => defaults.timeout,
                },
                dead_letter: alerts.dead_letter.map(rebase),
                queue: alerts.queue.unwrap_or(defaults.queue).max(1),
            };
        for (i, hook) in config.alerts.webhooks.iter_mut().enumerate() {
            if hook.name.is_empty() {
                hook.name = format!("webhook-{}", i + 1);
            }
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    place(&format!("alerts.webhooks[{i}].url")),
                    "must start with http:// or https://",
                ));
            }
        }
        Ok(config)
    }

    /// Adds the tokens of a `NHIWATCH_TOKENS` value: whitespace-separated `SCOPES:TOKEN`
    /// entries, scopes joined by commas.
    pub fn add_env_tokens(&mut self, value: &str) -> Result<(), ConfigError> {
        for (i, entry) in value.split_whitespace().enumerate() {
            let at = format!("{TOKENS_ENV} entry {}", i + 1);
            let Some((scopes, token)) = entry.split_once(':') else {
                return Err(ConfigError::invalid(
                    at,
                    "expected SCOPES:TOKEN, e.g. ingest,read:0123456789abcdef",
                ));
            };
            let scopes = scopes.split(',').map(str::to_owned).collect();
            let spec = token_spec(
                FileToken {
                    name: Some(format!("env-{}", i + 1)),
                    token: Some(token.to_owned()),
                    blake3: None,
                    scopes,
                    rate: None,
                    burst: None,
                },
                i,
                &at,
            )?;
            self.tokens.push(spec);
        }
        Ok(())
    }

    /// Checks the settings as a whole: some way to authenticate, and no unauthenticated
    /// service beyond loopback.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.no_auth && !self.bind.ip().is_loopback() {
            return Err(ConfigError::invalid(
                "--no-auth",
                format!(
                    "serving without tokens is allowed on a loopback address only, not {}",
                    self.bind
                ),
            ));
        }
        if !self.no_auth && self.tokens.is_empty() {
            return Err(ConfigError::invalid(
                "tokens",
                format!("no API token is configured: list tokens in the config file, set {TOKENS_ENV}, or pass --no-auth (loopback only)"),
            ));
        }
        check_limits(&self.limits).map_err(|m| ConfigError::invalid("limits", m))
    }

    /// The dead-letter file in use: the configured one, else one in the data folder.
    pub fn dead_letter(&self) -> Option<PathBuf> {
        self.alerts.dead_letter.clone().or_else(|| {
            self.data
                .as_ref()
                .map(|dir| dir.join("alerts-dead-letter.jsonl"))
        })
    }
}

/// Parses a listen address: `HOST:PORT` with an IP address, or `localhost:PORT`.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{text}`: the port is not a number"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not an address; write e.g. 127.0.0.1:7410 or [::1]:7410"))
}

/// Parses how often something recurs: a duration above zero such as `500ms`, `30s` or `5m`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        every if every.is_zero() => Err(format!(
            "`{text}` is not an interval: give more than zero, e.g. 30s or 5m"
        )),
        every => Ok(every),
    }
}

/// Parses a duration such as `500ms`, `2s` or `1m`.
fn duration(text: &str) -> Result<Duration, String> {
    if let Some(ms) = text.trim().strip_suffix("ms") {
        return ms
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("`{text}` is not a duration; write e.g. 500ms, 2s or 1m"));
    }
    let nanos = nhiwatch_policy::parse_duration(text)?;
    Ok(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

fn check_limits(limits: &Limits) -> Result<(), String> {
    let fields = [
        ("max_body_bytes", limits.max_body_bytes),
        ("max_decoded_bytes", limits.max_decoded_bytes),
        ("max_events_per_request", limits.max_events_per_request),
        ("max_decide_bytes", limits.max_decide_bytes),
        ("ingest_queue", limits.ingest_queue),
        ("decide_queue", limits.decide_queue),
        ("findings_kept", limits.findings_kept),
    ];
    match fields.iter().find(|(_, value)| *value == 0) {
        Some((field, _)) => Err(format!("{field} must be at least 1")),
        None => Ok(()),
    }
}

fn token_spec(token: FileToken, index: usize, at: &str) -> Result<TokenSpec, ConfigError> {
    let secret = match (token.token, token.blake3) {
        (Some(plain), None) => {
            if plain.chars().count() < MIN_TOKEN_CHARS {
                return Err(ConfigError::invalid(
                    at,
                    format!("a token must be at least {MIN_TOKEN_CHARS} characters"),
                ));
            }
            Secret::Plain(plain)
        }
        (None, Some(hex)) => Secret::Blake3(
            parse_hash(&hex)
                .ok_or_else(|| ConfigError::invalid(at, "blake3 must be 64 hexadecimal digits"))?,
        ),
        _ => {
            return Err(ConfigError::invalid(
                at,
                "give exactly one of `token` and `blake3`",
            ))
        }
    };
    if token.scopes.is_empty() {
        return Err(ConfigError::invalid(
            at,
            "list at least one scope: ingest, decide, read or admin",
        ));
    }
    let scopes = token
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ConfigError::invalid(at, m))?;
    for (field, value) in [("rate", token.rate), ("burst", token.burst)] {
        if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(ConfigError::invalid(
                at,
                format!("{field} must be a positive number"),
            ));
        }
    }
    Ok(TokenSpec {
        name: token.name.unwrap_or_else(|| format!("token-{}", index + 1)),
        secret,
        scopes,
        rate: token.rate,
        burst: token.burst,
    })
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_file() {
        let yaml = r#"
bind: 0.0.0.0:9000
policy: policy.yaml
data: data
window: 10m
baseline: learned.bin
snapshot_every: 90s
tls: {cert: c.pem, key: k.pem}
tokens:
  - {name: collector, token: "0123456789abcdef-x", scopes: [ingest], rate: 5}
  - {blake3: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262", scopes: [read, decide]}
limits: {max_body_bytes: 1000, decide_queue: 8}
alerts:
  min_severity: medium
  stdout: none
  webhooks: [{url: "http://127.0.0.1:1/hook", format: slack}]
  backoff: 50ms
"#;
        let config = Config::parse(yaml, "serve.yaml", Some(Path::new("/etc/nhiwatch"))).unwrap();
        assert_eq!(config.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(
            config.policy.as_deref(),
            Some(Path::new("/etc/nhiwatch/policy.yaml"))
        );
        assert_eq!(config.window, 10 * 60 * 1_000_000_000);
        assert_eq!(
            config.baseline.as_deref(),
            Some(Path::new("/etc/nhiwatch/learned.bin"))
        );
        assert_eq!(config.snapshot_every, Duration::from_secs(90));
        assert_eq!(config.tokens.len(), 2);
        assert_eq!(config.tokens[0].scopes, [Scope::Ingest]);
        assert_eq!(config.tokens[1].name, "token-2");
        assert!(matches!(config.tokens[1].secret, Secret::Blake3(h) if h[0] == 0xaf));
        assert_eq!(config.limits.max_body_bytes, 1000);
        assert_eq!(config.limits.ingest_queue, Limits::default().ingest_queue);
        assert_eq!(config.alerts.min_severity, Severity::Medium);
        assert_eq!(config.alerts.webhooks[0].name, "webhook-1");
        assert_eq!(config.alerts.backoff, Duration::from_millis(50));
        assert_eq!(
            config.dead_letter().unwrap(),
            Path::new("/etc/nhiwatch/data/alerts-dead-letter.jsonl")
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |yaml: &str| {
            Config::parse(yaml, "serve.yaml", None)
                .unwrap_err()
                .to_string()
        };
        assert!(err("tokens: [{token: short, scopes: [read]}]").contains("tokens[0]"));
        assert!(err("tokens: [{token: 0123456789abcdefgh, scopes: [root]}]").contains("root"));
        assert!(err("bind: nowhere").contains("bind"));
        assert!(err("limits: {ingest_queue: 0}").contains("ingest_queue"));
        assert!(err("colour: blue").contains("colour"));
        assert!(err("snapshot_every: 0s").contains("snapshot_every"));
        assert!(err("snapshot_every: often").contains("snapshot_every"));
        assert!(err("alerts: {webhooks: [{url: ftp://x}]}").contains("webhooks[0].url"));
    }

    #[test]
    fn env_tokens_and_the_loopback_rule() {
        let mut config = Config::default();
        assert!(config.validate().is_err(), "no token, no --no-auth");
        config
            .add_env_tokens("ingest,read:0123456789abcdef  admin:fedcba9876543210")
            .unwrap();
        assert_eq!(config.tokens[0].scopes, [Scope::Ingest, Scope::Read]);
        assert_eq!(config.tokens[1].name, "env-2");
        config.validate().unwrap();
        assert!(config.add_env_tokens("nocolon").is_err());

        let mut open = Config {
            no_auth: true,
            ..Config::default()
        };
        open.validate().unwrap();
        open.bind = "0.0.0.0:7410".parse().unwrap();
        assert!(open
            .validate()
            .unwrap_err()
            .to_string()
            .contains("loopback"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let spec = token_spec(
            FileToken {
                name: None,
                token: Some("very-secret-token-value".into()),
                blake3: None,
                scopes: vec!["read".into()],
                rate: None,
                burst: None,
            },
            0,
            "t",
        )
        .unwrap();
        assert!(!format!("{spec:?}").contains("very-secret"));
        let hook = WebhookSpec {
            name: "s".into(),
            url: "https://hooks.slack.com/services/SECRET".into(),
            format: WebhookFormat::Slack,
        };
        assert!(!format!("{hook:?}").contains("SECRET"));
    }
}
