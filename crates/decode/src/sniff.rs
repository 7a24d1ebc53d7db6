//! Format detection for one JSON record, by the keys it carries.
//!
//! Detection looks for each format's signature keys as quoted strings (`"eventSource"`), which
//! costs a few vectorised substring scans rather than a parse. Checks run from the most to the
//! least specific signature, so a normalised event (whose `raw` holds, say, a CloudTrail record)
//! is recognised as normalised. When a record is misdetected its decoder rejects it with a
//! reason, and nothing passes silently.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::Format;

/// A record that holds other records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Envelope {
    /// CloudTrail's `{"Records": [...]}`, as delivered to S3.
    Records,
    /// Kubernetes `{"kind": "EventList", "items": [...]}`.
    EventList,
    /// A JSON array of records (GitHub's audit log export, many tools' dumps).
    Array,
}

macro_rules! finder {
    ($name:ident, $text:literal) => {
        static $name: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new($text));
    };
}

finder!(ACTION_CLASS, "\"action_class\"");
finder!(RAW, "\"raw\"");
finder!(EVENT_NAME, "\"eventName\"");
finder!(EVENT_SOURCE, "\"eventSource\"");
finder!(USER_IDENTITY, "\"userIdentity\"");
finder!(AWS_REGION, "\"awsRegion\"");
finder!(RECIPIENT_ACCOUNT, "\"recipientAccountId\"");
// Panther stores some CloudTrail records with lower-cased keys.
finder!(EVENT_NAME_LOWER, "\"eventname\"");
finder!(EVENT_SOURCE_LOWER, "\"eventsource\"");
finder!(AUDIT_ID, "\"auditID\"");
finder!(AUDIT_API, "audit.k8s.io/");
finder!(OBJECT_REF, "\"objectRef\"");
finder!(VERB, "\"verb\"");
finder!(REQUEST_URI, "\"requestURI\"");
finder!(SOURCE_IPS, "\"sourceIPs\"");
finder!(RESPONSE_STATUS, "\"responseStatus\"");
finder!(PROTO_PAYLOAD, "\"protoPayload\"");
finder!(KUBE_AUDIT_CATEGORY, "\"kube-audit");
finder!(K8S_IO, "k8s.io");
finder!(RESOURCE_SPANS, "\"resourceSpans\"");
finder!(MESSAGES, "\"messages\"");
finder!(TOOL_CALLS, "\"tool_calls\"");
finder!(BENCHMARK, "\"benchmark\"");
finder!(ACTION, "\"action\"");
finder!(ACTOR, "\"actor\"");
finder!(DOCUMENT_ID, "\"_document_id\"");
finder!(AT_TIMESTAMP, "\"@timestamp\"");
finder!(CREATED_AT, "\"created_at\"");
finder!(EVENT_LIST, "\"EventList\"");

fn has(finder: &Finder<'_>, text: &[u8]) -> bool {
    finder.find(text).is_some()
}

/// Which format a record is in, judged by its keys; `None` when no format's signature matches
/// (the reader then uses the generic mapping, if one is configured).
pub fn sniff(record: &str) -> Option<Format> {
    // CloudTrail writes `eventVersion` first (S3 delivery, CloudTrail Lake, EventBridge
    // exports), and no other format has that key; kube-apiserver writes `kind` then
    // `apiVersion` (`{"kind":"Event","apiVersion":"audit.k8s.io/v1",...`). The common cases
    // need one short look, not a scan of the whole record.
    let start = record.trim_start();
    match first_key(start) {
        Some("eventVersion") => return Some(Format::CloudTrail),
        Some("kind") if has(&AUDIT_API, &start.as_bytes()[..start.len().min(96)]) => {
            return Some(Format::K8sAudit)
        }
        _ => {}
    }
    let b = record.as_bytes();
    if has(&ACTION_CLASS, b) && has(&RAW, b) {
        return Some(Format::Normalised);
    }
    if has(&RESOURCE_SPANS, b) {
        return Some(Format::OtlpJson);
    }
    if (has(&EVENT_NAME, b)
        && (has(&EVENT_SOURCE, b)
            || has(&USER_IDENTITY, b)
            || has(&AWS_REGION, b)
            || has(&RECIPIENT_ACCOUNT, b)))
        || (has(&EVENT_NAME_LOWER, b) && has(&EVENT_SOURCE_LOWER, b))
    {
        return Some(Format::CloudTrail);
    }
    if has(&AUDIT_ID, b)
        || has(&AUDIT_API, b)
        || (has(&OBJECT_REF, b) && has(&VERB, b))
        || (has(&VERB, b)
            && (has(&REQUEST_URI, b) || has(&SOURCE_IPS, b) || has(&RESPONSE_STATUS, b)))
        || (has(&PROTO_PAYLOAD, b) && has(&K8S_IO, b))
        || has(&KUBE_AUDIT_CATEGORY, b)
    {
        return Some(Format::K8sAudit);
    }
    // AgentDojo files open with a header line, `{"metadata": {"benchmark": ...}}`, which the
    // agent-trace decoder passes over.
    if has(&MESSAGES, b)
        || has(&TOOL_CALLS, b)
        || (first_key(record.trim_start()) == Some("metadata") && has(&BENCHMARK, b))
    {
        return Some(Format::AgentTrace);
    }
    if has(&ACTION, b)
        && (has(&ACTOR, b) || has(&DOCUMENT_ID, b) || has(&AT_TIMESTAMP, b) || has(&CREATED_AT, b))
    {
        return Some(Format::GithubAudit);
    }
    None
}

/// Whether the record is an envelope of other records.
pub(crate) fn envelope(record: &str) -> Option<Envelope> {
    let trimmed = record.trim_start();
    if trimmed.starts_with('[') {
        return Some(Envelope::Array);
    }
    match first_key(trimmed) {
        Some("Records") => return Some(Envelope::Records),
        // A CloudTrail record (see `sniff`): no need to look for `EventList`.
        Some("eventVersion") => return None,
        _ => {}
    }
    let head = &trimmed.as_bytes()[..trimmed.len().min(512)];
    if has(&EVENT_LIST, head) {
        return Some(Envelope::EventList);
    }
    None
}

/// The first key of a JSON object, when it has no escapes.
fn first_key(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.bytes().position(|b| b == b'"' || b == b'\\')?;
    rest.get(..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_format_by_its_keys() {
        let cases = [
            (
                r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject"}"#,
                Some(Format::CloudTrail),
            ),
            (
                r#"{"eventname":"GetRecords","eventsource":"dynamodb.amazonaws.com"}"#,
                Some(Format::CloudTrail),
            ),
            (
                r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x"}"#,
                Some(Format::K8sAudit),
            ),
            (
                r#"{"kind":"Event","verb":"get","sourceIPs":["5.5.5.5"],"responseStatus":{"code":200}}"#,
                Some(Format::K8sAudit),
            ),
            (r#"{"resourceSpans":[]}"#, Some(Format::OtlpJson)),
            (r#"{"index":1,"messages":[]}"#, Some(Format::AgentTrace)),
            (
                r#"{"metadata": {"benchmark": "agent-dojo", "name": "gpt-4o"}}"#,
                Some(Format::AgentTrace),
            ),
            (
                r#"{"action":"repo.create","actor":"bot","created_at":1}"#,
                Some(Format::GithubAudit),
            ),
            (
                r#"{"id":"e","action":"s3:GetObject","action_class":"read","raw":{"eventSource":"s3","eventName":"x"}}"#,
                Some(Format::Normalised),
            ),
            (r#"{"who":"me"}"#, None),
        ];
        for (record, format) in cases {
            assert_eq!(sniff(record), format, "{record}");
        }
    }

    #[test]
    fn recognises_envelopes() {
        assert_eq!(envelope(r#"{"Records":[{}]}"#), Some(Envelope::Records));
        assert_eq!(envelope(" [ {} ]"), Some(Envelope::Array));
        assert_eq!(
            envelope(r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#),
            Some(Envelope::EventList)
        );
        assert_eq!(envelope(r#"{"eventName":"Records"}"#), None);
    }
}
