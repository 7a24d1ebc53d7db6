//! Native sequence rules: steps in order, within a window, per identity (or other fields).
//!
//! Per group the rule follows one run: the step it waits for, how many events that step has
//! counted (a step may need `min` of them), when the run began and the events so far. An event
//! that matches the awaited step advances the run; one that matches the first step starts a run
//! when none is open; a run older than `within` is dropped before the event is considered.
//! When the last step completes the rule fires and the run ends. At most
//! [`Limits::max_groups`](crate::Limits) runs are kept per rule, the least recently active
//! dropped first.

use nhiwatch_model::Timestamp;
use rustc_hash::FxHashMap;

use crate::correlation::Fire;
use crate::eval::{Limits, Origin};
use crate::record::{FieldRef, Subject};

/// One step of a sequence.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) min: u32,
}

/// A compiled sequence.
#[derive(Clone, Debug)]
pub(crate) struct SequenceDef {
    pub(crate) within: i64,
    /// Group fields; empty means the identity.
    pub(crate) by: Vec<FieldRef>,
    pub(crate) steps: Vec<Step>,
}

struct Run {
    start: Timestamp,
    last: Timestamp,
    step: usize,
    count: u32,
    ids: Vec<String>,
}

/// The open runs of one sequence rule.
#[derive(Default)]
pub(crate) struct SequenceState {
    runs: FxHashMap<Box<str>, Run>,
}

impl SequenceDef {
    fn key(&self, subject: &Subject<'_, '_>) -> Option<Box<str>> {
        if self.by.is_empty() {
            return subject.event().map(|e| e.identity.id.as_ref().into());
        }
        let parts: Vec<String> = self
            .by
            .iter()
            .map(|f| subject.first_text(f))
            .collect::<Option<_>>()?;
        Some(parts.join("\u{1f}").into())
    }

    /// Feeds an event that matched `step`; returns a firing when it completes the sequence.
    pub(crate) fn update(
        &self,
        state: &mut SequenceState,
        step: usize,
        subject: &Subject<'_, '_>,
        origin: Origin,
        limits: &Limits,
    ) -> Option<Fire> {
        let key = self.key(subject)?;
        let time = subject.time();
        if let Some(run) = state.runs.get(&key) {
            if time.0.saturating_sub(run.start.0) > self.within {
                state.runs.remove(&key);
            }
        }
        if !state.runs.contains_key(&key) {
            if step != 0 {
                return None;
            }
            if state.runs.len() >= limits.max_groups {
                state.evict(time.0.saturating_sub(self.within));
            }
            state.runs.insert(
                key.clone(),
                Run {
                    start: time,
                    last: time,
                    step: 0,
                    count: 0,
                    ids: Vec::new(),
                },
            );
        }
        let run = state.runs.get_mut(&key)?;
        if run.step != step {
            return None;
        }
        run.count += 1;
        run.last = run.last.max(time);
        if run.ids.len() < limits.max_evidence {
            run.ids.push(subject.event_id().into_owned());
        }
        if run.count < self.steps.get(step)?.min {
            return None;
        }
        run.step += 1;
        run.count = 0;
        if run.step < self.steps.len() {
            return None;
        }
        let run = state.runs.remove(&key)?;
        Some(Fire {
            time: run.last,
            event_ids: run.ids,
            group: vec![key.into()],
            origin,
        })
    }

    /// Drops runs whose window has passed.
    pub(crate) fn sweep(&self, state: &mut SequenceState, watermark: Timestamp) {
        let within = self.within;
        state
            .runs
            .retain(|_, run| run.start.0.saturating_add(within) >= watermark.0);
    }
}

impl SequenceState {
    fn evict(&mut self, stale: i64) {
        self.runs.retain(|_, run| run.start.0 >= stale);
        let len = self.runs.len();
        if len == 0 {
            return;
        }
        let mut times: Vec<i64> = self.runs.values().map(|r| r.last.0).collect();
        let cut = (len / 16).max(1).min(len - 1);
        let (_, nth, _) = times.select_nth_unstable(cut);
        let nth = *nth;
        self.runs.retain(|_, r| r.last.0 > nth);
    }

    /// Runs held.
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }
}
