//! The streaming engine: one pass over events, per-identity state, pluggable detectors, and the
//! scorer that turns their drafts into findings.
//!
//! ## Component model
//!
//! ```text
//! Event ──► Engine::process
//!             │ intern identity and action (nhiwatch_model::Interner: 4-byte Syms)
//!             │ policy entry of the identity (looked up once, cached per identity)
//!             │ action profile under that entry (computed once per (entry, action), cached)
//!             │ entitlement judgement (only the resource constraints are checked per event)
//!             ▼
//!           Observation ──► each Detector::observe ──► Draft (kind, severity, events, detail)
//!                                                        │
//!           Scorer::score (risk 0-100, decision) ◄───────┘
//!             ▼
//!           Finding (stable id, frameworks) ──► caller
//! ```
//!
//! A [`Detector`] owns its per-identity state, indexed by the identity's [`Sym`] (dense from 0,
//! so a `Vec` index, not a hash lookup). It reports *episodes*, not events: findings are grouped
//! per identity while events keep coming within [`EngineConfig::episode_gap`] of each other
//! (see [`crate::episode`]). Open episodes are closed when the stream moves past them
//! ([`Detector::sweep`], run as event time advances) and at the end ([`Detector::flush`]).
//!
//! The usual lens ([`crate::detectors::Usual`]) is one of the standard detectors; by default it
//! starts from an empty baseline and learns as it goes. [`Engine::with_baseline`] starts it from
//! a learned baseline and scores with [`crate::RiskScorer`] (per-identity risk that rises with
//! findings and decays with time). [`Engine::new`] keeps the [`SeverityScorer`]: risk
//! 25/50/75/95 for low/medium/high/critical, and the decision the policy entry sets for that
//! severity (else allow/review/step_up/block); [`Engine::set_scorer`] replaces it.

use std::sync::Arc;

use nhiwatch_model::{
    Decision, Event, Evidence, Finding, FindingKind, Interner, Severity, Sym, Timestamp,
    BASE_FRAMEWORKS,
};
use nhiwatch_policy::{
    ActionProfile, Entry, EntryId, Judgement, Policy, ProfileCache, RequestContext,
};

use crate::attack::Technique;

/// Nanoseconds per second.
pub const SECOND: i64 = 1_000_000_000;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Events of one identity at most this far apart (nanoseconds) belong to one episode and so
    /// to one finding. Default 30 minutes.
    pub episode_gap: i64,
    /// Most events one finding lists; an episode that reaches it is reported and the next event
    /// begins a new one, so memory stays bounded however long a burst lasts. Default 1,000.
    pub max_evidence: usize,
    /// Most workflow sessions followed at once per identity; the least recently active is
    /// dropped beyond it. Default 8.
    pub sessions_per_identity: usize,
    /// How many further events of the stream an episode waits, besides the stream's time
    /// moving a gap past it, before it is closed early. Inputs are rarely in time order (files
    /// read one after another, CloudTrail's records of an hour in any order, test sets with
    /// years between records); this lateness keeps their episodes whole. Default 10,000.
    pub lateness_events: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            episode_gap: 30 * 60 * SECOND,
            max_evidence: 1_000,
            sessions_per_identity: 8,
            lateness_events: 10_000,
        }
    }
}

/// Names the engine knows, for detectors that turn their state into words.
pub struct Names<'n> {
    /// Identity ids.
    pub identities: &'n Interner,
    /// Actions.
    pub actions: &'n Interner,
    /// The policy, when one is loaded.
    pub policy: Option<&'n Policy>,
}

impl Names<'_> {
    /// The policy entry behind an id.
    pub fn entry(&self, id: Option<EntryId>) -> Option<&Entry> {
        self.policy
            .zip(id)
            .and_then(|(policy, id)| policy.entry(id))
    }
}

/// Where the stream stands: the latest event time seen and how many events have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    /// The latest event time seen (the watermark).
    pub time: Timestamp,
    /// Events processed so far, this one included.
    pub events: u64,
    /// Set for an inline decision ([`Engine::decide`]): the sweep is a *preview* of this
    /// identity, not a sweep of the stream. See [`Detector::sweep`].
    pub preview: Option<Sym>,
}

/// One event as the engine presents it to detectors: the event and everything already worked
/// out about it, so that no detector repeats a lookup.
pub struct Observation<'o, 'a> {
    /// The event.
    pub event: &'o Event<'a>,
    /// The identity, interned.
    pub identity: Sym,
    /// The action, interned.
    pub action: Sym,
    /// Whether this is the identity's first event.
    pub first_sight: bool,
    /// The event's position in the stream (1 for the first event).
    pub seq: u64,
    /// The identity's policy entry.
    pub entry: Option<(EntryId, &'o Entry)>,
    /// The action's profile under that entry.
    pub profile: Option<&'o ActionProfile>,
    /// The entitlement lens's judgement of the event.
    pub judgement: Judgement,
    /// Whether detectors may learn from the event: false for an event judged again after a
    /// restart that the learned profiles already hold ([`Engine::replay`]).
    pub learn: bool,
}

impl Observation<'_, '_> {
    /// The entry's id, when the identity has one.
    pub fn entry_id(&self) -> Option<EntryId> {
        self.entry.map(|(id, _)| id)
    }
}

/// A finding as a detector reports it, before scoring.
#[derive(Clone, Debug)]
pub struct Draft {
    /// The identity.
    pub identity: Sym,
    /// Its policy entry, for the scorer.
    pub entry: Option<EntryId>,
    /// What kind of finding.
    pub kind: FindingKind,
    /// How serious.
    pub severity: Severity,
    /// Time of the last event.
    pub time: Timestamp,
    /// One sentence a person can act on.
    pub summary: String,
    /// The events, never empty.
    pub event_ids: Vec<String>,
    /// What was compared.
    pub detail: serde_json::Value,
    /// ATT&CK techniques that apply.
    pub techniques: Vec<&'static Technique>,
}

/// A detector: per-identity state in, grouped drafts out.
pub trait Detector {
    /// A short name, for statistics.
    fn name(&self) -> &'static str;

    /// Looks at one event; pushes a draft for any episode this event closes.
    fn observe(&mut self, obs: &Observation<'_, '_>, names: &Names<'_>, out: &mut Vec<Draft>);

    /// Closes the episodes the stream has left behind: their last event is more than the
    /// episode gap before `at.time`, and the configured lateness of events has passed.
    ///
    /// When `at.preview` names an identity, this is a preview for an inline decision instead:
    /// push a draft for each of that identity's open episodes that the event at position
    /// `at.events` joined, as it would read if it closed now, and close nothing.
    /// [`Episodes::expire`](crate::episode::Episodes::expire) does exactly this, so a detector
    /// that sweeps through it needs no code of its own for previews.
    fn sweep(&mut self, at: StreamPosition, names: &Names<'_>, out: &mut Vec<Draft>);

    /// Closes everything: the input is over.
    fn flush(&mut self, names: &Names<'_>, out: &mut Vec<Draft>);

    /// Bytes of per-identity state held (an estimate of heap and inline sizes).
    fn state_bytes(&self) -> usize;

    /// The learned profiles, for the usual lens: so they can be saved, snapshotted or handed
    /// over between workers.
    fn baseline(&self) -> Option<&nhiwatch_baseline::Baseline> {
        None
    }

    /// A person judged the events `benign` marks benign ([`Engine::vouch`]): a detector that
    /// learns takes what was new in them as usual now. `context` is one identity's events in
    /// time order, the benign ones among them with what came before them in their sessions.
    /// Returns how many new behaviours were learned.
    fn vouch(&mut self, context: &[Observation<'_, '_>], benign: &[bool]) -> usize {
        let _ = (context, benign);
        0
    }
}

/// Turns a draft's severity (and, from issue 5, the identity's history) into risk and decision.
pub trait Scorer {
    /// Risk 0-100 and the decision for a draft.
    fn score(&mut self, draft: &Draft, entry: Option<&Entry>) -> (u8, Decision);

    /// Risk and decision for a preview draft of an inline decision ([`Engine::decide`]): the
    /// same episode may be previewed many times before it closes, so a scorer that keeps
    /// history should not count it here. The default is [`Scorer::score`].
    fn preview(&mut self, draft: &Draft, entry: Option<&Entry>) -> (u8, Decision) {
        self.score(draft, entry)
    }

    /// The identity's risk was `risk` at `time` (nanoseconds) before a restart: a scorer that
    /// keeps history starts from it (unless it already holds a later figure). The default
    /// keeps no history.
    fn resume(&mut self, identity: Sym, risk: u8, time: i64) {
        let _ = (identity, risk, time);
    }

    /// A person judged `finding`, of `identity`, benign: a scorer that keeps history takes
    /// back what it added, once, and returns the identity's risk and decision after. The
    /// default keeps no history and returns `None`.
    fn forgive(&mut self, identity: Sym, finding: &Finding) -> Option<(u8, Decision)> {
        let _ = (identity, finding);
        None
    }
}

/// Risk from severity alone; the decision the policy entry sets for the severity, else the
/// default ladder allow / review / step_up / block.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeverityScorer;

impl SeverityScorer {
    /// The risk figure of a severity.
    pub fn risk(severity: Severity) -> u8 {
        match severity {
            Severity::Low => 25,
            Severity::Medium => 50,
            Severity::High => 75,
            Severity::Critical => 95,
        }
    }

    /// The decision when the policy sets none.
    pub fn default_decision(severity: Severity) -> Decision {
        match severity {
            Severity::Low => Decision::Allow,
            Severity::Medium => Decision::Review,
            Severity::High => Decision::StepUp,
            Severity::Critical => Decision::Block,
        }
    }
}

impl Scorer for SeverityScorer {
    fn score(&mut self, draft: &Draft, entry: Option<&Entry>) -> (u8, Decision) {
        let decision = entry
            .and_then(|e| e.decision(draft.severity))
            .unwrap_or_else(|| Self::default_decision(draft.severity));
        (Self::risk(draft.severity), decision)
    }
}

/// Counts of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events processed.
    pub events: u64,
    /// Distinct identities seen.
    pub identities: usize,
    /// Identities that matched a policy entry.
    pub declared: usize,
    /// Findings emitted.
    pub findings: u64,
    /// Findings per kind, in [`FindingKind::ALL`] order.
    pub per_kind: [u64; FindingKind::ALL.len()],
    /// Cached action profiles: (policy entry, action) pairs judged so far.
    pub profiles: usize,
    /// Distinct profiles those pairs share (entries written from one template share theirs).
    pub distinct_profiles: usize,
}

/// What the lenses say about one proposed action, before it runs: [`Engine::decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// The strictest decision of the findings the action joins; allow when it joins none.
    pub decision: Decision,
    /// The highest risk of those findings; 0 when none.
    pub risk: u8,
    /// The findings the action makes or joins, as they would read if closed now. Their ids
    /// are the ids the findings will have when they are emitted.
    pub findings: Vec<Finding>,
}

/// The streaming engine.
pub struct Engine {
    policy: Option<Arc<Policy>>,
    config: EngineConfig,
    identities: Interner,
    actions: Interner,
    /// The policy entry of each identity, by identity Sym.
    entries: Vec<Option<EntryId>>,
    profiles: ProfileCache,
    detectors: Vec<Box<dyn Detector>>,
    scorer: Box<dyn Scorer>,
    drafts: Vec<Draft>,
    watermark: Timestamp,
    next_sweep: Timestamp,
    next_sweep_events: u64,
    stats: EngineStats,
}

/// Sweep at least this often, in events, so that episodes waiting for their lateness close
/// even while stream time stands still.
const SWEEP_EVERY_EVENTS: u64 = 16_384;

impl Engine {
    /// An engine with the detectors of the permitted and expected lenses
    /// ([`crate::detectors::standard`]) and the [`SeverityScorer`].
    pub fn new(policy: Option<Arc<Policy>>, config: EngineConfig) -> Self {
        let detectors = crate::detectors::standard(policy.as_deref(), &config);
        Engine::with_detectors(policy, config, detectors)
    }

    /// An engine with every lens, the usual lens judging against `baseline` (see
    /// [`crate::detectors::Usual`]), and the per-identity [`crate::RiskScorer`].
    pub fn with_baseline(
        policy: Option<Arc<Policy>>,
        config: EngineConfig,
        baseline: nhiwatch_baseline::Baseline,
        usual: crate::detectors::UsualConfig,
    ) -> Self {
        let lens = crate::detectors::Usual::new(baseline, usual, &config);
        let detectors = crate::detectors::lenses(policy.as_deref(), &config, lens);
        let mut engine = Engine::with_detectors(policy, config, detectors);
        engine.set_scorer(Box::new(crate::RiskScorer::new()));
        engine
    }

    /// An engine with the given detectors.
    pub fn with_detectors(
        policy: Option<Arc<Policy>>,
        config: EngineConfig,
        detectors: Vec<Box<dyn Detector>>,
    ) -> Self {
        Engine {
            policy,
            config,
            identities: Interner::new(),
            actions: Interner::new(),
            entries: Vec::new(),
            profiles: ProfileCache::new(),
            detectors,
            scorer: Box::new(SeverityScorer),
            drafts: Vec::new(),
            watermark: Timestamp(i64::MIN),
            next_sweep: Timestamp(i64::MIN),
            next_sweep_events: SWEEP_EVERY_EVENTS,
            stats: EngineStats::default(),
        }
    }

    /// Adds a detector (issue 5's baseline detectors plug in here).
    pub fn add_detector(&mut self, detector: Box<dyn Detector>) {
        self.detectors.push(detector);
    }

    /// Replaces the scorer.
    pub fn set_scorer(&mut self, scorer: Box<dyn Scorer>) {
        self.scorer = scorer;
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Counts so far.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            identities: self.identities.len(),
            declared: self.entries.iter().filter(|e| e.is_some()).count(),
            profiles: self.profiles.len(),
            distinct_profiles: self.profiles.distinct(),
            ..self.stats.clone()
        }
    }

    /// The usual lens's profiles, as learned so far, when the engine has that lens.
    pub fn baseline(&self) -> Option<&nhiwatch_baseline::Baseline> {
        self.detectors.iter().find_map(|d| d.baseline())
    }

    /// Bytes of per-identity state (detectors' state and the engine's own per-identity slots),
    /// for the memory target: divide by [`EngineStats::identities`].
    pub fn state_bytes(&self) -> usize {
        self.detectors
            .iter()
            .map(|d| d.state_bytes())
            .sum::<usize>()
            + self.entries.capacity() * std::mem::size_of::<Option<EntryId>>()
    }

    /// The identity's symbol, and whether this is its first sight (it is then interned and
    /// its policy entry looked up).
    fn identity(&mut self, id: &str) -> (Sym, bool) {
        match self.identities.get(id) {
            Some(sym) => (sym, false),
            None => {
                let sym = self.identities.intern(id);
                let entry = self.policy.as_deref().and_then(|p| p.entry_for(id));
                self.entries.push(entry);
                (sym, true)
            }
        }
    }

    /// A person judged `finding` benign: what was new in its evidence is learned as usual for
    /// the identity now, instead of waiting for the poisoning guard (which never learns what a
    /// finding was raised on). `context` is the identity's events around the evidence, in time
    /// order, from at least [`nhiwatch_baseline::track::SESSION_GAP`] before its first event,
    /// so that each evidence event has what came before it in its session. Nothing is judged
    /// and no finding is emitted; vouching for the same finding again learns nothing more.
    /// Returns how many new behaviours (actions, transitions, resources, origins, hours) were
    /// learned. See also [`Engine::forgive`].
    pub fn vouch(&mut self, finding: &Finding, context: &[Event<'_>]) -> usize {
        let evidence = &finding.evidence.event_ids;
        let policy = self.policy.clone();
        let mut observations = Vec::with_capacity(context.len());
        let mut benign = Vec::with_capacity(context.len());
        for event in context {
            let (identity, _) = self.identity(&event.identity.id);
            let action = self.actions.intern(&event.action);
            let entry_id = self.entries.get(identity.0 as usize).copied().flatten();
            observations.push(Observation {
                event,
                identity,
                action,
                first_sight: false,
                seq: self.stats.events,
                entry: policy
                    .as_deref()
                    .zip(entry_id)
                    .and_then(|(p, id)| Some((id, p.entry(id)?))),
                profile: None,
                judgement: Judgement::UNJUDGED,
                learn: true,
            });
            benign.push(evidence.iter().any(|id| *id == *event.id));
        }
        self.detectors
            .iter_mut()
            .map(|detector| detector.vouch(&observations, &benign))
            .sum()
    }

    /// Starts the identity's risk from `risk` at `time`, as stored before a restart, so that
    /// a restart is no amnesty ([`Scorer::resume`]).
    pub fn resume_risk(&mut self, identity: &str, risk: u8, time: Timestamp) {
        let (identity, _) = self.identity(identity);
        self.scorer.resume(identity, risk, time.unix_nanos());
    }

    /// A person just judged `finding` benign: the scorer takes the finding's weight back out
    /// of the identity's risk, once ([`Scorer::forgive`]). Returns the identity's risk and
    /// decision after, or `None` when the scorer keeps no history or had forgiven it before.
    pub fn forgive(&mut self, finding: &Finding) -> Option<(u8, Decision)> {
        let (identity, _) = self.identity(&finding.identity);
        self.scorer.forgive(identity, finding)
    }

    /// Processes one event, handing any finding it completes to `emit`. Allocates nothing for an
    /// event that raises nothing (after the identity's and the action's first appearance).
    pub fn process(&mut self, event: &Event<'_>, emit: &mut dyn FnMut(Finding)) {
        self.observe(event, true, emit);
    }

    /// Processes an event again after a restart, as [`Engine::process`] does, to rebuild what
    /// the engine held only in memory (open episodes, sessions, windows, risk). With `learn`
    /// false the event is judged but not learned: the starting baseline already holds it.
    pub fn replay(&mut self, event: &Event<'_>, learn: bool, emit: &mut dyn FnMut(Finding)) {
        self.observe(event, learn, emit);
    }

    fn observe(&mut self, event: &Event<'_>, learn: bool, emit: &mut dyn FnMut(Finding)) {
        self.stats.events += 1;
        let (identity, first_sight) = self.identity(&event.identity.id);
        let policy = self.policy.as_deref();
        let action = self.actions.intern(&event.action);
        let entry_id = self.entries.get(identity.0 as usize).copied().flatten();
        let entry = policy
            .zip(entry_id)
            .and_then(|(p, id)| Some((id, p.entry(id)?)));
        let profile =
            entry.map(|(id, entry)| self.profiles.profile(id, entry, action, &event.action));
        let judgement = match (entry, profile) {
            (Some((_, entry)), Some(profile)) => entry.judge(
                profile,
                event.resource.as_deref(),
                &RequestContext {
                    source_ip: event.src_ip.as_deref(),
                },
            ),
            _ => Judgement::UNJUDGED,
        };
        let obs = Observation {
            event,
            identity,
            action,
            first_sight,
            seq: self.stats.events,
            entry,
            profile,
            judgement,
            learn,
        };
        let names = Names {
            identities: &self.identities,
            actions: &self.actions,
            policy,
        };
        for detector in &mut self.detectors {
            detector.observe(&obs, &names, &mut self.drafts);
        }
        if event.time > self.watermark {
            self.watermark = event.time;
        }
        if self.watermark >= self.next_sweep || self.stats.events >= self.next_sweep_events {
            let at = StreamPosition {
                time: self.watermark,
                events: self.stats.events,
                preview: None,
            };
            for detector in &mut self.detectors {
                detector.sweep(at, &names, &mut self.drafts);
            }
            // Sweeping every half gap of stream time closes an episode at most 1.5 gaps late
            // (once its lateness has passed).
            self.next_sweep = Timestamp(
                self.watermark
                    .0
                    .saturating_add((self.config.episode_gap / 2).max(SECOND)),
            );
            self.next_sweep_events = self.stats.events + SWEEP_EVERY_EVENTS;
        }
        if !self.drafts.is_empty() {
            self.emit_drafts(emit);
        }
    }

    /// Processes one proposed action as [`Engine::process`] does (it is recorded: it moves the
    /// workflow, counts for the identity), then judges it: every open episode of the identity
    /// that this event joined is previewed, scored ([`Scorer::preview`]) and returned, without
    /// being closed. The action is judged as the event describes it; a proposed action should
    /// carry outcome `success`, as if it were carried out.
    pub fn decide(&mut self, event: &Event<'_>, emit: &mut dyn FnMut(Finding)) -> Assessment {
        self.process(event, emit);
        let mut assessment = Assessment {
            decision: Decision::Allow,
            risk: 0,
            findings: Vec::new(),
        };
        let Some(identity) = self.identities.get(&event.identity.id) else {
            return assessment;
        };
        let at = StreamPosition {
            time: self.watermark,
            events: self.stats.events,
            preview: Some(identity),
        };
        let names = Names {
            identities: &self.identities,
            actions: &self.actions,
            policy: self.policy.as_deref(),
        };
        for detector in &mut self.detectors {
            detector.sweep(at, &names, &mut self.drafts);
        }
        let mut drafts = std::mem::take(&mut self.drafts);
        for draft in drafts.drain(..) {
            if let Some(finding) = self.finding(draft, true) {
                assessment.decision = assessment.decision.max(finding.decision);
                assessment.risk = assessment.risk.max(finding.risk);
                assessment.findings.push(finding);
            }
        }
        self.drafts = drafts;
        assessment
    }

    /// Ends the input: closes every open episode.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Finding)) {
        let names = Names {
            identities: &self.identities,
            actions: &self.actions,
            policy: self.policy.as_deref(),
        };
        for detector in &mut self.detectors {
            detector.flush(&names, &mut self.drafts);
        }
        self.emit_drafts(emit);
    }

    fn emit_drafts(&mut self, emit: &mut dyn FnMut(Finding)) {
        let mut drafts = std::mem::take(&mut self.drafts);
        for draft in drafts.drain(..) {
            if let Some(finding) = self.finding(draft, false) {
                emit(finding);
            }
        }
        self.drafts = drafts;
    }

    /// Scores a draft into a finding; a preview is scored as one and not counted.
    fn finding(&mut self, draft: Draft, preview: bool) -> Option<Finding> {
        let Some(first) = draft.event_ids.first() else {
            // A detector bug; a finding without evidence would break the contract.
            debug_assert!(false, "a draft without events");
            return None;
        };
        let policy = self.policy.as_deref();
        let identity = self.identities.resolve(draft.identity).to_owned();
        let entry = policy.zip(draft.entry).and_then(|(p, id)| p.entry(id));
        let (risk, decision) = if preview {
            self.scorer.preview(&draft, entry)
        } else {
            self.scorer.score(&draft, entry)
        };
        let mut frameworks: Vec<String> = BASE_FRAMEWORKS.iter().map(|f| (*f).to_owned()).collect();
        for technique in &draft.techniques {
            let tag = technique.tag();
            if !frameworks.contains(&tag) {
                frameworks.push(tag);
            }
        }
        if !preview {
            self.stats.findings += 1;
            if let Some(slot) = FindingKind::ALL
                .iter()
                .position(|k| *k == draft.kind)
                .and_then(|i| self.stats.per_kind.get_mut(i))
            {
                *slot += 1;
            }
        }
        Some(Finding {
            // Two rules can fire on the same first event: the rule id keeps their ids apart.
            id: match draft.detail.pointer("/rule/id").and_then(|v| v.as_str()) {
                Some(rule) if draft.kind == FindingKind::Rule => {
                    Finding::stable_id(&identity, draft.kind, &format!("{rule}\u{1f}{first}"))
                }
                _ => Finding::stable_id(&identity, draft.kind, first),
            },
            time: draft.time,
            identity,
            kind: draft.kind,
            severity: draft.severity,
            risk,
            decision,
            summary: draft.summary,
            evidence: Evidence {
                event_ids: draft.event_ids,
                detail: draft.detail,
            },
            frameworks,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nhiwatch_model::{Decision, FindingKind, Severity};
    use nhiwatch_policy::Policy;

    use super::{Engine, EngineConfig};
    use crate::detectors::testing::{event, EventExt};

    const AGENT: &str = r#"
identities:
  - match: "coding-agent"
    kind: agent
    allow:
      - action: "tool:read_file"
      - action: "tool:search"
    sensitive: ["tool:get_secret"]
    decision: {high: block, medium: review}
"#;

    fn engine() -> Engine {
        let policy = Policy::parse(AGENT, "policy.yaml", None).unwrap_or_else(|e| panic!("{e}"));
        Engine::new(Some(Arc::new(policy)), EngineConfig::default())
    }

    #[test]
    fn decide_allows_a_permitted_action_and_blocks_an_out_of_scope_one() {
        let mut engine = engine();
        let mut emitted = Vec::new();
        let allowed = engine.decide(
            &event("e1", 0, "coding-agent", "tool:read_file").on("src/main.rs"),
            &mut |f| emitted.push(f),
        );
        assert_eq!(allowed.decision, Decision::Allow);
        assert_eq!(allowed.risk, 0);
        assert!(allowed.findings.is_empty());

        let blocked = engine.decide(
            &event("e2", 1, "coding-agent", "tool:get_secret").on("prod/db-password"),
            &mut |f| emitted.push(f),
        );
        assert_eq!(blocked.decision, Decision::Block);
        let kinds: Vec<_> = blocked.findings.iter().map(|f| f.kind).collect();
        assert!(kinds.contains(&FindingKind::OutOfScope), "{kinds:?}");
        assert!(kinds.contains(&FindingKind::SensitiveAccess), "{kinds:?}");
        let out_of_scope = blocked
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::OutOfScope)
            .unwrap();
        assert_eq!(out_of_scope.severity, Severity::High);
        assert_eq!(out_of_scope.evidence.event_ids, ["e2"]);
        assert_eq!(blocked.risk, out_of_scope.risk);

        // A preview closes nothing and is not counted; the next permitted action joins no
        // finding, and the finding emitted at the end has the id the decision gave.
        assert!(emitted.is_empty());
        assert_eq!(engine.stats().findings, 0);
        let next = engine.decide(&event("e3", 2, "coding-agent", "tool:search"), &mut |f| {
            emitted.push(f)
        });
        assert_eq!(next.decision, Decision::Allow);
        engine.finish(&mut |f| emitted.push(f));
        let closed = emitted
            .iter()
            .find(|f| f.kind == FindingKind::OutOfScope)
            .unwrap();
        assert_eq!(closed.id, out_of_scope.id);
        assert_eq!(engine.stats().events, 3);
    }

    #[test]
    fn a_second_out_of_scope_action_is_judged_with_its_episode() {
        let mut engine = engine();
        let first = engine.decide(
            &event("e1", 0, "coding-agent", "tool:delete_repo").denied("Forbidden"),
            &mut |_| {},
        );
        // Refused by the provider: an attempt, medium.
        assert_eq!(first.decision, Decision::Review);
        let second = engine.decide(
            &event("e2", 1, "coding-agent", "tool:delete_repo"),
            &mut |_| {},
        );
        let out_of_scope = second
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::OutOfScope)
            .unwrap();
        assert_eq!(out_of_scope.evidence.event_ids, ["e1", "e2"]);
        assert_eq!(second.decision, Decision::Block);
    }

    #[test]
    fn a_long_episode_is_previewed_with_its_ends_and_its_full_count() {
        let mut engine = engine();
        let mut last = None;
        for i in 0..40 {
            let id = format!("e{i}");
            last = Some(engine.decide(
                &event(&id, i, "coding-agent", "tool:delete_repo"),
                &mut |_| {},
            ));
        }
        let last = last.unwrap();
        let finding = &last.findings[0];
        let ids = &finding.evidence.event_ids;
        assert_eq!(ids.len(), 16);
        assert_eq!((ids[0].as_str(), ids[15].as_str()), ("e0", "e39"));
        assert!(finding.summary.contains("40 events"), "{}", finding.summary);
        let mut closed = Vec::new();
        engine.finish(&mut |f| closed.push(f));
        assert_eq!(closed[0].evidence.event_ids.len(), 40);
        assert_eq!(closed[0].id, finding.id);
    }
}
