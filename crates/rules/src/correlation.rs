//! Sigma correlation rules, evaluated as a stream with bounded memory.
//!
//! Each correlation keeps, per group (the values of its `group-by` fields), only what its
//! condition needs:
//!
//! | type | state per group | fires |
//! |---|---|---|
//! | `event_count` | the times of the last N matches, N the smallest count the condition accepts | when N matches fall within `timespan` |
//! | `value_count` | each distinct value with the time it was last seen | when enough distinct values fall within `timespan` |
//! | `value_sum`, `value_avg` | the values within `timespan` | when the sum or average meets the condition |
//! | `temporal` | per referenced rule, its latest match | when the condition's count of rules (default: all) matched within `timespan` |
//! | `temporal_ordered` | per position, the latest start of a chain reaching it | when the last rule completes a chain begun within `timespan` |
//!
//! A condition with an upper bound (`lt`, `lte`, `eq`, `neq`) on `event_count` or `value_count`
//! cannot be decided while events still arrive, so those count over fixed windows that open at
//! a group's first match and are judged when the stream passes their end. After firing, a
//! group starts afresh. Groups whose matches have all left the timespan are dropped; at most
//! [`Limits::max_groups`] groups are kept per correlation (the least recently matched go
//! first) and at most [`Limits::max_entries`] matches per group (the oldest go first, which can
//! only under-count).

use std::collections::VecDeque;

use nhiwatch_model::Timestamp;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::document::{CorrelationCondition, CorrelationType};
use crate::eval::{Limits, Origin};
use crate::record::{FieldRef, Subject};

/// The condition of a correlation: each given bound must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Threshold {
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    lte: Option<f64>,
    eq: Option<f64>,
    neq: Option<f64>,
}

impl Threshold {
    pub(crate) fn new(c: &CorrelationCondition) -> Threshold {
        Threshold {
            gt: c.gt,
            gte: c.gte,
            lt: c.lt,
            lte: c.lte,
            eq: c.eq,
            neq: c.neq,
        }
    }

    /// At least `n`.
    pub(crate) fn at_least(n: usize) -> Threshold {
        Threshold {
            gte: Some(n as f64),
            ..Threshold::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Threshold::default()
    }

    fn holds(&self, x: f64) -> bool {
        self.gt.is_none_or(|v| x > v)
            && self.gte.is_none_or(|v| x >= v)
            && self.lt.is_none_or(|v| x < v)
            && self.lte.is_none_or(|v| x <= v)
            && self.eq.is_none_or(|v| x == v)
            && self.neq.is_none_or(|v| x != v)
    }

    /// Whether it has an upper bound (only decidable once a window has closed).
    pub(crate) fn bounded_above(&self) -> bool {
        self.lt.is_some() || self.lte.is_some() || self.eq.is_some() || self.neq.is_some()
    }

    /// The smallest whole count that meets the lower bounds.
    fn needed(&self) -> usize {
        let mut n = 1.0f64;
        if let Some(v) = self.gte {
            n = n.max(v.ceil());
        }
        if let Some(v) = self.gt {
            n = n.max(v.floor() + 1.0);
        }
        n.min(usize::MAX as f64) as usize
    }

    /// Distinct values worth keeping in a window: beyond the largest bound, more change nothing.
    fn cap(&self) -> usize {
        [self.gt, self.gte, self.lt, self.lte, self.eq, self.neq]
            .into_iter()
            .flatten()
            .fold(1.0f64, f64::max)
            .min(1e6) as usize
            + 2
    }

    /// The condition as JSON, for findings.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, value) in [
            ("gt", self.gt),
            ("gte", self.gte),
            ("lt", self.lt),
            ("lte", self.lte),
            ("eq", self.eq),
            ("neq", self.neq),
        ] {
            if let Some(v) = value {
                map.insert(name.into(), serde_json::json!(v));
            }
        }
        serde_json::Value::Object(map)
    }
}

/// Where a correlation reads a value from one of its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Getter {
    /// A field of the matched event.
    Field(FieldRef),
    /// One of the group values of a correlation it chains on.
    Group(usize),
}

/// What a correlation reads from a match.
pub(crate) enum Input<'i, 's, 'a> {
    /// An event a detection rule matched.
    Event(&'i Subject<'s, 'a>),
    /// The group values of a correlation that fired.
    Group(&'i [String]),
}

impl Input<'_, '_, '_> {
    fn get(&self, getter: &Getter) -> Option<String> {
        match (self, getter) {
            (Input::Event(subject), Getter::Field(field)) => subject.first_text(field),
            (Input::Group(values), Getter::Group(i)) => values.get(*i).cloned(),
            _ => None,
        }
    }
}

/// A compiled correlation rule.
#[derive(Clone, Debug)]
pub(crate) struct CorrelationDef {
    pub(crate) kind: CorrelationType,
    /// The rules it correlates, by index, in order.
    pub(crate) inputs: Vec<u32>,
    /// The `group-by` names.
    pub(crate) group_names: Vec<Box<str>>,
    /// Per input, how to read each group-by value.
    pub(crate) group: Vec<Vec<Getter>>,
    /// Per input, how to read the condition's `field` values (value_count, value_sum, value_avg).
    pub(crate) value: Vec<Vec<Getter>>,
    /// Nanoseconds.
    pub(crate) timespan: i64,
    pub(crate) threshold: Threshold,
}

/// One firing.
#[derive(Clone, Debug)]
pub(crate) struct Fire {
    pub(crate) time: Timestamp,
    pub(crate) event_ids: Vec<String>,
    pub(crate) group: Vec<String>,
    pub(crate) origin: Origin,
}

enum Data {
    /// event_count, rising: times (and, for the newest, event ids) of the last matches.
    Recent(VecDeque<(Timestamp, Vec<String>)>),
    /// value_count, rising: value → (last seen, its event ids).
    Distinct(FxHashMap<String, (Timestamp, Vec<String>)>),
    /// value_sum / value_avg: values within the timespan.
    Numbers(VecDeque<(Timestamp, f64, Vec<String>)>),
    /// event_count / value_count with an upper bound: a fixed window.
    Window {
        start: Timestamp,
        count: u64,
        distinct: FxHashSet<String>,
        ids: Vec<String>,
    },
    /// temporal: per input, its latest match.
    Temporal(Vec<Option<(Timestamp, Vec<String>)>>),
    /// temporal_ordered: per position, the latest-starting chain that reached it.
    Ordered(Vec<Option<(Timestamp, Vec<String>)>>),
}

struct Group {
    values: Vec<String>,
    last: Timestamp,
    origin: Origin,
    data: Data,
}

/// The state of one correlation.
#[derive(Default)]
pub(crate) struct CorrelationState {
    groups: FxHashMap<Box<str>, Group>,
}

fn push_ids(into: &mut Vec<String>, ids: &[String], limit: usize) {
    for id in ids {
        if into.len() >= limit {
            break;
        }
        if !into.contains(id) {
            into.push(id.clone());
        }
    }
}

impl CorrelationDef {
    fn windowed(&self) -> bool {
        matches!(
            self.kind,
            CorrelationType::EventCount | CorrelationType::ValueCount
        ) && self.threshold.bounded_above()
    }

    fn new_data(&self, time: Timestamp) -> Data {
        if self.windowed() {
            return Data::Window {
                start: time,
                count: 0,
                distinct: FxHashSet::default(),
                ids: Vec::new(),
            };
        }
        match self.kind {
            CorrelationType::EventCount => Data::Recent(VecDeque::new()),
            CorrelationType::ValueCount => Data::Distinct(FxHashMap::default()),
            CorrelationType::ValueSum
            | CorrelationType::ValueAvg
            | CorrelationType::ValuePercentile => Data::Numbers(VecDeque::new()),
            CorrelationType::Temporal => Data::Temporal(vec![None; self.inputs.len()]),
            CorrelationType::TemporalOrdered => Data::Ordered(vec![None; self.inputs.len()]),
        }
    }

    /// Feeds one match of input `position`; returns a firing if the condition is met.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &self,
        state: &mut CorrelationState,
        position: usize,
        input: &Input<'_, '_, '_>,
        time: Timestamp,
        ids: &[String],
        origin: Origin,
        limits: &Limits,
    ) -> Option<Fire> {
        let values: Vec<String> = self
            .group
            .get(position)?
            .iter()
            .map(|g| input.get(g))
            .collect::<Option<_>>()?;
        let value = match self.kind {
            CorrelationType::ValueCount
            | CorrelationType::ValueSum
            | CorrelationType::ValueAvg
            | CorrelationType::ValuePercentile => {
                let parts: Vec<String> = self
                    .value
                    .get(position)?
                    .iter()
                    .map(|g| input.get(g))
                    .collect::<Option<_>>()?;
                Some(parts.join("\u{1f}"))
            }
            _ => None,
        };
        let key: Box<str> = values.join("\u{1f}").into();
        if !state.groups.contains_key(&key) && state.groups.len() >= limits.max_groups {
            state.evict(time.0.saturating_sub(self.timespan));
        }
        let group = state.groups.entry(key.clone()).or_insert_with(|| Group {
            values,
            last: time,
            origin,
            data: self.new_data(time),
        });
        group.last = group.last.max(time);
        group.origin = origin;
        let since = Timestamp(time.0.saturating_sub(self.timespan));
        let evidence = limits.max_evidence;
        let fired_ids = match &mut group.data {
            Data::Recent(recent) => {
                recent.push_back((time, ids.to_vec()));
                while recent.front().is_some_and(|(t, _)| *t < since) {
                    recent.pop_front();
                }
                let keep = self.threshold.needed().min(limits.max_entries);
                while recent.len() > keep {
                    recent.pop_front();
                }
                if recent.len() > evidence {
                    let old = recent.len() - evidence - 1;
                    if let Some(entry) = recent.get_mut(old) {
                        entry.1 = Vec::new();
                    }
                }
                if self.threshold.holds(recent.len() as f64) {
                    let mut out = Vec::new();
                    for (_, ids) in recent.iter().rev() {
                        push_ids(&mut out, ids, evidence);
                    }
                    out.reverse();
                    recent.clear();
                    Some(out)
                } else {
                    None
                }
            }
            Data::Distinct(seen) => {
                let value = value?;
                seen.retain(|_, (t, _)| *t >= since);
                if seen.len() < limits.max_entries || seen.contains_key(&value) {
                    let entry = seen.entry(value).or_insert((time, Vec::new()));
                    entry.0 = entry.0.max(time);
                    if entry.1.is_empty() {
                        entry.1 = ids.to_vec();
                    }
                }
                if self.threshold.holds(seen.len() as f64) {
                    let mut entries: Vec<_> = seen.drain().collect();
                    entries.sort_by_key(|(_, (t, _))| *t);
                    let mut out = Vec::new();
                    for (_, (_, ids)) in &entries {
                        push_ids(&mut out, ids, evidence);
                    }
                    Some(out)
                } else {
                    None
                }
            }
            Data::Numbers(numbers) => {
                let number: f64 = value?.parse().ok()?;
                numbers.push_back((time, number, ids.to_vec()));
                while numbers.front().is_some_and(|(t, _, _)| *t < since)
                    || numbers.len() > limits.max_entries
                {
                    numbers.pop_front();
                }
                let sum: f64 = numbers.iter().map(|(_, n, _)| n).sum();
                let figure = if self.kind == CorrelationType::ValueAvg {
                    sum / numbers.len() as f64
                } else {
                    sum
                };
                if self.threshold.holds(figure) {
                    let mut out = Vec::new();
                    for (_, _, ids) in numbers.iter() {
                        push_ids(&mut out, ids, evidence);
                    }
                    numbers.clear();
                    Some(out)
                } else {
                    None
                }
            }
            Data::Window { start, .. } if time.0 > start.0.saturating_add(self.timespan) => {
                // This match lies past the window: judge the window, then open a new one.
                let closed = self.close(group);
                group.data = self.new_data(time);
                self.add_to_window(group, value, ids, evidence);
                closed.map(|f| f.event_ids)
            }
            Data::Window { .. } => {
                self.add_to_window(group, value, ids, evidence);
                None
            }
            Data::Temporal(slots) => {
                if let Some(slot) = slots.get_mut(position) {
                    *slot = Some((time, ids.to_vec()));
                }
                let fresh = slots
                    .iter()
                    .filter(|s| s.as_ref().is_some_and(|(t, _)| *t >= since))
                    .count();
                if self.threshold.holds(fresh as f64) {
                    let mut out = Vec::new();
                    for (_, ids) in slots.iter().flatten().filter(|(t, _)| *t >= since) {
                        push_ids(&mut out, ids, evidence);
                    }
                    slots.iter_mut().for_each(|s| *s = None);
                    Some(out)
                } else {
                    None
                }
            }
            Data::Ordered(chain) => {
                let candidate = if position == 0 {
                    Some((time, ids.to_vec()))
                } else {
                    chain
                        .get(position - 1)
                        .cloned()
                        .flatten()
                        .filter(|(start, _)| *start >= since)
                        .map(|(start, mut so_far)| {
                            push_ids(&mut so_far, ids, evidence);
                            (start, so_far)
                        })
                };
                if let (Some(candidate), Some(slot)) = (candidate, chain.get_mut(position)) {
                    // Keep the chain that started last: it leaves the most room in the window.
                    if slot.as_ref().is_none_or(|(start, _)| candidate.0 >= *start) {
                        *slot = Some(candidate);
                    }
                }
                if position + 1 == chain.len() {
                    let done = chain.last().cloned().flatten();
                    if done.is_some() {
                        chain.iter_mut().for_each(|s| *s = None);
                    }
                    done.map(|(_, ids)| ids)
                } else {
                    None
                }
            }
        };
        let event_ids = fired_ids?;
        let group = state.groups.get(&key)?;
        Some(Fire {
            time,
            event_ids,
            group: group.values.clone(),
            origin,
        })
    }

    fn add_to_window(
        &self,
        group: &mut Group,
        value: Option<String>,
        ids: &[String],
        evidence: usize,
    ) {
        let cap = self.threshold.cap();
        if let Data::Window {
            count,
            distinct,
            ids: kept,
            ..
        } = &mut group.data
        {
            *count += 1;
            if let Some(value) = value {
                if distinct.len() < cap {
                    distinct.insert(value);
                }
            }
            push_ids(kept, ids, evidence);
        }
    }

    /// Judges a fixed window.
    fn close(&self, group: &Group) -> Option<Fire> {
        let Data::Window {
            start,
            count,
            distinct,
            ids,
        } = &group.data
        else {
            return None;
        };
        let figure = if self.kind == CorrelationType::ValueCount {
            distinct.len() as f64
        } else {
            *count as f64
        };
        (*count > 0 && self.threshold.holds(figure)).then(|| Fire {
            time: group.last.max(*start),
            event_ids: ids.clone(),
            group: group.values.clone(),
            origin: group.origin,
        })
    }

    /// Drops groups the stream has left behind, judging the fixed windows that ended.
    pub(crate) fn sweep(
        &self,
        state: &mut CorrelationState,
        watermark: Timestamp,
        out: &mut Vec<Fire>,
    ) {
        let windowed = self.windowed();
        let timespan = self.timespan;
        state.groups.retain(|_, group| {
            let ended = match &group.data {
                Data::Window { start, .. } => start.0.saturating_add(timespan) < watermark.0,
                _ => group.last.0.saturating_add(timespan) < watermark.0,
            };
            if ended && windowed {
                out.extend(self.close(group));
            }
            !ended
        });
    }

    /// Judges every open window: the input is over.
    pub(crate) fn flush(&self, state: &mut CorrelationState, out: &mut Vec<Fire>) {
        if self.windowed() {
            for group in state.groups.values() {
                out.extend(self.close(group));
            }
        }
        state.groups.clear();
    }
}

impl CorrelationState {
    /// Makes room: drops groups older than `stale`, then the least recently matched sixteenth.
    fn evict(&mut self, stale: i64) {
        self.groups.retain(|_, g| g.last.0 >= stale);
        let len = self.groups.len();
        if len == 0 {
            return;
        }
        let mut times: Vec<i64> = self.groups.values().map(|g| g.last.0).collect();
        let cut = (len / 16).max(1).min(len - 1);
        let (_, nth, _) = times.select_nth_unstable(cut);
        let nth = *nth;
        self.groups.retain(|_, g| g.last.0 > nth);
    }

    /// Groups held.
    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }
}
