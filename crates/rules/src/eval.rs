//! The stateful side of a rule set: correlation groups and sequence runs, fed one event at a
//! time.

use std::sync::Arc;

use nhiwatch_model::{Source, Sym, Timestamp};
use nhiwatch_policy::EntryId;

use crate::correlation::{CorrelationState, Input};
use crate::record::Subject;
use crate::sequence::SequenceState;
use crate::set::{source_slot, Logic, RuleSet};

/// Who a hit belongs to: the identity and its policy entry, as the engine knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The identity.
    pub identity: Sym,
    /// Its policy entry.
    pub entry: Option<EntryId>,
}

/// Bounds on the state rules keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Groups (correlations) or runs (sequences) kept per rule; the least recently active go
    /// first. Default 100,000.
    pub max_groups: usize,
    /// Matches kept per group (event times, distinct values); the oldest go first. Default
    /// 10,000.
    pub max_entries: usize,
    /// Event ids one hit carries. Default 64.
    pub max_evidence: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_groups: 100_000,
            max_entries: 10_000,
            max_evidence: 64,
        }
    }
}

/// A rule that fired: a detection or native event rule on one event, a correlation or
/// sequence on the events that completed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The rule, as an index into [`RuleSet::rules`].
    pub rule: usize,
    /// The time of the last event.
    pub time: Timestamp,
    /// The events, oldest first.
    pub event_ids: Vec<String>,
    /// Who it belongs to: the identity of the last event.
    pub origin: Origin,
    /// For correlations and sequences, the group values (`group-by` fields, or the sequence's
    /// `by` fields).
    pub group: Vec<String>,
}

/// Evaluates a rule set over a stream of events.
pub struct Evaluator {
    set: Arc<RuleSet>,
    limits: Limits,
    correlations: Vec<Option<CorrelationState>>,
    sequences: Vec<Option<SequenceState>>,
    candidates: Vec<u32>,
    steps: Vec<(u32, u16)>,
    parses: [ParseRate; Source::ALL.len()],
}

/// How often recent events of one source needed their record parsed. When most do, keys are
/// read from the parsed record instead of the raw text (which would only add a scan). Every
/// sixteenth event (and each of the first 64) is evaluated without parsing first, to measure.
#[derive(Clone, Copy, Debug, Default)]
struct ParseRate {
    seen: u32,
    sampled: u32,
    parsed: u32,
}

impl ParseRate {
    /// Whether to parse first, and whether this event is a sample.
    fn plan(&mut self) -> (bool, bool) {
        self.seen = self.seen.wrapping_add(1);
        let sample = self.sampled < 64 || self.seen.is_multiple_of(16);
        (!sample && self.parsed * 2 > self.sampled, sample)
    }

    fn record(&mut self, parsed: bool) {
        self.sampled += 1;
        self.parsed += u32::from(parsed);
        if self.sampled >= 1_024 {
            // Forget slowly, so that the choice follows the stream.
            self.sampled /= 2;
            self.parsed /= 2;
        }
    }
}

impl Evaluator {
    /// An evaluator with no state yet.
    pub fn new(set: Arc<RuleSet>, limits: Limits) -> Self {
        let correlations = set
            .logic
            .iter()
            .map(|l| matches!(l, Logic::Correlation(_)).then(CorrelationState::default))
            .collect();
        let sequences = set
            .logic
            .iter()
            .map(|l| matches!(l, Logic::Sequence(_)).then(SequenceState::default))
            .collect();
        Evaluator {
            set,
            limits,
            correlations,
            sequences,
            candidates: Vec::new(),
            steps: Vec::new(),
            parses: [ParseRate::default(); Source::ALL.len()],
        }
    }

    /// The rules.
    pub fn set(&self) -> &Arc<RuleSet> {
        &self.set
    }

    /// Evaluates one event; pushes every rule that fires.
    pub fn process(&mut self, subject: &Subject<'_, '_>, origin: Origin, hits: &mut Vec<Hit>) {
        let Evaluator {
            set,
            limits,
            correlations,
            sequences,
            candidates,
            steps,
            parses,
        } = self;
        let rate = &mut parses[source_slot(subject.source())];
        let (parse_first, sample) = rate.plan();
        set.candidates(subject, candidates, parse_first);
        if candidates.is_empty() {
            if sample {
                rate.record(subject.parsed());
            }
            return;
        }
        steps.clear();
        let mut event_ids: Option<Vec<String>> = None;
        for &m in candidates.iter() {
            if !set.test(m, subject) {
                continue;
            }
            let Some(matcher) = set.matchers.get(m as usize) else {
                continue;
            };
            match set.logic.get(matcher.rule as usize) {
                Some(Logic::Single) => {
                    let ids = event_ids
                        .get_or_insert_with(|| vec![subject.event_id().into_owned()])
                        .clone();
                    signal(
                        set,
                        correlations,
                        limits,
                        matcher.rule as usize,
                        &Input::Event(subject),
                        subject.time(),
                        ids,
                        Vec::new(),
                        origin,
                        hits,
                    );
                }
                Some(Logic::Sequence(_)) => steps.push((matcher.rule, matcher.step)),
                Some(Logic::Correlation(_)) | None => {}
            }
        }
        if sample {
            rate.record(subject.parsed());
        }
        // Later steps first, so that one event advances a run by one step at most.
        steps.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        for &(rule, step) in steps.iter() {
            let (Some(Logic::Sequence(def)), Some(Some(state))) = (
                set.logic.get(rule as usize),
                sequences.get_mut(rule as usize),
            ) else {
                continue;
            };
            if let Some(fire) = def.update(state, usize::from(step), subject, origin, limits) {
                signal(
                    set,
                    correlations,
                    limits,
                    rule as usize,
                    &Input::Group(&fire.group),
                    fire.time,
                    fire.event_ids,
                    fire.group.clone(),
                    fire.origin,
                    hits,
                );
            }
        }
    }

    /// Lets the stream's time pass: drops state that can no longer match and judges the
    /// fixed windows that ended before `watermark`.
    pub fn sweep(&mut self, watermark: Timestamp, hits: &mut Vec<Hit>) {
        self.close(Some(watermark), hits);
    }

    /// Ends the input: judges every open window.
    pub fn flush(&mut self, hits: &mut Vec<Hit>) {
        self.close(None, hits);
    }

    fn close(&mut self, watermark: Option<Timestamp>, hits: &mut Vec<Hit>) {
        let set = Arc::clone(&self.set);
        let mut fires = Vec::new();
        for (rule, logic) in set.logic.iter().enumerate() {
            match (logic, watermark) {
                (Logic::Correlation(def), _) => {
                    let Some(Some(state)) = self.correlations.get_mut(rule) else {
                        continue;
                    };
                    match watermark {
                        Some(watermark) => def.sweep(state, watermark, &mut fires),
                        None => def.flush(state, &mut fires),
                    }
                }
                (Logic::Sequence(def), Some(watermark)) => {
                    if let Some(Some(state)) = self.sequences.get_mut(rule) {
                        def.sweep(state, watermark);
                    }
                }
                _ => {}
            }
            for fire in fires.drain(..) {
                signal(
                    &set,
                    &mut self.correlations,
                    &self.limits,
                    rule,
                    &Input::Group(&fire.group),
                    fire.time,
                    fire.event_ids,
                    fire.group.clone(),
                    fire.origin,
                    hits,
                );
            }
        }
    }

    /// Groups and runs held, over all rules.
    pub fn open_groups(&self) -> usize {
        self.correlations
            .iter()
            .flatten()
            .map(CorrelationState::len)
            .sum::<usize>()
            + self
                .sequences
                .iter()
                .flatten()
                .map(SequenceState::len)
                .sum::<usize>()
    }
}

/// A rule fired: report it if it generates findings, and feed the correlations that use it.
#[allow(clippy::too_many_arguments)]
fn signal(
    set: &RuleSet,
    correlations: &mut [Option<CorrelationState>],
    limits: &Limits,
    rule: usize,
    input: &Input<'_, '_, '_>,
    time: Timestamp,
    event_ids: Vec<String>,
    group: Vec<String>,
    origin: Origin,
    hits: &mut Vec<Hit>,
) {
    for &(consumer, position) in set.consumers.get(rule).map(Vec::as_slice).unwrap_or(&[]) {
        let consumer = consumer as usize;
        let (Some(Logic::Correlation(def)), Some(Some(state))) =
            (set.logic.get(consumer), correlations.get_mut(consumer))
        else {
            continue;
        };
        if let Some(fire) = def.update(state, position, input, time, &event_ids, origin, limits) {
            signal(
                set,
                correlations,
                limits,
                consumer,
                &Input::Group(&fire.group),
                fire.time,
                fire.event_ids,
                fire.group.clone(),
                fire.origin,
                hits,
            );
        }
    }
    if set.rules.get(rule).is_some_and(|r| r.generate) {
        hits.push(Hit {
            rule,
            time,
            event_ids,
            origin,
            group,
        });
    }
}
