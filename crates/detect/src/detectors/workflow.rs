//! `workflow_deviation`: a run of actions that leaves the approved sequence.

use std::hash::{Hash, Hasher};

use nhiwatch_model::{ActionClass, FindingKind, Outcome, Severity, Sym, Timestamp};
use nhiwatch_policy::{Move, Workflow};
use rustc_hash::FxHasher;
use serde_json::json;

use super::{draft, entry_json, plural, techniques};
use crate::engine::{Draft, EngineConfig, Names, Observation};
use crate::episode::{Episode, EpisodeRules, Flags, Grouped};

const FOREIGN: u64 = 1;
const OUT_OF_ORDER: u64 = 2;
const RESTART: u64 = 3;

/// Where one session stands in its workflow: 40 bytes.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// Hash of the session (identity.session; 0 when the source has none).
    session: u64,
    /// The automaton state: the set of current positions, 0 before the first step.
    state: u64,
    /// When the current run began.
    run_start: Timestamp,
    /// The session's latest event, for evicting the least recently active session.
    last: Timestamp,
    /// The session's previous action.
    previous: Option<Sym>,
}

/// `workflow_deviation`: per identity *session* (an assumed-role session, an agent run), the
/// automaton of the entry's workflow is advanced by each event, in constant time and with an
/// 8-byte state ([`Workflow`]); a step that is not in the workflow, a step out of order, and a
/// restart before the run finished are deviations. A run lasts at most the workflow's `window`;
/// an event after that begins a new run.
///
/// Severity: low when the only deviation is a restart (an aborted run tried again); medium for
/// steps out of order or not in the workflow; high when a step not in the workflow changed
/// something (write, delete, permission or exec).
pub type WorkflowDeviation = Grouped<WorkflowRules>;

/// The rules of [`WorkflowDeviation`].
#[derive(Debug)]
pub struct WorkflowRules {
    cursors: Vec<Vec<Cursor>>,
    sessions_per_identity: usize,
}

impl WorkflowRules {
    fn cursor(&mut self, identity: Sym, session: u64, time: Timestamp) -> &mut Cursor {
        let index = identity.0 as usize;
        if self.cursors.len() <= index {
            self.cursors.resize_with(index + 1, Vec::new);
        }
        let cursors = &mut self.cursors[index];
        let found = match cursors.iter().position(|c| c.session == session) {
            Some(found) => found,
            None => {
                let fresh = Cursor {
                    session,
                    state: 0,
                    run_start: time,
                    last: time,
                    previous: None,
                };
                if cursors.len() < self.sessions_per_identity {
                    cursors.push(fresh);
                    cursors.len() - 1
                } else {
                    // Bounded state: the least recently active session gives way.
                    let oldest = cursors
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, c)| c.last)
                        .map_or(0, |(i, _)| i);
                    cursors[oldest] = fresh;
                    oldest
                }
            }
        };
        &mut cursors[found]
    }
}

fn session_key(session: Option<&str>) -> u64 {
    session.map_or(0, |s| {
        let mut hasher = FxHasher::default();
        s.hash(&mut hasher);
        hasher.finish()
    })
}

impl EpisodeRules for WorkflowRules {
    const NAME: &'static str = "workflow_deviation";

    fn new(config: &EngineConfig) -> Self {
        WorkflowRules {
            cursors: Vec::new(),
            sessions_per_identity: config.sessions_per_identity.max(1),
        }
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, flags: &mut Flags<'_, '_>) {
        let (Some((_, entry)), Some(profile)) = (obs.entry, obs.profile) else {
            return;
        };
        let Some(workflow) = entry.workflow() else {
            return;
        };
        let time = obs.event.time;
        let window = entry.workflow_window();
        let cursor = self.cursor(
            obs.identity,
            session_key(obs.event.identity.session.as_deref()),
            time,
        );
        if cursor.state != 0 && time.0.saturating_sub(cursor.run_start.0) > window {
            // The run's window is over: whatever comes now begins a new run.
            cursor.state = 0;
            cursor.previous = None;
        }
        let was_idle = cursor.state == 0;
        let mut state = cursor.state;
        let step = workflow.advance(&mut state, profile.workflow);
        // A call that failed (refused, throttled, invalid) did not happen: it is judged like any
        // other, but the run stays where it was, so the step it was retried for, or the one
        // after, is not taken for out of order.
        let took_effect = obs.event.outcome == Outcome::Success;
        let previous = if took_effect {
            cursor.state = state;
            cursor.previous.replace(obs.action)
        } else {
            cursor.previous
        };
        cursor.last = cursor.last.max(time);
        let (key, expected) = match step {
            Move::Advance { new_run } => {
                if new_run && took_effect {
                    cursor.run_start = time;
                }
                return;
            }
            Move::Foreign => (FOREIGN, None),
            Move::OutOfOrder { expected } => {
                if was_idle && took_effect {
                    cursor.run_start = time;
                }
                (OUT_OF_ORDER, Some(expected))
            }
            Move::Restart { expected } => {
                if took_effect {
                    cursor.run_start = time;
                }
                (RESTART, Some(expected))
            }
        };
        let names = flags.names;
        flags.flag(obs, key, || {
            let after = previous.map_or_else(
                || "at the start of a run".to_owned(),
                |p| format!("after {}", names.actions.resolve(p)),
            );
            let session = obs
                .event
                .identity
                .session
                .as_deref()
                .map_or_else(String::new, |s| format!(" in session {s}"));
            match expected {
                Some(expected) => format!(
                    "{after}{session}; expected {}",
                    workflow.describe(expected).join(" or ")
                ),
                None => format!("{after}{session}"),
            }
        });
    }

    fn state_bytes(&self) -> usize {
        self.cursors.capacity() * std::mem::size_of::<Vec<Cursor>>()
            + self
                .cursors
                .iter()
                .map(|c| c.capacity() * std::mem::size_of::<Cursor>())
                .sum::<usize>()
    }

    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>) {
        let only_restarts = episode.items.iter().all(|t| t.key == RESTART);
        let foreign_change = episode.items.iter().any(|t| {
            t.key == FOREIGN
                && matches!(
                    t.class,
                    ActionClass::Write
                        | ActionClass::Delete
                        | ActionClass::Permission
                        | ActionClass::Exec
                )
        });
        let severity = if foreign_change {
            Severity::High
        } else if only_restarts {
            Severity::Low
        } else {
            Severity::Medium
        };
        let entry = names.entry(episode.entry);
        let deviations: Vec<_> = episode
            .items
            .iter()
            .map(|t| {
                let mut item = t.to_json(names);
                if let Some(map) = item.as_object_mut() {
                    let problem = match t.key {
                        FOREIGN => "not a step of the workflow",
                        OUT_OF_ORDER => "step out of order",
                        _ => "workflow restarted before the run finished",
                    };
                    map.insert("problem".into(), problem.into());
                    map.insert("context".into(), t.note.clone().into());
                }
                item
            })
            .collect();
        let first = episode.items.first().map_or_else(String::new, |t| {
            format!("{}: {}", names.actions.resolve(t.action), t.note)
        });
        let summary = format!(
            "{} left its approved workflow: {} ({}); first: {first}",
            names.identities.resolve(identity),
            plural(episode.events(), "deviating step"),
            episode.top_actions(names, 3),
        );
        let detail = json!({
            "lens": "expected",
            "check": "workflow",
            "policy_entry": entry_json(names, &episode),
            "workflow": entry.and_then(|e| e.workflow()).map(Workflow::text),
            "window_seconds": entry.map(|e| e.workflow_window() / crate::engine::SECOND),
            "deviations": deviations,
            "window": episode.window_json(),
        });
        let techniques = techniques(&episode, names, None);
        out.push(draft(
            identity,
            episode,
            FindingKind::WorkflowDeviation,
            severity,
            summary,
            detail,
            techniques,
        ));
    }
}
