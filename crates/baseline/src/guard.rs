//! The poisoning guard: how a profile keeps learning while it is used for detection without an
//! attacker being able to teach it quickly.
//!
//! While detecting, what an event repeats of known behaviour is learned at once (counts of
//! known actions, resources, origins, hours). What is *new* (an action, resource shape or
//! container, network, user-agent family, transition or quiet hour the profile has never
//! seen) waits in a [`Quarantine`]: it joins the profile only once it has been seen on
//! [`GUARD_DAYS`] distinct days, and never if a finding was raised on it. Windows touched by a
//! finding are not learned either ([`crate::track::Tracker::flag_window`]), so rates and
//! volumes cannot be ramped up under cover of an incident.

use crate::features::Features;
use crate::profile::{Feature, Novelty, Profile};

/// Distinct days a new behaviour must be seen on, without a finding, before it joins.
pub const GUARD_DAYS: u8 = 3;
/// Most new behaviours waiting per identity; the one seen least recently leaves first.
pub const MAX_PENDING: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    feature: Feature,
    key: u64,
    /// For hours: the latest hour of the week it was seen in.
    aux: u64,
    last_day: u32,
    days: u8,
    hits: u32,
    flagged: bool,
}

/// New behaviour of one identity waiting to join its profile.
#[derive(Clone, Debug, Default)]
pub struct Quarantine {
    pending: Vec<Pending>,
}

/// The (feature, key, aux) items an event's novelty consists of.
fn items(f: &Features, prev: u64, novelty: &Novelty) -> impl Iterator<Item = (Feature, u64, u64)> {
    let resource = f.resource.unwrap_or_default();
    [
        (novelty.action, Feature::Action, f.action, 0),
        (
            novelty.transition,
            Feature::Transition,
            crate::hash::pair(prev, f.action),
            0,
        ),
        (novelty.shape, Feature::Shape, resource.shape, 0),
        (novelty.container, Feature::Container, resource.container, 0),
        (novelty.network, Feature::Network, f.network, 0),
        (novelty.agent, Feature::Agent, f.agent, 0),
        (
            novelty.hour,
            Feature::Hour,
            u64::from(f.hour_of_day()),
            u64::from(f.hour_of_week),
        ),
    ]
    .into_iter()
    .filter(|item| item.0)
    .map(|(_, feature, key, aux)| (feature, key, aux))
}

/// The key a waiting part joins the profile under: hours wait by hour of the day (any day of
/// the week counts towards the guard) and join as the latest hour of the week seen.
fn profile_key(feature: Feature, key: u64, aux: u64) -> u64 {
    if feature == Feature::Hour {
        aux
    } else {
        key
    }
}

impl Quarantine {
    /// Learns `f` into `profile`: the known parts at once, the new parts (`novelty`) through
    /// the quarantine. A new part seen on its [`GUARD_DAYS`]th distinct day, and never
    /// flagged, joins the profile with every sighting counted.
    pub fn learn(&mut self, profile: &mut Profile, f: &Features, prev: u64, novelty: &Novelty) {
        profile.learn_except(f, prev, novelty);
        for (feature, key, aux) in items(f, prev, novelty) {
            let index = match self
                .pending
                .iter()
                .position(|p| p.feature == feature && p.key == key)
            {
                Some(i) => i,
                None => {
                    if self.pending.len() >= MAX_PENDING {
                        if let Some(oldest) = self
                            .pending
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, p)| (p.last_day, p.hits))
                            .map(|(i, _)| i)
                        {
                            self.pending.swap_remove(oldest);
                        }
                    }
                    self.pending.push(Pending {
                        feature,
                        key,
                        aux,
                        last_day: f.day,
                        days: 1,
                        hits: 0,
                        flagged: false,
                    });
                    self.pending.len() - 1
                }
            };
            let pending = &mut self.pending[index];
            pending.hits = pending.hits.saturating_add(1);
            pending.aux = aux;
            if f.day != pending.last_day {
                pending.last_day = pending.last_day.max(f.day);
                pending.days = pending.days.saturating_add(1);
            }
            if pending.days >= GUARD_DAYS && !pending.flagged {
                let joined = self.pending.swap_remove(index);
                profile.admit(
                    joined.feature,
                    profile_key(joined.feature, joined.key, joined.aux),
                    joined.hits,
                );
            }
        }
    }

    /// A person judged an event benign: its new parts join `profile` now, with the sightings
    /// that waited (at least one), even when a finding was raised on them. Parts the profile
    /// already knows are left alone, so vouching for the same event again changes nothing.
    /// Returns how many parts joined.
    pub fn vouch(&mut self, profile: &mut Profile, f: &Features, prev: u64) -> usize {
        let mut joined = 0;
        // A transition into a new action is judged only once the action is known: a second
        // pass takes it.
        for _ in 0..2 {
            let novelty = profile.novelty(f, prev);
            for (feature, key, aux) in items(f, prev, &novelty) {
                let hits = match self
                    .pending
                    .iter()
                    .position(|p| p.feature == feature && p.key == key)
                {
                    Some(i) => self.pending.swap_remove(i).hits.max(1),
                    None => 1,
                };
                profile.admit(feature, profile_key(feature, key, aux), hits);
                joined += 1;
            }
        }
        joined
    }

    /// Marks the new parts of an event as raised in a finding: they never join.
    pub fn flag(&mut self, f: &Features, prev: u64, novelty: &Novelty) {
        for (feature, key, _) in items(f, prev, novelty) {
            if let Some(p) = self
                .pending
                .iter_mut()
                .find(|p| p.feature == feature && p.key == key)
            {
                p.flagged = true;
            }
        }
    }

    /// New behaviours waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.pending.capacity() * std::mem::size_of::<Pending>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::DAY;
    use crate::track::START;
    use nhiwatch_model::{ActionClass, Outcome};

    fn features(day: u32, action: u64) -> Features {
        Features {
            time: i64::from(day) * DAY + 10 * 3_600_000_000_000,
            day,
            hour_of_week: 10,
            timed: true,
            action,
            class: ActionClass::Read,
            outcome: Outcome::Success,
            resource: None,
            network: 0,
            agent: 0,
            session: 0,
            bytes: 0,
        }
    }

    fn mature() -> Profile {
        let mut profile = Profile::default();
        for day in 0..5 {
            for _ in 0..10 {
                profile.learn(&features(day, 1), START);
            }
        }
        assert!(profile.is_mature());
        profile
    }

    #[test]
    fn new_behaviour_joins_after_three_days() {
        let mut profile = mature();
        let mut quarantine = Quarantine::default();
        for day in 10..13 {
            for _ in 0..50 {
                let f = features(day, 2);
                let novelty = profile.novelty(&f, START);
                if day < 12 {
                    assert!(novelty.action, "day {day}: still new");
                }
                quarantine.learn(&mut profile, &f, START, &novelty);
            }
        }
        assert!(profile.knows(Feature::Action, 2));
        assert_eq!(
            profile.actions.get(2),
            Some(150),
            "every sighting counted once joined"
        );
        assert_eq!(
            quarantine.len(),
            1,
            "the transition into the new action waits on its own"
        );
    }

    #[test]
    fn a_burst_on_one_day_does_not_teach_the_profile() {
        let mut profile = mature();
        let mut quarantine = Quarantine::default();
        for _ in 0..10_000 {
            let f = features(10, 3);
            let novelty = profile.novelty(&f, START);
            quarantine.learn(&mut profile, &f, START, &novelty);
        }
        assert!(!profile.knows(Feature::Action, 3));
        assert_eq!(profile.events, 10_050, "the event itself is counted");
    }

    #[test]
    fn flagged_behaviour_never_joins() {
        let mut profile = mature();
        let mut quarantine = Quarantine::default();
        for day in 10..20 {
            let f = features(day, 4);
            let novelty = profile.novelty(&f, START);
            quarantine.learn(&mut profile, &f, START, &novelty);
            if day == 10 {
                quarantine.flag(&f, START, &novelty);
            }
        }
        assert!(!profile.knows(Feature::Action, 4));
    }

    #[test]
    fn vouched_behaviour_joins_at_once_even_when_flagged() {
        let mut profile = mature();
        let mut quarantine = Quarantine::default();
        let mut f = features(10, 5);
        f.hour_of_week = 3 * 24 + 3;
        let (prev, novelty) = (1, profile.novelty(&f, 1));
        assert!(novelty.action && novelty.hour);
        for _ in 0..4 {
            quarantine.learn(&mut profile, &f, prev, &novelty);
        }
        quarantine.flag(&f, prev, &novelty);
        let joined = quarantine.vouch(&mut profile, &f, prev);
        assert_eq!(joined, 3, "the action, the transition into it, the hour");
        assert_eq!(profile.actions.get(5), Some(4), "the sightings that waited");
        assert!(profile.knows(Feature::Transition, crate::hash::pair(1, 5)));
        assert_eq!(profile.novelty(&f, prev), Novelty::default());
        assert!(quarantine.is_empty());
        assert_eq!(
            quarantine.vouch(&mut profile, &f, prev),
            0,
            "vouching again changes nothing"
        );
        assert_eq!(profile.actions.get(5), Some(4));
    }
}
