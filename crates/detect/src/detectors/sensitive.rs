//! `sensitive_access`: access to what the policy marks sensitive.

use nhiwatch_model::{FindingKind, Severity, Sym};
use serde_json::json;

use super::{draft, entry_json, plural, techniques};
use crate::engine::{Draft, EngineConfig, Names, Observation};
use crate::episode::{Episode, EpisodeRules, Flags, Grouped};

/// `sensitive_access`: an event whose action (or action and resource) matches one of the
/// entry's `sensitive` items, permitted or not.
///
/// Severity: low when every attempt was refused or failed; medium when something sensitive was
/// read; high when something sensitive was changed (write, delete, permission or exec carried out).
pub type SensitiveAccess = Grouped<SensitiveRules>;

/// The rules of [`SensitiveAccess`].
#[derive(Debug)]
pub struct SensitiveRules;

impl EpisodeRules for SensitiveRules {
    const NAME: &'static str = "sensitive_access";

    fn new(_: &EngineConfig) -> Self {
        SensitiveRules
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, flags: &mut Flags<'_, '_>) {
        let (Some((_, entry)), Some(profile)) = (obs.entry, obs.profile) else {
            return;
        };
        let Some(item) = entry.sensitive_match(profile, obs.event.resource.as_deref()) else {
            return;
        };
        flags.flag(obs, u64::from(item), || {
            entry
                .sensitive()
                .get(usize::from(item))
                .map(|s| s.describe())
                .unwrap_or_default()
        });
    }

    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>) {
        let severity = if episode.changes(true) {
            Severity::High
        } else if episode.succeeded() > 0 {
            Severity::Medium
        } else {
            Severity::Low
        };
        let entry = names.entry(episode.entry);
        let accessed: Vec<_> = episode
            .items
            .iter()
            .map(|t| {
                let mut item = t.to_json(names);
                if let Some(map) = item.as_object_mut() {
                    map.insert("matched".into(), t.note.clone().into());
                }
                item
            })
            .collect();
        let summary = format!(
            "{} touched what its policy marks sensitive: {} ({}), {} carried out; confirm this use was intended",
            names.identities.resolve(identity),
            plural(episode.events(), "event"),
            episode.top_actions(names, 3),
            episode.succeeded(),
        );
        let detail = json!({
            "lens": "permitted",
            "check": "sensitive",
            "policy_entry": entry_json(names, &episode),
            "sensitive": entry.map(|e| e.sensitive().iter().map(|s| s.describe()).collect::<Vec<_>>()).unwrap_or_default(),
            "accessed": accessed,
            "window": episode.window_json(),
        });
        let techniques = techniques(&episode, names, None);
        out.push(draft(
            identity,
            episode,
            FindingKind::SensitiveAccess,
            severity,
            summary,
            detail,
            techniques,
        ));
    }
}
