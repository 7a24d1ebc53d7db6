//! Judging again at start what the engine held only in memory when it stopped.
//!
//! The evidence store keeps every acknowledged event, but the engine's open episodes, sessions
//! and windows, and what it learned since the last snapshot of its profiles, live in memory. A
//! kill -9 (or a crash) loses them, and an acknowledged event still waiting in the engine's
//! queue was never judged at all. So at start the engine replays, per identity, the stored
//! events its starting baseline has not learned (after the profile's `last_seen`), learning
//! them, and before those the events of the last two episode gaps, judged again without being
//! learned, so that an episode open at the stop is whole again. Findings the store already
//! holds are not reported twice ([`Reported`]). Nothing before [`HORIZON`] is replayed.
//!
//! A graceful stop closes every episode and snapshots what was learned, so it leaves
//! [`CLEAN_STOP`] in the data folder and the next start replays nothing; a start takes the
//! file away, so that only a stop that finishes leaves it.
//!
//! The risk scorer's state is not snapshotted: every identity that is not replayed starts
//! from its latest stored risk (which then decays as usual), so that a restart is no amnesty.
//!
//! An event that arrived after the snapshot but is older than the identity's `last_seen` (a
//! late delivery) is not learned again.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use nhiwatch_baseline::Baseline;
use nhiwatch_model::{Event, Finding, FindingKind, Timestamp};
use nhiwatch_store::{FindingQuery, LatestRisk, Store, StoreError};

/// How far back from the newest stored event a replay reaches, at most: an identity the
/// starting baseline does not know is replayed from here.
pub(crate) const HORIZON: i64 = 24 * 3_600 * 1_000_000_000;

/// What the engine starts from besides its profiles: stored risk, and the events to judge
/// again.
pub(crate) struct Replay {
    /// The latest stored risk of every identity with one that is not replayed (a replayed
    /// identity's risk is rebuilt by its findings), so that a restart is no amnesty.
    pub risks: Vec<(String, LatestRisk)>,
    /// The events to judge again, in time order, each with whether it is learned.
    pub events: Vec<(Event<'static>, bool)>,
    /// The findings the store holds from the first of those events on.
    pub reported: Reported,
}

/// Findings already reported: a replayed finding with one of their ids, or whose every
/// evidence event is already evidence of the same identity and kind, is not reported again.
#[derive(Default)]
pub(crate) struct Reported {
    ids: HashSet<String>,
    evidence: HashMap<(String, FindingKind), HashSet<String>>,
}

impl Reported {
    fn add(&mut self, finding: Finding) {
        self.ids.insert(finding.id);
        self.evidence
            .entry((finding.identity, finding.kind))
            .or_default()
            .extend(finding.evidence.event_ids);
    }

    /// Whether no finding is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `finding` says nothing the store does not already hold.
    pub fn covers(&self, finding: &Finding) -> bool {
        if self.ids.contains(&finding.id) {
            return true;
        }
        self.evidence
            .get(&(finding.identity.clone(), finding.kind))
            .is_some_and(|known| {
                finding
                    .evidence
                    .event_ids
                    .iter()
                    .all(|id| known.contains(id))
            })
    }
}

/// The file a graceful stop leaves in the data folder.
pub(crate) const CLEAN_STOP: &str = "stopped-cleanly";

/// Records, durably, that the server in `data` stopped gracefully.
pub(crate) fn mark_clean_stop(data: &Path) -> std::io::Result<()> {
    nhiwatch_baseline::write_atomically(&data.join(CLEAN_STOP), b"")
}

/// Whether the last stop in `data` was graceful; takes the mark away, durably.
pub(crate) fn take_clean_stop(data: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(data.join(CLEAN_STOP)) {
        Ok(()) => {
            #[cfg(unix)]
            std::fs::File::open(data)?.sync_all()?;
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// What to replay over `store` for an engine starting from `baseline`, whose episodes close
/// after `gap` nanoseconds of quiet; after a `clean` stop, only the stored risk.
pub(crate) fn plan(
    store: &Store,
    baseline: &Baseline,
    gap: i64,
    clean: bool,
) -> Result<Replay, StoreError> {
    let identities = store.identities()?;
    if clean {
        return Ok(Replay {
            risks: identities
                .into_iter()
                .filter_map(|s| Some((s.identity, s.risk?)))
                .collect(),
            events: Vec::new(),
            reported: Reported::default(),
        });
    }
    let newest = identities
        .iter()
        .filter_map(|s| s.last_seen)
        .map(|t| t.0)
        .max()
        .unwrap_or(i64::MIN);
    let horizon = newest.saturating_sub(HORIZON);
    let mut events = Vec::new();
    let mut risks = Vec::new();
    let mut earliest = i64::MAX;
    for summary in identities {
        let learned = baseline
            .get(&summary.identity)
            .filter(|p| p.events > 0)
            .map(|p| p.last_seen);
        let from = match learned {
            Some(last) => last.saturating_sub(gap.saturating_mul(2)),
            None => i64::MIN,
        }
        .max(horizon);
        if summary.last_seen.is_none_or(|t| t.0 < from) {
            if let Some(risk) = summary.risk {
                risks.push((summary.identity, risk));
            }
            continue;
        }
        earliest = earliest.min(from);
        let stored = store.events(
            &summary.identity,
            Timestamp(from),
            Timestamp(i64::MAX),
            false,
        )?;
        events.extend(stored.into_iter().map(|event| {
            let learn = learned.is_none_or(|last| event.time.0 > last);
            (event, learn)
        }));
    }
    // A stable sort keeps each identity's stored order among events of the same time.
    events.sort_by_key(|(event, _)| event.time);
    let mut reported = Reported::default();
    if !events.is_empty() {
        let query = FindingQuery {
            since: Some(Timestamp(earliest)),
            ..FindingQuery::default()
        };
        for finding in store.findings(&query)? {
            reported.add(finding);
        }
    }
    Ok(Replay {
        risks,
        events,
        reported,
    })
}

#[cfg(test)]
mod tests {
    use nhiwatch_model::Evidence;

    use super::*;

    fn finding(id: &str, kind: FindingKind, events: &[&str]) -> Finding {
        Finding {
            id: id.into(),
            time: Timestamp(0),
            identity: "role".into(),
            kind,
            severity: nhiwatch_model::Severity::Low,
            risk: 10,
            decision: nhiwatch_model::Decision::Review,
            summary: String::new(),
            evidence: Evidence {
                event_ids: events.iter().map(|e| (*e).to_owned()).collect(),
                detail: serde_json::Value::Null,
            },
            frameworks: Vec::new(),
        }
    }

    #[test]
    fn a_finding_is_reported_again_only_when_it_says_something_new() {
        let mut reported = Reported::default();
        reported.add(finding(
            "f-1",
            FindingKind::NovelAction,
            &["e1", "e2", "e3"],
        ));
        let same_id = finding("f-1", FindingKind::NovelAction, &["e1", "e2", "e3", "e4"]);
        assert!(reported.covers(&same_id));
        let tail = finding("f-2", FindingKind::NovelAction, &["e2", "e3"]);
        assert!(reported.covers(&tail), "the tail of a reported episode");
        let grown = finding("f-3", FindingKind::NovelAction, &["e3", "e4"]);
        assert!(!reported.covers(&grown), "e4 is new");
        let other_kind = finding("f-4", FindingKind::RareSequence, &["e2"]);
        assert!(!reported.covers(&other_kind));
    }
}
