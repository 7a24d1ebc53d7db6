//! Events for the store's integration tests.

use std::borrow::Cow;

use nhiwatch_model::{ActionClass, Event, Identity, IdentityKind, Outcome, Source, Timestamp};
use serde_json::value::RawValue;

/// 2026-03-02T00:00:00Z.
pub const T0: i64 = 1_772_409_600_000_000_000;

/// The id of event `n` of a test stream.
pub fn id(n: u64) -> String {
    format!("ev-{n}")
}

/// Event `n` of a test stream: one of seven roles, one second after event `n - 1`, with a
/// CloudTrail-like raw record, and `user_agent` as given.
pub fn event(n: u64, user_agent: &str) -> Event<'static> {
    let id = id(n);
    let raw = format!(
        r#"{{"eventVersion":"1.08","eventID":"{id}","eventName":"GetObject","eventSource":"s3.amazonaws.com","requestParameters":{{"bucketName":"logs","key":"k/{n}"}},"userAgent":"{user_agent}"}}"#
    );
    Event {
        id: id.into(),
        time: Timestamp(T0 + n as i64 * 1_000_000_000),
        time_inferred: false,
        source: Source::Cloudtrail,
        identity: Identity::new(
            format!("arn:aws:iam::123456789012:role/r{}", n % 7),
            IdentityKind::Role,
        ),
        action: "s3:GetObject".into(),
        action_class: ActionClass::Read,
        resource: Some(format!("arn:aws:s3:::logs/k/{n}").into()),
        outcome: Outcome::Success,
        error: None,
        src_ip: Some("10.0.0.1".into()),
        user_agent: Some(user_agent.to_owned().into()),
        bytes_out: None,
        records: None,
        raw: Cow::Owned(RawValue::from_string(raw).expect("valid JSON")),
    }
}
