//! OTLP traces with the GenAI semantic conventions: the JSON and protobuf encodings of one
//! export give the same events; malformed input is rejected with the field named, and nothing
//! of a bad protobuf message is emitted.

mod common;

use nhiwatch_decode::otel::{decode_protobuf, OtlpJsonDecoder};
use nhiwatch_decode::{RecordDecoder, Reject};
use nhiwatch_model::{ActionClass, Event, IdentityKind, Outcome, Source};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;

const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";

/// An agent's trace as an OpenTelemetry SDK exports it over OTLP/HTTP JSON: a tool call that
/// reads a file, a chat completion, and a tool call refused for lack of permission. It uses
/// both encodings of 64-bit integers and both of the status code.
const DOC: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "invoice-agent"}},
      {"key": "telemetry.sdk.language", "value": {"stringValue": "python"}}
    ]},
    "scopeSpans": [{
      "scope": {"name": "opentelemetry.instrumentation.openai_agents", "version": "0.1.0"},
      "spans": [
        {
          "traceId": "5b8efff798038103d269b633813fc60c",
          "spanId": "eee19b7ec3c1b174",
          "parentSpanId": "eee19b7ec3c1b173",
          "name": "execute_tool read_file",
          "kind": 1,
          "startTimeUnixNano": "1717000000123456789",
          "endTimeUnixNano": "1717000000223456789",
          "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
            {"key": "gen_ai.tool.name", "value": {"stringValue": "read_file"}},
            {"key": "gen_ai.tool.call.id", "value": {"stringValue": "call_mszuSIzqtI65i1wAUOE8w5H4"}},
            {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": "{\"path\": \"/srv/invoices/2024-05.pdf\"}"}},
            {"key": "gen_ai.agent.id", "value": {"stringValue": "asst_5j66UpCpwteGg4YSxUnt7lPY"}},
            {"key": "gen_ai.agent.name", "value": {"stringValue": "Invoice Agent"}},
            {"key": "gen_ai.conversation.id", "value": {"stringValue": "conv_5j66UpCpwteGg4YSxUnt7lPY"}},
            {"key": "gen_ai.tool.type", "value": {"stringValue": "function"}}
          ],
          "status": {}
        },
        {
          "traceId": "5b8efff798038103d269b633813fc60c",
          "spanId": "eee19b7ec3c1b175",
          "parentSpanId": "eee19b7ec3c1b173",
          "name": "chat gpt-4o",
          "kind": 3,
          "startTimeUnixNano": 1717000000300000000,
          "endTimeUnixNano": 1717000001300000000,
          "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "97"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 52}},
            {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.2}},
            {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": [{"stringValue": "tool_calls"}]}}},
            {"key": "server.address", "value": {"stringValue": "api.openai.com"}}
          ],
          "status": {"code": 1}
        },
        {
          "traceId": "5b8efff798038103d269b633813fc60c",
          "spanId": "eee19b7ec3c1b176",
          "parentSpanId": "eee19b7ec3c1b173",
          "name": "execute_tool send_email",
          "kind": 1,
          "startTimeUnixNano": "1717000001400000000",
          "endTimeUnixNano": "1717000001500000000",
          "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
            {"key": "gen_ai.tool.name", "value": {"stringValue": "send_email"}},
            {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": "{\"recipients\": [\"ap@example.com\"], \"subject\": \"May invoice\"}"}},
            {"key": "gen_ai.agent.name", "value": {"stringValue": "Invoice Agent"}},
            {"key": "error.type", "value": {"stringValue": "PermissionDeniedError"}},
            {"key": "tool.retry", "value": {"boolValue": false}}
          ],
          "status": {"code": "STATUS_CODE_ERROR", "message": "mail scope not granted"}
        }
      ]
    }]
  }]
}"#;

fn decode_json(doc: &str) -> Result<Vec<Event<'_>>, nhiwatch_decode::DecodeError> {
    let mut events = Vec::new();
    OtlpJsonDecoder::default().decode(doc, &mut |e| events.push(e))?;
    Ok(events)
}

fn text(key: &str, value: &str) -> KeyValue {
    value_kv(key, any_value::Value::StringValue(value.into()))
}

fn value_kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn span(span_id: &str, name: &str, start: u64, attributes: Vec<KeyValue>, status: Status) -> Span {
    Span {
        trace_id: hex(TRACE_ID),
        span_id: hex(span_id),
        parent_span_id: hex("eee19b7ec3c1b173"),
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 100_000_000,
        attributes,
        status: Some(status),
        ..Default::default()
    }
}

/// The same export as [`DOC`], built as the protobuf message.
fn request() -> ExportTraceServiceRequest {
    let tool = span(
        "eee19b7ec3c1b174",
        "execute_tool read_file",
        1_717_000_000_123_456_789,
        vec![
            text("gen_ai.operation.name", "execute_tool"),
            text("gen_ai.tool.name", "read_file"),
            text(
                "gen_ai.tool.call.arguments",
                r#"{"path": "/srv/invoices/2024-05.pdf"}"#,
            ),
            text("gen_ai.agent.id", "asst_5j66UpCpwteGg4YSxUnt7lPY"),
            text("gen_ai.agent.name", "Invoice Agent"),
            text("gen_ai.conversation.id", "conv_5j66UpCpwteGg4YSxUnt7lPY"),
        ],
        Status::default(),
    );
    let chat = span(
        "eee19b7ec3c1b175",
        "chat gpt-4o",
        1_717_000_000_300_000_000,
        vec![
            text("gen_ai.operation.name", "chat"),
            value_kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(97)),
        ],
        Status {
            code: status::StatusCode::Ok as i32,
            ..Default::default()
        },
    );
    let refused = span(
        "eee19b7ec3c1b176",
        "execute_tool send_email",
        1_717_000_001_400_000_000,
        vec![
            text("gen_ai.operation.name", "execute_tool"),
            text("gen_ai.tool.name", "send_email"),
            text(
                "gen_ai.tool.call.arguments",
                r#"{"recipients": ["ap@example.com"], "subject": "May invoice"}"#,
            ),
            text("gen_ai.agent.name", "Invoice Agent"),
            text("error.type", "PermissionDeniedError"),
        ],
        Status {
            code: status::StatusCode::Error as i32,
            message: "mail scope not granted".into(),
        },
    );
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "invoice-agent")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.openai_agents".into(),
                    ..Default::default()
                }),
                spans: vec![tool, chat, refused],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The normalised fields of an event, `raw` aside.
fn fields(e: &Event<'_>) -> String {
    let mut e = e.clone();
    e.raw = std::borrow::Cow::Owned(serde_json::value::RawValue::from_string("{}".into()).unwrap());
    serde_json::to_string(&e).unwrap()
}

#[test]
fn spans_map_to_tool_calls_and_other_operations() {
    let events = decode_json(DOC).unwrap();
    assert_eq!(events.len(), 3);
    let [tool, chat, refused] = &events[..] else {
        unreachable!()
    };

    assert_eq!(tool.id, "eee19b7ec3c1b174");
    assert_eq!(tool.source, Source::Otel);
    assert_eq!(tool.time.to_string(), "2024-05-29T16:26:40.123456789Z");
    assert_eq!(tool.action, "tool:read_file");
    assert_eq!(tool.action_class, ActionClass::Read);
    assert_eq!(tool.resource.as_deref(), Some("/srv/invoices/2024-05.pdf"));
    assert_eq!(tool.identity.id, "asst_5j66UpCpwteGg4YSxUnt7lPY");
    assert_eq!(tool.identity.kind, IdentityKind::Agent);
    assert_eq!(
        tool.identity.session.as_deref(),
        Some("conv_5j66UpCpwteGg4YSxUnt7lPY")
    );
    assert_eq!(tool.outcome, Outcome::Success);
    let raw: Value = serde_json::from_str(tool.raw.get()).unwrap();
    assert_eq!(raw["spanId"], "eee19b7ec3c1b174");
    assert_eq!(raw["attributes"][1]["value"]["stringValue"], "read_file");

    assert_eq!(chat.action, "otel:chat");
    assert_eq!(chat.action_class, ActionClass::Other);
    assert_eq!(
        chat.identity.id, "invoice-agent",
        "falls back to service.name"
    );
    assert_eq!(
        chat.identity.session.as_deref(),
        Some(TRACE_ID),
        "falls back to the trace"
    );
    assert_eq!(chat.resource, None);
    assert_eq!(chat.outcome, Outcome::Success);

    assert_eq!(refused.action, "tool:send_email");
    assert_eq!(refused.action_class, ActionClass::Write);
    assert_eq!(refused.identity.id, "Invoice Agent");
    assert_eq!(refused.resource.as_deref(), Some("ap@example.com"));
    assert_eq!(refused.outcome, Outcome::Denied);
    assert_eq!(refused.error.as_deref(), Some("PermissionDeniedError"));
}

#[test]
fn json_and_protobuf_give_the_same_events() {
    let from_json = decode_json(DOC).unwrap();
    let bytes = request().encode_to_vec();
    let mut from_proto = Vec::new();
    decode_protobuf(&bytes, &mut |e| from_proto.push(e)).unwrap();

    let json_fields: Vec<String> = from_json.iter().map(fields).collect();
    let proto_fields: Vec<String> = from_proto.iter().map(fields).collect();
    assert_eq!(json_fields, proto_fields);

    // The protobuf span's raw is OTLP JSON: hex ids, 64-bit integers as strings.
    let raw: Value = serde_json::from_str(from_proto[0].raw.get()).unwrap();
    assert_eq!(raw["traceId"], TRACE_ID);
    assert_eq!(raw["spanId"], "eee19b7ec3c1b174");
    assert_eq!(raw["startTimeUnixNano"], "1717000000123456789");
    assert_eq!(raw["attributes"][0]["key"], "gen_ai.operation.name");
    let chat: Value = serde_json::from_str(from_proto[1].raw.get()).unwrap();
    assert_eq!(chat["attributes"][1]["value"]["intValue"], "97");
}

#[test]
fn a_status_error_without_a_permission_type_is_an_error() {
    let doc = DOC.replace("PermissionDeniedError", "TimeoutError");
    let events = decode_json(&doc).unwrap();
    assert_eq!(events[2].outcome, Outcome::Error);
    assert_eq!(events[2].error.as_deref(), Some("TimeoutError"));
}

#[test]
fn malformed_documents_are_rejected_with_the_field_named() {
    let span0 = "resourceSpans[0].scopeSpans[0].spans[0]";
    let cases = [
        // Base64, as a generic protobuf-JSON encoder would write the id: not OTLP/JSON.
        (
            DOC.replace("eee19b7ec3c1b174", "7uGbfsPBsXQ="),
            format!("{span0}.spanId"),
        ),
        (
            DOC.replace("5b8efff798038103d269b633813fc60c", "5b8e"),
            format!("{span0}.traceId"),
        ),
        (
            DOC.replace(r#""startTimeUnixNano": "1717000000123456789","#, ""),
            format!("{span0}.startTimeUnixNano"),
        ),
        (
            DOC.replace(
                r#""startTimeUnixNano": "1717000000123456789""#,
                r#""startTimeUnixNano": "soon""#,
            ),
            span0.to_string(),
        ),
        (
            DOC.replace(r#""intValue": 52"#, r#""intValue": true"#),
            "resourceSpans[0].scopeSpans[0].spans[1]".to_string(),
        ),
        (
            DOC.replace("STATUS_CODE_ERROR", "STATUS_CODE_BROKEN"),
            "resourceSpans[0].scopeSpans[0].spans[2]".to_string(),
        ),
    ];
    for (doc, field) in cases {
        let err = decode_json(&doc).expect_err(&field);
        assert_eq!(err.field.as_deref(), Some(field.as_str()), "{err}");
    }
    let err = decode_json(r#"{"resourceSpans": {"spans": []}}"#).unwrap_err();
    assert!(
        err.reason.contains("not an OTLP JSON trace export"),
        "{err}"
    );
    // A document that is not a trace export at all names the missing key.
    let err = decode_json(r#"{"resourceLogs": []}"#).unwrap_err();
    assert!(err.reason.contains("resourceSpans"), "{err}");
}

#[test]
fn bad_protobuf_emits_nothing() {
    let good = request().encode_to_vec();
    let mut bad_span = request();
    bad_span.resource_spans[0].scope_spans[0].spans[2].span_id = vec![1, 2, 3];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 7].to_vec()),
        (
            "garbage",
            b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x12".to_vec(),
        ),
        (
            "empty export",
            ExportTraceServiceRequest::default().encode_to_vec(),
        ),
        ("a bad last span", bad_span.encode_to_vec()),
    ];
    for (what, bytes) in cases {
        let mut emitted = 0;
        let result = decode_protobuf(&bytes, &mut |_| emitted += 1);
        assert!(result.is_err(), "{what}");
        assert_eq!(emitted, 0, "{what}");
    }
    let mut bad = request();
    bad.resource_spans[0].scope_spans[0].spans[2].span_id = vec![1, 2, 3];
    let err = decode_protobuf(&bad.encode_to_vec(), &mut |_| {}).unwrap_err();
    assert_eq!(
        err.field.as_deref(),
        Some("resourceSpans[0].scopeSpans[0].spans[2].spanId")
    );
}

fn read(bytes: &[u8]) -> (Vec<Event<'static>>, Vec<Reject>) {
    let out = common::read(|reader, sinks| reader.read_bytes("export", bytes, sinks));
    (out.events, out.rejects)
}

#[test]
fn the_reader_detects_and_decodes_a_protobuf_body() {
    let (events, rejects) = read(&request().encode_to_vec());
    assert!(rejects.is_empty(), "{rejects:?}");
    let actions: Vec<&str> = events.iter().map(|e| &*e.action).collect();
    assert_eq!(actions, ["tool:read_file", "otel:chat", "tool:send_email"]);
}

#[test]
fn the_reader_detects_and_decodes_an_otlp_json_document() {
    let (events, rejects) = read(DOC.as_bytes());
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0].resource.as_deref(),
        Some("/srv/invoices/2024-05.pdf")
    );
}
