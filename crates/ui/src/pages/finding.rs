//! One finding: its evidence events in order with their raw records, what they were compared
//! with, the decision, the frameworks, and its triage.

use std::collections::HashSet;
use std::fmt::Write;

use nhiwatch_model::{Event, Finding};
use nhiwatch_store::StoreError;
use serde::Deserialize;
use serde_json::Value;

use super::{decision, identity_link, layout, risk, severity, status, w, Chrome, Ctx, Nav};
use crate::html::{esc, esc_block, href, short_time};

/// Evidence events looked up, at most.
const MAX_EVIDENCE: usize = 1000;

/// Nesting shown as a definition list before it is shown as JSON.
const DETAIL_DEPTH: usize = 3;

/// Rows of a table of records in `evidence.detail`, at most.
const MAX_RECORDS: usize = 200;

/// Which finding.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Params {
    /// The finding's id.
    pub id: String,
    /// Its identity (makes the lookup cheap; found by scanning without it).
    pub identity: String,
}

/// A finding's evidence: the events found, in time order, and the ids not found (expired by
/// retention, or older than the look-back).
pub(crate) fn evidence(
    ctx: &Ctx,
    finding: &Finding,
) -> Result<(Vec<Event<'static>>, Vec<String>), StoreError> {
    let events = ctx.store.evidence(finding, MAX_EVIDENCE)?;
    let found: HashSet<&str> = events.iter().map(|e| e.id.as_ref()).collect();
    let missing = (finding.evidence.event_ids.iter().take(MAX_EVIDENCE))
        .filter(|id| !found.contains(id.as_str()))
        .cloned()
        .collect();
    Ok((events, missing))
}

/// The export: the finding, its evidence events with their raw records, and its triage.
pub(crate) fn export(ctx: &Ctx, p: &Params) -> Result<Option<Value>, StoreError> {
    let Some(finding) = ctx.finding(&p.id, &p.identity)? else {
        return Ok(None);
    };
    let (events, missing) = evidence(ctx, &finding)?;
    Ok(Some(serde_json::json!({
        "finding": finding,
        "evidence_events": events,
        "missing_event_ids": missing,
        "triage": ctx.triage.history(&finding.id),
    })))
}

/// Renders a finding's page; `None` when there is no such finding.
pub(crate) fn render(ctx: &Ctx, p: &Params, chrome: &Chrome) -> Result<Option<String>, StoreError> {
    let Some(f) = ctx.finding(&p.id, &p.identity)? else {
        return Ok(None);
    };
    let (events, missing) = evidence(ctx, &f)?;
    let mut main = String::with_capacity(64 * 1024);
    w!(
        main,
        r#"<h1>{} <small>finding</small></h1><p class="lead">{}</p><div class="verdict"><div class="decision"><span class="label">Decision</span> "#,
        f.kind.as_str(),
        esc(&f.summary)
    );
    decision(&mut main, f.decision);
    main.push_str(r#"</div><div><span class="label">Risk</span> "#);
    risk(&mut main, f.risk);
    main.push_str(r#"</div><div><span class="label">Severity</span> "#);
    severity(&mut main, f.severity);
    main.push_str(r#"</div><div><span class="label">Status</span> "#);
    status(&mut main, ctx.triage.status(&f.id));
    main.push_str(r#"</div></div><dl class="facts"><div><dt>Identity</dt><dd>"#);
    identity_link(&mut main, &f.identity);
    w!(
        main,
        r#"</dd></div><div><dt>Time</dt><dd>{}</dd></div><div><dt>Finding id</dt><dd><code>{}</code></dd></div><div><dt>Evidence</dt><dd>{} events</dd></div></dl>"#,
        short_time(f.time),
        esc(&f.id),
        f.evidence.event_ids.len()
    );

    main.push_str(
        r#"<section aria-labelledby="compared"><h2 id="compared">What it was compared with</h2>"#,
    );
    detail(&mut main, &f.evidence.detail, 0);
    main.push_str("</section>");

    w!(
        main,
        r#"<section aria-labelledby="evidence"><h2 id="evidence">Evidence events <small>{} in order</small></h2>"#,
        events.len()
    );
    evidence_table(&mut main, &events);
    if !missing.is_empty() {
        w!(
            main,
            r#"<p class="notice">{} evidence events are no longer in the store (retention) or older than the look-back: "#,
            missing.len()
        );
        for (n, id) in missing.iter().enumerate() {
            w!(
                main,
                "{}<code>{}</code>",
                if n > 0 { ", " } else { "" },
                esc(id)
            );
        }
        main.push_str("</p>");
    }
    main.push_str("</section>");

    main.push_str(
        r#"<section aria-labelledby="frameworks"><h2 id="frameworks">Framework mapping</h2>"#,
    );
    if f.frameworks.is_empty() {
        main.push_str(r#"<p class="empty">None.</p>"#);
    } else {
        main.push_str(r#"<ul class="frameworks">"#);
        for framework in &f.frameworks {
            w!(main, "<li><code>{}</code></li>", esc(framework));
        }
        main.push_str("</ul>");
    }
    main.push_str("</section>");
    triage(ctx, &mut main, &f, chrome);
    let title = format!("{} · {}", f.kind.as_str(), f.identity);
    Ok(Some(layout(&title, Nav::Other, chrome, &main)))
}

/// `evidence.detail`: objects as definition lists, scalars as text, deep values as JSON.
fn detail(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Object(map) if depth < DETAIL_DEPTH && !map.is_empty() => {
            out.push_str(r#"<dl class="detail">"#);
            for (key, value) in map {
                w!(out, "<dt>{}</dt><dd>", esc(&key.replace('_', " ")));
                detail(out, value, depth + 1);
                out.push_str("</dd>");
            }
            out.push_str("</dl>");
        }
        Value::Array(items) if depth < DETAIL_DEPTH && items.iter().all(is_scalar) => {
            if items.is_empty() {
                out.push_str("none");
            }
            out.push_str(r#"<ul class="inline">"#);
            for item in items {
                out.push_str("<li>");
                detail(out, item, depth + 1);
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
        Value::Array(items) if depth < DETAIL_DEPTH && items.iter().all(Value::is_object) => {
            records(out, items);
        }
        Value::String(text) => w!(out, "{}", esc(text)),
        Value::Null => out.push('—'),
        Value::Bool(_) | Value::Number(_) => w!(out, "{value}"),
        other => {
            let text = serde_json::to_string_pretty(other).unwrap_or_default();
            w!(out, r#"<pre class="raw">{}</pre>"#, esc_block(&text));
        }
    }
}

/// An array of objects as a table: one column per key, in order of first appearance.
fn records(out: &mut String, items: &[Value]) {
    let mut keys: Vec<&str> = Vec::new();
    for item in items.iter().take(MAX_RECORDS) {
        for key in item.as_object().into_iter().flat_map(|m| m.keys()) {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    out.push_str(r#"<div class="scroll"><table class="records"><thead><tr>"#);
    for key in &keys {
        w!(
            out,
            r#"<th scope="col">{}</th>"#,
            esc(&key.replace('_', " "))
        );
    }
    out.push_str("</tr></thead><tbody>");
    for item in items.iter().take(MAX_RECORDS) {
        out.push_str("<tr>");
        for key in &keys {
            match item.get(*key) {
                Some(Value::String(text)) => w!(out, "<td>{}</td>", esc(text)),
                Some(Value::Number(n)) => w!(out, r#"<td class="num">{n}</td>"#),
                Some(other) if !other.is_null() => {
                    w!(out, "<td><code>{}</code></td>", esc(&other.to_string()))
                }
                _ => out.push_str("<td>—</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    if items.len() > MAX_RECORDS {
        w!(
            out,
            r#"<p class="muted">{} more not shown (the export has them all).</p>"#,
            items.len() - MAX_RECORDS
        );
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn evidence_table(out: &mut String, events: &[Event<'static>]) {
    if events.is_empty() {
        out.push_str(r#"<p class="empty">No evidence event is in the store.</p>"#);
        return;
    }
    out.push_str(r#"<ol class="evidence">"#);
    for (n, event) in events.iter().enumerate() {
        w!(
            out,
            r#"<li class="ev{}"><div class="evhead"><span class="when">{}</span> <code class="act">{}</code> "#,
            match event.outcome {
                nhiwatch_model::Outcome::Denied => " denied",
                _ => "",
            },
            short_time(event.time),
            esc(&event.action)
        );
        if event.outcome != nhiwatch_model::Outcome::Success {
            w!(
                out,
                r#"<span class="badge m-{}">{}</span> "#,
                event.outcome.as_str(),
                event.outcome.as_str()
            );
        }
        w!(
            out,
            r#"<span class="res">{}</span></div><dl class="evmeta"><div><dt>Source</dt><dd>{}</dd></div><div><dt>Event id</dt><dd><code>{}</code></dd></div>"#,
            esc(event.resource.as_deref().unwrap_or("—")),
            event.source.as_str(),
            esc(&event.id)
        );
        for (name, value) in [
            ("Session", event.identity.session.as_deref()),
            ("Credential", event.identity.credential.as_deref()),
            ("Source IP", event.src_ip.as_deref()),
            ("User agent", event.user_agent.as_deref()),
            ("Error", event.error.as_deref()),
        ] {
            if let Some(value) = value {
                w!(out, "<div><dt>{name}</dt><dd>{}</dd></div>", esc(value));
            }
        }
        let raw = serde_json::from_str::<Value>(event.raw.get())
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| event.raw.get().to_owned());
        w!(
            out,
            r#"</dl><details id="raw{n}"><summary>Raw record</summary><pre class="raw">{}</pre></details></li>"#,
            esc_block(&raw)
        );
    }
    out.push_str("</ol>");
}

fn triage(ctx: &Ctx, out: &mut String, f: &Finding, chrome: &Chrome) {
    out.push_str(r#"<section aria-labelledby="triage"><h2 id="triage">Triage</h2>"#);
    let history = ctx.triage.history(&f.id);
    if history.is_empty() {
        out.push_str("<p>Not triaged yet.</p>");
    } else {
        out.push_str(r#"<ul class="history">"#);
        for record in &history {
            w!(
                out,
                "<li>{} <b>{}</b> by {}",
                short_time(record.time),
                record.mark.as_str(),
                esc(&record.by)
            );
            if !record.note.is_empty() {
                w!(out, ": {}", esc(&record.note));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    if chrome.can_triage {
        w!(
            out,
            r#"<form class="triage" action="/ui/finding/mark" method="post"><input type="hidden" name="id" value="{}"><input type="hidden" name="identity" value="{}"><label for="note">Note</label><textarea id="note" name="note" rows="2" maxlength="{}"></textarea><div class="buttons"><button type="submit" name="mark" value="acknowledged">Acknowledge</button> <button type="submit" name="mark" value="benign">Mark benign</button></div><p class="muted">A benign mark is recorded for the baseline to learn this behaviour as usual for the identity.</p></form>"#,
            esc(&f.id),
            esc(&f.identity),
            crate::triage::MAX_NOTE_CHARS
        );
    } else {
        out.push_str(r#"<p class="muted">Acknowledging and marking benign need a token with the admin scope.</p>"#);
    }
    w!(
        out,
        r#"<p><a class="button" href="{}" download>Export as JSON</a></p></section>"#,
        href(
            "/ui/finding.json",
            &[("id", &f.id), ("identity", &f.identity)]
        )
    );
}
