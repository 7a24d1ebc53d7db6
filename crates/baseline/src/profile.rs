//! One identity's profile: what is usual for it, learned from its events.

use nhiwatch_model::Outcome;
use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::hash::tagged;
use crate::sketch::{Bloom, CountMap, DaySet, Histogram};
use crate::track::{WindowStats, START};

/// Capacities of a profile's count maps: together with the fixed parts they keep a profile
/// under 16 KiB however busy the identity (see [`Profile::bytes`]).
pub mod cap {
    /// Distinct actions counted.
    pub const ACTIONS: usize = 128;
    /// Distinct action transitions counted.
    pub const TRANSITIONS: usize = 256;
    /// Distinct predecessors counted.
    pub const DEPARTURES: usize = 128;
    /// Distinct resource containers counted.
    pub const CONTAINERS: usize = 32;
    /// Distinct resource shapes counted.
    pub const SHAPES: usize = 64;
    /// Distinct source networks counted.
    pub const NETWORKS: usize = 16;
    /// Distinct user-agent families counted.
    pub const AGENTS: usize = 16;
}

/// Which feature a key belongs to (tags keys in the shared membership filter and in the
/// quarantine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Feature {
    /// An action.
    Action,
    /// A resource shape.
    Shape,
    /// A resource container.
    Container,
    /// A source network.
    Network,
    /// A user-agent family.
    Agent,
    /// An action transition (key: [`crate::hash::pair`] of the two actions).
    Transition,
    /// An hour of the day (key: the hour, 0-23).
    Hour,
}

impl Feature {
    fn tag(self) -> u8 {
        match self {
            Feature::Action => 1,
            Feature::Shape => 2,
            Feature::Container => 3,
            Feature::Network => 4,
            Feature::Agent => 5,
            Feature::Transition => 6,
            Feature::Hour => 7,
        }
    }
}

/// What is new about an event for a profile: the keys it has never seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Novelty {
    /// The action is new.
    pub action: bool,
    /// The resource's shape is new.
    pub shape: bool,
    /// The resource's container is new.
    pub container: bool,
    /// The source network is new.
    pub network: bool,
    /// The user-agent family is new.
    pub agent: bool,
    /// The transition from the previous action is new (both actions known).
    pub transition: bool,
    /// The hour of the day is one the identity is (almost) never active in.
    pub hour: bool,
}

impl Novelty {
    /// Whether anything is new.
    pub fn any(&self) -> bool {
        self.action
            || self.shape
            || self.container
            || self.network
            || self.agent
            || self.transition
            || self.hour
    }
}

/// Share of an identity's activity below which an hour of the day counts as unusual.
pub const QUIET_HOUR_SHARE: f64 = 0.002;

/// A profile needs this many events ...
pub const MATURE_EVENTS: u64 = 30;
/// ... on this many distinct days before anything is judged against it.
pub const MATURE_DAYS: usize = 3;

/// What is usual for one identity (or, merged, for a peer group).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Earliest event time, nanoseconds since the epoch (`i64::MAX` when empty).
    pub first_seen: i64,
    /// Latest event time (`i64::MIN` when empty).
    pub last_seen: i64,
    /// Events learned.
    pub events: u64,
    /// Of which the provider refused.
    pub denied: u64,
    /// Of which failed otherwise.
    pub errors: u64,
    /// Distinct days of activity (the latest 64).
    pub days: DaySet,
    /// Events per action.
    pub actions: CountMap,
    /// Transitions per (previous action, action) pair, session starts included.
    pub transitions: CountMap,
    /// Transitions per previous action (the Markov chain's row totals).
    pub departures: CountMap,
    /// Events per resource container.
    pub containers: CountMap,
    /// Events per resource shape.
    pub shapes: CountMap,
    /// Events that named a resource.
    pub resourced: u64,
    /// Events per source network.
    pub networks: CountMap,
    /// Events per user-agent family.
    pub agents: CountMap,
    /// Events that had a source address.
    pub addressed: u64,
    /// Events that had a user agent.
    pub agented: u64,
    /// Events per hour of the week (168 counts, Monday 00:00 UTC first).
    pub hours: Vec<u32>,
    /// Events counted in `hours`.
    pub timed: u64,
    /// Events per active window.
    pub rate: Histogram,
    /// Bytes sent out per active window.
    pub volume: Histogram,
    /// Distinct lookup targets per active window.
    pub targets: Histogram,
    /// Every key ever seen, of every feature (membership never forgets, unlike the counts).
    pub seen: Bloom,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            first_seen: i64::MAX,
            last_seen: i64::MIN,
            events: 0,
            denied: 0,
            errors: 0,
            days: DaySet::default(),
            actions: CountMap::default(),
            transitions: CountMap::default(),
            departures: CountMap::default(),
            containers: CountMap::default(),
            shapes: CountMap::default(),
            resourced: 0,
            networks: CountMap::default(),
            agents: CountMap::default(),
            addressed: 0,
            agented: 0,
            hours: vec![0; 168],
            timed: 0,
            rate: Histogram::default(),
            volume: Histogram::default(),
            targets: Histogram::default(),
            seen: Bloom::default(),
        }
    }
}

impl Profile {
    /// Whether there is enough history to judge against ([`MATURE_EVENTS`] events on
    /// [`MATURE_DAYS`] days).
    pub fn is_mature(&self) -> bool {
        self.events >= MATURE_EVENTS && self.days.len() >= MATURE_DAYS
    }

    /// Whether the profile has ever seen `key` of `feature`.
    #[inline]
    pub fn knows(&self, feature: Feature, key: u64) -> bool {
        self.seen.contains(tagged(feature.tag(), key))
    }

    /// What is new about an event whose previous action in its session was `prev`.
    pub fn novelty(&self, f: &Features, prev: u64) -> Novelty {
        let action = !self.knows(Feature::Action, f.action);
        let (shape, container) = match f.resource {
            Some(r) => (
                !self.knows(Feature::Shape, r.shape),
                !self.knows(Feature::Container, r.container),
            ),
            None => (false, false),
        };
        let prev_known = prev == START || self.knows(Feature::Action, prev);
        Novelty {
            action,
            shape,
            container,
            network: f.network != 0 && !self.knows(Feature::Network, f.network),
            agent: f.agent != 0 && !self.knows(Feature::Agent, f.agent),
            transition: !action
                && prev_known
                && !self.knows(Feature::Transition, crate::hash::pair(prev, f.action)),
            hour: f.timed && self.quiet(f.hour_of_week),
        }
    }

    /// Whether an hour of the week falls in a quiet hour of the day ([`Profile::hour_share`]
    /// below [`QUIET_HOUR_SHARE`]); the common case, an hour the identity is busy in, is told
    /// from its own count.
    #[inline]
    fn quiet(&self, hour_of_week: u8) -> bool {
        let own = self
            .hours
            .get(usize::from(hour_of_week))
            .copied()
            .unwrap_or(0);
        if self.timed == 0 || own as f64 >= QUIET_HOUR_SHARE * self.timed as f64 {
            return false;
        }
        self.hour_share(hour_of_week % 24) < QUIET_HOUR_SHARE
    }

    /// Learns one event whole.
    pub fn learn(&mut self, f: &Features, prev: u64) {
        self.learn_except(f, prev, &Novelty::default());
    }

    /// Learns one event except the parts `held` marks (they wait in quarantine).
    pub fn learn_except(&mut self, f: &Features, prev: u64, held: &Novelty) {
        self.first_seen = self.first_seen.min(f.time);
        self.last_seen = self.last_seen.max(f.time);
        self.events += 1;
        match f.outcome {
            Outcome::Success => {}
            Outcome::Denied => self.denied += 1,
            Outcome::Error => self.errors += 1,
        }
        self.days.add(f.day);
        if !held.action {
            self.admit(Feature::Action, f.action, 1);
        }
        self.departures.add(prev, 1, cap::DEPARTURES);
        if !held.action && !held.transition {
            self.admit(Feature::Transition, crate::hash::pair(prev, f.action), 1);
        }
        if let Some(r) = f.resource {
            self.resourced += 1;
            if !held.container {
                self.admit(Feature::Container, r.container, 1);
            }
            if !held.shape {
                self.admit(Feature::Shape, r.shape, 1);
            }
        }
        if f.network != 0 {
            self.addressed += 1;
            if !held.network {
                self.admit(Feature::Network, f.network, 1);
            }
        }
        if f.agent != 0 {
            self.agented += 1;
            if !held.agent {
                self.admit(Feature::Agent, f.agent, 1);
            }
        }
        if f.timed && !held.hour {
            self.admit(Feature::Hour, u64::from(f.hour_of_week), 1);
        }
    }

    /// Adds `count` events of one key of one feature (for [`Feature::Hour`], the key is the
    /// hour of the week).
    pub fn admit(&mut self, feature: Feature, key: u64, count: u32) {
        let map = match feature {
            Feature::Action => Some((&mut self.actions, cap::ACTIONS)),
            Feature::Transition => Some((&mut self.transitions, cap::TRANSITIONS)),
            Feature::Container => Some((&mut self.containers, cap::CONTAINERS)),
            Feature::Shape => Some((&mut self.shapes, cap::SHAPES)),
            Feature::Network => Some((&mut self.networks, cap::NETWORKS)),
            Feature::Agent => Some((&mut self.agents, cap::AGENTS)),
            Feature::Hour => None,
        };
        match map {
            Some((map, capacity)) => {
                // A key the map holds was recorded in the filter when it was added.
                if map.add(key, count, capacity) {
                    self.seen.insert(tagged(feature.tag(), key));
                }
            }
            None => {
                if let Some(slot) = self.hours.get_mut(key as usize) {
                    *slot = slot.saturating_add(count);
                    self.timed += u64::from(count);
                }
            }
        }
    }

    /// Learns a closed window (unless a finding touched it).
    pub fn learn_window(&mut self, window: &WindowStats) {
        if window.flagged {
            return;
        }
        self.rate.add(u64::from(window.events));
        self.volume.add(window.bytes);
        self.targets.add(u64::from(window.targets));
    }

    /// Adds everything `other` learned: the profile of the union of both event sets (exactly
    /// for counters, days, hours, histograms and membership; up to the count maps' capacity
    /// for counts).
    pub fn merge(&mut self, other: &Profile) {
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.events += other.events;
        self.denied += other.denied;
        self.errors += other.errors;
        self.days.merge(&other.days);
        self.actions.merge(&other.actions, cap::ACTIONS);
        self.transitions.merge(&other.transitions, cap::TRANSITIONS);
        self.departures.merge(&other.departures, cap::DEPARTURES);
        self.containers.merge(&other.containers, cap::CONTAINERS);
        self.shapes.merge(&other.shapes, cap::SHAPES);
        self.resourced += other.resourced;
        self.networks.merge(&other.networks, cap::NETWORKS);
        self.agents.merge(&other.agents, cap::AGENTS);
        self.addressed += other.addressed;
        self.agented += other.agented;
        for (a, b) in self.hours.iter_mut().zip(&other.hours) {
            *a = a.saturating_add(*b);
        }
        self.timed += other.timed;
        self.rate.merge(&other.rate);
        self.volume.merge(&other.volume);
        self.targets.merge(&other.targets);
        self.seen.merge(&other.seen);
    }

    /// Good-Turing's estimate of how often this identity does something new with a feature:
    /// keys seen exactly once over events that had the feature (1 when there are none, or when
    /// the membership filter is saturated and novelty cannot be told). A novel key is only
    /// surprising when this is small.
    pub fn novelty_rate(&self, feature: Feature) -> f64 {
        if self.seen.saturated() {
            return 1.0;
        }
        let (map, events) = match feature {
            Feature::Action => (&self.actions, self.events),
            Feature::Transition => (&self.transitions, self.events),
            Feature::Shape => (&self.shapes, self.resourced),
            Feature::Container => (&self.containers, self.resourced),
            Feature::Network => (&self.networks, self.addressed),
            Feature::Agent => (&self.agents, self.agented),
            Feature::Hour => return 0.0,
        };
        if events == 0 {
            return 1.0;
        }
        // Keys evicted from a full map were rare: count their weight as singletons too.
        (map.singletons() as f64 + map.evicted() as f64) / events as f64
    }

    /// The smoothed probability of `next` after `prev` (additive smoothing, α = 0.5, over the
    /// known actions and one unseen), with the figures it is made of: (probability, pair
    /// count, row total).
    pub fn transition(&self, prev: u64, next: u64) -> (f64, u32, u32) {
        const ALPHA: f64 = 0.5;
        let count = self
            .transitions
            .get(crate::hash::pair(prev, next))
            .unwrap_or(0);
        let row = self.departures.get(prev).unwrap_or(0);
        let vocabulary = self.actions.len() as f64 + 1.0;
        let p = (f64::from(count) + ALPHA) / (f64::from(row) + ALPHA * vocabulary);
        (p, count, row)
    }

    /// Share of the identity's timed events near an hour of the day: the hour itself, the
    /// hours either side at half weight and the hours two away at a quarter, over all days of
    /// the week. An hour is quiet ([`QUIET_HOUR_SHARE`]) only when nothing happens within two
    /// hours of it, so the rare late or early run of a busy identity is not unusual.
    pub fn hour_share(&self, hour_of_day: u8) -> f64 {
        let total = self.timed;
        if total == 0 {
            return 1.0;
        }
        let h = u32::from(hour_of_day % 24);
        let at = |offset: u32| self.hour_events(((h + offset) % 24) as u8) as f64;
        let near = at(0) + 0.5 * (at(23) + at(1)) + 0.25 * (at(22) + at(2));
        near / total as f64
    }

    /// Events in an hour of the day over all days of the week.
    pub fn hour_events(&self, hour_of_day: u8) -> u64 {
        (0..7)
            .map(|d| u64::from(self.hours[d * 24 + usize::from(hour_of_day % 24)]))
            .sum()
    }

    /// The hours of the day holding most of the activity, as `HH-HH` ranges (for
    /// explanations).
    pub fn usual_hours(&self) -> String {
        let mut active = [false; 24];
        for (h, slot) in active.iter_mut().enumerate() {
            *slot = self.timed > 0 && self.hour_share(h as u8) >= QUIET_HOUR_SHARE;
        }
        let mut ranges = Vec::new();
        let mut h = 0;
        while h < 24 {
            if active[h] {
                let start = h;
                while h < 24 && active[h] {
                    h += 1;
                }
                ranges.push(format!("{start:02}:00-{h:02}:00"));
            } else {
                h += 1;
            }
        }
        if ranges.is_empty() {
            "none".into()
        } else {
            ranges.join(", ")
        }
    }

    /// Share of events the provider refused.
    pub fn denied_ratio(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.denied as f64 / self.events as f64
        }
    }

    /// Bytes held (inline and heap): the per-identity memory figure.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Profile>()
            + self.days.bytes()
            + self.actions.bytes()
            + self.transitions.bytes()
            + self.departures.bytes()
            + self.containers.bytes()
            + self.shapes.bytes()
            + self.networks.bytes()
            + self.agents.bytes()
            + self.hours.capacity() * 4
            + self.rate.bytes()
            + self.volume.bytes()
            + self.targets.bytes()
            + self.seen.bytes()
    }

    /// Gives back spare capacity (after learning, before keeping many profiles).
    pub fn shrink(&mut self) {
        self.days.shrink();
        for map in [
            &mut self.actions,
            &mut self.transitions,
            &mut self.departures,
            &mut self.containers,
            &mut self.shapes,
            &mut self.networks,
            &mut self.agents,
        ] {
            map.shrink();
        }
        for histogram in [&mut self.rate, &mut self.volume, &mut self.targets] {
            histogram.shrink();
        }
    }

    /// Whether the profile's parts are well-formed (a loaded file is checked).
    pub(crate) fn is_valid(&self) -> bool {
        self.hours.len() == 168
            && self.seen.is_valid()
            && self.days.is_valid()
            && self.actions.is_valid(cap::ACTIONS)
            && self.transitions.is_valid(cap::TRANSITIONS)
            && self.departures.is_valid(cap::DEPARTURES)
            && self.containers.is_valid(cap::CONTAINERS)
            && self.shapes.is_valid(cap::SHAPES)
            && self.networks.is_valid(cap::NETWORKS)
            && self.agents.is_valid(cap::AGENTS)
            && self.rate.is_valid()
            && self.volume.is_valid()
            && self.targets.is_valid()
    }
}
