//! OpenTelemetry traces, OTLP JSON and OTLP protobuf, read with the GenAI semantic conventions.
//!
//! Two encodings of the same `ExportTraceServiceRequest` (or `TracesData`, which has the same
//! shape): OTLP/JSON ([`OtlpJsonDecoder`], one document per record, events borrow from it) and
//! OTLP/HTTP protobuf ([`decode_protobuf`], events own their strings). Both reduce a span to a
//! small view and share one mapping from span to event:
//!
//! - **one event per span**; **id** = `spanId` (hex), **time** = `startTimeUnixNano`.
//! - **action**: a span whose `gen_ai.operation.name` is `execute_tool` is a tool call,
//!   `tool:<gen_ai.tool.name>` (the name taken from the span name `execute_tool <name>` when the
//!   attribute is missing), with **action_class** from the tool's verb
//!   ([`tool_class`]) and **resource** from the call's arguments
//!   (`gen_ai.tool.call.arguments`, a JSON string; [`tool_target`](crate::agent::tool_target)).
//!   Any other span is `otel:<gen_ai.operation.name>` (else `otel:<span name>`), class `other`.
//! - **identity** (kind `agent`): `gen_ai.agent.id`, else `gen_ai.agent.name`, else the
//!   resource's `service.name`, else `unknown`. Span attributes override resource attributes of
//!   the same key. **session**: `gen_ai.conversation.id`, else the `traceId`.
//! - **outcome**: status code ERROR is a failure: `denied` when `error.type` (else the status
//!   message) speaks of permission (`permission`, `forbidden`, `unauthorized` or `denied`),
//!   else `error`; the error text kept is `error.type`, else the status message.
//! - **src_ip** = `client.address`, **user_agent** = `user_agent.original`, when present.
//! - **raw**: the span's JSON object (the protobuf path renders the span as OTLP JSON, with hex
//!   ids and 64-bit integers as strings).
//!
//! A span without a valid `traceId` (32 hex digits), `spanId` (16 hex digits) or a non-zero
//! `startTimeUnixNano` is malformed and rejects its document, with the span's path named
//! (`resourceSpans[0].scopeSpans[1].spans[2].spanId`).

use std::borrow::Cow;
use std::fmt;

use nhiwatch_model::{
    ActionClass, Event, Identity, IdentityKind, Outcome, Source, Text, Timestamp,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue as ProtoKeyValue};
use prost::Message;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::agent::{tool_class, tool_target_text};
use crate::{DecodeError, RecordDecoder};

/// Decodes OTLP JSON trace documents. Holds no state between records.
#[derive(Debug, Default)]
pub struct OtlpJsonDecoder {}

impl RecordDecoder for OtlpJsonDecoder {
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        let doc: TracesDoc<'a> = serde_json::from_str(record)
            .map_err(|err| DecodeError::new(format!("not an OTLP JSON trace export: {err}")))?;
        // Read every span before emitting any: a malformed span rejects the whole document.
        let mut events = Vec::new();
        for (r, resource_spans) in doc.resource_spans.into_iter().enumerate() {
            let mut resource = Attrs::default();
            for kv in resource_spans.resource.iter().flat_map(|r| &r.attributes) {
                if let Some(slot) = resource.slot(&kv.key) {
                    *slot = kv.value.text();
                }
            }
            for (s, scope) in resource_spans.scope_spans.into_iter().enumerate() {
                for (k, raw) in scope.spans.into_iter().enumerate() {
                    let path = SpanPath(r, s, k);
                    let span: JsonSpan<'a> = serde_json::from_str(raw.get())
                        .map_err(|err| DecodeError::field(path.to_string(), err.to_string()))?;
                    let view = json_view(span, resource.clone(), path)?;
                    events.push(span_event(view, Cow::Borrowed(raw)));
                }
            }
        }
        events.into_iter().for_each(emit);
        Ok(())
    }
}

/// Decodes an OTLP protobuf `ExportTraceServiceRequest`; events own their strings, and each
/// event's `raw` is the span rendered as OTLP JSON.
///
/// The whole message is decoded and checked before any event is emitted, so on error nothing
/// is. A message with no span is an error too: protobuf decoding accepts many byte strings that
/// are not trace exports, and the reader relies on this to tell binary garbage from OTLP.
pub fn decode_protobuf(
    bytes: &[u8],
    emit: &mut dyn FnMut(Event<'static>),
) -> Result<(), DecodeError> {
    let request = ExportTraceServiceRequest::decode(bytes).map_err(|err| {
        DecodeError::new(format!(
            "not an OTLP protobuf ExportTraceServiceRequest: {err}"
        ))
    })?;
    let mut events = Vec::new();
    for (r, resource_spans) in request.resource_spans.iter().enumerate() {
        let mut resource = Attrs::default();
        for kv in resource_spans.resource.iter().flat_map(|r| &r.attributes) {
            resource.set_proto(kv);
        }
        for (s, scope) in resource_spans.scope_spans.iter().enumerate() {
            for (k, span) in scope.spans.iter().enumerate() {
                let path = SpanPath(r, s, k);
                let mut attrs = resource.clone();
                for kv in &span.attributes {
                    attrs.set_proto(kv);
                }
                let (error, status_message) = match &span.status {
                    Some(status) => (
                        status.code == STATUS_ERROR,
                        Some(Cow::Borrowed(status.message.as_str())),
                    ),
                    None => (false, None),
                };
                let view = SpanView {
                    trace_id: Cow::Owned(hex_id(&span.trace_id, 16, path.field("traceId"))?),
                    span_id: Cow::Owned(hex_id(&span.span_id, 8, path.field("spanId"))?),
                    name: Cow::Borrowed(span.name.as_str()),
                    start: start_time(span.start_time_unix_nano, path)?,
                    error,
                    status_message,
                    attrs,
                };
                let json = serde_json::to_string(span)
                    .and_then(RawValue::from_string)
                    .map_err(|err| {
                        DecodeError::field(
                            path.to_string(),
                            format!("cannot render as JSON: {err}"),
                        )
                    })?;
                events.push(span_event(view, Cow::Owned(json)).into_owned());
            }
        }
    }
    if events.is_empty() {
        return Err(DecodeError::field(
            "resourceSpans",
            "holds no span: not an OTLP trace export",
        ));
    }
    events.into_iter().for_each(emit);
    Ok(())
}

/// OTLP's `STATUS_CODE_ERROR`.
const STATUS_ERROR: i32 = 2;

/// What the mapping reads of a span, whichever encoding it came in.
struct SpanView<'a> {
    trace_id: Text<'a>,
    span_id: Text<'a>,
    name: Text<'a>,
    start: Timestamp,
    /// Status code ERROR.
    error: bool,
    status_message: Option<Text<'a>>,
    attrs: Attrs<'a>,
}

/// The attributes the mapping uses, from the resource and then the span.
#[derive(Clone, Default)]
struct Attrs<'a> {
    operation: Option<Text<'a>>,
    tool_name: Option<Text<'a>>,
    tool_arguments: Option<Text<'a>>,
    agent_id: Option<Text<'a>>,
    agent_name: Option<Text<'a>>,
    conversation_id: Option<Text<'a>>,
    service_name: Option<Text<'a>>,
    error_type: Option<Text<'a>>,
    client_address: Option<Text<'a>>,
    user_agent: Option<Text<'a>>,
}

impl<'a> Attrs<'a> {
    /// Where the attribute `key` goes, if the mapping uses it.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Text<'a>>> {
        Some(match key {
            "gen_ai.operation.name" => &mut self.operation,
            "gen_ai.tool.name" => &mut self.tool_name,
            "gen_ai.tool.call.arguments" => &mut self.tool_arguments,
            "gen_ai.agent.id" => &mut self.agent_id,
            "gen_ai.agent.name" => &mut self.agent_name,
            "gen_ai.conversation.id" => &mut self.conversation_id,
            "service.name" => &mut self.service_name,
            "error.type" => &mut self.error_type,
            "client.address" => &mut self.client_address,
            "user_agent.original" => &mut self.user_agent,
            _ => return None,
        })
    }

    fn set_proto(&mut self, kv: &'a ProtoKeyValue) {
        if let Some(slot) = self.slot(&kv.key) {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            *slot = match value {
                Some(any_value::Value::StringValue(s)) => Some(Cow::Borrowed(s.as_str())),
                Some(any_value::Value::IntValue(i)) => Some(Cow::Owned(i.to_string())),
                Some(any_value::Value::BoolValue(b)) => Some(Cow::Borrowed(bool_text(*b))),
                Some(any_value::Value::DoubleValue(d)) => Some(Cow::Owned(d.to_string())),
                _ => None,
            };
        }
    }
}

/// The one mapping from a span to its event, see the module docs.
fn span_event<'a>(span: SpanView<'a>, raw: Cow<'a, RawValue>) -> Event<'a> {
    let SpanView {
        trace_id,
        span_id,
        name,
        start,
        error: failed,
        status_message,
        attrs,
    } = span;
    let is_tool = attrs.operation.as_deref() == Some("execute_tool");
    let (action, action_class, resource) = if is_tool {
        let tool = attrs
            .tool_name
            .as_deref()
            .or_else(|| name.strip_prefix("execute_tool ").map(str::trim))
            .filter(|tool| !tool.is_empty())
            .unwrap_or("unknown");
        let resource = attrs
            .tool_arguments
            .and_then(|args| tool_target_text(tool, args));
        (
            Cow::Owned(format!("tool:{tool}")),
            tool_class(tool),
            resource,
        )
    } else {
        let what = attrs.operation.as_deref().unwrap_or(&name);
        (Cow::Owned(format!("otel:{what}")), ActionClass::Other, None)
    };
    let identity_id = attrs
        .agent_id
        .or(attrs.agent_name)
        .or(attrs.service_name)
        .filter(|id| !id.is_empty())
        .unwrap_or(Cow::Borrowed("unknown"));
    let session = attrs.conversation_id.unwrap_or(trace_id);
    let (outcome, error) = if failed {
        let message = status_message.filter(|m| !m.is_empty());
        let text = attrs.error_type.or(message);
        let denied = text.as_deref().is_some_and(is_denial);
        let outcome = if denied {
            Outcome::Denied
        } else {
            Outcome::Error
        };
        (outcome, text)
    } else {
        (Outcome::Success, None)
    };
    Event {
        id: span_id,
        time: start,
        time_inferred: false,
        source: Source::Otel,
        identity: Identity {
            id: identity_id,
            kind: IdentityKind::Agent,
            session: Some(session),
            credential: None,
        },
        action,
        action_class,
        resource,
        outcome,
        error,
        src_ip: attrs.client_address,
        user_agent: attrs.user_agent,
        bytes_out: None,
        records: None,
        raw,
    }
}

/// Whether an error type or message says the call was refused for lack of permission.
fn is_denial(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["permission", "forbidden", "unauthorized", "denied"]
        .iter()
        .any(|word| lower.contains(word))
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Where a span sits in its document: resource, scope and span indices.
#[derive(Clone, Copy)]
struct SpanPath(usize, usize, usize);

impl SpanPath {
    fn field(self, name: &str) -> String {
        format!("{self}.{name}")
    }
}

impl fmt::Display for SpanPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resourceSpans[{}].scopeSpans[{}].spans[{}]",
            self.0, self.1, self.2
        )
    }
}

/// A protobuf id as lower-case hex, checked for its length in bytes (16 for a trace, 8 for a
/// span).
fn hex_id(bytes: &[u8], len: usize, field: String) -> Result<String, DecodeError> {
    if bytes.len() != len {
        let reason = format!("is {} bytes long, expected {len}", bytes.len());
        return Err(DecodeError::field(field, reason));
    }
    use std::fmt::Write;
    let mut hex = String::with_capacity(len * 2);
    for byte in bytes {
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

/// A JSON id, checked to be `digits` hex digits.
fn check_hex<'a>(id: Text<'a>, digits: usize, field: String) -> Result<Text<'a>, DecodeError> {
    if id.len() == digits && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        let reason = format!("expected {digits} hex digits, found {id:?}");
        Err(DecodeError::field(field, reason))
    }
}

fn start_time(nanos: u64, path: SpanPath) -> Result<Timestamp, DecodeError> {
    match i64::try_from(nanos) {
        Ok(0) => Err(DecodeError::field(
            path.field("startTimeUnixNano"),
            "is missing or zero: every span has a start time",
        )),
        Ok(nanos) => Ok(Timestamp(nanos)),
        Err(_) => Err(DecodeError::field(
            path.field("startTimeUnixNano"),
            "is beyond the year 2262",
        )),
    }
}

fn json_view<'a>(
    span: JsonSpan<'a>,
    mut attrs: Attrs<'a>,
    path: SpanPath,
) -> Result<SpanView<'a>, DecodeError> {
    for kv in &span.attributes {
        if let Some(slot) = attrs.slot(&kv.key) {
            *slot = kv.value.text();
        }
    }
    let start = match span.start_time_unix_nano {
        Some(Int(nanos)) => u64::try_from(nanos)
            .map_err(|_| DecodeError::field(path.field("startTimeUnixNano"), "is negative"))?,
        None => 0,
    };
    let (error, status_message) = match span.status {
        Some(status) => (status.code.0 == STATUS_ERROR, status.message),
        None => (false, None),
    };
    Ok(SpanView {
        trace_id: check_hex(span.trace_id, 32, path.field("traceId"))?,
        span_id: check_hex(span.span_id, 16, path.field("spanId"))?,
        name: span.name,
        start: start_time(start, path)?,
        error,
        status_message,
        attrs,
    })
}

// The OTLP/JSON encoding (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding):
// lowerCamelCase keys, ids as hex, 64-bit integers as decimal strings or numbers, enums as
// integers (names accepted too, as the protobuf JSON mapping allows), unknown keys ignored.

#[derive(Deserialize)]
struct TracesDoc<'a> {
    #[serde(rename = "resourceSpans", borrow)]
    resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Deserialize)]
struct ResourceSpans<'a> {
    #[serde(borrow, default)]
    resource: Option<Resource<'a>>,
    #[serde(rename = "scopeSpans", borrow, default)]
    scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Deserialize)]
struct ScopeSpans<'a> {
    #[serde(borrow, default)]
    spans: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonSpan<'a> {
    #[serde(rename = "traceId", borrow)]
    trace_id: Cow<'a, str>,
    #[serde(rename = "spanId", borrow)]
    span_id: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(rename = "startTimeUnixNano", default)]
    start_time_unix_nano: Option<Int>,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(borrow, default)]
    status: Option<Status<'a>>,
}

#[derive(Deserialize)]
struct Status<'a> {
    #[serde(default)]
    code: StatusCode,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct KeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow, default)]
    value: AnyValue<'a>,
}

/// An attribute value; exactly one field is set (none for an empty value).
#[derive(Default, Deserialize)]
struct AnyValue<'a> {
    #[serde(rename = "stringValue", borrow, default)]
    string_value: Option<Cow<'a, str>>,
    #[serde(rename = "boolValue", default)]
    bool_value: Option<bool>,
    #[serde(rename = "intValue", default)]
    int_value: Option<Int>,
    #[serde(rename = "doubleValue", default)]
    double_value: Option<Double>,
    // Nested values are read to check the document, not used.
    #[serde(rename = "arrayValue", borrow, default)]
    _array_value: Option<ArrayValue<'a>>,
    #[serde(rename = "kvlistValue", borrow, default)]
    _kvlist_value: Option<KeyValueList<'a>>,
    #[serde(rename = "bytesValue", borrow, default)]
    _bytes_value: Option<Cow<'a, str>>,
}

impl<'a> AnyValue<'a> {
    /// A scalar value as text; arrays, lists and bytes are not attribute values the mapping reads.
    fn text(&self) -> Option<Text<'a>> {
        if let Some(s) = &self.string_value {
            Some(s.clone())
        } else if let Some(Int(i)) = self.int_value {
            Some(Cow::Owned(i.to_string()))
        } else if let Some(b) = self.bool_value {
            Some(Cow::Borrowed(bool_text(b)))
        } else {
            self.double_value.map(|Double(d)| Cow::Owned(d.to_string()))
        }
    }
}

#[derive(Deserialize)]
struct ArrayValue<'a> {
    #[serde(rename = "values", borrow, default)]
    _values: Vec<AnyValue<'a>>,
}

#[derive(Deserialize)]
struct KeyValueList<'a> {
    #[serde(rename = "values", borrow, default)]
    _values: Vec<KeyValue<'a>>,
}

/// A 64-bit integer, as a JSON number or a decimal string (OTLP/JSON writes both).
#[derive(Clone, Copy)]
struct Int(i128);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-bit integer, as a number or a decimal string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                let int: i128 = v
                    .parse()
                    .map_err(|_| E::custom(format!("{v:?} is not a decimal integer")))?;
                if int < i128::from(i64::MIN) || int > i128::from(u64::MAX) {
                    return Err(E::custom(format!("{v} does not fit in 64 bits")));
                }
                Ok(Int(int))
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// A double, as a JSON number or one of the strings `NaN`, `Infinity`, `-Infinity`.
#[derive(Clone, Copy)]
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DoubleVisitor;
        impl Visitor<'_> for DoubleVisitor {
            type Value = Double;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Double, E> {
                Ok(Double(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Double, E> {
                Ok(Double(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Double, E> {
                Ok(Double(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Double, E> {
                match v {
                    "NaN" => Ok(Double(f64::NAN)),
                    "Infinity" => Ok(Double(f64::INFINITY)),
                    "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                    _ => v
                        .parse()
                        .map(Double)
                        .map_err(|_| E::custom(format!("{v:?} is not a number"))),
                }
            }
        }
        deserializer.deserialize_any(DoubleVisitor)
    }
}

/// `status.code`: the enum's number, or its name (`STATUS_CODE_ERROR`).
#[derive(Clone, Copy, Default)]
struct StatusCode(i32);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl Visitor<'_> for CodeVisitor {
            type Value = StatusCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code: 0, 1, 2 or STATUS_CODE_UNSET, _OK, _ERROR")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusCode, E> {
                // Protobuf enums are open: an unknown number is kept, and is not ERROR.
                Ok(StatusCode(i32::try_from(v).unwrap_or(-1)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusCode, E> {
                Ok(StatusCode(i32::try_from(v).unwrap_or(-1)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusCode, E> {
                match v {
                    "STATUS_CODE_UNSET" => Ok(StatusCode(0)),
                    "STATUS_CODE_OK" => Ok(StatusCode(1)),
                    "STATUS_CODE_ERROR" => Ok(StatusCode(STATUS_ERROR)),
                    _ => Err(E::custom(format!("unknown status code {v:?}"))),
                }
            }
        }
        deserializer.deserialize_any(CodeVisitor)
    }
}
