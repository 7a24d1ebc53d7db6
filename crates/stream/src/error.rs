//! The errors of the scale-out layer.

use std::path::PathBuf;

/// Why a scale-out operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The NATS server could not be reached or refused the connection.
    #[error("cannot connect to NATS at {url} ({tried}): {reason}")]
    Connect {
        /// The server URL(s) given.
        url: String,
        /// What was tried: authentication, TLS, timeout.
        tried: String,
        /// What went wrong, with a hint.
        reason: String,
    },
    /// The connection options are inconsistent (a certificate without its key, a password
    /// without a user).
    #[error("NATS options: {0}")]
    Options(String),
    /// A NATS or JetStream request failed.
    #[error("NATS: {what}: {source}")]
    Nats {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The JetStream stream exists with another layout than this run asks for.
    #[error("{0}")]
    Layout(String),
    /// A partition's evidence store failed.
    #[error("partition {partition}: {source}")]
    Store {
        /// The partition.
        partition: u32,
        /// The store's error.
        #[source]
        source: nhiwatch_store::StoreError,
    },
    /// A profile snapshot could not be read or written.
    #[error("partition {partition}: profile snapshot: {reason}")]
    Snapshot {
        /// The partition.
        partition: u32,
        /// What is wrong.
        reason: String,
    },
    /// A local file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StreamError {
    /// A NATS error, with what was being done.
    pub fn nats(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StreamError::Nats {
            what: what.into(),
            source: source.into(),
        }
    }
}
