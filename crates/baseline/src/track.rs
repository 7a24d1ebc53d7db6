//! Per-identity streaming state shared by learning and detection: which action came before
//! this one in its session (for transitions) and the current activity window (for rate,
//! volume and enumeration).

use nhiwatch_model::Event;

use crate::features::{Features, OriginCache};

/// Nanoseconds per minute.
const MINUTE: i64 = 60 * 1_000_000_000;
/// A session with no event for this long has ended; the next event starts a new one.
pub const SESSION_GAP: i64 = 30 * MINUTE;
/// Length of an activity window (tumbling, aligned to the epoch).
pub const WINDOW: i64 = 15 * MINUTE;
/// The pseudo-action before a session's first action.
pub const START: u64 = 0x5354_4152_545f_5345;
/// Sessions followed at once per identity (interleaved runs keep their own predecessor).
const SESSIONS: usize = 4;
/// Most distinct lookup targets a window tells apart.
pub const MAX_TARGETS: usize = 128;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    session: u64,
    last: u64,
    time: i64,
}

/// What one window held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Events.
    pub events: u32,
    /// Bytes sent out.
    pub bytes: u64,
    /// Distinct (action, resource) pairs read or listed (at most [`MAX_TARGETS`]).
    pub targets: u32,
    /// Whether a finding touched the window (it is then not learned).
    pub flagged: bool,
}

/// The window being filled.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Window number (event time / [`WINDOW`]).
    pub index: i64,
    /// Counts so far.
    pub stats: WindowStats,
    targets: Vec<u64>,
}

impl Window {
    fn close(&mut self, index: i64) -> Option<WindowStats> {
        let closed = (self.stats.events > 0).then_some(self.stats);
        self.index = index;
        self.stats = WindowStats::default();
        self.targets.clear();
        closed
    }
}

/// One identity's streaming state.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    sessions: [Slot; SESSIONS],
    window: Window,
    origins: OriginCache,
}

/// What [`Tracker::step`] worked out for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The action before this one in its session, or [`START`].
    pub prev: u64,
    /// The window this event closed, if it began a new one.
    pub closed: Option<WindowStats>,
}

impl Tracker {
    /// The features of one of this identity's events (see [`Features::of_cached`]).
    #[inline]
    pub fn features(&mut self, event: &Event<'_>, action: u64) -> Features {
        Features::of_cached(event, action, &mut self.origins)
    }

    /// Advances the state by one event.
    #[inline]
    pub fn step(&mut self, f: &Features) -> Step {
        let prev = self.session_step(f);
        let closed = if f.timed { self.window_step(f) } else { None };
        Step { prev, closed }
    }

    fn session_step(&mut self, f: &Features) -> u64 {
        let slot = match self
            .sessions
            .iter()
            .position(|s| s.last != 0 && s.session == f.session)
        {
            Some(i) => i,
            None => {
                // The least recently active slot (empty slots have time 0... and last 0).
                let i = self
                    .sessions
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| (s.last != 0, s.time))
                    .map_or(0, |(i, _)| i);
                self.sessions[i] = Slot {
                    session: f.session,
                    last: 0,
                    time: f.time,
                };
                i
            }
        };
        let slot = &mut self.sessions[slot];
        let prev = if slot.last == 0 || f.time.saturating_sub(slot.time) > SESSION_GAP {
            START
        } else {
            slot.last
        };
        slot.last = f.action;
        slot.time = slot.time.max(f.time);
        prev
    }

    fn window_step(&mut self, f: &Features) -> Option<WindowStats> {
        let index = f.time.div_euclid(WINDOW);
        let closed = if index > self.window.index {
            self.window.close(index)
        } else {
            // A late event counts in the current window: close enough for rates.
            None
        };
        let stats = &mut self.window.stats;
        stats.events = stats.events.saturating_add(1);
        stats.bytes = stats.bytes.saturating_add(f.bytes);
        if f.is_lookup() {
            let target = crate::hash::pair(f.action, f.resource.map_or(0, |r| r.exact));
            let targets = &mut self.window.targets;
            if targets.len() < MAX_TARGETS && !targets.contains(&target) {
                targets.push(target);
                stats.targets = targets.len() as u32;
            }
        }
        closed
    }

    /// The window being filled.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Marks the current window as touched by a finding, so it is not learned.
    pub fn flag_window(&mut self) {
        self.window.stats.flagged = true;
    }

    /// Closes the current window (the input is over).
    pub fn finish(&mut self) -> Option<WindowStats> {
        let index = self.window.index;
        self.window.close(index)
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.window.targets.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_model::{ActionClass, Outcome};

    fn features(minute: i64, session: u64, action: u64) -> Features {
        Features {
            time: minute * MINUTE,
            day: 0,
            hour_of_week: 0,
            timed: true,
            action,
            class: ActionClass::List,
            outcome: Outcome::Success,
            resource: None,
            network: 0,
            agent: 0,
            session,
            bytes: 10,
        }
    }

    #[test]
    fn sessions_keep_their_own_predecessor() {
        let mut t = Tracker::default();
        assert_eq!(t.step(&features(0, 1, 10)).prev, START);
        assert_eq!(t.step(&features(1, 2, 20)).prev, START);
        assert_eq!(t.step(&features(2, 1, 11)).prev, 10);
        assert_eq!(t.step(&features(3, 2, 21)).prev, 20);
        assert_eq!(t.step(&features(60, 1, 12)).prev, START, "after the gap");
    }

    #[test]
    fn windows_close_when_time_moves_on() {
        let mut t = Tracker::default();
        assert_eq!(t.step(&features(0, 1, 10)).closed, None);
        t.step(&features(1, 1, 10));
        t.step(&features(2, 1, 11));
        let closed = t.step(&features(16, 1, 10)).closed.expect("closed");
        assert_eq!((closed.events, closed.bytes, closed.targets), (3, 30, 2));
        assert_eq!(t.finish().map(|w| w.events), Some(1));
        assert_eq!(t.finish(), None);
    }
}
