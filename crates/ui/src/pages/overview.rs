//! The overview: identities ranked by risk, findings over time, and the counts.

use std::collections::HashSet;
use std::fmt::Write;

use nhiwatch_model::{Finding, FindingKind, Severity, Timestamp};
use nhiwatch_store::{FindingQuery, IdentitySummary, StoreError};
use serde::Deserialize;

use super::{contains, identity_link, layout, notices, options, risk, w, Chrome, Ctx, Nav};
use crate::charts::{sparkline, stacked_bars, Buckets, Series};
use crate::html::{esc, href, short_time};

/// Rows shown unless `limit` says otherwise.
const DEFAULT_ROWS: usize = 100;

/// Bars in the charts over time, at most.
const MAX_BARS: usize = 60;

/// The overview's filters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Params {
    /// Identity id contains this (case-insensitive).
    pub q: String,
    /// Identity kind.
    pub kind: String,
    /// Identities with a finding of this kind.
    pub finding: String,
    /// Identities that used an action containing this.
    pub action: String,
    /// Rows shown.
    pub limit: Option<usize>,
}

/// Severities in the order charts stack them.
pub(crate) const SEVERITIES: [Severity; 4] = [
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

/// Renders the overview.
pub(crate) fn render(ctx: &Ctx, p: &Params, chrome: &Chrome) -> Result<String, StoreError> {
    let mut notes = Vec::new();
    let identities = ctx.store.identities()?;
    let findings = ctx.store.findings(&FindingQuery::default())?;
    let finding_kind = match p.finding.as_str() {
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
    let with_kind: Option<HashSet<&str>> = finding_kind.map(|kind| {
        findings
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.identity.as_str())
            .collect()
    });
    let mut shown: Vec<&IdentitySummary> = Vec::new();
    for summary in &identities {
        let id = summary.identity.as_str();
        let keep = contains(id, &p.q)
            && (p.kind.is_empty() || summary.kind.as_str() == p.kind)
            && with_kind.as_ref().is_none_or(|set| set.contains(id))
            && (p.action.is_empty()
                || ctx
                    .store
                    .actions(id)?
                    .iter()
                    .any(|a| contains(&a.action, &p.action)));
        if keep {
            shown.push(summary);
        }
    }
    shown.sort_by(|a, b| {
        let risk = |s: &IdentitySummary| s.risk.map_or(0, |r| r.risk);
        risk(b)
            .cmp(&risk(a))
            .then(b.findings.cmp(&a.findings))
            .then(b.events.cmp(&a.events))
            .then(a.identity.cmp(&b.identity))
    });

    let from = identities
        .iter()
        .filter_map(|s| s.first_seen)
        .min()
        .unwrap_or(Timestamp(0));
    let to = identities
        .iter()
        .filter_map(|s| s.last_seen)
        .max()
        .map_or(from, |t| Timestamp(t.0.saturating_add(1)));

    let mut main = String::with_capacity(64 * 1024);
    main.push_str("<h1>Identities</h1>");
    notices(&mut main, &notes);
    counts(ctx, &mut main, &identities, &findings);
    filters(&mut main, p, &identities);

    let limit = p.limit.unwrap_or(DEFAULT_ROWS).max(1);
    w!(
        main,
        r#"<section aria-labelledby="ranked"><h2 id="ranked">Ranked by risk <small>{} of {} identities</small></h2>"#,
        shown.len().min(limit),
        shown.len()
    );
    if shown.is_empty() {
        main.push_str(r#"<p class="empty">No identity matches.</p>"#);
    } else {
        table(ctx, &mut main, &shown[..shown.len().min(limit)], from, to)?;
    }
    if shown.len() > limit {
        let all = (shown.len()).to_string();
        w!(
            main,
            r#"<p><a href="{}">Show all {}</a></p>"#,
            href(
                "/ui/",
                &[
                    ("q", &p.q),
                    ("kind", &p.kind),
                    ("finding", &p.finding),
                    ("action", &p.action),
                    ("limit", &all)
                ]
            ),
            shown.len()
        );
    }
    main.push_str("</section>");
    charts(&mut main, &findings, from, to);
    Ok(layout("Identities", Nav::Overview, chrome, &main))
}

fn counts(ctx: &Ctx, out: &mut String, identities: &[IdentitySummary], findings: &[Finding]) {
    let events: u64 = identities.iter().map(|s| s.events).sum();
    let open = findings
        .iter()
        .filter(|f| ctx.triage.status(&f.id).is_none())
        .count();
    let risky = identities
        .iter()
        .filter(|s| s.risk.is_some_and(|r| r.risk >= 60))
        .count();
    w!(
        out,
        r#"<dl class="counts"><div><dt>Events</dt><dd>{events}</dd></div><div><dt>Identities</dt><dd>{}</dd></div><div><dt>At risk ≥ 60</dt><dd>{risky}</dd></div><div><dt>Findings</dt><dd><a href="/ui/findings">{}</a></dd></div><div><dt>Open findings</dt><dd><a href="/ui/findings?status=open">{open}</a></dd></div><div><dt>Rejected records</dt><dd>{}</dd></div></dl>"#,
        identities.len(),
        findings.len(),
        ctx.rejects()
    );
}

fn filters(out: &mut String, p: &Params, identities: &[IdentitySummary]) {
    let mut kinds: Vec<&str> = identities.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    w!(
        out,
        r#"<form class="filters" action="/ui/" method="get"><label>Identity <input name="q" type="search" value="{}"></label><label>Action <input name="action" type="search" value="{}" placeholder="e.g. iam:"></label><label>Kind <select name="kind">"#,
        esc(&p.q),
        esc(&p.action)
    );
    options(out, "any", kinds, &p.kind);
    out.push_str(r#"</select></label><label>With finding <select name="finding">"#);
    options(
        out,
        "any",
        FindingKind::ALL.iter().map(|k| k.as_str()),
        &p.finding,
    );
    out.push_str(
        r#"</select></label><button type="submit">Filter</button> <a href="/ui/">Clear</a></form>"#,
    );
}

fn table(
    ctx: &Ctx,
    out: &mut String,
    rows: &[&IdentitySummary],
    from: Timestamp,
    to: Timestamp,
) -> Result<(), StoreError> {
    out.push_str(r#"<div class="scroll"><table class="ranked"><thead><tr><th scope="col">Identity</th><th scope="col">Kind</th><th scope="col">Owner</th><th scope="col">Last activity</th><th scope="col">Events</th><th scope="col">Findings</th><th scope="col">Risk</th><th scope="col">Risk over time</th></tr></thead><tbody>"#);
    for summary in rows {
        let id = summary.identity.as_str();
        out.push_str("<tr><td>");
        identity_link(out, id);
        w!(
            out,
            "</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>",
            summary.kind.as_str(),
            esc(ctx.owner(id).unwrap_or("—")),
            summary.last_seen.map(short_time).unwrap_or_default(),
            summary.events,
            summary.findings
        );
        match summary.risk {
            Some(latest) => {
                super::risk(out, latest.risk);
                out.push(' ');
                super::decision(out, latest.decision);
            }
            None => risk(out, 0),
        }
        out.push_str("</td><td>");
        let points: Vec<(Timestamp, u8)> = ctx
            .store
            .risk_history(id, from, to)?
            .iter()
            .map(|p| (p.time, p.risk))
            .collect();
        sparkline(out, &format!("risk of {id} over time"), &points, from, to);
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></div>");
    Ok(())
}

/// Findings over time, stacked by severity and by kind.
fn charts(out: &mut String, findings: &[Finding], from: Timestamp, to: Timestamp) {
    out.push_str(
        r#"<section aria-labelledby="over-time"><h2 id="over-time">Findings over time</h2>"#,
    );
    if findings.is_empty() {
        out.push_str(r#"<p class="empty">No findings yet.</p></section>"#);
        return;
    }
    let from = findings
        .iter()
        .map(|f| f.time)
        .min()
        .unwrap_or(from)
        .min(from);
    let to = findings
        .iter()
        .map(|f| Timestamp(f.time.0.saturating_add(1)))
        .max()
        .unwrap_or(to)
        .max(to);
    let buckets = Buckets::over(from, to, MAX_BARS);
    let mut by_severity = vec![vec![0u64; SEVERITIES.len()]; buckets.count];
    let kinds: Vec<FindingKind> = FindingKind::ALL
        .into_iter()
        .filter(|k| findings.iter().any(|f| f.kind == *k))
        .collect();
    let mut by_kind = vec![vec![0u64; kinds.len()]; buckets.count];
    for finding in findings {
        let Some(i) = buckets.index(finding.time) else {
            continue;
        };
        if let Some(s) = SEVERITIES.iter().position(|s| *s == finding.severity) {
            by_severity[i][s] += 1;
        }
        if let Some(k) = kinds.iter().position(|k| *k == finding.kind) {
            by_kind[i][k] += 1;
        }
    }
    let severity_series: Vec<Series<'_>> = SEVERITIES
        .iter()
        .map(|s| Series {
            name: s.as_str(),
            class: severity_class(*s),
        })
        .collect();
    let kind_series: Vec<Series<'_>> = kinds
        .iter()
        .map(|k| Series {
            name: k.as_str(),
            class: kind_class(*k),
        })
        .collect();
    out.push_str(r#"<div class="two"><div><h3>By severity</h3>"#);
    stacked_bars(
        out,
        "findings over time by severity",
        &buckets,
        &severity_series,
        &by_severity,
    );
    out.push_str("</div><div><h3>By kind</h3>");
    stacked_bars(
        out,
        "findings over time by kind",
        &buckets,
        &kind_series,
        &by_kind,
    );
    out.push_str("</div></div></section>");
}

/// The colour class of a severity.
pub(crate) fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "s-low",
        Severity::Medium => "s-medium",
        Severity::High => "s-high",
        Severity::Critical => "s-critical",
    }
}

/// The colour class of a finding kind (`k0` … `k14`, in contract order).
fn kind_class(kind: FindingKind) -> &'static str {
    const CLASSES: [&str; 15] = [
        "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12", "k13",
        "k14",
    ];
    let at = FindingKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0);
    CLASSES[at % CLASSES.len()]
}
