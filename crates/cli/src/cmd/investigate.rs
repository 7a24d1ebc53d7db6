//! `nhiwatch investigate IDENTITY`: from the evidence store, what one identity did (its actions
//! grouped into sessions), which findings fired and why, what it used against what it is
//! permitted, and how its risk moved.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use nhiwatch_detect::access::{AccessReport, UnusedGrant};
use nhiwatch_model::{Event, Finding, Outcome, Timestamp};
use nhiwatch_policy::Policy;
use nhiwatch_store::{ActionUse, FindingQuery, IdentitySummary, RiskPoint, Store};
use serde::Serialize;

use crate::cmd::ingest::DataArgs;
use crate::output::{cell, sanitize};

/// How `investigate` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportFormat {
    /// Sections for a terminal.
    #[default]
    Text,
    /// One JSON document, for machines.
    Json,
}

/// Arguments of `nhiwatch investigate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The identity's id, as stored (a role ARN, `system:serviceaccount:ns:name`, ...).
    identity: String,
    #[command(flatten)]
    store: DataArgs,
    /// Start of the period (RFC 3339, or `YYYY-MM-DD` for midnight UTC). Default: the beginning.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<Timestamp>,
    /// End of the period, exclusive. Default: the end.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<Timestamp>,
    /// How to print.
    #[arg(long, value_enum, default_value_t)]
    format: ReportFormat,
    /// Actions at most this far apart belong to one session (e.g. `30m`).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = nhiwatch_policy::parse_duration)]
    session_gap: i64,
    /// A policy file: mark each action used as permitted or not, and list what the identity is
    /// permitted but did not use in the period.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// List every event of each session, not only its action counts.
    #[arg(long)]
    events: bool,
}

/// Parses a time given on the command line: RFC 3339, or a date for midnight UTC.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    Timestamp::parse_rfc3339(&full)
        .map_err(|err| format!("`{text}` is not an RFC 3339 time or a YYYY-MM-DD date: {err}"))
}

/// Distinct source addresses kept per session.
const KEEP: usize = 5;
/// Actions printed per session in the text report.
const ACTIONS_SHOWN: usize = 6;
/// Evidence events looked up per finding.
const EVIDENCE_SHOWN: usize = 5;

/// One event, as a session lists it.
#[derive(Serialize)]
struct EventLine {
    time: Timestamp,
    id: String,
    action: String,
    resource: Option<String>,
    outcome: Outcome,
}

impl EventLine {
    fn of(event: &Event<'_>) -> Self {
        EventLine {
            time: event.time,
            id: event.id.to_string(),
            action: event.action.to_string(),
            resource: event.resource.as_deref().map(str::to_owned),
            outcome: event.outcome,
        }
    }
}

/// Groups an identity's events, in time order, into sessions: events of one provider session
/// (an assumed-role session name, an agent run) with no gap longer than the session gap; events
/// without a session name are grouped by the gap alone.
struct Sessions {
    gap: i64,
    list_events: bool,
    sessions: Vec<Session>,
    /// The open session of each provider session name.
    open: HashMap<String, usize>,
}

impl Sessions {
    fn new(gap: i64, list_events: bool) -> Self {
        Sessions {
            gap,
            list_events,
            sessions: Vec::new(),
            open: HashMap::new(),
        }
    }

    fn add(&mut self, event: &Event<'_>, findings: Option<&Vec<&str>>) {
        let name = event.identity.session.as_deref().unwrap_or("");
        let open = self
            .open
            .get(name)
            .copied()
            .filter(|&i| event.time.0.saturating_sub(self.sessions[i].end.0) <= self.gap);
        let index = match open {
            Some(index) => index,
            None => {
                self.sessions.push(Session::new(event));
                let index = self.sessions.len() - 1;
                self.open.insert(name.to_owned(), index);
                index
            }
        };
        let session = &mut self.sessions[index];
        session.add(event, self.list_events);
        for id in findings.into_iter().flatten() {
            if !session.findings.iter().any(|f| f == id) {
                session.findings.push((*id).to_owned());
            }
        }
    }
}

/// An action and how often a session used it.
#[derive(Serialize)]
struct ActionCount {
    action: String,
    events: u64,
}

/// One session of an identity.
#[derive(Serialize)]
struct Session {
    start: Timestamp,
    end: Timestamp,
    /// The provider's session name (assumed-role session, agent run), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    events: u64,
    denied: u64,
    errors: u64,
    /// Actions with their counts, in order of first use.
    actions: Vec<ActionCount>,
    /// Source addresses seen, up to a few.
    origins: Vec<String>,
    /// Ids of the findings whose evidence includes events of this session.
    findings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    event_list: Vec<EventLine>,
    #[serde(skip)]
    action_index: HashMap<String, usize>,
}

impl Session {
    fn new(event: &Event<'_>) -> Self {
        Session {
            start: event.time,
            end: event.time,
            name: event.identity.session.as_deref().map(str::to_owned),
            events: 0,
            denied: 0,
            errors: 0,
            actions: Vec::new(),
            origins: Vec::new(),
            findings: Vec::new(),
            event_list: Vec::new(),
            action_index: HashMap::new(),
        }
    }

    fn add(&mut self, event: &Event<'_>, list: bool) {
        self.end = event.time;
        self.events += 1;
        match event.outcome {
            Outcome::Success => {}
            Outcome::Denied => self.denied += 1,
            Outcome::Error => self.errors += 1,
        }
        match self.action_index.get(event.action.as_ref()) {
            Some(&i) => self.actions[i].events += 1,
            None => {
                self.action_index
                    .insert(event.action.to_string(), self.actions.len());
                self.actions.push(ActionCount {
                    action: event.action.to_string(),
                    events: 1,
                });
            }
        }
        keep(&mut self.origins, event.src_ip.as_deref());
        if list {
            self.event_list.push(EventLine::of(event));
        }
    }
}

fn keep(values: &mut Vec<String>, value: Option<&str>) {
    if let Some(value) = value {
        if values.len() < KEEP && !values.iter().any(|v| v == value) {
            values.push(value.to_owned());
        }
    }
}

/// A finding with the events behind it.
#[derive(Serialize)]
struct FindingEvidence {
    #[serde(flatten)]
    finding: Finding,
    /// The first few evidence events, as stored.
    evidence_events: Vec<EventLine>,
}

/// An action used, judged against the policy when one is given.
#[derive(Serialize)]
struct Used {
    #[serde(flatten)]
    usage: ActionUse,
    /// Whether the policy permits it (absent without a policy, or when it does not judge it).
    #[serde(skip_serializing_if = "Option::is_none")]
    permitted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Everything `investigate` reports.
#[derive(Serialize)]
struct Investigation {
    identity: IdentitySummary,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    sessions: Vec<Session>,
    findings: Vec<FindingEvidence>,
    /// Every action the identity used (all stored history), most used first.
    used: Vec<Used>,
    /// Grants of its policy entry not used in the period (with `--policy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    permitted_unused: Option<Vec<UnusedGrant>>,
    risk: Vec<RiskPoint>,
}

/// Runs `investigate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open_read_only()?;
    let Some(identity) = store.identity(&args.identity)? else {
        anyhow::bail!("{}", unknown_identity(&store, &args.identity)?);
    };
    let policy = args
        .policy
        .as_deref()
        .map(|path| Policy::load(path).map_err(|e| anyhow::anyhow!(sanitize(&e.to_string()))))
        .transpose()?;
    let from = args.from.unwrap_or(Timestamp(i64::MIN));
    let to = args.to.unwrap_or(Timestamp(i64::MAX));

    let findings = store.findings(&FindingQuery {
        identity: Some(args.identity.clone()),
        since: args.from,
        until: args.to,
        ..FindingQuery::default()
    })?;
    // Which findings each evidence event belongs to, to mark the sessions that hold them.
    let mut evidence: HashMap<&str, Vec<&str>> = HashMap::new();
    for finding in &findings {
        for id in &finding.evidence.event_ids {
            evidence.entry(id).or_default().push(&finding.id);
        }
    }
    let mut access = policy.map(|p| AccessReport::new(Arc::new(p)));
    let mut sessions = Sessions::new(args.session_gap, args.events);
    store.visit_events(&args.identity, from, to, false, &mut |event| {
        if let Some(report) = &mut access {
            report.observe(event);
        }
        sessions.add(event, evidence.get(event.id.as_ref()));
        ControlFlow::Continue(())
    })?;
    let sessions = sessions.sessions;

    let findings = findings
        .into_iter()
        .map(|finding| {
            let evidence_events = store
                .evidence(&finding, EVIDENCE_SHOWN)?
                .iter()
                .map(EventLine::of)
                .collect();
            Ok(FindingEvidence {
                finding,
                evidence_events,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let judged = access.map(|report| report.finish());
    let mine = judged
        .as_ref()
        .and_then(|all| all.iter().find(|a| a.identity == args.identity));
    let used = store
        .actions(&args.identity)?
        .into_iter()
        .map(|usage| {
            let judged = mine.and_then(|a| a.used.iter().find(|u| u.action == usage.action));
            Used {
                permitted: judged.and_then(|u| u.permitted),
                reason: judged.and_then(|u| u.reason.clone()),
                usage,
            }
        })
        .collect();
    let permitted_unused = judged
        .as_ref()
        .map(|_| mine.map(|a| a.permitted_unused.clone()).unwrap_or_default());
    let report = Investigation {
        identity,
        from: args.from,
        to: args.to,
        sessions,
        findings,
        used,
        permitted_unused,
        risk: store.risk_history(&args.identity, from, to)?,
    };
    let mut output = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&report)?,
        ReportFormat::Text => text(&report),
    };
    if args.format == ReportFormat::Json {
        output.push('\n');
    }
    print_stdout(&output)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a report to standard output; a closed pipe (`| head`) is the reader's choice, not
/// an error.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err),
        _ => Ok(()),
    }
}

/// The error for an identity the store does not know, with near matches.
fn unknown_identity(store: &Store, wanted: &str) -> anyhow::Result<String> {
    let needle = wanted.to_lowercase();
    let near: Vec<String> = store
        .identities()?
        .into_iter()
        .filter(|s| s.identity.to_lowercase().contains(&needle))
        .take(5)
        .map(|s| sanitize(&s.identity))
        .collect();
    let mut message = format!("no identity `{}` in the store", sanitize(wanted));
    if !near.is_empty() {
        message.push_str(&format!("; did you mean: {}", near.join(", ")));
    }
    Ok(message)
}

fn text(report: &Investigation) -> String {
    let id = &report.identity;
    let mut out = format!(
        "== {} ({})\n   {} events stored, first {} last {}; {} findings",
        sanitize(&id.identity),
        id.kind.as_str(),
        id.events,
        time_or_dash(id.first_seen),
        time_or_dash(id.last_seen),
        id.findings
    );
    if let Some(risk) = id.risk {
        out.push_str(&format!(
            "; latest risk {} ({}) at {}",
            risk.risk,
            risk.decision.as_str(),
            risk.time
        ));
    }
    out.push('\n');

    let events: u64 = report.sessions.iter().map(|s| s.events).sum();
    out.push_str(&format!(
        "\n-- timeline {} to {}: {} sessions, {events} events\n",
        time_or_dash(report.from),
        time_or_dash(report.to),
        report.sessions.len()
    ));
    for (n, session) in report.sessions.iter().enumerate() {
        text_session(&mut out, n + 1, session);
    }

    out.push_str(&format!("\n-- findings ({})\n", report.findings.len()));
    for item in &report.findings {
        let f = &item.finding;
        out.push_str(&format!(
            "{} {} {} risk {} {}: {}\n",
            f.time,
            f.severity.as_str(),
            f.kind.as_str(),
            f.risk,
            f.decision.as_str(),
            sanitize(&f.summary)
        ));
        let why = serde_json::to_string(&f.evidence.detail).unwrap_or_default();
        out.push_str(&format!("     why: {}\n", cell(&why, 160).trim_end()));
        out.push_str(&format!(
            "     evidence: {} events",
            f.evidence.event_ids.len()
        ));
        for event in &item.evidence_events {
            out.push_str(&format!("; {} {}", event.time, sanitize(&event.action)));
        }
        out.push('\n');
    }

    out.push_str("\n-- permitted vs used (all stored history)\n");
    out.push_str(&format!(
        "{} {} {} {} {} {}\n",
        cell("action", 40),
        cell("events", 8),
        cell("denied", 7),
        cell("first", 20),
        cell("last", 20),
        if report.permitted_unused.is_some() {
            "permitted"
        } else {
            ""
        }
    ));
    for used in &report.used {
        let u = &used.usage;
        let permitted = match (used.permitted, &used.reason) {
            (Some(true), _) => "yes".to_owned(),
            (Some(false), Some(reason)) => format!("NO: {}", sanitize(reason)),
            (Some(false), None) => "NO".to_owned(),
            (None, _) if report.permitted_unused.is_some() => "not judged".to_owned(),
            (None, _) => String::new(),
        };
        out.push_str(&format!(
            "{} {} {} {} {} {}\n",
            cell(&u.action, 40),
            cell(&u.events.to_string(), 8),
            cell(&u.denied.to_string(), 7),
            cell(&short_time(u.first_seen), 20),
            cell(&short_time(u.last_seen), 20),
            permitted
        ));
    }
    match &report.permitted_unused {
        Some(unused) => {
            out.push_str("permitted but not used in the period (candidates to remove):\n");
            if unused.is_empty() {
                out.push_str("  none\n");
            }
            for grant in unused {
                out.push_str(&format!(
                    "  {}  ({})\n",
                    sanitize(&grant.pattern),
                    sanitize(&grant.source)
                ));
            }
        }
        None => out.push_str("(give --policy to compare with the identity's entitlements)\n"),
    }

    out.push_str(&format!(
        "\n-- risk over time ({} points)\n",
        report.risk.len()
    ));
    for point in &report.risk {
        let bar = "█".repeat(usize::from(point.risk / 5));
        out.push_str(&format!(
            "{} {:>3} {:<8} {:<20} {}\n",
            point.time,
            point.risk,
            point.decision.as_str(),
            bar,
            sanitize(&point.cause)
        ));
    }
    out
}

fn text_session(out: &mut String, n: usize, session: &Session) {
    let minutes = (session.end.0 - session.start.0) / 60_000_000_000;
    out.push_str(&format!(
        "session {n}: {} to {} ({minutes} min), {} events",
        session.start, session.end, session.events
    ));
    if session.denied + session.errors > 0 {
        out.push_str(&format!(
            ", {} denied, {} failed",
            session.denied, session.errors
        ));
    }
    if let Some(name) = &session.name {
        out.push_str(&format!(", as {}", sanitize(name)));
    }
    if !session.origins.is_empty() {
        out.push_str(&format!(", from {}", sanitize(&session.origins.join(" "))));
    }
    out.push('\n');
    let mut actions: Vec<String> = session
        .actions
        .iter()
        .take(ACTIONS_SHOWN)
        .map(|a| format!("{} ×{}", sanitize(&a.action), a.events))
        .collect();
    if session.actions.len() > ACTIONS_SHOWN {
        actions.push(format!(
            "… {} more actions",
            session.actions.len() - ACTIONS_SHOWN
        ));
    }
    out.push_str(&format!("   {}\n", actions.join(", ")));
    if !session.findings.is_empty() {
        out.push_str(&format!("   ! findings: {}\n", session.findings.join(" ")));
    }
    for event in &session.event_list {
        out.push_str(&format!(
            "   {} {} {} {}\n",
            event.time,
            cell(&event.action, 36),
            cell(event.outcome.as_str(), 7),
            sanitize(event.resource.as_deref().unwrap_or("-"))
        ));
    }
}

fn time_or_dash(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// A time to the second, for table cells.
fn short_time(time: Timestamp) -> String {
    let text = time.to_string();
    text.get(..19).map_or(text.clone(), |t| format!("{t}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(
            parse_time("2026-03-02"),
            Timestamp::parse_rfc3339("2026-03-02T00:00:00Z").map_err(|e| e.to_string())
        );
        assert!(parse_time("2026-03-02T10:00:00+02:00").is_ok());
        assert!(parse_time("yesterday").is_err());
    }
}
