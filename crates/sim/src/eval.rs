//! Scoring findings against a simulation's labels.
//!
//! Matching rule: a finding *touches* an incident when it names the incident's identity and
//! at least one of its evidence event ids is one of the incident's malicious event ids. An
//! incident is *detected* when some finding touches it. A *false finding* touches no incident.
//!
//! - recall = detected incidents / incidents (per scenario and overall);
//! - precision = findings that touch an incident / all findings;
//! - false findings per 10,000 benign events = false findings × 10,000 / benign events;
//! - detection delay of a detected incident, over the findings that touch it: in events, how
//!   many of the incident's malicious events (in their order) had happened when the engine first
//!   flagged one of them. The lenses' findings hold only events that were each flagged as they
//!   arrived (an inline `decide` answers on that event), so that is the 1-based position of the
//!   earliest malicious event in the evidence; a `rule` finding may hold the events a
//!   correlation counted before it fired, so for it the latest is taken. In seconds, from the
//!   incident's first malicious event to the time of the finding that gave the events figure
//!   (its last evidence event: when a batch run reports it), never negative.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use nhiwatch_model::{Finding, FindingKind, Severity, Timestamp};
use serde::Serialize;

use crate::attack::Label;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a label or a finding.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Per-scenario results.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ScenarioReport {
    /// Incidents of this scenario.
    pub incidents: u64,
    /// Of which detected.
    pub detected: u64,
    /// detected / incidents.
    pub recall: f64,
    /// Median delay over detected incidents, in malicious events: how many had happened when
    /// one was first flagged.
    pub median_delay_events: Option<f64>,
    /// Median delay over detected incidents, in seconds, until the finding was reported.
    pub median_delay_seconds: Option<f64>,
    /// Worst delay in events.
    pub max_delay_events: Option<u64>,
}

/// The evaluation of a set of findings against labels.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Report {
    /// Results per scenario name.
    pub scenarios: BTreeMap<String, ScenarioReport>,
    /// All incidents.
    pub incidents: u64,
    /// Detected incidents.
    pub detected: u64,
    /// Overall recall.
    pub recall: f64,
    /// Findings read.
    pub findings: u64,
    /// Findings that touch an incident.
    pub true_findings: u64,
    /// Findings that touch none.
    pub false_findings: u64,
    /// false findings above `low` severity.
    pub false_findings_above_low: u64,
    /// true / all findings (1 when there are none).
    pub precision: f64,
    /// Benign events the rate is computed over.
    pub benign_events: u64,
    /// False findings per 10,000 benign events.
    pub false_per_10k_benign: f64,
    /// Incidents first flagged more than 5 malicious events in.
    pub late_detections: u64,
}

/// Reads `labels.jsonl`.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, EvalError> {
    read_lines(path)
}

/// Reads findings (JSON lines in the DESIGN.md format).
pub fn read_findings(path: &Path) -> Result<Vec<Finding>, EvalError> {
    read_lines(path)
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, EvalError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| EvalError::Io {
        path: name.clone(),
        source,
    })?;
    let mut items = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| EvalError::Io {
            path: name.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line).map_err(|err| EvalError::Parse {
            path: name.clone(),
            line: n + 1,
            reason: err.to_string(),
        })?;
        items.push(item);
    }
    Ok(items)
}

/// Scores `findings` against `labels`, with `benign_events` as the false-finding denominator.
pub fn evaluate(labels: &[Label], findings: &[Finding], benign_events: u64) -> Report {
    // event id → (incident, 1-based position in it)
    let mut position: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, label) in labels.iter().enumerate() {
        for (p, id) in label.event_ids.iter().enumerate() {
            position.insert(id.as_str(), (i, p + 1));
        }
    }
    let mut delays: Vec<Option<(u64, f64)>> = vec![None; labels.len()];
    let mut report = Report {
        findings: findings.len() as u64,
        benign_events,
        ..Report::default()
    };
    for finding in findings {
        let each_flagged = finding.kind != FindingKind::Rule;
        let mut touched: BTreeMap<usize, usize> = BTreeMap::new();
        for id in &finding.evidence.event_ids {
            if let Some(&(incident, pos)) = position.get(id.as_str()) {
                if labels[incident].identity == finding.identity {
                    let flagged_at = touched.entry(incident).or_insert(pos);
                    *flagged_at = if each_flagged {
                        (*flagged_at).min(pos)
                    } else {
                        (*flagged_at).max(pos)
                    };
                }
            }
        }
        if touched.is_empty() {
            report.false_findings += 1;
            if finding.severity > Severity::Low {
                report.false_findings_above_low += 1;
            }
            continue;
        }
        report.true_findings += 1;
        for (incident, pos) in touched {
            let start = Timestamp::parse_rfc3339(&labels[incident].start).unwrap_or(finding.time);
            let seconds = ((finding.time.unix_nanos() - start.unix_nanos()).max(0)) as f64 / 1e9;
            let entry = &mut delays[incident];
            let better = match entry {
                None => true,
                Some((events, _)) => (pos as u64) < *events,
            };
            if better {
                *entry = Some((pos as u64, seconds));
            }
        }
    }
    let mut per: BTreeMap<String, Vec<Option<(u64, f64)>>> = BTreeMap::new();
    for (label, delay) in labels.iter().zip(&delays) {
        per.entry(label.scenario.clone()).or_default().push(*delay);
    }
    for (scenario, results) in per {
        let detected: Vec<(u64, f64)> = results.iter().flatten().copied().collect();
        let mut events: Vec<f64> = detected.iter().map(|d| d.0 as f64).collect();
        let mut seconds: Vec<f64> = detected.iter().map(|d| d.1).collect();
        report.late_detections += detected.iter().filter(|d| d.0 > 5).count() as u64;
        report.incidents += results.len() as u64;
        report.detected += detected.len() as u64;
        report.scenarios.insert(
            scenario,
            ScenarioReport {
                incidents: results.len() as u64,
                detected: detected.len() as u64,
                recall: ratio(detected.len() as u64, results.len() as u64),
                median_delay_events: median(&mut events),
                median_delay_seconds: median(&mut seconds),
                max_delay_events: detected.iter().map(|d| d.0).max(),
            },
        );
    }
    report.recall = ratio(report.detected, report.incidents);
    report.precision = if report.findings == 0 {
        1.0
    } else {
        ratio(report.true_findings, report.findings)
    };
    report.false_per_10k_benign = if benign_events == 0 {
        0.0
    } else {
        report.false_findings as f64 * 10_000.0 / benign_events as f64
    };
    report
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

impl Report {
    /// The report as a table for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{:<36} {:>9} {:>8} {:>7} {:>14} {:>14}\n",
            "scenario", "incidents", "detected", "recall", "flagged at", "reported (s)"
        );
        for (name, s) in &self.scenarios {
            let events = s
                .median_delay_events
                .map_or("-".to_owned(), |d| format!("{d:.1}"));
            let seconds = s
                .median_delay_seconds
                .map_or("-".to_owned(), |d| format!("{d:.0}"));
            out.push_str(&format!(
                "{name:<36} {:>9} {:>8} {:>7.2} {events:>14} {seconds:>14}\n",
                s.incidents, s.detected, s.recall
            ));
        }
        out.push_str(&format!(
            "\nrecall {:.3} ({}/{} incidents) · precision {:.3} ({} of {} findings touch an incident)\n\
             false findings {} ({} above low) = {:.3} per 10,000 benign events ({} benign) · detections later than 5 events: {}\n",
            self.recall,
            self.detected,
            self.incidents,
            self.precision,
            self.true_findings,
            self.findings,
            self.false_findings,
            self.false_findings_above_low,
            self.false_per_10k_benign,
            self.benign_events,
            self.late_detections
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_model::{Decision, Evidence, FindingKind};

    fn label(n: usize, scenario: &str, identity: &str, ids: &[&str]) -> Label {
        Label {
            incident: n,
            scenario: scenario.into(),
            identity: identity.into(),
            event_ids: ids.iter().map(|s| s.to_string()).collect(),
            start: "2026-03-10T10:00:00Z".into(),
        }
    }

    fn finding(identity: &str, ids: &[&str], time: &str, severity: Severity) -> Finding {
        Finding {
            id: Finding::stable_id(identity, FindingKind::Rule, ids[0]),
            time: Timestamp::parse_rfc3339(time).unwrap(),
            identity: identity.into(),
            kind: FindingKind::Rule,
            severity,
            risk: 50,
            decision: Decision::Review,
            summary: String::new(),
            evidence: Evidence {
                event_ids: ids.iter().map(|s| s.to_string()).collect(),
                detail: serde_json::Value::Null,
            },
            frameworks: vec![],
        }
    }

    #[test]
    fn no_findings_means_recall_zero() {
        let labels = [label(0, "S1", "a", &["e1"])];
        let report = evaluate(&labels, &[], 1000);
        assert_eq!(report.recall, 0.0);
        assert_eq!(report.scenarios["S1"].detected, 0);
        assert_eq!(report.precision, 1.0);
    }

    #[test]
    fn findings_are_matched_counted_and_timed() {
        let labels = [
            label(0, "S1", "a", &["e1", "e2", "e3", "e4", "e5", "e6", "e7"]),
            label(1, "S2", "b", &["x1", "x2"]),
        ];
        let findings = [
            // touches incident 0 at its 3rd and 7th events: delay 7 for this one
            finding(
                "a",
                &["e3", "e7", "benign"],
                "2026-03-10T10:05:00Z",
                Severity::High,
            ),
            // a second, earlier-in-sequence finding for incident 0: delay 2
            finding("a", &["e1", "e2"], "2026-03-10T10:01:00Z", Severity::Medium),
            // right id, wrong identity: a false finding
            finding("z", &["x1"], "2026-03-10T10:00:00Z", Severity::Low),
            // benign
            finding("b", &["n1"], "2026-03-10T11:00:00Z", Severity::High),
        ];
        let report = evaluate(&labels, &findings, 20_000);
        assert_eq!((report.incidents, report.detected), (2, 1));
        assert_eq!(report.recall, 0.5);
        assert_eq!(
            (
                report.true_findings,
                report.false_findings,
                report.false_findings_above_low
            ),
            (2, 2, 1)
        );
        assert_eq!(report.precision, 0.5);
        assert_eq!(report.false_per_10k_benign, 1.0);
        let s1 = &report.scenarios["S1"];
        assert_eq!(s1.max_delay_events, Some(2));
        assert_eq!(s1.median_delay_seconds, Some(60.0));
        assert_eq!(report.scenarios["S2"].recall, 0.0);
        assert_eq!(report.late_detections, 0);
    }

    #[test]
    fn lens_findings_count_from_their_first_flagged_event() {
        let labels = [label(
            0,
            "S1",
            "a",
            &["e1", "e2", "e3", "e4", "e5", "e6", "e7"],
        )];
        // An episode opened at the incident's 2nd event and reported at its 7th.
        let ids = ["e2", "e5", "e7"];
        let mut episode = finding("a", &ids, "2026-03-10T10:07:00Z", Severity::High);
        episode.kind = FindingKind::OutOfScope;
        let report = evaluate(&labels, &[episode], 1_000);
        let s1 = &report.scenarios["S1"];
        assert_eq!(s1.max_delay_events, Some(2), "flagged at the 2nd event");
        assert_eq!(s1.median_delay_seconds, Some(420.0), "reported at 10:07");
        // A rule finding may hold what a correlation counted before it fired.
        let rule = finding("a", &ids, "2026-03-10T10:07:00Z", Severity::High);
        let report = evaluate(&labels, &[rule], 1_000);
        assert_eq!(report.scenarios["S1"].max_delay_events, Some(7));
        assert_eq!(report.late_detections, 1);
    }
}
