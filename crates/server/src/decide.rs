//! `POST /v1/decide`: one proposed action of an identity, as an agent gateway or a workload
//! sidecar asks before running it.
//!
//! ```json
//! {"identity": "coding-agent-inventory", "action": "tool:get_secret",
//!  "resource": "prod/payments/db-password", "time": "2026-03-12T16:33:36Z"}
//! ```
//!
//! Only `identity` and `action` (`service:Operation`, e.g. `tool:read_file`, `s3:GetObject`,
//! `k8s:get/secrets`) are required. The rest default: `time` to now (marked inferred), `id` to
//! a fresh `decide-...` id, `source` and `kind` from the action's prefix (`tool:` is an agent),
//! `action_class` from the provider's tables (the same the decoders use). The action is judged
//! as if carried out (outcome `success`); it is recorded like any event.

use std::borrow::Cow;

use nhiwatch_decode::{agent, aws, github, k8s};
use nhiwatch_detect::Assessment;
use nhiwatch_model::{ActionClass, Event, Identity, IdentityKind, Outcome, Source, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;

/// The request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideRequest<'a> {
    #[serde(borrow)]
    identity: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow, default)]
    resource: Option<Cow<'a, str>>,
    #[serde(default)]
    time: Option<Timestamp>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    kind: Option<IdentityKind>,
    #[serde(borrow, default)]
    session: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    credential: Option<Cow<'a, str>>,
    #[serde(default)]
    action_class: Option<ActionClass>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(borrow, default)]
    src_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(default)]
    bytes_out: Option<u64>,
    #[serde(default)]
    records: Option<u64>,
}

/// Turns a request body into the event to judge; `fresh_id` names it when the body does not.
pub(crate) fn event(
    body: &[u8],
    fresh_id: impl FnOnce() -> String,
) -> Result<Event<'static>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?
        .trim();
    let request: DecideRequest<'_> = serde_json::from_str(text)
        .map_err(|err| ApiError::bad_request(format!("the body is not a decide request: {err}")))?;
    if request.identity.trim().is_empty() {
        return Err(ApiError::bad_request("field `identity`: is empty"));
    }
    let Some((service, operation)) = request.action.split_once(':') else {
        return Err(ApiError::bad_request(
            "field `action`: write it as service:Operation, e.g. tool:read_file, s3:GetObject or k8s:get/secrets",
        ));
    };
    if service.is_empty() || operation.is_empty() {
        return Err(ApiError::bad_request(
            "field `action`: both the service and the operation must be named",
        ));
    }
    let action_class = request
        .action_class
        .unwrap_or_else(|| classify(service, operation));
    let source = request.source.unwrap_or(match service {
        "tool" => Source::AgentTrace,
        "k8s" => Source::K8sAudit,
        "github" => Source::GithubAudit,
        "otel" => Source::Otel,
        _ if is_aws_service(service) => Source::Cloudtrail,
        _ => Source::Jsonl,
    });
    let kind = request
        .kind
        .unwrap_or_else(|| kind_of(&request.identity, service));
    let raw = RawValue::from_string(text.to_owned())
        .map_err(|err| ApiError::bad_request(format!("the body is not JSON: {err}")))?;
    let owned = |text: Option<Cow<'_, str>>| text.map(|t| Cow::Owned(t.into_owned()));
    Ok(Event {
        id: Cow::Owned(match request.id {
            Some(id) if !id.is_empty() => id.into_owned(),
            _ => fresh_id(),
        }),
        time: request.time.unwrap_or_else(Timestamp::now),
        time_inferred: request.time.is_none(),
        source,
        identity: Identity {
            id: Cow::Owned(request.identity.into_owned()),
            kind,
            session: owned(request.session),
            credential: owned(request.credential),
        },
        action: Cow::Owned(request.action.into_owned()),
        action_class,
        resource: owned(request.resource),
        outcome: Outcome::Success,
        error: None,
        src_ip: owned(request.src_ip),
        user_agent: owned(request.user_agent),
        bytes_out: request.bytes_out,
        records: request.records,
        raw: Cow::Owned(raw),
    })
}

/// An AWS service prefix as IAM writes it: lower case letters, digits and dashes.
fn is_aws_service(service: &str) -> bool {
    service
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The class of an action, from the same tables the decoders use.
fn classify(service: &str, operation: &str) -> ActionClass {
    match service {
        "tool" => agent::tool_class(operation),
        "k8s" => {
            // k8s:verb/resource[/subresource]
            let mut parts = operation.splitn(3, '/');
            let verb = parts.next().unwrap_or_default();
            k8s::classify(verb, parts.next(), parts.next())
        }
        "github" => github::classify(operation),
        _ if is_aws_service(service) => aws::classify(service, operation),
        _ => ActionClass::Other,
    }
}

fn kind_of(identity: &str, service: &str) -> IdentityKind {
    if service == "tool" {
        IdentityKind::Agent
    } else if identity.starts_with("system:serviceaccount:") {
        IdentityKind::ServiceAccount
    } else if identity.starts_with("arn:") && identity.contains(":role/") {
        IdentityKind::Role
    } else {
        IdentityKind::Unknown
    }
}

/// The answer: decision, risk, one reason per finding the action joins, and their ids.
pub(crate) fn answer(assessment: &Assessment, event_id: &str) -> Vec<u8> {
    let reasons: Vec<String> = assessment
        .findings
        .iter()
        .map(|f| format!("{} ({}): {}", f.kind, f.severity.as_str(), f.summary))
        .collect();
    let ids: Vec<&str> = assessment.findings.iter().map(|f| f.id.as_str()).collect();
    serde_json::to_vec(&serde_json::json!({
        "decision": assessment.decision,
        "risk": assessment.risk,
        "reasons": reasons,
        "finding_ids": ids,
        "event_id": event_id,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> String {
        "decide-1".into()
    }

    #[test]
    fn fills_in_what_the_request_leaves_out() {
        let agent = event(
            br#" {"identity": "coding-agent", "action": "tool:get_secret", "resource": "prod/db"} "#,
            fresh,
        )
        .unwrap();
        assert_eq!(agent.id, "decide-1");
        assert!(agent.time_inferred);
        assert_eq!(agent.source, Source::AgentTrace);
        assert_eq!(agent.identity.kind, IdentityKind::Agent);
        assert_eq!(agent.action_class, ActionClass::Read);
        assert_eq!(agent.resource.as_deref(), Some("prod/db"));
        assert_eq!(agent.outcome, Outcome::Success);
        assert!(agent.raw.get().starts_with("{\"identity\""));

        let aws = event(
            br#"{"identity": "arn:aws:iam::1:role/ci", "action": "iam:AttachRolePolicy", "time": "2026-03-12T16:33:36Z", "id": "req-9"}"#,
            fresh,
        )
        .unwrap();
        assert_eq!(aws.id, "req-9");
        assert!(!aws.time_inferred);
        assert_eq!(aws.time.to_string(), "2026-03-12T16:33:36Z");
        assert_eq!(aws.source, Source::Cloudtrail);
        assert_eq!(aws.identity.kind, IdentityKind::Role);
        assert_eq!(aws.action_class, ActionClass::Permission);

        let k8s = event(
            br#"{"identity": "system:serviceaccount:ns:sa", "action": "k8s:create/pods/exec"}"#,
            fresh,
        )
        .unwrap();
        assert_eq!(k8s.action_class, ActionClass::Exec);
        assert_eq!(k8s.identity.kind, IdentityKind::ServiceAccount);
    }

    #[test]
    fn names_the_field_at_fault() {
        let message = |body: &[u8]| event(body, fresh).unwrap_err().message;
        assert!(message(br#"{"identity": "a"}"#).contains("action"));
        assert!(message(br#"{"identity": "", "action": "tool:x"}"#).contains("identity"));
        assert!(
            message(br#"{"identity": "a", "action": "noservice"}"#).contains("service:Operation")
        );
        assert!(
            message(br#"{"identity": "a", "action": "tool:x", "colour": 1}"#).contains("colour")
        );
        assert!(
            message(br#"{"identity": "a", "action": "tool:x", "time": "yesterday"}"#)
                .contains("RFC 3339")
        );
        assert!(message(b"\xff\xfe").contains("UTF-8"));
    }
}
