//! Benign marks teach the engine. When a person marks a finding benign in the web UI
//! ([`nhiwatch_ui::BenignHook`]), its evidence, with the identity's events before it in their
//! sessions, is read from the evidence store and queued to the engine thread, whose usual lens
//! learns what was new in it as usual for the identity, and whose risk scorer takes the
//! finding's weight back out of the identity's risk ([`nhiwatch_detect::Engine::vouch`]); the
//! lower risk is recorded as a risk point at the time of the mark.
//! The UI hands every benign finding over again at start, so a mark made after the last
//! snapshot of the learned profiles survives a crash; learning the same evidence twice changes
//! nothing.

use std::sync::Arc;

use nhiwatch_baseline::track::SESSION_GAP;
use nhiwatch_model::{Event, Finding, Timestamp};
use nhiwatch_store::{Store, StoreError};
use nhiwatch_ui::Benign;
use tokio::sync::mpsc;

/// Benign findings waiting for the engine; a full queue makes the marking request wait.
pub(crate) const QUEUE: usize = 64;

/// Evidence events learned from one benign finding, at most (an episode keeps its first and
/// latest events when it grows long).
const MAX_EVIDENCE: usize = 1_000;

/// One benign finding, with its evidence, for the engine to learn and forgive.
pub(crate) struct VouchJob {
    /// The finding.
    pub finding: Finding,
    /// Whether a person has just marked it: its weight is then taken out of the identity's
    /// risk. At start the mark is only learned again (a restarted scorer holds no risk of it).
    pub forgive: bool,
    /// The identity's events from a session gap before the first evidence event to the last,
    /// in time order.
    pub context: Vec<Event<'static>>,
}

/// The job for `finding`; `None` when the store no longer holds any of its evidence.
fn job(store: &Store, finding: &Finding, forgive: bool) -> Result<Option<VouchJob>, StoreError> {
    let evidence = store.evidence(finding, MAX_EVIDENCE)?;
    let (Some(first), Some(last)) = (evidence.first(), evidence.last()) else {
        return Ok(None);
    };
    let from = Timestamp(first.time.0.saturating_sub(SESSION_GAP));
    let to = Timestamp(last.time.0.saturating_add(1));
    let context = store.events(&finding.identity, from, to, false)?;
    Ok(Some(VouchJob {
        finding: finding.clone(),
        forgive,
        context,
    }))
}

/// The hook the UI calls for a benign finding (on a blocking thread): reads the job from
/// `store` and waits for room in the engine's queue.
pub(crate) fn hook(store: Arc<Store>, queue: mpsc::Sender<VouchJob>) -> nhiwatch_ui::BenignHook {
    Arc::new(move |finding: &Finding, when: Benign| {
        match job(&store, finding, when == Benign::JustMarked) {
            Ok(Some(job)) => {
                // Fails only when the engine has stopped (the server is shutting down): the mark
                // is durable and is taught again at the next start.
                let _ = queue.blocking_send(job);
            }
            Ok(None) => {}
            Err(err) => eprintln!(
                "nhiwatch: cannot read the evidence of benign finding {}: {err}",
                finding.id
            ),
        }
    })
}
