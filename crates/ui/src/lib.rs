//! # nhiwatch-ui
//!
//! The web UI of `nhiwatch serve`: which identities are drifting, what exactly they did, and
//! why nhiwatch thinks it is unsafe. Pages are rendered on the server from the evidence store
//! ([`nhiwatch_store::Store`]) as plain HTML with inline SVG charts; one small script (live
//! updates, a keyboard shortcut) and one stylesheet are compiled into the binary. Nothing is
//! fetched from elsewhere, so it works on a machine that is offline.
//!
//! | path | what |
//! |---|---|
//! | `GET /ui/` | overview: identities ranked by latest risk (kind, owner, last activity, risk sparkline), findings over time by severity and by kind, counts of events, identities, findings and rejects; filters `q` (identity), `action`, `kind` (identity kind), `finding` (finding kind) |
//! | `GET /ui/identity?id=ID` | one identity: activity over time, hour-of-week heatmap against its baseline, session timeline (denied, out-of-scope and off-workflow actions marked, workflow steps aligned), resources, permitted vs used, findings, risk; `from`, `to` (`YYYY-MM-DD` or RFC 3339), `action` |
//! | `GET /ui/findings` | findings, newest first; filters `identity`, `kind`, `severity` (at least), `status` |
//! | `GET /ui/finding?id=F&identity=ID` | one finding: evidence events in order with their raw records, what they were compared with (`evidence.detail`), decision, frameworks, triage |
//! | `GET /ui/finding.json?id=F&identity=ID` | the finding, its evidence events and its triage, as a JSON download |
//! | `POST /ui/finding/mark` | acknowledge a finding or mark it benign (form: `id`, `identity`, `mark`, `note`) |
//! | `GET /ui/api/version` | the data version (chain head and triage count): what the page script polls for live updates |
//! | `GET/POST /ui/login`, `POST /ui/logout` | sign in with an API token; sign out |
//! | `GET /ui/static/*` | the script, the stylesheet and the icon |
//!
//! Every URL carries its state in the query string, so a view can be shared by copying it.
//!
//! ## Security
//!
//! - **Escaping.** Every string from telemetry, the policy or the request is HTML-escaped on
//!   the way out (`html::esc`); control characters, ANSI escapes and bidirectional overrides
//!   are shown as visible `\u{..}` escapes. Links are built with percent-encoded values.
//! - **Content-Security-Policy** on every response: `default-src 'none'; script-src 'self';
//!   style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self';
//!   frame-ancestors 'none'; base-uri 'none'`. There is no inline script or style: even markup
//!   that escaped escaping could not run. Also `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: same-origin`, and `Cache-Control: no-store` on pages.
//! - **Authentication** reuses the server's API tokens through an [`Authenticate`] function:
//!   reading needs a token with the `read` scope; acknowledging or marking a finding benign
//!   ([`Need::Triage`]) needs more (the server maps it to `admin`), because a benign mark teaches
//!   the baseline. A browser signs in once on `/ui/login` with its token; the UI then keeps a
//!   server-side session (256 random bits, 12 hours) and gives the browser only its id, in a
//!   cookie marked `HttpOnly; SameSite=Strict; Path=/ui` (and `Secure` under TLS). The token
//!   itself is never stored in the browser. Scripts and curl may instead send
//!   `Authorization: Bearer TOKEN` on every request. Sessions live in memory: a restart signs
//!   everyone out.
//! - **CSRF.** Every state-changing request is a `POST`; with a session cookie it must also
//!   carry an `Origin` equal to the server's own (and `Sec-Fetch-Site: same-origin` when the
//!   browser sends it), on top of the `SameSite=Strict` cookie. Bearer requests carry no ambient
//!   credential and need no such check.
//!
//! ## Triage
//!
//! Acknowledgements and benign marks are appended, with who made them and when, to
//! `triage.jsonl` in the data folder (one JSON object a line, `fsync`ed before the answer).
//! A benign mark also teaches the baseline: the UI hands the finding to the server's
//! [`BenignHook`], whose engine learns what was new in its evidence as usual for the identity
//! (`nhiwatch_detect::Engine::vouch`), now and again at every start (learning is idempotent).

#![warn(missing_docs)]

mod auth;
mod charts;
mod html;
mod pages;
mod routes;
mod triage;

use std::path::PathBuf;
use std::sync::Arc;

use nhiwatch_policy::Policy;
use nhiwatch_store::Store;

pub use auth::{Authenticate, Denied, Need};

/// What the UI serves from, and how it checks who is asking.
pub struct Settings {
    /// The evidence store the pages read (the server's own handle: reads run beside its
    /// writes).
    pub store: Arc<Store>,
    /// The policy file, for owners, entitlements (permitted vs used, out-of-scope marks) and
    /// workflows; without one those parts say that no policy is loaded.
    pub policy: Option<Arc<Policy>>,
    /// Checks an API token for a need; `None` serves without authentication (the server's
    /// `--no-auth`, loopback only).
    pub auth: Option<Authenticate>,
    /// Whether the server speaks TLS: session cookies are then marked `Secure` and the
    /// expected `Origin` is `https://`.
    pub tls: bool,
    /// What a benign mark teaches; `None` records marks only.
    pub benign: Option<BenignHook>,
}

/// Called with a finding a person marked benign, off the async runtime, once the mark is
/// durable ([`Benign::JustMarked`]); and, when the UI starts, with every finding whose latest
/// mark is benign ([`Benign::AtStart`]), so that a mark made after the engine's last snapshot
/// is not lost. What it teaches must therefore be idempotent.
pub type BenignHook = Arc<dyn Fn(&nhiwatch_model::Finding, Benign) + Send + Sync>;

/// When a [`BenignHook`] is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Benign {
    /// A person has just marked the finding benign.
    JustMarked,
    /// The UI starts, and the finding's latest mark is benign.
    AtStart,
}

/// Why the UI could not start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The triage file could not be opened or read.
    #[error("cannot open the triage file {path}: {source}")]
    Triage {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The UI's routes (`/` redirects to `/ui/`), to merge into the server's router. It sets no
/// fallback, so the server's own stays in charge of unknown paths.
pub fn router(settings: Settings) -> Result<axum::Router, UiError> {
    routes::router(settings)
}
