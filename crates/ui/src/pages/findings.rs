//! The findings list, newest first, with filters; and the findings table other pages share.

use std::fmt::Write;

use nhiwatch_model::{Finding, FindingKind, Severity};
use nhiwatch_store::{FindingQuery, StoreError};
use serde::Deserialize;

use super::overview::SEVERITIES;
use super::{
    contains, decision, finding_href, identity_link, layout, notices, options, risk, severity,
    status, w, Chrome, Ctx, Nav,
};
use crate::html::{esc, href, short_time};

/// Rows shown unless `limit` says otherwise.
const DEFAULT_ROWS: usize = 200;

/// The findings list's filters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Params {
    /// Identity id contains this.
    pub identity: String,
    /// Finding kind.
    pub kind: String,
    /// At least this severity.
    pub severity: String,
    /// `open`, `acknowledged` or `benign`.
    pub status: String,
    /// Rows shown.
    pub limit: Option<usize>,
}

/// Renders the findings list.
pub(crate) fn render(ctx: &Ctx, p: &Params, chrome: &Chrome) -> Result<String, StoreError> {
    let mut notes = Vec::new();
    let kind = match p.kind.as_str() {
        "" => None,
        text => {
            let kind = FindingKind::ALL.into_iter().find(|k| k.as_str() == text);
            if kind.is_none() {
                notes.push(format!(
                    "Unknown finding kind `{text}`: the filter is ignored."
                ));
            }
            kind
        }
    };
    let min_severity: Option<Severity> = match p.severity.as_str() {
        "" => None,
        text => {
            let found = SEVERITIES.into_iter().find(|s| s.as_str() == text);
            if found.is_none() {
                notes.push(format!("Unknown severity `{text}`: the filter is ignored."));
            }
            found
        }
    };
    let all = ctx.store.findings(&FindingQuery {
        kinds: kind.into_iter().collect(),
        ..FindingQuery::default()
    })?;
    let shown: Vec<&Finding> = all
        .iter()
        .rev()
        .filter(|f| {
            contains(&f.identity, &p.identity)
                && min_severity.is_none_or(|s| f.severity >= s)
                && (p.status.is_empty()
                    || ctx.triage.status(&f.id).map_or("open", |m| m.as_str()) == p.status)
        })
        .collect();
    let limit = p.limit.unwrap_or(DEFAULT_ROWS).max(1);

    let mut main = String::with_capacity(64 * 1024);
    main.push_str("<h1>Findings</h1>");
    notices(&mut main, &notes);
    w!(
        main,
        r#"<form class="filters" action="/ui/findings" method="get"><label>Identity <input name="identity" type="search" value="{}"></label><label>Kind <select name="kind">"#,
        esc(&p.identity)
    );
    options(
        &mut main,
        "any",
        FindingKind::ALL.iter().map(|k| k.as_str()),
        &p.kind,
    );
    main.push_str(r#"</select></label><label>Severity at least <select name="severity">"#);
    options(
        &mut main,
        "any",
        SEVERITIES.iter().map(|s| s.as_str()),
        &p.severity,
    );
    main.push_str(r#"</select></label><label>Status <select name="status">"#);
    options(
        &mut main,
        "any",
        ["open", "acknowledged", "benign"],
        &p.status,
    );
    main.push_str(r#"</select></label><button type="submit">Filter</button> <a href="/ui/findings">Clear</a></form>"#);
    w!(
        main,
        "<p>{} of {} findings{}</p>",
        shown.len().min(limit),
        shown.len(),
        if shown.len() > limit {
            ", newest first"
        } else {
            ""
        }
    );
    if shown.is_empty() {
        main.push_str(r#"<p class="empty">No finding matches.</p>"#);
    } else {
        table(ctx, &mut main, shown.iter().copied().take(limit), true);
    }
    if shown.len() > limit {
        let all = shown.len().to_string();
        w!(
            main,
            r#"<p><a href="{}">Show all {}</a></p>"#,
            href(
                "/ui/findings",
                &[
                    ("identity", &p.identity),
                    ("kind", &p.kind),
                    ("severity", &p.severity),
                    ("status", &p.status),
                    ("limit", &all)
                ]
            ),
            shown.len()
        );
    }
    Ok(layout("Findings", Nav::Findings, chrome, &main))
}

/// A table of findings, in the order given; with `identities` a column names each identity.
pub(crate) fn table<'a>(
    ctx: &Ctx,
    out: &mut String,
    findings: impl Iterator<Item = &'a Finding>,
    identities: bool,
) {
    out.push_str(
        r#"<div class="scroll"><table class="findings"><thead><tr><th scope="col">Time</th>"#,
    );
    if identities {
        out.push_str(r#"<th scope="col">Identity</th>"#);
    }
    out.push_str(r#"<th scope="col">Kind</th><th scope="col">Severity</th><th scope="col">Risk</th><th scope="col">Decision</th><th scope="col">Status</th><th scope="col">Summary</th></tr></thead><tbody>"#);
    for f in findings {
        w!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td>",
            finding_href(f),
            short_time(f.time)
        );
        if identities {
            out.push_str("<td>");
            identity_link(out, &f.identity);
            out.push_str("</td>");
        }
        w!(out, "<td>{}</td><td>", f.kind.as_str());
        severity(out, f.severity);
        out.push_str("</td><td>");
        risk(out, f.risk);
        out.push_str("</td><td>");
        decision(out, f.decision);
        out.push_str("</td><td>");
        status(out, ctx.triage.status(&f.id));
        w!(
            out,
            r#"</td><td class="summary">{}</td></tr>"#,
            esc(&f.summary)
        );
    }
    out.push_str("</tbody></table></div>");
}
