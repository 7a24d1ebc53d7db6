//! One identity: what it did over a period, against what it may do (policy), what it is
//! expected to do (its workflow) and what it usually does (its baseline).

use std::collections::HashMap;
use std::fmt::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

use nhiwatch_baseline::{Learner, QUIET_HOUR_SHARE};
use nhiwatch_detect::access::{AccessReport, IdentityAccess};
use nhiwatch_model::{Event, Finding, Outcome, Timestamp};
use nhiwatch_policy::{ActionProfile, Entry, Move, RequestContext, Verdict, Workflow};
use nhiwatch_store::{FindingQuery, StoreError};
use serde::Deserialize;

use super::{
    contains, decision, finding_href, layout, notices, parse_time, risk, w, Chrome, Ctx, Nav,
};
use crate::charts::{heatmap, sparkline, stacked_bars, Buckets, Series, DAY};
use crate::html::{esc, href, short_time};

/// The period shown when none is asked for: this many days up to the last activity.
const DEFAULT_DAYS: i64 = 7;
/// Sessions shown in the timeline (the latest).
const MAX_SESSIONS: usize = 40;
/// Events listed per session.
const MAX_ROWS: usize = 60;
/// Resources listed.
const MAX_RESOURCES: usize = 40;
/// Actions of one identity at most this far apart belong to one session.
const SESSION_GAP: i64 = 30 * 60 * 1_000_000_000;
/// Bars of the activity chart, at most.
const MAX_BARS: usize = 56;

/// The identity page's parameters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Params {
    /// The identity.
    pub id: String,
    /// Start of the period (`YYYY-MM-DD` or RFC 3339).
    pub from: String,
    /// End of the period, exclusive.
    pub to: String,
    /// Only actions containing this in the timeline.
    pub action: String,
}

/// How one event stands against the policy and the workflow.
struct Row {
    time: Timestamp,
    action: String,
    resource: Option<String>,
    outcome: Outcome,
    src_ip: Option<String>,
    /// Why the policy does not permit it.
    refused: Option<String>,
    /// The workflow step it matched, or how it deviated.
    step: Step,
    /// The finding whose evidence holds it.
    finding: Option<Arc<Finding>>,
}

enum Step {
    /// No workflow, or the action is not one of its steps.
    None,
    /// An expected step: the step's glob.
    Ok(String),
    /// A workflow step out of order: what was expected.
    Off(String),
}

/// One session: actions of one provider session (or of none) with no long gap.
struct Session {
    name: Option<String>,
    start: Timestamp,
    end: Timestamp,
    events: u64,
    denied: u64,
    refused: u64,
    deviations: u64,
    findings: u64,
    /// The workflow automaton's state.
    state: u64,
    rows: Vec<Row>,
}

/// Everything the period's events are folded into.
struct Fold<'a> {
    entry: Option<&'a Entry>,
    profiles: HashMap<String, ActionProfile>,
    classes: HashMap<String, u64>,
    evidence: HashMap<&'a str, Arc<Finding>>,
    action_filter: &'a str,
    buckets: Buckets,
    activity: Vec<Vec<u64>>,
    hours: Vec<u64>,
    resources: HashMap<String, (u64, u64)>,
    access: Option<AccessReport>,
    sessions: Vec<Session>,
    open: HashMap<String, usize>,
    events: u64,
}

impl Fold<'_> {
    fn add(&mut self, event: &Event<'_>) {
        self.events += 1;
        if let Some(i) = self.buckets.index(event.time) {
            let series = match event.outcome {
                Outcome::Success => 0,
                Outcome::Denied => 1,
                Outcome::Error => 2,
            };
            self.activity[i][series] += 1;
        }
        if !event.time_inferred {
            self.hours[usize::from(event.time.hour_of_week())] += 1;
        }
        if let Some(resource) = event.resource.as_deref() {
            let slot = match self.resources.get_mut(resource) {
                Some(slot) => slot,
                None => self.resources.entry(resource.to_owned()).or_default(),
            };
            slot.0 += 1;
            if event.outcome == Outcome::Denied {
                slot.1 += 1;
            }
        }
        if let Some(report) = &mut self.access {
            report.observe(event);
        }
        let refused = self.refused(event);
        let name = event.identity.session.as_deref().unwrap_or("");
        let open = self
            .open
            .get(name)
            .copied()
            .filter(|&i| event.time.0.saturating_sub(self.sessions[i].end.0) <= SESSION_GAP);
        let index = match open {
            Some(i) => i,
            None => {
                self.sessions.push(Session {
                    name: event.identity.session.as_deref().map(str::to_owned),
                    start: event.time,
                    end: event.time,
                    events: 0,
                    denied: 0,
                    refused: 0,
                    deviations: 0,
                    findings: 0,
                    state: 0,
                    rows: Vec::new(),
                });
                let i = self.sessions.len() - 1;
                self.open.insert(name.to_owned(), i);
                i
            }
        };
        let workflow = self.entry.and_then(Entry::workflow);
        let class = workflow.map(|w| match self.classes.get(event.action.as_ref()) {
            Some(&class) => class,
            None => {
                let class = w.classify(&event.action);
                self.classes.insert(event.action.to_string(), class);
                class
            }
        });
        let session = &mut self.sessions[index];
        session.end = event.time;
        session.events += 1;
        let step = match (workflow, class) {
            (Some(w), Some(class)) => step(w, &mut session.state, class),
            _ => Step::None,
        };
        let finding = self.evidence.get(event.id.as_ref()).cloned();
        session.denied += u64::from(event.outcome == Outcome::Denied);
        session.refused += u64::from(refused.is_some());
        session.deviations += u64::from(matches!(step, Step::Off(_)));
        session.findings += u64::from(finding.is_some());
        if session.rows.len() < MAX_ROWS && contains(&event.action, self.action_filter) {
            session.rows.push(Row {
                time: event.time,
                action: event.action.to_string(),
                resource: event.resource.as_deref().map(str::to_owned),
                outcome: event.outcome,
                src_ip: event.src_ip.as_deref().map(str::to_owned),
                refused,
                step,
                finding,
            });
        }
    }

    /// Why the identity's policy entry does not permit the event, if it does not.
    fn refused(&mut self, event: &Event<'_>) -> Option<String> {
        let entry = self.entry?;
        let profile = match self.profiles.get(event.action.as_ref()) {
            Some(profile) => profile,
            None => self
                .profiles
                .entry(event.action.to_string())
                .or_insert_with(|| entry.profile(&event.action)),
        };
        let ctx = RequestContext {
            source_ip: event.src_ip.as_deref(),
        };
        match entry
            .judge(profile, event.resource.as_deref(), &ctx)
            .verdict
        {
            Verdict::NotPermitted(refusal) => Some(entry.describe_refusal(refusal)),
            _ => None,
        }
    }
}

/// One workflow move, in words.
fn step(workflow: &Workflow, state: &mut u64, class: u64) -> Step {
    match workflow.advance(state, class) {
        Move::Foreign => Step::None,
        Move::Advance { .. } => Step::Ok(workflow.describe(*state).join(" | ")),
        Move::OutOfOrder { expected } => Step::Off(format!(
            "out of order; expected {}",
            workflow.describe(expected).join(" | ")
        )),
        Move::Restart { expected } => Step::Off(format!(
            "restarted an unfinished run; expected {}",
            workflow.describe(expected).join(" | ")
        )),
    }
}

/// Renders an identity's page; `None` when the store does not know it.
pub(crate) fn render(ctx: &Ctx, p: &Params, chrome: &Chrome) -> Result<Option<String>, StoreError> {
    let Some(summary) = ctx.store.identity(&p.id)? else {
        return Ok(None);
    };
    let id = summary.identity.as_str();
    let mut notes = Vec::new();
    let last = summary.last_seen.unwrap_or_else(Timestamp::now);
    let mut to = Timestamp(last.0.div_euclid(DAY).saturating_add(1).saturating_mul(DAY));
    if !p.to.is_empty() {
        match parse_time(&p.to) {
            Some(t) => to = t,
            None => notes.push(format!(
                "`{}` is not a date or an RFC 3339 time: `to` is ignored.",
                p.to
            )),
        }
    }
    let mut from = Timestamp(to.0.saturating_sub(DEFAULT_DAYS * DAY));
    if !p.from.is_empty() {
        match parse_time(&p.from) {
            Some(t) if t < to => from = t,
            _ => notes.push(format!(
                "`{}` is not a time before the period's end: `from` is ignored.",
                p.from
            )),
        }
    }

    let policy = ctx.policy.as_deref();
    let entry = policy.and_then(|policy| policy.entry(policy.entry_for(id)?));
    let findings: Vec<Arc<Finding>> = ctx
        .store
        .findings(&FindingQuery {
            identity: Some(id.to_owned()),
            ..FindingQuery::default()
        })?
        .into_iter()
        .map(Arc::new)
        .collect();

    // The baseline: what the identity did before the period, learned as the usual lens learns.
    let mut learner = Learner::new();
    ctx.store
        .visit_events(id, Timestamp(i64::MIN), from, false, &mut |event| {
            learner.observe(event);
            ControlFlow::Continue(())
        })?;
    let learned = learner.events();
    let baseline = learner.finish();
    let profile = baseline.get(id);

    let buckets = Buckets::over(from, to, MAX_BARS);
    let mut fold = Fold {
        entry,
        profiles: HashMap::new(),
        classes: HashMap::new(),
        evidence: findings
            .iter()
            .flat_map(|f| {
                f.evidence
                    .event_ids
                    .iter()
                    .map(move |e| (e.as_str(), Arc::clone(f)))
            })
            .collect(),
        action_filter: &p.action,
        buckets,
        activity: vec![vec![0; 3]; buckets.count],
        hours: vec![0; 168],
        resources: HashMap::new(),
        access: ctx.policy.clone().map(AccessReport::new),
        sessions: Vec::new(),
        open: HashMap::new(),
        events: 0,
    };
    ctx.store.visit_events(id, from, to, false, &mut |event| {
        fold.add(event);
        ControlFlow::Continue(())
    })?;

    let mut main = String::with_capacity(128 * 1024);
    w!(main, r#"<h1 class="ident">{}</h1>"#, esc(id));
    notices(&mut main, &notes);
    w!(
        main,
        r#"<dl class="facts"><div><dt>Kind</dt><dd>{}</dd></div><div><dt>Owner</dt><dd>{}</dd></div><div><dt>Policy entry</dt><dd>{}</dd></div><div><dt>Events stored</dt><dd>{}</dd></div><div><dt>First seen</dt><dd>{}</dd></div><div><dt>Last seen</dt><dd>{}</dd></div><div><dt>Findings</dt><dd>{}</dd></div><div><dt>Latest risk</dt><dd>"#,
        summary.kind.as_str(),
        esc(entry.and_then(Entry::owner).unwrap_or("—")),
        esc(entry.map_or("none", Entry::pattern)),
        summary.events,
        summary.first_seen.map(short_time).unwrap_or_default(),
        summary.last_seen.map(short_time).unwrap_or_default(),
        summary.findings
    );
    match summary.risk {
        Some(latest) => {
            risk(&mut main, latest.risk);
            main.push(' ');
            decision(&mut main, latest.decision);
        }
        None => main.push_str("none"),
    }
    main.push_str("</dd></div></dl>");
    period_form(&mut main, p, from, to);

    let range = format!("{} to {}", short_time(from), short_time(to));
    w!(
        main,
        r#"<section aria-labelledby="activity"><h2 id="activity">Activity <small>{} events, {}</small></h2>"#,
        fold.events,
        esc(&range)
    );
    stacked_bars(
        &mut main,
        "events over time: succeeded, denied, failed",
        &buckets,
        &[
            Series {
                name: "succeeded",
                class: "o-success",
            },
            Series {
                name: "denied",
                class: "o-denied",
            },
            Series {
                name: "failed",
                class: "o-error",
            },
        ],
        &fold.activity,
    );
    let history: Vec<(Timestamp, u8)> = ctx
        .store
        .risk_history(id, from, to)?
        .iter()
        .map(|p| (p.time, p.risk))
        .collect();
    main.push_str(r#"<h3>Risk</h3><div class="spark-wide">"#);
    sparkline(&mut main, "risk over the period", &history, from, to);
    main.push_str("</div></section>");

    hours(&mut main, &fold.hours, profile, learned, entry);
    timeline(&mut main, &fold, entry);
    resources(&mut main, &fold.resources);
    let access = fold
        .access
        .as_ref()
        .and_then(|report| report.finish().into_iter().find(|a| a.identity == id));
    permitted_vs_used(ctx, &mut main, id, access.as_ref(), policy.is_some())?;
    findings_table(ctx, &mut main, &findings);
    Ok(Some(layout(id, Nav::Other, chrome, &main)))
}

fn period_form(out: &mut String, p: &Params, from: Timestamp, to: Timestamp) {
    let day = |t: Timestamp| t.to_string().get(..10).unwrap_or_default().to_owned();
    w!(
        out,
        r#"<form class="filters" action="/ui/identity" method="get"><input type="hidden" name="id" value="{}"><label>From <input name="from" type="date" value="{}"></label><label>To <input name="to" type="date" value="{}"></label><label>Action <input name="action" type="search" value="{}"></label><button type="submit">Show</button>"#,
        esc(&p.id),
        day(from),
        day(to),
        esc(&p.action)
    );
    let earlier = Timestamp(from.0.saturating_sub(to.0.saturating_sub(from.0)));
    w!(
        out,
        r#" <a href="{}">← earlier</a></form>"#,
        href(
            "/ui/identity",
            &[
                ("id", &p.id),
                ("from", &day(earlier)),
                ("to", &day(from)),
                ("action", &p.action)
            ]
        )
    );
}

fn hours(
    out: &mut String,
    counts: &[u64],
    profile: Option<&nhiwatch_baseline::Profile>,
    learned: u64,
    entry: Option<&Entry>,
) {
    out.push_str(r#"<section aria-labelledby="hours"><h2 id="hours">Hour of week <small>UTC</small></h2><div class="two"><div><h3>This period</h3>"#);
    let flagged: Vec<bool> = (0..168)
        .map(|h| {
            counts[h] > 0
                && profile
                    .is_some_and(|p| p.timed > 0 && p.hour_share((h % 24) as u8) < QUIET_HOUR_SHARE)
        })
        .collect();
    heatmap(
        out,
        "events per hour of the week in this period",
        counts,
        &flagged,
    );
    let off: u64 = (0..168).filter(|&h| flagged[h]).map(|h| counts[h]).sum();
    if off > 0 {
        w!(
            out,
            r#"<p class="warn">{off} events in hours the baseline says are quiet (outlined).</p>"#
        );
    }
    out.push_str("</div><div><h3>Baseline</h3>");
    match profile {
        Some(profile) => {
            let baseline: Vec<u64> = profile.hours.iter().map(|&c| u64::from(c)).collect();
            heatmap(out, "baseline events per hour of the week", &baseline, &[]);
            w!(
                out,
                r#"<p>Learned from {learned} events before the period; usually active {}.</p>"#,
                esc(&profile.usual_hours())
            );
        }
        None => out.push_str(
            r#"<p class="empty">No history before this period: nothing to compare with.</p>"#,
        ),
    }
    if let Some(hours) = entry.and_then(Entry::hours) {
        w!(
            out,
            r#"<p>Approved hours (policy): {}</p>"#,
            esc(hours.text())
        );
    }
    out.push_str("</div></div></section>");
}

fn timeline(out: &mut String, fold: &Fold<'_>, entry: Option<&Entry>) {
    let shown = fold.sessions.len().min(MAX_SESSIONS);
    w!(
        out,
        r#"<section aria-labelledby="timeline"><h2 id="timeline">Sessions <small>latest {shown} of {}</small></h2>"#,
        fold.sessions.len()
    );
    match entry.and_then(Entry::workflow) {
        Some(workflow) => w!(
            out,
            r#"<p>Approved workflow: <code>{}</code></p>"#,
            esc(workflow.text())
        ),
        None => out.push_str("<p>No approved workflow for this identity.</p>"),
    }
    if fold.sessions.is_empty() {
        out.push_str(r#"<p class="empty">No activity in this period.</p>"#);
    }
    for (n, session) in fold.sessions.iter().enumerate().rev().take(MAX_SESSIONS) {
        let flagged = session.denied + session.refused + session.deviations + session.findings > 0;
        let minutes = (session.end.0 - session.start.0) / 60_000_000_000;
        w!(
            out,
            r#"<details class="session" id="s{n}"{}><summary><span class="when">{}</span> · {minutes} min · {} events"#,
            if flagged || n + 3 > fold.sessions.len() {
                " open"
            } else {
                ""
            },
            short_time(session.start),
            session.events
        );
        for (count, class, text) in [
            (session.denied, "denied", "denied"),
            (session.refused, "refused", "out of scope"),
            (session.deviations, "off", "off workflow"),
            (session.findings, "finding", "in findings"),
        ] {
            if count > 0 {
                w!(
                    out,
                    r#" <span class="badge m-{class}">{count} {text}</span>"#
                );
            }
        }
        if let Some(name) = &session.name {
            w!(out, r#" <span class="muted">as {}</span>"#, esc(name));
        }
        out.push_str(r#"</summary><div class="scroll"><table class="events"><thead><tr><th scope="col">Time</th><th scope="col">Action</th><th scope="col">Resource</th><th scope="col">Outcome</th><th scope="col">Scope</th><th scope="col">Workflow</th><th scope="col">Finding</th></tr></thead><tbody>"#);
        for row in &session.rows {
            let class = match (row.outcome, &row.refused) {
                (Outcome::Denied, _) => " class=\"denied\"",
                (_, Some(_)) => " class=\"refused\"",
                _ => "",
            };
            w!(
                out,
                r#"<tr{class}><td title="{}">{}</td><td><code>{}</code></td><td class="res">{}</td><td>{}</td><td>"#,
                esc(&row
                    .src_ip
                    .as_deref()
                    .map(|ip| format!("from {ip}"))
                    .unwrap_or_default()),
                short_time(row.time).get(11..).unwrap_or_default(),
                esc(&row.action),
                esc(row.resource.as_deref().unwrap_or("—")),
                outcome(row.outcome)
            );
            match &row.refused {
                Some(why) => w!(
                    out,
                    r#"<span class="badge m-refused" title="{why}">out of scope</span><span class="vh">: {why}</span>"#,
                    why = esc(why)
                ),
                None if entry.is_some_and(Entry::has_entitlements) => out.push_str("permitted"),
                None => out.push('—'),
            }
            out.push_str("</td><td>");
            match &row.step {
                Step::None => out.push('—'),
                Step::Ok(glob) => w!(out, r#"<span class="step">✓ {}</span>"#, esc(glob)),
                Step::Off(why) => w!(out, r#"<span class="badge m-off">{}</span>"#, esc(why)),
            }
            out.push_str("</td><td>");
            if let Some(f) = &row.finding {
                w!(
                    out,
                    r#"<a href="{}">{}</a>"#,
                    finding_href(f),
                    f.kind.as_str()
                );
            }
            out.push_str("</td></tr>");
        }
        out.push_str("</tbody></table></div>");
        let listed = session.rows.len() as u64;
        if listed < session.events {
            w!(
                out,
                r#"<p class="muted">{} more events not listed{}.</p>"#,
                session.events - listed,
                if fold.action_filter.is_empty() {
                    ""
                } else {
                    " (filtered by action)"
                }
            );
        }
        out.push_str("</details>");
    }
    out.push_str("</section>");
}

fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Denied => r#"<span class="badge m-denied">denied</span>"#,
        Outcome::Error => r#"<span class="badge m-error">error</span>"#,
    }
}

fn resources(out: &mut String, resources: &HashMap<String, (u64, u64)>) {
    let mut list: Vec<(&String, &(u64, u64))> = resources.iter().collect();
    list.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    w!(
        out,
        r#"<section aria-labelledby="resources"><h2 id="resources">Resources touched <small>{} distinct</small></h2>"#,
        list.len()
    );
    if list.is_empty() {
        out.push_str(r#"<p class="empty">None in this period.</p></section>"#);
        return;
    }
    out.push_str(r#"<div class="scroll"><table><thead><tr><th scope="col">Resource</th><th scope="col">Events</th><th scope="col">Denied</th></tr></thead><tbody>"#);
    for (resource, (events, denied)) in list.iter().take(MAX_RESOURCES) {
        w!(
            out,
            r#"<tr><td class="res">{}</td><td class="num">{events}</td><td class="num">{denied}</td></tr>"#,
            esc(resource)
        );
    }
    out.push_str("</tbody></table></div></section>");
}

fn permitted_vs_used(
    ctx: &Ctx,
    out: &mut String,
    id: &str,
    access: Option<&IdentityAccess>,
    have_policy: bool,
) -> Result<(), StoreError> {
    out.push_str(r#"<section aria-labelledby="used"><h2 id="used">Permitted vs used</h2>"#);
    if !have_policy {
        out.push_str(r#"<p class="notice">No policy is loaded (<code>nhiwatch serve --policy FILE</code>): actions are listed without their entitlements.</p>"#);
    } else if access.is_some_and(|a| a.entry.is_none()) {
        out.push_str(r#"<p class="notice">No policy entry matches this identity: nothing says what it may do.</p>"#);
    }
    out.push_str(r#"<div class="scroll"><table><thead><tr><th scope="col">Action (all history)</th><th scope="col">Events</th><th scope="col">Denied</th><th scope="col">First</th><th scope="col">Last</th><th scope="col">Permitted (this period)</th></tr></thead><tbody>"#);
    for used in ctx.store.actions(id)? {
        let judged = access.and_then(|a| a.used.iter().find(|u| u.action == used.action));
        w!(
            out,
            r#"<tr><td><code>{}</code></td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>"#,
            esc(&used.action),
            used.events,
            used.denied,
            short_time(used.first_seen),
            short_time(used.last_seen)
        );
        match judged.map(|u| (u.permitted, u.reason.as_deref())) {
            Some((Some(true), _)) => out.push_str("yes"),
            Some((Some(false), reason)) => w!(
                out,
                r#"<span class="badge m-refused">no</span> {}"#,
                esc(reason.unwrap_or(""))
            ),
            Some((None, _)) => out.push_str("not judged"),
            None => out.push('—'),
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></div>");
    if let Some(access) = access.filter(|a| a.entry.is_some()) {
        w!(
            out,
            r#"<h3>Permitted but not used in this period <small>{}</small></h3>"#,
            access.permitted_unused.len()
        );
        if access.permitted_unused.is_empty() {
            out.push_str("<p>None: every grant was used.</p>");
        } else {
            out.push_str("<ul class=\"grants\">");
            for grant in &access.permitted_unused {
                w!(
                    out,
                    "<li><code>{}</code> <span class=\"muted\">{}</span></li>",
                    esc(&grant.pattern),
                    esc(&grant.source)
                );
            }
            out.push_str("</ul>");
        }
    }
    out.push_str("</section>");
    Ok(())
}

fn findings_table(ctx: &Ctx, out: &mut String, findings: &[Arc<Finding>]) {
    w!(
        out,
        r#"<section aria-labelledby="findings"><h2 id="findings">Findings <small>{}</small></h2>"#,
        findings.len()
    );
    if findings.is_empty() {
        out.push_str(r#"<p class="empty">None.</p></section>"#);
        return;
    }
    super::findings::table(ctx, out, findings.iter().rev().map(|f| f.as_ref()), false);
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_moves_are_put_in_words() {
        let workflow = Workflow::parse("sts:GetCallerIdentity ecr:* ecs:UpdateService").unwrap();
        let mut state = 0;
        let class = |a: &str| workflow.classify(a);
        assert!(
            matches!(step(&workflow, &mut state, class("sts:GetCallerIdentity")), Step::Ok(g) if g == "sts:GetCallerIdentity")
        );
        assert!(matches!(
            step(&workflow, &mut state, class("s3:GetObject")),
            Step::None
        ));
        match step(&workflow, &mut state, class("ecs:UpdateService")) {
            Step::Off(why) => assert_eq!(why, "out of order; expected ecr:*"),
            _ => panic!("expected a deviation"),
        }
    }
}
