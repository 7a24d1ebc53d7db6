//! AI-agent transcripts with OpenAI-style `tool_calls`, as the AgentDojo benchmark writes them
//! (one JSON object per line), and the tool helpers shared with the OTLP decoder
//! ([`tool_target`], [`tool_class`]).
//!
//! A transcript is `{"index": N, "messages": [...], "metadata": {...}}`. Each assistant message
//! may carry `tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}]`, and
//! each call's result comes back as a `{"role": "tool", "tool_call_id", "error"}` message.
//! `arguments` is a JSON object (AgentDojo) or a string holding JSON (the OpenAI API); both are
//! read. A header line with `metadata` and no `messages` (AgentDojo's
//! `{"metadata": {"benchmark": ...}}`) describes the run and yields no event.
//!
//! Normalisation, one event per tool call:
//! - **identity** (kind `agent`): `<agent>/<suite_name>`, where the agent is the first of
//!   `metadata.agent_id`, `agent_name`, `pipeline_name`, `model`; the suite is left out when
//!   absent. The same model deployed in another AgentDojo suite (banking, slack, ...) has other
//!   tools and other duties, so it is another identity to baseline. No metadata: `unknown`.
//! - **session**: the run, `<suite_name>/<name>` (AgentDojo's `name` is the task and attack,
//!   `user_task_0[important_instructions]`), else `name`, else `trace-<index>`.
//! - **id**: `<session>/<tool call id>`. Tool call ids are not unique across a file (AgentDojo
//!   replays cached model answers into several runs) nor even within a run; the session prefix
//!   makes them unique across runs and the n-th repeat (n ≥ 2) of an id within a run gets `#n`.
//!   Both depend only on the record, so re-reading a file gives the same ids.
//! - **action** `tool:<function.name>`; **action_class** from the name's verb ([`tool_class`]);
//!   **resource** from the arguments ([`tool_target`]).
//! - **outcome**: the call's result is the first not yet matched `role: tool` message after it
//!   with its id; a non-null `error` there makes the outcome `error` (the text kept in `error`).
//!   A call with no result message (a transcript cut short) counts as carried out.
//! - **time**: transcripts carry no timestamps, so time is derived, never read from a clock:
//!   `1970-01-01T00:00:00Z + index hours + n seconds` for the n-th tool call (from 1) of the
//!   transcript, flagged `time_inferred`. Calls are thus strictly ordered within a run and runs
//!   do not interleave (up to 3,599 calls per run).
//! - **raw**: the tool call object, borrowed from the record.

use std::borrow::Cow;
use std::fmt;

use nhiwatch_model::{
    ActionClass, Event, Identity, IdentityKind, Outcome, Source, Text, Timestamp,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{DecodeError, RecordDecoder};

/// Decodes agent transcripts. Holds no state between records.
#[derive(Debug, Default)]
pub struct AgentTraceDecoder {}

impl RecordDecoder for AgentTraceDecoder {
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        let transcript: Transcript<'a> =
            serde_json::from_str(record).map_err(|err| DecodeError::json(&err))?;
        let Some(messages) = transcript.messages else {
            return if transcript.metadata.is_some() {
                Ok(())
            } else {
                Err(DecodeError::field(
                    "messages",
                    "is missing: an agent transcript lists its messages",
                ))
            };
        };
        let meta = transcript.metadata.unwrap_or_default();
        let identity_id = agent_id(&meta);
        let session = run_id(&meta, transcript.index);

        // Parse every tool call before emitting any, so that a bad call rejects the whole
        // transcript rather than leaving half of it emitted.
        let mut calls = Vec::new();
        let mut results = Vec::new();
        for (m, message) in messages.iter().enumerate() {
            if let Some(id) = &message.tool_call_id {
                results.push(ToolResult {
                    message: m,
                    id,
                    error: message.error.and_then(json_text),
                    matched: false,
                });
            }
            for (c, raw) in message.tool_calls.iter().flatten().enumerate() {
                let call: ToolCall<'a> = serde_json::from_str(raw.get()).map_err(|err| {
                    DecodeError::field(
                        format!("messages[{m}].tool_calls[{c}]"),
                        format!("not a tool call: {err}"),
                    )
                })?;
                calls.push((m, call, *raw));
            }
        }

        let base = i64::try_from(transcript.index.unwrap_or(0))
            .ok()
            .and_then(|index| index.checked_mul(3_600))
            .ok_or_else(|| DecodeError::field("index", "is too large to order transcripts by"))?;
        for (n, (m, call, raw)) in calls.iter().enumerate() {
            let repeat = calls[..n]
                .iter()
                .filter(|(_, c, _)| c.id == call.id)
                .count();
            let id = match (&session, repeat) {
                (Some(run), 0) => Cow::Owned(format!("{run}/{}", call.id)),
                (Some(run), r) => Cow::Owned(format!("{run}/{}#{}", call.id, r + 1)),
                (None, 0) => call.id.clone(),
                (None, r) => Cow::Owned(format!("{}#{}", call.id, r + 1)),
            };
            let result = results
                .iter_mut()
                .find(|r| !r.matched && r.message > *m && *r.id == *call.id);
            let error = result.and_then(|r| {
                r.matched = true;
                r.error.clone()
            });
            let name = &call.function.name;
            let arguments = json_arguments(call.function.arguments);
            let resource = arguments.and_then(|args| tool_target_text(name, args));
            let secs = base.saturating_add(n as i64 + 1);
            emit(Event {
                id,
                time: Timestamp::from_unix(secs, 0).unwrap_or_default(),
                time_inferred: true,
                source: Source::AgentTrace,
                identity: Identity {
                    id: identity_id.clone(),
                    kind: IdentityKind::Agent,
                    session: session.clone(),
                    credential: None,
                },
                action: Cow::Owned(format!("tool:{name}")),
                action_class: tool_class(name),
                resource,
                outcome: if error.is_some() {
                    Outcome::Error
                } else {
                    Outcome::Success
                },
                error,
                src_ip: None,
                user_agent: None,
                bytes_out: None,
                records: None,
                raw: Cow::Borrowed(*raw),
            });
        }
        Ok(())
    }
}

/// `<agent>/<suite>`, see the module docs.
fn agent_id<'a>(meta: &Metadata<'a>) -> Text<'a> {
    let agent = [
        &meta.agent_id,
        &meta.agent_name,
        &meta.pipeline_name,
        &meta.model,
    ]
    .into_iter()
    .find_map(|name| name.as_ref().filter(|n| !n.is_empty()));
    match (agent, &meta.suite_name) {
        (Some(agent), Some(suite)) => Cow::Owned(format!("{agent}/{suite}")),
        (Some(agent), None) => agent.clone(),
        (None, _) => Cow::Borrowed("unknown"),
    }
}

/// The run's id, see the module docs.
fn run_id<'a>(meta: &Metadata<'a>, index: Option<u64>) -> Option<Text<'a>> {
    match (&meta.suite_name, &meta.name, index) {
        (Some(suite), Some(name), _) => Some(Cow::Owned(format!("{suite}/{name}"))),
        (None, Some(name), _) => Some(name.clone()),
        (_, None, Some(index)) => Some(Cow::Owned(format!("trace-{index}"))),
        (_, None, None) => None,
    }
}

#[derive(Deserialize)]
struct Transcript<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    tool_calls: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    agent_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    agent_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pipeline_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    suite_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: Function<'a>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// A `role: tool` message: the result of the call with its id.
struct ToolResult<'m, 'a> {
    message: usize,
    id: &'m str,
    error: Option<Text<'a>>,
    matched: bool,
}

/// The arguments' JSON text: the object itself, or the JSON inside a string (as the OpenAI
/// API writes `arguments`).
fn json_arguments(arguments: Option<&RawValue>) -> Option<Text<'_>> {
    let raw = arguments?;
    if raw.get().starts_with('"') {
        json_text(raw)
    } else {
        Some(Cow::Borrowed(raw.get()))
    }
}

/// A JSON value as text: a string's contents (borrowed unless it has escapes), a number's or
/// boolean's literal, an object's or array's JSON; `None` for null.
pub(crate) fn json_text(raw: &RawValue) -> Option<Text<'_>> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Str<'_>>(text).ok().map(|s| s.0),
        Some(b'n') | None => None,
        Some(_) => Some(Cow::Borrowed(text)),
    }
}

/// A JSON string that borrows from the input unless it has escapes. (`Cow<str>`'s own
/// `Deserialize` always copies; `#[serde(borrow)]` only helps as a struct field.)
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// The tool arguments of one call, in order, values unparsed.
struct Arguments<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Arguments<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Arguments<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of tool arguments")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Arguments<'de>, A::Error> {
                let mut args = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((key, value)) = map.next_entry::<Str<'de>, &'de RawValue>()? {
                    args.push((key.0, value));
                }
                Ok(Arguments(args))
            }
        }
        deserializer.deserialize_map(ArgsVisitor)
    }
}

/// Argument names that name what a tool acts on, most telling first: files and paths, then
/// URLs, hosts, recipients and accounts (an IBAN, an e-mail address, a chat channel), then
/// queries and commands.
const TARGET_KEYS: &[&str] = &[
    "path",
    "file_path",
    "filepath",
    "file",
    "filename",
    "file_name",
    "file_id",
    "directory",
    "dir",
    "url",
    "uri",
    "link",
    "endpoint",
    "host",
    "hostname",
    "domain",
    "iban",
    "recipient",
    "recipients",
    "to",
    "email",
    "user_email",
    "account",
    "account_id",
    "channel",
    "user",
    "query",
    "q",
    "sql",
    "command",
    "cmd",
];

/// Argument names that hold what a command-running tool runs.
const COMMAND_KEYS: &[&str] = &["command", "cmd", "script"];

/// Key endings that name an object when no [`TARGET_KEYS`] argument is present.
const TARGET_SUFFIXES: &[&str] = &["_path", "_url", "_email", "_id", "_name", "_names"];

/// The object a tool call acts on, taken from its arguments (a JSON object as text):
/// - for a command-running tool ([`tool_class`] `exec`), its `command`/`cmd`/`script`;
/// - else the first argument present among the well-known names (`path`, `file_path`, `url`,
///   `host`, `iban`, `recipient`, `email`, `channel`, `query`, ...; see `TARGET_KEYS`);
/// - else the first argument whose name ends in `_path`, `_url`, `_email`, `_id`, `_name(s)`;
/// - else the only argument, when there is exactly one.
///
/// A string is its text, a number or boolean its literal, an array of such values its items
/// joined with `,`. Empty values, objects and nulls are passed over. `None` when nothing fits
/// or the arguments are not a JSON object.
pub fn tool_target<'a>(tool_name: &str, arguments: &'a str) -> Option<Cow<'a, str>> {
    let Arguments(args) = serde_json::from_str(arguments).ok()?;
    let named = |keys: &[&str]| {
        keys.iter().find_map(|key| {
            args.iter()
                .find(|(name, _)| name == key)
                .and_then(|(_, value)| target_text(value))
        })
    };
    if tool_class(tool_name) == ActionClass::Exec {
        if let Some(command) = named(COMMAND_KEYS) {
            return Some(command);
        }
    }
    named(TARGET_KEYS)
        .or_else(|| {
            args.iter()
                .filter(|(name, _)| TARGET_SUFFIXES.iter().any(|s| name.ends_with(s)))
                .find_map(|(_, value)| target_text(value))
        })
        .or_else(|| match args.as_slice() {
            [(_, only)] => target_text(only),
            _ => None,
        })
}

/// [`tool_target`] over arguments that may have been unescaped into an owned string.
pub(crate) fn tool_target_text<'a>(tool_name: &str, arguments: Text<'a>) -> Option<Text<'a>> {
    match arguments {
        Cow::Borrowed(args) => tool_target(tool_name, args),
        Cow::Owned(args) => tool_target(tool_name, &args).map(|t| Cow::Owned(t.into_owned())),
    }
}

/// An argument's value as a resource, see [`tool_target`].
fn target_text(value: &RawValue) -> Option<Cow<'_, str>> {
    let text = value.get();
    let found = match text.as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            let parts: Vec<Cow<'_, str>> = items.into_iter().filter_map(target_text).collect();
            match parts.len() {
                0 => None,
                1 => parts.into_iter().next(),
                _ => Some(Cow::Owned(parts.join(","))),
            }
        }
        Some(b'{') => None,
        _ => json_text(value),
    };
    found.filter(|text| !text.trim().is_empty())
}

/// The action class of a tool, from the verb its name starts with:
/// `read`/`get`/`fetch`/`open`/`view`/`download`/`check` → read; `list`/`search`/`find`/`query`
/// → list; `send`/`create`/`update`/`write`/`post`/`schedule`/`add`/`append`/`put`/`set`/
/// `upload`/`reserve`/`reschedule` → write; `share`/`invite`/`grant` → permission (they give
/// others access); `delete`/`remove` → delete; `run`/`exec`/`execute`/`shell`/`bash` → exec;
/// `login`/`auth`/`authenticate` → auth; anything else → other.
///
/// The verb is the name's first word, after any namespace (`fs.read_file`, `mcp__fs__read_file`),
/// up to `_`, `-` or a capital letter (`readFile`), compared case-insensitively.
pub fn tool_class(tool_name: &str) -> ActionClass {
    let local = tool_name
        .rsplit(['.', '/'])
        .next()
        .unwrap_or(tool_name)
        .rsplit("__")
        .next()
        .unwrap_or(tool_name);
    let end = local
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '_' || c == '-' || c.is_ascii_uppercase())
        .map_or(local.len(), |(i, _)| i);
    let verb = local.get(..end).unwrap_or(local).to_ascii_lowercase();
    match verb.as_str() {
        "read" | "get" | "fetch" | "open" | "view" | "download" | "check" => ActionClass::Read,
        "list" | "search" | "find" | "query" => ActionClass::List,
        "send" | "create" | "update" | "write" | "post" | "schedule" | "add" | "append" | "put"
        | "set" | "upload" | "reserve" | "reschedule" => ActionClass::Write,
        "share" | "invite" | "grant" => ActionClass::Permission,
        "delete" | "remove" => ActionClass::Delete,
        "run" | "exec" | "execute" | "shell" | "bash" => ActionClass::Exec,
        "login" | "auth" | "authenticate" => ActionClass::Auth,
        _ => ActionClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_class_reads_the_verb() {
        let cases = [
            ("read_file", ActionClass::Read),
            ("get_iban", ActionClass::Read),
            ("readFile", ActionClass::Read),
            ("fs.read_file", ActionClass::Read),
            ("mcp__github__list_issues", ActionClass::List),
            ("search_files_by_filename", ActionClass::List),
            ("send_money", ActionClass::Write),
            ("schedule_transaction", ActionClass::Write),
            ("share_file", ActionClass::Permission),
            ("delete_file", ActionClass::Delete),
            ("bash", ActionClass::Exec),
            ("run_command", ActionClass::Exec),
            ("login", ActionClass::Auth),
            ("think", ActionClass::Other),
            ("", ActionClass::Other),
            ("é_x", ActionClass::Other),
        ];
        for (name, class) in cases {
            assert_eq!(tool_class(name), class, "{name}");
        }
    }

    #[test]
    fn tool_target_picks_the_object_acted_on() {
        let cases = [
            ("read_file", r#"{"file_path":"bill.txt"}"#, Some("bill.txt")),
            (
                "send_money",
                r#"{"recipient":"US133000000121212121212","amount":0,"subject":"x"}"#,
                Some("US133000000121212121212"),
            ),
            (
                "send_email",
                r#"{"subject":"s","recipients":["a@x.com","b@y.com"],"body":"b"}"#,
                Some("a@x.com,b@y.com"),
            ),
            (
                "share_file",
                r#"{"email":"e@x.com","file_id":"13","permission":"r"}"#,
                Some("13"),
            ),
            ("bash", r#"{"url":"u","command":"curl u"}"#, Some("curl u")),
            (
                "reschedule_calendar_event",
                r#"{"event_id":"7","new_start_time":"t"}"#,
                Some("7"),
            ),
            (
                "get_all_hotels_in_city",
                r#"{"city":"Paris"}"#,
                Some("Paris"),
            ),
            (
                "get_webpage",
                r#"{"url":"www.a\/b.com"}"#,
                Some("www.a/b.com"),
            ),
            ("get_iban", "{}", None),
            ("create_event", r#"{"title":"t","location":"l"}"#, None),
            ("read_file", r#"{"path":""}"#, None),
            ("read_file", "not json", None),
            ("read_file", r#"["path"]"#, None),
        ];
        for (tool, args, target) in cases {
            assert_eq!(tool_target(tool, args).as_deref(), target, "{tool} {args}");
        }
    }
}
