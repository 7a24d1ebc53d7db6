//! Learning profiles from events.

use nhiwatch_model::Event;

use crate::store::Baseline;
use crate::track::Tracker;

/// Builds a [`Baseline`] from a stream of events: every event of an identity is learned into
/// its profile, with transitions per session and activity per window.
#[derive(Debug, Default)]
pub struct Learner {
    baseline: Baseline,
    trackers: Vec<Tracker>,
    events: u64,
}

impl Learner {
    /// A learner starting from nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A learner that adds to an existing baseline (its identities' windows and sessions
    /// start afresh).
    pub fn resume(baseline: Baseline) -> Self {
        let trackers = vec![Tracker::default(); baseline.len()];
        Learner {
            baseline,
            trackers,
            events: 0,
        }
    }

    /// Learns one event.
    pub fn observe(&mut self, event: &Event<'_>) {
        self.events += 1;
        let slot = self.baseline.insert(&event.identity.id);
        if slot >= self.trackers.len() {
            self.trackers.resize_with(slot + 1, Tracker::default);
        }
        let action = crate::hash::key(&event.action);
        self.baseline.name_action(action, &event.action);
        let tracker = &mut self.trackers[slot];
        let f = tracker.features(event, action);
        let step = tracker.step(&f);
        let profile = self.baseline.profile_mut(slot);
        if let Some(window) = step.closed {
            profile.learn_window(&window);
        }
        profile.learn(&f, step.prev);
    }

    /// Events learned so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Closes every open window and returns the baseline.
    pub fn finish(mut self) -> Baseline {
        for (slot, tracker) in self.trackers.iter_mut().enumerate() {
            if let Some(window) = tracker.finish() {
                self.baseline.profile_mut(slot).learn_window(&window);
            }
        }
        self.baseline.shrink();
        self.baseline
    }
}
