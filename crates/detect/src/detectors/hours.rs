//! `time_anomaly` for the expected lens: activity outside the approved hours.

use nhiwatch_model::{FindingKind, Severity, Sym};
use serde_json::json;

use super::{draft, entry_json, plural, techniques};
use crate::engine::{Detector, Draft, EngineConfig, Names, Observation, StreamPosition};
use crate::episode::{Episode, Episodes};

/// `time_anomaly`: events of an identity outside its entry's `hours`, grouped per episode.
///
/// Severity: low; medium when something was changed (write, delete, permission or exec carried
/// out) out of hours. Issue 5's learned hour-of-week baseline reports the same kind for
/// identities whose policy sets no hours.
#[derive(Debug)]
pub struct OutsideHours {
    episodes: Episodes,
}

impl OutsideHours {
    /// A detector with the engine's episode settings.
    pub fn new(config: &EngineConfig) -> Self {
        OutsideHours {
            episodes: Episodes::new(config),
        }
    }

    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>) {
        let severity = if episode.changes(true) {
            Severity::Medium
        } else {
            Severity::Low
        };
        let hours = names
            .entry(episode.entry)
            .and_then(|e| e.hours())
            .map_or_else(String::new, |h| h.text().to_owned());
        let outside: Vec<_> = episode.items.iter().map(|t| t.to_json(names)).collect();
        let summary = format!(
            "{} acted outside its approved hours ({hours}): {} ({}) from {} to {}; check whether this run was scheduled",
            names.identities.resolve(identity),
            plural(episode.events(), "event"),
            episode.top_actions(names, 3),
            episode.start,
            episode.last,
        );
        let detail = json!({
            "lens": "expected",
            "check": "hours",
            "policy_entry": entry_json(names, &episode),
            "approved_hours": hours,
            "outside": outside,
            "window": episode.window_json(),
        });
        let techniques = techniques(&episode, names, None);
        out.push(draft(
            identity,
            episode,
            FindingKind::TimeAnomaly,
            severity,
            summary,
            detail,
            techniques,
        ));
    }
}

impl Detector for OutsideHours {
    fn name(&self) -> &'static str {
        "time_anomaly"
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, names: &Names<'_>, out: &mut Vec<Draft>) {
        let Some((_, entry)) = obs.entry else {
            return;
        };
        // Transcripts without timestamps get derived times, which say nothing about the hour.
        if obs.event.time_inferred || !entry.outside_hours(obs.event.time) {
            return;
        }
        let (closed, episode) = self.episodes.record(obs);
        episode.tally(obs, 0, String::new);
        if let Some(closed) = closed {
            Self::report(obs.identity, *closed, names, out);
        }
    }

    fn sweep(&mut self, at: StreamPosition, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.episodes.expire(at, |identity, episode| {
            Self::report(identity, *episode, names, out)
        });
    }

    fn flush(&mut self, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.episodes
            .drain(|identity, episode| Self::report(identity, *episode, names, out));
    }

    fn state_bytes(&self) -> usize {
        self.episodes.bytes()
    }
}
