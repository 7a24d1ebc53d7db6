//! The pages: what each reads from the store, and the HTML it becomes. Every page is a
//! function of the store, the policy, the triage marks and its query parameters, so a URL
//! names a view exactly.

pub(crate) mod finding;
pub(crate) mod findings;
pub(crate) mod identity;
pub(crate) mod overview;

use std::fmt::Write;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nhiwatch_model::{Decision, Finding, Severity, Timestamp};
use nhiwatch_policy::Policy;
use nhiwatch_store::{FindingQuery, Store, StoreError};

use crate::html::{esc, href};
use crate::triage::{Mark, Triage};

/// Writes to a `String` (which cannot fail).
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}
pub(crate) use w;

/// What every page reads from.
pub(crate) struct Ctx {
    pub store: Arc<Store>,
    pub policy: Option<Arc<Policy>>,
    pub triage: Triage,
    rejects: RejectCount,
}

impl Ctx {
    pub fn new(store: Arc<Store>, policy: Option<Arc<Policy>>, triage: Triage) -> Ctx {
        let rejects = RejectCount {
            path: store
                .path()
                .parent()
                .map(|dir| dir.join("rejects.jsonl"))
                .unwrap_or_default(),
            seen: Mutex::new((0, 0)),
        };
        Ctx {
            store,
            policy,
            triage,
            rejects,
        }
    }

    /// The data version: the chain head and the number of triage marks. It changes whenever
    /// anything a page shows may have changed; the page script polls it.
    pub fn version(&self) -> Result<String, StoreError> {
        let head = self.store.head()?;
        Ok(match head {
            Some(head) => {
                let hash = head.hash.to_string();
                let short = hash.get(..12).unwrap_or(&hash);
                format!("{}-{short}-{}", head.batch, self.triage.count())
            }
            None => format!("empty-{}", self.triage.count()),
        })
    }

    /// Records rejected by the server's ingest (the lines of `rejects.jsonl`).
    pub fn rejects(&self) -> u64 {
        self.rejects.count()
    }

    /// The owner the policy names for an identity.
    pub fn owner(&self, identity: &str) -> Option<&str> {
        let policy = self.policy.as_deref()?;
        policy.entry(policy.entry_for(identity)?)?.owner()
    }

    /// A finding by id; with its identity known the lookup reads only that identity's findings.
    pub fn finding(&self, id: &str, identity: &str) -> Result<Option<Finding>, StoreError> {
        if !identity.is_empty() {
            let all = self.store.findings(&FindingQuery {
                identity: Some(identity.to_owned()),
                ..FindingQuery::default()
            })?;
            return Ok(all.into_iter().find(|f| f.id == id));
        }
        let mut found = None;
        self.store.export_findings(&mut |f| {
            if f.id == id {
                found = Some(f.clone());
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found)
    }
}

/// Counts the lines of the server's reject log, reading only what was appended since the
/// last look.
struct RejectCount {
    path: PathBuf,
    /// Bytes read so far, and the lines in them.
    seen: Mutex<(u64, u64)>,
}

impl RejectCount {
    fn count(&self) -> u64 {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(mut file) = File::open(&self.path) else {
            return 0;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < seen.0 {
            *seen = (0, 0);
        }
        if len > seen.0 && file.seek(SeekFrom::Start(seen.0)).is_ok() {
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = len - seen.0;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let Ok(n) = file.read(&mut buf[..want]) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                seen.1 += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                seen.0 += n as u64;
                left -= n as u64;
            }
        }
        seen.1
    }
}

/// The frame around a page's content: who is signed in, navigation, search, live status.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chrome {
    /// The token name; `None` without authentication.
    pub who: Option<String>,
    /// Whether triage forms are shown.
    pub can_triage: bool,
    /// The data version the page was rendered at.
    pub version: String,
}

/// Which navigation item is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Findings,
    Other,
}

/// A whole page.
pub(crate) fn layout(title: &str, nav: Nav, chrome: &Chrome, main: &str) -> String {
    let assets = crate::routes::asset_version();
    let mut out = String::with_capacity(main.len() + 2048);
    w!(
        out,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · nhiwatch</title><link rel="icon" href="/ui/static/icon.svg" type="image/svg+xml"><link rel="stylesheet" href="/ui/static/app.css?v={assets}"><script src="/ui/static/app.js?v={assets}" defer></script></head><body data-version="{}"><a class="skip" href="#main">Skip to content</a><header class="top"><a class="brand" href="/ui/">nhiwatch</a><nav aria-label="Sections">"##,
        esc(title),
        esc(&chrome.version)
    );
    for (item, path, text) in [
        (Nav::Overview, "/ui/", "Identities"),
        (Nav::Findings, "/ui/findings", "Findings"),
    ] {
        let current = if item == nav {
            r#" aria-current="page""#
        } else {
            ""
        };
        w!(out, r#"<a href="{path}"{current}>{text}</a>"#);
    }
    out.push_str(r#"</nav><form class="search" action="/ui/" method="get" role="search"><label for="search" class="vh">Search identities</label><input id="search" name="q" type="search" placeholder="Search identities ( / )" autocomplete="off"></form><div class="live"><label><input type="checkbox" id="live-toggle" checked> live</label> <span id="live-status" aria-live="polite"></span></div>"#);
    if let Some(who) = &chrome.who {
        w!(
            out,
            r#"<form class="signout" action="/ui/logout" method="post"><span class="who">{}</span> <button type="submit">Sign out</button></form>"#,
            esc(who)
        );
    }
    w!(
        out,
        r#"</header><main id="main" tabindex="-1">{main}</main></body></html>"#
    );
    out
}

/// A notice above a page's content (a filter that was ignored, a missing policy).
pub(crate) fn notices(out: &mut String, notices: &[String]) {
    for notice in notices {
        w!(
            out,
            r#"<p class="notice" role="status">{}</p>"#,
            esc(notice)
        );
    }
}

/// A severity as a badge.
pub(crate) fn severity(out: &mut String, severity: Severity) {
    let s = severity.as_str();
    w!(out, r#"<span class="badge s-{s}">{s}</span>"#);
}

/// A decision as a badge.
pub(crate) fn decision(out: &mut String, decision: Decision) {
    let d = decision.as_str();
    w!(out, r#"<span class="badge d-{d}">{d}</span>"#);
}

/// A risk figure with its band.
pub(crate) fn risk(out: &mut String, risk: u8) {
    let band = match risk {
        0..=29 => "low",
        30..=59 => "medium",
        60..=84 => "high",
        _ => "critical",
    };
    w!(out, r#"<span class="risk r-{band}">{risk}</span>"#);
}

/// A triage status as a badge (`open` when unmarked).
pub(crate) fn status(out: &mut String, mark: Option<Mark>) {
    let s = mark.map_or("open", Mark::as_str);
    w!(out, r#"<span class="badge t-{s}">{s}</span>"#);
}

/// The link to an identity's page.
pub(crate) fn identity_link(out: &mut String, identity: &str) {
    w!(
        out,
        r#"<a class="id" href="{}">{}</a>"#,
        href("/ui/identity", &[("id", identity)]),
        esc(identity)
    );
}

/// The link to a finding's page.
pub(crate) fn finding_href(finding: &Finding) -> String {
    href(
        "/ui/finding",
        &[("id", &finding.id), ("identity", &finding.identity)],
    )
}

/// A time given in a query: `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub(crate) fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if text.len() == 10 {
        Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z")).ok()
    } else {
        Timestamp::parse_rfc3339(text).ok()
    }
}

/// Whether `haystack` contains `needle`, ignoring ASCII case (an empty needle matches).
pub(crate) fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
}

/// The `<option>`s of a filter, the current one selected; the first is "any".
pub(crate) fn options<'a>(
    out: &mut String,
    any: &str,
    values: impl IntoIterator<Item = &'a str>,
    current: &str,
) {
    w!(out, r#"<option value="">{}</option>"#, esc(any));
    for value in values {
        let selected = if value == current { " selected" } else { "" };
        w!(
            out,
            r#"<option value="{}"{selected}>{}</option>"#,
            esc(value),
            esc(value)
        );
    }
}

#[cfg(test)]
pub(crate) mod tests;
