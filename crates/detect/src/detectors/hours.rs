//! `time_anomaly`: activity outside the approved hours (expected lens), and the draft both lenses
//! report it with (the usual lens judges against learned hours, see [`super::Usual`]).

use nhiwatch_model::{FindingKind, Severity, Sym};
use serde_json::json;

use super::{draft, entry_json, plural, techniques};
use crate::engine::{Draft, EngineConfig, Names, Observation};
use crate::episode::{Episode, EpisodeRules, Flags, Grouped};

/// `time_anomaly`: events of an identity outside its entry's `hours`, grouped per episode.
///
/// Severity: low; medium when something was changed (write, delete, permission or exec carried
/// out) out of hours. The usual lens ([`super::Usual`]) reports the same kind, through the same
/// `time_draft`, against the identity's learned hours for identities whose policy sets none.
pub type OutsideHours = Grouped<HoursRules>;

/// The rules of [`OutsideHours`].
#[derive(Debug)]
pub struct HoursRules;

/// What an out-of-hours episode was compared with.
pub(super) enum HoursBasis {
    /// The policy entry's approved hours (the expected lens).
    Approved(String),
    /// The identity's learned activity by hour of day (the usual lens): the hours holding its
    /// activity, the share of its activity in the episode's hours, and the share below which
    /// an hour counts as unusual.
    Usual {
        /// `HH:00-HH:00` ranges.
        usual: String,
        /// Details per hour of the episode.
        observed: serde_json::Value,
        /// The share threshold.
        threshold: f64,
    },
}

/// The `time_anomaly` draft of an episode, whichever lens found it. Against approved hours:
/// severity low, medium when something was changed (write, delete, permission or exec carried
/// out) out of hours. Against learned hours: low (an unusual hour alone is weak evidence; the
/// risk score combines it with the identity's other findings).
pub(super) fn time_draft(
    identity: Sym,
    episode: Episode,
    names: &Names<'_>,
    basis: HoursBasis,
    out: &mut Vec<Draft>,
) {
    let severity = match basis {
        HoursBasis::Approved(_) if episode.changes(true) => Severity::Medium,
        _ => Severity::Low,
    };
    let outside: Vec<_> = episode.items.iter().map(|t| t.to_json(names)).collect();
    let what = format!(
        "{} ({}) from {} to {}",
        plural(episode.events(), "event"),
        episode.top_actions(names, 3),
        episode.start,
        episode.last,
    );
    let who = names.identities.resolve(identity);
    let (summary, detail) = match basis {
        HoursBasis::Approved(hours) => (
            format!("{who} acted outside its approved hours ({hours}): {what}; check whether this run was scheduled"),
            json!({
                "lens": "expected",
                "check": "hours",
                "policy_entry": entry_json(names, &episode),
                "approved_hours": hours,
                "outside": outside,
                "window": episode.window_json(),
            }),
        ),
        HoursBasis::Usual {
            usual,
            observed,
            threshold,
        } => (
            format!("{who} acted at an hour it is normally never active (usually {usual} UTC): {what}; check whether this run was scheduled"),
            json!({
                "lens": "usual",
                "check": "hour_of_day",
                "baseline": {"usual_hours_utc": usual},
                "observed": observed,
                "threshold": {"min_share_of_activity_in_hour": threshold, "smoothing": "the hour, half of each neighbouring hour, a quarter of the hours two away"},
                "outside": outside,
                "window": episode.window_json(),
            }),
        ),
    };
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

impl EpisodeRules for HoursRules {
    const NAME: &'static str = "time_anomaly";

    fn new(_: &EngineConfig) -> Self {
        HoursRules
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, flags: &mut Flags<'_, '_>) {
        let Some((_, entry)) = obs.entry else {
            return;
        };
        // Transcripts without timestamps get derived times, which say nothing about the hour.
        if obs.event.time_inferred || !entry.outside_hours(obs.event.time) {
            return;
        }
        flags.flag(obs, 0, String::new);
    }

    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>) {
        let hours = names
            .entry(episode.entry)
            .and_then(|e| e.hours())
            .map_or_else(String::new, |h| h.text().to_owned());
        time_draft(identity, episode, names, HoursBasis::Approved(hours), out);
    }
}
