//! A partition's detection engine: every lens, as `nhiwatch detect` runs them
//! ([`Engine::with_baseline`]), with the usual lens's profiles reachable for snapshots.
//!
//! The engine owns its detectors as trait objects, so the usual lens is given to it as a handle
//! on a lens this module keeps too. (When `Engine` exposes its lens's baseline itself, this
//! module shrinks to a call of `Engine::with_baseline`.)

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use nhiwatch_baseline::Baseline;
use nhiwatch_detect::detectors::{lenses, Usual, UsualConfig};
use nhiwatch_detect::{
    Detector, Draft, Engine, EngineConfig, Names, Observation, RiskScorer, StreamPosition,
};
use nhiwatch_policy::Policy;

/// The engine and a handle on its usual lens.
pub(crate) struct PartitionEngine {
    /// The engine.
    pub engine: Engine,
    usual: Rc<RefCell<Usual>>,
}

impl PartitionEngine {
    /// Every lens over `policy`, the usual lens starting from `baseline` and learning as it goes.
    pub fn new(policy: Option<Arc<Policy>>, config: EngineConfig, baseline: Baseline) -> Self {
        let usual = Rc::new(RefCell::new(Usual::new(
            baseline,
            UsualConfig::default(),
            &config,
        )));
        let placeholder = Usual::new(Baseline::new(), UsualConfig::default(), &config);
        let name = placeholder.name();
        let mut detectors = lenses(policy.as_deref(), &config, placeholder);
        for detector in &mut detectors {
            if detector.name() == name {
                *detector = Box::new(SharedLens(usual.clone()));
            }
        }
        let mut engine = Engine::with_detectors(policy, config, detectors);
        engine.set_scorer(Box::new(RiskScorer::new()));
        PartitionEngine { engine, usual }
    }

    /// The usual lens's profiles as they stand.
    pub fn baseline(&self) -> Baseline {
        self.usual.borrow().baseline().clone()
    }
}

/// The usual lens, shared with [`PartitionEngine`].
struct SharedLens(Rc<RefCell<Usual>>);

impl Detector for SharedLens {
    fn name(&self) -> &'static str {
        self.0.borrow().name()
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.0.borrow_mut().observe(obs, names, out);
    }

    fn sweep(&mut self, at: StreamPosition, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.0.borrow_mut().sweep(at, names, out);
    }

    fn flush(&mut self, names: &Names<'_>, out: &mut Vec<Draft>) {
        self.0.borrow_mut().flush(names, out);
    }

    fn state_bytes(&self) -> usize {
        self.0.borrow().state_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_model::Event;

    #[test]
    fn finds_what_the_engine_with_a_baseline_finds_and_exposes_its_profiles() {
        let line = |i: u32| {
            format!(
                r#"{{"id":"e{i}","time":"2026-03-02T10:{:02}:00Z","source":"cloudtrail","identity":{{"id":"arn:aws:iam::1:role/r","kind":"role"}},"action":"iam:AttachRolePolicy","action_class":"permission","outcome":"denied","raw":{{}}}}"#,
                i % 60
            )
        };
        let lines: Vec<String> = (0..40).map(line).collect();
        let events: Vec<Event<'_>> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut ours = PartitionEngine::new(None, EngineConfig::default(), Baseline::new());
        let mut theirs = Engine::with_baseline(
            None,
            EngineConfig::default(),
            Baseline::new(),
            UsualConfig::default(),
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for event in &events {
            ours.engine.process(event, &mut |f| a.push(f));
            theirs.process(event, &mut |f| b.push(f));
        }
        ours.engine.finish(&mut |f| a.push(f));
        theirs.finish(&mut |f| b.push(f));
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert!(ours.baseline().get("arn:aws:iam::1:role/r").is_some());
    }
}
