//! API tokens: scopes, constant-time verification, and a per-token rate limit.
//!
//! Tokens are kept only as BLAKE3 hashes. A presented token is hashed and compared with every
//! configured hash in constant time (`blake3::Hash`'s equality), visiting all of them whatever
//! matches, so neither the comparison nor the search tells an attacker how close a guess came.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Secret, TokenSpec};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Push telemetry: `POST /v1/events`, `POST /v1/otlp/v1/traces`.
    Ingest,
    /// Ask for inline decisions: `POST /v1/decide`.
    Decide,
    /// Read identities, findings and metrics.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Decide => "decide",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Ingest => 1,
            Scope::Decide => 2,
            Scope::Read => 4,
            Scope::Admin => 8,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "ingest" => Ok(Scope::Ingest),
            "decide" => Ok(Scope::Decide),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope `{other}`; expected ingest, decide, read or admin"
            )),
        }
    }
}

/// A token bucket: `rate` requests per second, at most `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one request from the bucket at `now`; when it is empty, how long until it is not.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// One configured token, as held in memory.
#[derive(Debug)]
pub struct Principal {
    /// Its name (for logs and metrics).
    pub name: String,
    hash: blake3::Hash,
    scopes: u8,
    limiter: Option<RateLimiter>,
}

impl Principal {
    /// Whether it may act in `scope` (admin may do everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Counts one request against the rate limit; `Err` holds how long to wait.
    pub fn admit(&self, now: Instant) -> Result<(), Duration> {
        match &self.limiter {
            Some(limiter) => limiter.check(now),
            None => Ok(()),
        }
    }
}

/// The configured tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    principals: Vec<Principal>,
}

impl Tokens {
    /// Hashes the configured tokens.
    pub fn new(specs: &[TokenSpec]) -> Self {
        let principals = specs
            .iter()
            .map(|spec| Principal {
                name: spec.name.clone(),
                hash: match &spec.secret {
                    Secret::Plain(token) => blake3::hash(token.as_bytes()),
                    Secret::Blake3(bytes) => blake3::Hash::from_bytes(*bytes),
                },
                scopes: spec.scopes.iter().fold(0, |bits, s| bits | s.bit()),
                limiter: spec
                    .rate
                    .map(|rate| RateLimiter::new(rate, spec.burst.unwrap_or(rate.ceil()))),
            })
            .collect();
        Tokens { principals }
    }

    /// The principal whose token this is. Every configured hash is compared, in constant time.
    pub fn verify(&self, presented: &str) -> Option<&Principal> {
        let hash = blake3::hash(presented.as_bytes());
        let mut found = None;
        for principal in &self.principals {
            // blake3::Hash's == is constant-time.
            if principal.hash == hash {
                found = Some(principal);
            }
        }
        found
    }

    /// The token of an `Authorization: Bearer TOKEN` header value.
    pub fn bearer(header: &str) -> Option<&str> {
        let (scheme, token) = header.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(token: &str, scopes: &[Scope], rate: Option<f64>) -> TokenSpec {
        TokenSpec {
            name: "t".into(),
            secret: Secret::Plain(token.into()),
            scopes: scopes.to_vec(),
            rate,
            burst: None,
        }
    }

    #[test]
    fn verifies_plain_and_hashed_tokens_and_their_scopes() {
        let hashed = TokenSpec {
            secret: Secret::Blake3(*blake3::hash(b"hashed-token-0123").as_bytes()),
            ..spec("", &[Scope::Admin], None)
        };
        let tokens = Tokens::new(&[spec("ingest-token-0123", &[Scope::Ingest], None), hashed]);
        let ingest = tokens.verify("ingest-token-0123").unwrap();
        assert!(ingest.allows(Scope::Ingest));
        assert!(!ingest.allows(Scope::Read));
        let admin = tokens.verify("hashed-token-0123").unwrap();
        assert!(admin.allows(Scope::Read) && admin.allows(Scope::Decide));
        assert!(tokens.verify("ingest-token-012").is_none());
        assert!(tokens.verify("").is_none());
    }

    #[test]
    fn reads_bearer_headers() {
        assert_eq!(Tokens::bearer("Bearer abc"), Some("abc"));
        assert_eq!(Tokens::bearer("bearer   abc "), Some("abc"));
        assert_eq!(Tokens::bearer("Basic abc"), None);
        assert_eq!(Tokens::bearer("Bearer "), None);
        assert_eq!(Tokens::bearer("abc"), None);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let limiter = RateLimiter::new(10.0, 2.0);
        let start = Instant::now();
        assert!(limiter.check(start).is_ok());
        assert!(limiter.check(start).is_ok());
        let wait = limiter.check(start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(limiter.check(start + Duration::from_millis(100)).is_ok());
        assert!(limiter.check(start + Duration::from_millis(100)).is_err());
    }
}
