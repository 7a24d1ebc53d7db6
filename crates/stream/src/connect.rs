//! Connecting to NATS: URLs, credentials, TLS, and errors that say what was tried.
//!
//! Once connected, the client reconnects by itself for as long as the process runs (no limit on
//! attempts, backing off). Nothing is lost while it does: a publisher's unacknowledged
//! publishes fail and are reported; a worker acknowledges events only after they are durable,
//! and re-reads from its last durable point after any interruption (see [`crate::worker`]).

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};

use crate::StreamError;

/// How to reach and authenticate to NATS.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// Server URL, or several separated by commas (`nats://a:4222,nats://b:4222`);
    /// `tls://` requires TLS.
    pub url: String,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes it.
    pub credentials: Option<PathBuf>,
    /// User name, with [`NatsOptions::password`].
    pub user: Option<String>,
    /// Password, with [`NatsOptions::user`].
    pub password: Option<String>,
    /// An authentication token.
    pub token: Option<String>,
    /// CA certificate(s) (PEM) to verify the server with, instead of the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that verify clients; with [`NatsOptions::tls_key`].
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Refuse to connect without TLS.
    pub require_tls: bool,
    /// The client name the server shows (`nats server report connections`).
    pub name: String,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
}

impl NatsOptions {
    /// Options for `url`, with no authentication and no TLS requirement.
    pub fn new(url: impl Into<String>) -> Self {
        NatsOptions {
            url: url.into(),
            credentials: None,
            user: None,
            password: None,
            token: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            name: "nhiwatch".into(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// What a connection attempt tries, in words (no secrets).
    pub fn describe(&self) -> String {
        let auth = if let Some(path) = &self.credentials {
            format!("credentials file {}", path.display())
        } else if let Some(user) = &self.user {
            format!("user {user} with a password")
        } else if self.token.is_some() {
            "a token".to_owned()
        } else {
            "no authentication".to_owned()
        };
        let tls = match (&self.tls_ca, &self.tls_cert, self.require_tls) {
            (_, Some(cert), _) => format!("TLS with client certificate {}", cert.display()),
            (Some(ca), None, _) => format!("TLS verified by {}", ca.display()),
            (None, None, true) => "TLS required".to_owned(),
            (None, None, false) => "TLS if the server offers it".to_owned(),
        };
        format!(
            "{auth}, {tls}, {} s timeout",
            self.connect_timeout.as_secs_f64()
        )
    }

    fn addresses(&self) -> Result<Vec<ServerAddr>, StreamError> {
        let addresses: Vec<ServerAddr> = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ServerAddr>()
                    .map_err(|err| StreamError::Options(format!("`{s}` is not a NATS URL: {err}")))
            })
            .collect::<Result<_, _>>()?;
        if addresses.is_empty() {
            return Err(StreamError::Options("no NATS URL given".into()));
        }
        Ok(addresses)
    }

    async fn options(&self) -> Result<ConnectOptions, StreamError> {
        let mut options = match &self.credentials {
            Some(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|err| {
                    StreamError::Options(format!(
                        "cannot read the credentials file {}: {err}",
                        path.display()
                    ))
                })?,
            None => ConnectOptions::new(),
        };
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone())
            }
            (None, None) => {}
            _ => {
                return Err(StreamError::Options(
                    "a NATS user needs a password and a password needs a user".into(),
                ))
            }
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                options = options
                    .add_client_certificate(cert.clone(), key.clone())
                    .require_tls(true)
            }
            (None, None) => {}
            _ => {
                return Err(StreamError::Options(
                    "a TLS client certificate needs its key, and a key its certificate".into(),
                ))
            }
        }
        if self.require_tls {
            options = options.require_tls(true);
        }
        Ok(options
            .name(self.name.clone())
            .connection_timeout(self.connect_timeout)
            .max_reconnects(None))
    }

    /// Connects. The error names the URL, what was tried, and the likely cause.
    pub async fn connect(&self) -> Result<Client, StreamError> {
        let addresses = self.addresses()?;
        let options = self.options().await?;
        options.connect(addresses).await.map_err(|err| {
            let hint = match err.kind() {
                ConnectErrorKind::Io | ConnectErrorKind::TimedOut => {
                    "is nats-server running there (with -js) and reachable from here?"
                }
                ConnectErrorKind::Dns => "the host name does not resolve",
                ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                    "the server refused these credentials"
                }
                ConnectErrorKind::Tls => {
                    "TLS failed: check the CA, the client certificate and the server name"
                }
                ConnectErrorKind::ServerParse => "the URL is malformed",
                ConnectErrorKind::MaxReconnects => "gave up reconnecting",
            };
            StreamError::Connect {
                url: self.url.clone(),
                tried: self.describe(),
                reason: format!("{err}; {hint}"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_without_secrets() {
        let mut options = NatsOptions::new("nats://127.0.0.1:4222");
        options.user = Some("svc".into());
        options.password = Some("hunter2".into());
        let text = options.describe();
        assert!(text.contains("user svc"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[tokio::test]
    async fn half_options_are_refused_before_connecting() {
        let mut options = NatsOptions::new("nats://127.0.0.1:1");
        options.tls_cert = Some("client.pem".into());
        let err = options.connect().await.unwrap_err();
        assert!(err.to_string().contains("needs its key"), "{err}");
        let err = NatsOptions::new(" , ").connect().await.unwrap_err();
        assert!(err.to_string().contains("no NATS URL"), "{err}");
    }
}
