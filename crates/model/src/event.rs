//! The normalised event: one per input record, whatever the provider (DESIGN.md, "Normalised event").
//!
//! An [`Event`] borrows its strings from the buffer it was decoded from, so decoding a line
//! allocates only where the provider's text has to be rewritten (an assumed-role session ARN
//! mapped to its role ARN, an action composed from two fields). Call [`Event::into_owned`] to keep
//! an event beyond the life of its buffer.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time::Timestamp;

/// A string that is borrowed from the input when it can be and owned when it must be.
pub type Text<'a> = Cow<'a, str>;

/// The input format an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// AWS CloudTrail records, from `{"Records": [...]}` files or one record per line.
    Cloudtrail,
    /// Kubernetes audit.k8s.io/v1 `Event`s.
    K8sAudit,
    /// GitHub organisation or enterprise audit log entries.
    GithubAudit,
    /// OpenTelemetry spans (OTLP JSON or protobuf), GenAI semantic conventions.
    Otel,
    /// AI-agent transcripts with OpenAI-style `tool_calls`.
    AgentTrace,
    /// Generic JSON lines, mapped by a field-mapping configuration, or nhiwatch's own
    /// normalised events read back.
    Jsonl,
}

impl Source {
    /// Every source, in a stable order (for summaries).
    pub const ALL: [Source; 6] = [
        Source::Cloudtrail,
        Source::K8sAudit,
        Source::GithubAudit,
        Source::Otel,
        Source::AgentTrace,
        Source::Jsonl,
    ];

    /// The name used in the JSON contract and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cloudtrail => "cloudtrail",
            Source::K8sAudit => "k8s_audit",
            Source::GithubAudit => "github_audit",
            Source::Otel => "otel",
            Source::AgentTrace => "agent_trace",
            Source::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What sort of principal an identity is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A cloud role assumed by workloads or pipelines (an AWS IAM role).
    Role,
    /// A Kubernetes service account, or a cloud service account.
    ServiceAccount,
    /// A long-lived key or token acting on its own (IAM user access key, API key).
    ApiKey,
    /// A workload or cloud service acting for itself (an AWS service principal, a node).
    Workload,
    /// An autonomous AI agent.
    Agent,
    /// A bot or app integration (GitHub App, `*[bot]` account).
    Bot,
    /// A human user. Kept so that mixed logs can be read, though nhiwatch watches NHIs.
    User,
    /// The source did not say.
    #[default]
    Unknown,
}

impl IdentityKind {
    /// The name used in the JSON contract.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Role => "role",
            IdentityKind::ServiceAccount => "service_account",
            IdentityKind::ApiKey => "api_key",
            IdentityKind::Workload => "workload",
            IdentityKind::Agent => "agent",
            IdentityKind::Bot => "bot",
            IdentityKind::User => "user",
            IdentityKind::Unknown => "unknown",
        }
    }
}

/// The broad class of an action, used by detectors that do not care about the exact operation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionClass {
    /// Reads one object (Get, Describe one, read_file).
    Read,
    /// Lists or enumerates (List, Describe many, watch).
    List,
    /// Creates or changes something (Create, Put, Update, patch).
    Write,
    /// Removes something.
    Delete,
    /// Changes who may do what (IAM policies, role bindings, PassRole, access keys).
    Permission,
    /// Runs code or commands (pod exec, RunInstances, Invoke, run a shell tool).
    Exec,
    /// Authenticates or obtains credentials (AssumeRole, GetSessionToken, ConsoleLogin).
    Auth,
    /// Anything else.
    #[default]
    Other,
}

impl ActionClass {
    /// The name used in the JSON contract.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionClass::Read => "read",
            ActionClass::List => "list",
            ActionClass::Write => "write",
            ActionClass::Delete => "delete",
            ActionClass::Permission => "permission",
            ActionClass::Exec => "exec",
            ActionClass::Auth => "auth",
            ActionClass::Other => "other",
        }
    }
}

/// How the provider answered the action.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was carried out.
    #[default]
    Success,
    /// The provider refused it for lack of permission (AccessDenied, HTTP 401/403).
    Denied,
    /// It failed for another reason.
    Error,
}

impl Outcome {
    /// The name used in the JSON contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// Who acted: the non-human identity an event is attributed to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity<'a> {
    /// Stable id of the identity: a role ARN (never the assumed-role session ARN), an IAM user
    /// ARN, `system:serviceaccount:ns:name`, a GitHub actor, `gen_ai.agent.id` or `service.name`.
    #[serde(borrow)]
    pub id: Text<'a>,
    /// What sort of principal it is.
    pub kind: IdentityKind,
    /// The session within the identity: an assumed-role session name, an agent run id.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Text<'a>>,
    /// The credential used: access key id, token id.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Text<'a>>,
}

/// One normalised event. Field meanings are the DESIGN.md contract; `error` is an extension
/// (the provider's error code, kept so a denial can be explained without reading `raw`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event<'a> {
    /// The source's own event id, verbatim (CloudTrail `eventID`, K8s `auditID`, OTel `spanId`,
    /// GitHub `_document_id`). A source record without one gets a content hash, see [`content_id`].
    #[serde(borrow)]
    pub id: Text<'a>,
    /// When it happened, UTC.
    pub time: Timestamp,
    /// True when the record carried no timestamp and `time` is when nhiwatch read it
    /// (the convention SIEMs follow); absent from JSON when false. An extension of the contract.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub time_inferred: bool,
    /// The input format.
    pub source: Source,
    /// Who acted.
    #[serde(borrow)]
    pub identity: Identity<'a>,
    /// `service:Operation`, e.g. `iam:ListRoles`, `k8s:get/secrets`, `tool:send_money`.
    #[serde(borrow)]
    pub action: Text<'a>,
    /// The broad class of the action.
    pub action_class: ActionClass,
    /// The object acted on, as precisely as the source allows.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Text<'a>>,
    /// How the provider answered.
    pub outcome: Outcome,
    /// The provider's error code or message, when the outcome is not success.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Text<'a>>,
    /// Source IP address (or host name for AWS service calls), when the source has one.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<Text<'a>>,
    /// User agent, when the source has one.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Text<'a>>,
    /// Bytes sent out of the system by this action, when the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Records or objects returned, when the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// The original record, untouched.
    pub raw: Cow<'a, RawValue>,
}

impl<'a> Event<'a> {
    /// Copies every borrowed string so the event outlives its input buffer.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            id: owned(self.id),
            time: self.time,
            time_inferred: self.time_inferred,
            source: self.source,
            identity: self.identity.into_owned(),
            action: owned(self.action),
            action_class: self.action_class,
            resource: self.resource.map(owned),
            outcome: self.outcome,
            error: self.error.map(owned),
            src_ip: self.src_ip.map(owned),
            user_agent: self.user_agent.map(owned),
            bytes_out: self.bytes_out,
            records: self.records,
            raw: Cow::Owned(self.raw.into_owned()),
        }
    }

    /// The service part of the action (`s3` in `s3:GetObject`).
    pub fn service(&self) -> &str {
        self.action.split_once(':').map_or(&self.action, |(s, _)| s)
    }

    /// The operation part of the action (`GetObject` in `s3:GetObject`).
    pub fn operation(&self) -> &str {
        self.action.split_once(':').map_or("", |(_, op)| op)
    }
}

impl<'a> Identity<'a> {
    /// An identity with an id and a kind, and no session or credential.
    pub fn new(id: impl Into<Text<'a>>, kind: IdentityKind) -> Self {
        Identity {
            id: id.into(),
            kind,
            session: None,
            credential: None,
        }
    }

    /// Copies every borrowed string.
    pub fn into_owned(self) -> Identity<'static> {
        Identity {
            id: owned(self.id),
            kind: self.kind,
            session: self.session.map(owned),
            credential: self.credential.map(owned),
        }
    }
}

fn owned(text: Text<'_>) -> Text<'static> {
    Cow::Owned(text.into_owned())
}

/// A stable id for a record whose source gives it none: `sha:` and the first 32 hex digits of
/// the BLAKE3 hash of the record's bytes. The same record always gets the same id, so
/// re-ingesting a file does not duplicate it.
pub fn content_id(record: &[u8]) -> String {
    let hash = blake3::hash(record);
    let mut id = String::with_capacity(36);
    id.push_str("sha:");
    for byte in &hash.as_bytes()[..16] {
        use std::fmt::Write;
        let _ = write!(id, "{byte:02x}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event<'static> {
        Event {
            id: "e-1".into(),
            time: Timestamp::parse_rfc3339("2020-09-14T01:19:40Z").unwrap(),
            time_inferred: false,
            source: Source::Cloudtrail,
            identity: Identity {
                id: "arn:aws:iam::123456789012:role/ci".into(),
                kind: IdentityKind::Role,
                session: Some("build-42".into()),
                credential: Some("ASIAEXAMPLE".into()),
            },
            action: "s3:GetObject".into(),
            action_class: ActionClass::Read,
            resource: Some("arn:aws:s3:::bucket/key".into()),
            outcome: Outcome::Denied,
            error: Some("AccessDenied".into()),
            src_ip: Some("1.2.3.4".into()),
            user_agent: None,
            bytes_out: None,
            records: Some(3),
            raw: Cow::Owned(RawValue::from_string(r#"{"eventID":"e-1"}"#.into()).unwrap()),
        }
    }

    #[test]
    fn json_round_trip_keeps_every_field_and_the_raw_record() {
        let event = sample();
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""raw":{"eventID":"e-1"}"#), "{json}");
        assert!(
            json.contains(r#""identity":{"id":"arn:aws:iam::123456789012:role/ci","kind":"role""#)
        );
        assert!(
            !json.contains("user_agent"),
            "absent fields are left out: {json}"
        );
        let back: Event<'_> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.raw.get(), event.raw.get());
        assert_eq!(back.into_owned().id, event.id);
    }

    #[test]
    fn service_and_operation_split_the_action() {
        let event = sample();
        assert_eq!(event.service(), "s3");
        assert_eq!(event.operation(), "GetObject");
    }

    #[test]
    fn content_id_is_stable_and_distinct() {
        assert_eq!(content_id(b"{}"), content_id(b"{}"));
        assert_ne!(content_id(b"{}"), content_id(b"{ }"));
        assert_eq!(content_id(b"x").len(), 36);
    }
}
