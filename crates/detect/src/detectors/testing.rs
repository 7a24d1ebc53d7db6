//! Building events and running the engine in unit tests.

use std::borrow::Cow;
use std::sync::Arc;

use nhiwatch_model::{
    ActionClass, Event, Finding, Identity, IdentityKind, Outcome, Source, Timestamp,
};
use nhiwatch_policy::Policy;
use serde_json::value::RawValue;

use crate::engine::{Engine, EngineConfig, SECOND};

/// 2024-01-01T10:00:00Z, a Monday morning.
pub(crate) const MONDAY_10: i64 = 1_704_103_200;

/// An event `minutes` after Monday 10:00 UTC, carried out, with no resource.
pub(crate) fn event(id: &str, minutes: i64, identity: &str, action: &str) -> Event<'static> {
    Event {
        id: Cow::Owned(id.to_owned()),
        time: Timestamp((MONDAY_10 + minutes * 60) * SECOND),
        time_inferred: false,
        source: Source::Cloudtrail,
        identity: Identity::new(identity.to_owned(), IdentityKind::Role),
        action: Cow::Owned(action.to_owned()),
        action_class: class_of(action),
        resource: None,
        outcome: Outcome::Success,
        error: None,
        src_ip: None,
        user_agent: None,
        bytes_out: None,
        records: None,
        raw: Cow::Owned(RawValue::from_string("{}".to_owned()).expect("valid JSON")),
    }
}

/// A rough class from the operation's verb, enough for tests.
fn class_of(action: &str) -> ActionClass {
    let operation = action.split_once(':').map_or(action, |(_, op)| op);
    if operation.starts_with("Get") || operation.starts_with("get") {
        ActionClass::Read
    } else if operation.starts_with("List") || operation.starts_with("Describe") {
        ActionClass::List
    } else if operation.starts_with("Delete") {
        ActionClass::Delete
    } else if operation.starts_with("Attach")
        || operation.starts_with("Put") && operation.contains("Policy")
    {
        ActionClass::Permission
    } else {
        ActionClass::Write
    }
}

/// Builder-style changes to a test event.
pub(crate) trait EventExt {
    /// Sets the resource.
    fn on(self, resource: &str) -> Self;
    /// Marks it denied by the provider with this error code.
    fn denied(self, code: &str) -> Self;
    /// Marks it failed for another reason, with this error code.
    fn failed(self, code: &str) -> Self;
    /// Sets the session.
    fn session(self, session: &str) -> Self;
    /// Sets the source.
    fn from(self, source: Source) -> Self;
}

impl EventExt for Event<'static> {
    fn on(mut self, resource: &str) -> Self {
        self.resource = Some(Cow::Owned(resource.to_owned()));
        self
    }

    fn denied(mut self, code: &str) -> Self {
        self.outcome = Outcome::Denied;
        self.error = Some(Cow::Owned(code.to_owned()));
        self
    }

    fn failed(mut self, code: &str) -> Self {
        self.outcome = Outcome::Error;
        self.error = Some(Cow::Owned(code.to_owned()));
        self
    }

    fn session(mut self, session: &str) -> Self {
        self.identity.session = Some(Cow::Owned(session.to_owned()));
        self
    }

    fn from(mut self, source: Source) -> Self {
        self.source = source;
        self
    }
}

/// Runs the standard engine over `events`; returns every finding, in emission order.
pub(crate) fn run(
    policy: Option<&str>,
    config: EngineConfig,
    events: &[Event<'static>],
) -> Vec<Finding> {
    let policy = policy.map(|yaml| {
        Arc::new(Policy::parse(yaml, "policy.yaml", None).unwrap_or_else(|e| panic!("{e}")))
    });
    let mut engine = Engine::new(policy, config);
    let mut findings = Vec::new();
    for event in events {
        engine.process(event, &mut |f| findings.push(f));
    }
    engine.finish(&mut |f| findings.push(f));
    findings
}
