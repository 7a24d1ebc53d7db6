//! Episodes: the events of one identity that belong to one finding.
//!
//! An identity's flagged events form one episode while each comes within the engine's
//! `episode_gap` of the episode's span (events may arrive a little out of order, as CloudTrail
//! delivers them). The first event further away, or one past `max_evidence` events, closes the
//! episode, which the detector then reports as one finding listing every event. Per identity a
//! detector holds at most one open episode, boxed, so an identity with nothing open costs it one
//! pointer.
//!
//! An episode tallies its events per *item*: a distinct (action, detector-specific key), such as
//! an action and the rule it broke, with outcome counts, an example resource and a note. The
//! item list is capped ([`MAX_ITEMS`]); events beyond it are still listed as evidence and counted.

use nhiwatch_model::{ActionClass, Outcome, Source, Sym, Timestamp};
use nhiwatch_policy::EntryId;
use serde_json::{json, Value};

use crate::engine::{Detector, Draft, EngineConfig, Names, Observation, StreamPosition};

/// Most distinct items an episode describes.
pub const MAX_ITEMS: usize = 32;

/// Event ids from each end of a long episode that a preview keeps.
pub const PREVIEW_IDS: usize = 8;

/// One distinct thing an episode's events did.
#[derive(Clone, Debug)]
pub struct Tally {
    /// The action.
    pub action: Sym,
    /// What else tells items apart (a rule, a sensitive item, a kind of deviation).
    pub key: u64,
    /// The action's class.
    pub class: ActionClass,
    /// Events counted.
    pub events: u32,
    /// Of which carried out.
    pub succeeded: u32,
    /// Of which refused by the provider.
    pub denied: u32,
    /// Of which failed otherwise.
    pub errored: u32,
    /// The first resource seen.
    pub example: Option<String>,
    /// The detector's words for this item (the rule broken, the expected step, the error).
    pub note: String,
}

impl Tally {
    /// The item as JSON: action, counts, example resource; the detector adds its own fields.
    pub fn to_json(&self, names: &Names<'_>) -> Value {
        let mut value = json!({
            "action": names.actions.resolve(self.action),
            "class": self.class.as_str(),
            "events": self.events,
            "succeeded": self.succeeded,
            "denied": self.denied,
            "errored": self.errored,
        });
        if let (Some(example), Some(map)) = (&self.example, value.as_object_mut()) {
            map.insert("example_resource".into(), Value::from(example.as_str()));
        }
        value
    }
}

/// One open or closed episode.
#[derive(Clone, Debug)]
pub struct Episode {
    /// The identity's policy entry.
    pub entry: Option<EntryId>,
    /// Where its events come from (the first event's source).
    pub source: Source,
    /// Earliest event time.
    pub start: Timestamp,
    /// Latest event time.
    pub last: Timestamp,
    /// Event ids, in arrival order.
    pub event_ids: Vec<String>,
    /// Distinct items.
    pub items: Vec<Tally>,
    /// Events whose item did not fit in [`MAX_ITEMS`].
    pub untallied: u32,
    /// Stream position of its latest event.
    touched: u64,
    /// Event ids a preview left out of `event_ids` (0 for a real episode).
    elided: usize,
}

impl Episode {
    fn new(obs: &Observation<'_, '_>) -> Self {
        Episode {
            entry: obs.entry_id(),
            source: obs.event.source,
            start: obs.event.time,
            last: obs.event.time,
            event_ids: Vec::new(),
            items: Vec::new(),
            untallied: 0,
            touched: obs.seq,
            elided: 0,
        }
    }

    /// A copy for a preview ([`Episodes::expire`]): every item, but of a long episode's event
    /// ids only the first and the latest [`PREVIEW_IDS`], the rest counted in [`Episode::events`].
    fn preview(&self) -> Episode {
        let ids = &self.event_ids;
        let event_ids = if ids.len() <= 2 * PREVIEW_IDS {
            ids.clone()
        } else {
            let (head, tail) = (&ids[..PREVIEW_IDS], &ids[ids.len() - PREVIEW_IDS..]);
            head.iter().chain(tail).cloned().collect()
        };
        Episode {
            entry: self.entry,
            source: self.source,
            start: self.start,
            last: self.last,
            elided: ids.len() - event_ids.len() + self.elided,
            event_ids,
            items: self.items.clone(),
            untallied: self.untallied,
            touched: self.touched,
        }
    }

    fn admits(&self, time: Timestamp, gap: i64) -> bool {
        time.0 <= self.last.0.saturating_add(gap) && time.0 >= self.start.0.saturating_sub(gap)
    }

    /// Counts the event under the item (`key`, the event's action); `note` makes the item's
    /// words when it is new.
    pub fn tally(&mut self, obs: &Observation<'_, '_>, key: u64, note: impl FnOnce() -> String) {
        let event = obs.event;
        let index = match self
            .items
            .iter()
            .position(|t| t.action == obs.action && t.key == key)
        {
            Some(index) => index,
            None if self.items.len() < MAX_ITEMS => {
                self.items.push(Tally {
                    action: obs.action,
                    key,
                    class: event.action_class,
                    events: 0,
                    succeeded: 0,
                    denied: 0,
                    errored: 0,
                    example: event.resource.as_deref().map(str::to_owned),
                    note: note(),
                });
                self.items.len() - 1
            }
            None => {
                self.untallied += 1;
                return;
            }
        };
        let tally = &mut self.items[index];
        tally.events += 1;
        match event.outcome {
            Outcome::Success => tally.succeeded += 1,
            Outcome::Denied => tally.denied += 1,
            Outcome::Error => tally.errored += 1,
        }
        if tally.example.is_none() {
            tally.example = event.resource.as_deref().map(str::to_owned);
        }
    }

    /// Events in the episode.
    pub fn events(&self) -> usize {
        self.event_ids.len() + self.elided
    }

    /// Events carried out.
    pub fn succeeded(&self) -> u32 {
        self.items.iter().map(|t| t.succeeded).sum()
    }

    /// Whether some item's action changes something (write, delete, permission, exec) and was
    /// carried out (`carried_out`), or at all.
    pub fn changes(&self, carried_out: bool) -> bool {
        self.items.iter().any(|t| {
            matches!(
                t.class,
                ActionClass::Write
                    | ActionClass::Delete
                    | ActionClass::Permission
                    | ActionClass::Exec
            ) && (!carried_out || t.succeeded > 0)
        })
    }

    /// The distinct actions, most frequent first, at most `limit`, joined with `, `.
    pub fn top_actions(&self, names: &Names<'_>, limit: usize) -> String {
        let mut items: Vec<&Tally> = self.items.iter().collect();
        items.sort_by_key(|t| std::cmp::Reverse(t.events));
        let mut actions: Vec<&str> = Vec::new();
        for tally in items {
            let action = names.actions.resolve(tally.action);
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
        let more = actions.len().saturating_sub(limit);
        actions.truncate(limit);
        let mut text = actions.join(", ");
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    }

    /// The episode's time span as JSON.
    pub fn window_json(&self) -> Value {
        json!({
            "start": self.start.to_string(),
            "end": self.last.to_string(),
            "events": self.events(),
            "untallied_events": self.untallied,
        })
    }
}

/// The open episodes of one detector, one per identity at most.
#[derive(Debug)]
pub struct Episodes {
    open: Vec<Option<Box<Episode>>>,
    /// Identities with an open episode, for sweeping without visiting every identity.
    active: Vec<Sym>,
    gap: i64,
    max_evidence: usize,
    lateness: u64,
}

impl Episodes {
    /// Episodes with the engine's settings: they close after the episode gap without a flagged
    /// event (once the lateness has passed), or at `max_evidence` events.
    pub fn new(config: &EngineConfig) -> Self {
        Episodes {
            open: Vec::new(),
            active: Vec::new(),
            gap: config.episode_gap,
            max_evidence: config.max_evidence.max(1),
            lateness: config.lateness_events,
        }
    }

    /// Adds a flagged event to its identity's episode. When the event does not belong to the
    /// open episode, that one is closed and returned, and a new one begins with this event.
    pub fn record(&mut self, obs: &Observation<'_, '_>) -> (Option<Box<Episode>>, &mut Episode) {
        let index = obs.identity.0 as usize;
        if self.open.len() <= index {
            self.open.resize_with(index + 1, || None);
        }
        let slot = &mut self.open[index];
        let fits = slot.as_ref().is_some_and(|episode| {
            episode.admits(obs.event.time, self.gap) && episode.events() < self.max_evidence
        });
        let closed = if fits { None } else { slot.take() };
        if slot.is_none() && closed.is_none() {
            self.active.push(obs.identity);
        }
        let episode = slot.get_or_insert_with(|| Box::new(Episode::new(obs)));
        episode.start = episode.start.min(obs.event.time);
        episode.last = episode.last.max(obs.event.time);
        episode.touched = obs.seq;
        episode.event_ids.push(obs.event.id.to_string());
        (closed, episode)
    }

    /// Adds a flagged event to its identity's episode, counted under the item `key` (`note`
    /// makes the item's words when it is new); returns the episode the event closed, if any.
    pub fn flag(
        &mut self,
        obs: &Observation<'_, '_>,
        key: u64,
        note: impl FnOnce() -> String,
    ) -> Option<Box<Episode>> {
        let (closed, episode) = self.record(obs);
        episode.tally(obs, key, note);
        closed
    }

    /// The identity's open episode.
    pub fn get(&self, identity: Sym) -> Option<&Episode> {
        self.open.get(identity.0 as usize)?.as_deref()
    }

    /// Drops the identity's open episode without reporting it.
    pub fn discard(&mut self, identity: Sym) {
        if let Some(slot) = self.open.get_mut(identity.0 as usize) {
            *slot = None;
        }
    }

    /// Closes every episode the stream has left behind: its last event is more than the gap
    /// before `at.time` and at least the lateness of events ago.
    ///
    /// A preview (`at.preview` set, see [`crate::Detector::sweep`]) closes
    /// nothing: it reports a copy of that identity's open episode when the event at
    /// `at.events` joined it (of a long episode's event ids, only the first and the latest
    /// [`PREVIEW_IDS`]; its count of events stays whole).
    pub fn expire(&mut self, at: StreamPosition, mut report: impl FnMut(Sym, Box<Episode>)) {
        if let Some(identity) = at.preview {
            if let Some(episode) = self.get(identity).filter(|e| e.touched == at.events) {
                report(identity, Box::new(episode.preview()));
            }
            return;
        }
        let (gap, lateness) = (self.gap, self.lateness);
        let open = &mut self.open;
        self.active.retain(|&identity| {
            let Some(slot) = open.get_mut(identity.0 as usize) else {
                return false;
            };
            match slot {
                Some(episode)
                    if episode.last.0.saturating_add(gap) < at.time.0
                        && episode.touched.saturating_add(lateness) <= at.events =>
                {
                    if let Some(episode) = slot.take() {
                        report(identity, episode);
                    }
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
    }

    /// Closes every open episode.
    pub fn drain(&mut self, mut report: impl FnMut(Sym, Box<Episode>)) {
        for identity in self.active.drain(..) {
            if let Some(episode) = self
                .open
                .get_mut(identity.0 as usize)
                .and_then(Option::take)
            {
                report(identity, episode);
            }
        }
    }

    /// Bytes held: one pointer per identity, plus the open episodes.
    pub fn bytes(&self) -> usize {
        let open: usize = self
            .active
            .iter()
            .filter_map(|&i| self.get(i))
            .map(|e| {
                std::mem::size_of::<Episode>()
                    + e.event_ids
                        .iter()
                        .map(|id| id.capacity() + 24)
                        .sum::<usize>()
                    + e.items.capacity() * std::mem::size_of::<Tally>()
                    + e.items
                        .iter()
                        .map(|t| t.note.capacity() + t.example.as_ref().map_or(0, String::capacity))
                        .sum::<usize>()
            })
            .sum();
        self.open.capacity() * std::mem::size_of::<Option<Box<Episode>>>()
            + self.active.capacity() * std::mem::size_of::<Sym>()
            + open
    }
}

/// What makes a detector whose findings are episodes: which events it flags, and how a
/// closed episode reads. [`Grouped`] holds the episodes and makes it a [`Detector`]: closing
/// episodes as the stream moves on and at the end, and accounting for their memory, are the
/// same for every such detector.
pub trait EpisodeRules {
    /// As [`Detector::name`].
    const NAME: &'static str;

    /// The rules' own state, with the engine's settings.
    fn new(config: &EngineConfig) -> Self;

    /// Looks at one event, as [`Detector::observe`], and flags it ([`Flags::flag`]) when it
    /// should be.
    fn observe(&mut self, obs: &Observation<'_, '_>, flags: &mut Flags<'_, '_>);

    /// Words a closed episode as a draft.
    fn report(identity: Sym, episode: Episode, names: &Names<'_>, out: &mut Vec<Draft>);

    /// Bytes of per-identity state the rules hold besides the episodes.
    fn state_bytes(&self) -> usize {
        0
    }
}

/// Where [`EpisodeRules`] flag events: the episodes, and where a closed one is reported.
pub struct Flags<'f, 'n> {
    episodes: &'f mut Episodes,
    /// The names the engine knows.
    pub names: &'f Names<'n>,
    out: &'f mut Vec<Draft>,
    report: fn(Sym, Episode, &Names<'_>, &mut Vec<Draft>),
}

impl Flags<'_, '_> {
    /// Adds a flagged event to its identity's episode under the item `key` (`note` makes the
    /// item's words when it is new), reporting the episode the event closed, if any.
    pub fn flag(&mut self, obs: &Observation<'_, '_>, key: u64, note: impl FnOnce() -> String) {
        if let Some(closed) = self.episodes.flag(obs, key, note) {
            (self.report)(obs.identity, *closed, self.names, self.out);
        }
    }
}

/// A detector made of [`EpisodeRules`] and the [`Episodes`] they flag events into.
#[derive(Debug)]
pub struct Grouped<R> {
    episodes: Episodes,
    rules: R,
}

impl<R: EpisodeRules> Grouped<R> {
    /// A detector with the engine's settings.
    pub fn new(config: &EngineConfig) -> Self {
        Grouped {
            episodes: Episodes::new(config),
            rules: R::new(config),
        }
    }
}

impl<R: EpisodeRules> Detector for Grouped<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, names: &Names<'_>, out: &mut Vec<Draft>) {
        let mut flags = Flags {
            episodes: &mut self.episodes,
            names,
            out,
            report: R::report,
        };
        self.rules.observe(obs, &mut flags);
    }

    fn sweep(&mut self, at: StreamPosition, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.episodes.expire(at, |identity, episode| {
            R::report(identity, *episode, names, out)
        });
    }

    fn flush(&mut self, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.episodes
            .drain(|identity, episode| R::report(identity, *episode, names, out));
    }

    fn state_bytes(&self) -> usize {
        self.episodes.bytes() + self.rules.state_bytes()
    }
}
