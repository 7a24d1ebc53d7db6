//! Generic JSON lines, decoded through a field mapping: for logs nhiwatch has no decoder for.
//!
//! A mapping is a small YAML file saying where each field of the normalised event is found in
//! the record, as dotted paths (`auth.metadata.role_name`; a number steps into an array,
//! `items.0.name`; keys that themselves contain a dot cannot be addressed). For example, for
//! HashiCorp Vault's audit log (file device, one JSON object per line):
//!
//! ```yaml
//! id: request.id                   # optional; absent or missing → a hash of the record
//! time:
//!   field: time
//!   format: rfc3339                # rfc3339 (default), unix_seconds, unix_millis, unix_nanos
//! identity:
//!   field: auth.metadata.role_name
//!   kind: role                     # a constant, or `kind_field: some.path` whose values are
//!                                  # kind names (role, service_account, ...); default unknown
//! action:
//!   template: "vault:{request.operation}"   # or `field: some.path`
//! action_class:                    # optional; absent → derived from the action's operation
//!   field: some.path               # (the part after the last `:`) by its verb, as for tools
//! resource: request.path
//! outcome:                         # optional; absent → success
//!   field: error
//!   denied: ["*permission denied*"]   # values meaning denied; `*` matches any run of text
//!   error: ["*"]                      # values meaning error; checked after `denied`
//! src_ip: request.remote_address
//! user_agent: request.headers.user-agent.0
//! bytes_out: response.size         # a number, or a string of digits
//! ```
//!
//! `time`, `identity` and `action` are required, in the mapping and in every record: a record
//! without one of their fields is rejected with the field named. An outcome field that is
//! absent, null or empty means success; other values that match no pattern mean success too.
//! Unknown keys in the mapping are errors, reported with the file, line and key.
//!
//! Events are of source `jsonl`. Decoding visits only the mapped paths of each record (other
//! values are skipped unparsed) and borrows every value it can from the record.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use nhiwatch_model::{
    content_id, ActionClass, Event, Identity, IdentityKind, Outcome, Source, Timestamp,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::agent::{json_text, tool_class, Str};
use crate::{DecodeError, RecordDecoder};

/// Which fields of a generic JSON record hold the identity, action, resource, time and outcome.
/// Built from YAML with [`Mapping::from_yaml`] or [`Mapping::load`]; see the module docs.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// Every mapped path, dotted; a path's index is its slot.
    paths: Vec<String>,
    /// The paths as a tree of keys, so a record is walked once.
    tree: Node,
    id: Option<usize>,
    time: (usize, TimeFormat),
    identity: usize,
    kind: KindPlan,
    action: ActionPlan,
    action_class: Option<usize>,
    resource: Option<usize>,
    outcome: Option<OutcomePlan>,
    src_ip: Option<usize>,
    user_agent: Option<usize>,
    bytes_out: Option<usize>,
}

/// Why a mapping file could not be loaded: the file, the line and key when known, and what
/// is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingError {
    /// The mapping file's name.
    pub file: String,
    /// 1-based line of the fault, when known.
    pub line: Option<usize>,
    /// The mapping key at fault (`action.template`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for MappingError {}

impl Mapping {
    /// Reads a mapping file.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| MappingError {
            file: name.clone(),
            line: None,
            key: None,
            message: format!("cannot read: {err}"),
        })?;
        Mapping::from_yaml(&text, &name)
    }

    /// Parses a mapping from YAML text; `file_name` is used in errors.
    pub fn from_yaml(text: &str, file_name: &str) -> Result<Mapping, MappingError> {
        let spec: MappingFile = serde_norway::from_str(text).map_err(|err| MappingError {
            file: file_name.to_owned(),
            line: err.location().map(|at| at.line()),
            key: None,
            message: err.to_string(),
        })?;
        Builder::default()
            .build(spec)
            .map_err(|(key, message)| MappingError {
                file: file_name.to_owned(),
                line: line_of(text, key),
                key: Some(key.to_owned()),
                message,
            })
    }

    /// Finds the value of every mapped path in one walk over the record.
    fn capture<'a>(&self, record: &'a str) -> Result<Vec<Option<&'a RawValue>>, DecodeError> {
        let mut values = vec![None; self.paths.len()];
        let mut json = serde_json::Deserializer::from_str(record);
        Seek {
            node: &self.tree,
            values: &mut values,
        }
        .deserialize(&mut json)
        .and_then(|()| json.end())
        .map_err(|err| DecodeError::json(&err))?;
        Ok(values)
    }
}

/// The line where a (possibly dotted) mapping key is written: the line of its last part,
/// searched after the line of its first.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    let mut found = None;
    for part in key.split('.') {
        let at = text
            .lines()
            .enumerate()
            .skip(from)
            .find(|(_, line)| line.trim_start().starts_with(&format!("{part}:")))?;
        from = at.0 + 1;
        found = Some(from);
    }
    found
}

/// Decodes generic JSON records through a [`Mapping`].
#[derive(Debug)]
pub struct MappedDecoder {
    mapping: Mapping,
}

impl MappedDecoder {
    /// A decoder for the given mapping.
    pub fn new(mapping: Mapping) -> Self {
        MappedDecoder { mapping }
    }
}

impl RecordDecoder for MappedDecoder {
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        let record = record.trim_ascii();
        let map = &self.mapping;
        let values = map.capture(record)?;
        let text = |slot: usize| values.get(slot).copied().flatten().and_then(json_text);
        let optional = |slot: Option<usize>| slot.and_then(text).filter(|t| !t.is_empty());
        let required = |slot: usize| {
            text(slot).filter(|t| !t.is_empty()).ok_or_else(|| {
                DecodeError::field(
                    map.path(slot),
                    "is missing or empty, and the mapping needs it",
                )
            })
        };

        let id = optional(map.id).unwrap_or_else(|| Cow::Owned(content_id(record.as_bytes())));
        let (time_slot, format) = map.time;
        let time = format
            .parse(&required(time_slot)?)
            .map_err(|reason| DecodeError::field(map.path(time_slot), reason))?;
        let identity_id = required(map.identity)?;
        let kind = match map.kind {
            KindPlan::Constant(kind) => kind,
            KindPlan::Field(slot) => optional(Some(slot)).map_or(IdentityKind::Unknown, |k| {
                named(&k, &IDENTITY_KINDS, IdentityKind::as_str).unwrap_or_default()
            }),
        };
        let action = match &map.action {
            ActionPlan::Field(slot) => required(*slot)?,
            ActionPlan::Template(parts) => {
                let mut action = String::new();
                for part in parts {
                    match part {
                        Part::Literal(text) => action.push_str(text),
                        Part::Field(slot) => action.push_str(&required(*slot)?),
                    }
                }
                Cow::Owned(action)
            }
        };
        let action_class = match map.action_class {
            Some(slot) => optional(Some(slot))
                .and_then(|c| named(&c, &ACTION_CLASSES, ActionClass::as_str))
                .unwrap_or_default(),
            None => tool_class(action.rsplit(':').next().unwrap_or(&action)),
        };
        let (outcome, error) = match &map.outcome {
            Some(plan) => match optional(Some(plan.slot)) {
                Some(value) => match plan.judge(&value) {
                    Outcome::Success => (Outcome::Success, None),
                    failed => (failed, Some(value)),
                },
                None => (Outcome::Success, None),
            },
            None => (Outcome::Success, None),
        };
        let bytes_out = match optional(map.bytes_out) {
            Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
                let path = map.bytes_out.map(|slot| map.path(slot)).unwrap_or_default();
                DecodeError::field(path, format!("expected a byte count, found {text:?}"))
            })?),
            None => None,
        };
        let raw: &'a RawValue =
            serde_json::from_str(record).map_err(|err| DecodeError::json(&err))?;
        emit(Event {
            id,
            time,
            time_inferred: false,
            source: Source::Jsonl,
            identity: Identity::new(identity_id, kind),
            action,
            action_class,
            resource: optional(map.resource),
            outcome,
            error,
            src_ip: optional(map.src_ip),
            user_agent: optional(map.user_agent),
            bytes_out,
            records: None,
            raw: Cow::Borrowed(raw),
        });
        Ok(())
    }
}

impl Mapping {
    fn path(&self, slot: usize) -> String {
        self.paths.get(slot).cloned().unwrap_or_default()
    }
}

const IDENTITY_KINDS: [IdentityKind; 8] = [
    IdentityKind::Role,
    IdentityKind::ServiceAccount,
    IdentityKind::ApiKey,
    IdentityKind::Workload,
    IdentityKind::Agent,
    IdentityKind::Bot,
    IdentityKind::User,
    IdentityKind::Unknown,
];

const ACTION_CLASSES: [ActionClass; 8] = [
    ActionClass::Read,
    ActionClass::List,
    ActionClass::Write,
    ActionClass::Delete,
    ActionClass::Permission,
    ActionClass::Exec,
    ActionClass::Auth,
    ActionClass::Other,
];

/// The member of `all` whose contract name is `text`, ignoring case.
fn named<T: Copy>(text: &str, all: &[T], name: fn(T) -> &'static str) -> Option<T> {
    all.iter()
        .copied()
        .find(|&item| name(item).eq_ignore_ascii_case(text.trim()))
}

// The YAML file, as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    id: Option<String>,
    time: TimeSpec,
    identity: IdentitySpec,
    action: ActionSpec,
    #[serde(default)]
    action_class: Option<ClassSpec>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    outcome: Option<OutcomeSpec>,
    #[serde(default)]
    src_ip: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    bytes_out: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeSpec {
    field: String,
    #[serde(default)]
    format: TimeFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySpec {
    field: String,
    #[serde(default)]
    kind: Option<IdentityKind>,
    #[serde(default)]
    kind_field: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSpec {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    template: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassSpec {
    field: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeSpec {
    field: String,
    #[serde(default)]
    denied: Vec<String>,
    #[serde(default)]
    error: Vec<String>,
}

/// How a time field is written.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TimeFormat {
    #[default]
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    UnixNanos,
}

impl TimeFormat {
    fn parse(self, text: &str) -> Result<Timestamp, String> {
        let scale = match self {
            TimeFormat::Rfc3339 => {
                return Timestamp::parse_rfc3339(text).map_err(|err| format!("{err}: {text:?}"))
            }
            TimeFormat::UnixSeconds => 1_000_000_000,
            TimeFormat::UnixMillis => 1_000_000,
            TimeFormat::UnixNanos => 1,
        };
        unix_nanos(text.trim(), scale)
            .ok_or_else(|| format!("expected a number of {self:?} since the epoch, found {text:?}"))
    }
}

/// A decimal number of units (`scale` nanoseconds each) as a timestamp; fractions are kept to
/// the nanosecond.
fn unix_nanos(text: &str, scale: i128) -> Option<Timestamp> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || whole.len() > 20
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut nanos = whole.parse::<i128>().ok()? * scale;
    let mut unit = scale;
    for digit in fraction.bytes().take(9) {
        unit /= 10;
        nanos += i128::from(digit - b'0') * unit;
    }
    let nanos = if negative { -nanos } else { nanos };
    i64::try_from(nanos).ok().map(Timestamp)
}

// The mapping, compiled.

#[derive(Clone, Copy, Debug)]
enum KindPlan {
    Constant(IdentityKind),
    Field(usize),
}

#[derive(Clone, Debug)]
enum ActionPlan {
    Field(usize),
    Template(Vec<Part>),
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Field(usize),
}

#[derive(Clone, Debug)]
struct OutcomePlan {
    slot: usize,
    denied: Vec<String>,
    error: Vec<String>,
}

impl OutcomePlan {
    fn judge(&self, value: &str) -> Outcome {
        if self.denied.iter().any(|p| glob(p, value)) {
            Outcome::Denied
        } else if self.error.iter().any(|p| glob(p, value)) {
            Outcome::Error
        } else {
            Outcome::Success
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// One key of the path tree; `slot` is set where a mapped path ends.
#[derive(Clone, Debug, Default)]
struct Node {
    key: String,
    slot: Option<usize>,
    children: Vec<Node>,
}

/// Compiles a [`MappingFile`]; errors are (mapping key, message).
#[derive(Default)]
struct Builder {
    paths: Vec<String>,
    tree: Node,
}

type BuildError = (&'static str, String);

impl Builder {
    fn build(mut self, spec: MappingFile) -> Result<Mapping, BuildError> {
        let id = self.optional("id", spec.id)?;
        let time = (self.slot("time.field", &spec.time.field)?, spec.time.format);
        let identity = self.slot("identity.field", &spec.identity.field)?;
        let kind = match (spec.identity.kind, spec.identity.kind_field) {
            (Some(_), Some(_)) => {
                return Err((
                    "identity.kind_field",
                    "give either `kind` (a constant) or `kind_field`, not both".into(),
                ))
            }
            (_, Some(field)) => KindPlan::Field(self.slot("identity.kind_field", &field)?),
            (kind, None) => KindPlan::Constant(kind.unwrap_or_default()),
        };
        let action = match (spec.action.field, spec.action.template) {
            (Some(field), None) => ActionPlan::Field(self.slot("action.field", &field)?),
            (None, Some(template)) => ActionPlan::Template(self.template(&template)?),
            _ => return Err(("action", "give exactly one of `field` or `template`".into())),
        };
        let action_class = match spec.action_class {
            Some(class) => Some(self.slot("action_class.field", &class.field)?),
            None => None,
        };
        let resource = self.optional("resource", spec.resource)?;
        let outcome = match spec.outcome {
            Some(outcome) => Some(OutcomePlan {
                slot: self.slot("outcome.field", &outcome.field)?,
                denied: outcome.denied,
                error: outcome.error,
            }),
            None => None,
        };
        let src_ip = self.optional("src_ip", spec.src_ip)?;
        let user_agent = self.optional("user_agent", spec.user_agent)?;
        let bytes_out = self.optional("bytes_out", spec.bytes_out)?;
        Ok(Mapping {
            paths: self.paths,
            tree: self.tree,
            id,
            time,
            identity,
            kind,
            action,
            action_class,
            resource,
            outcome,
            src_ip,
            user_agent,
            bytes_out,
        })
    }

    fn optional(
        &mut self,
        key: &'static str,
        path: Option<String>,
    ) -> Result<Option<usize>, BuildError> {
        path.map(|path| self.slot(key, &path)).transpose()
    }

    /// The slot of a dotted path, added to the tree when new.
    fn slot(&mut self, key: &'static str, path: &str) -> Result<usize, BuildError> {
        let path = path.trim();
        if path.is_empty() || path.split('.').any(str::is_empty) {
            let message = format!("{path:?} is not a dotted path such as `request.path`");
            return Err((key, message));
        }
        if let Some(slot) = self.paths.iter().position(|p| p == path) {
            return Ok(slot);
        }
        let slot = self.paths.len();
        self.paths.push(path.to_owned());
        let mut node = &mut self.tree;
        for part in path.split('.') {
            let at = match node.children.iter().position(|c| c.key == part) {
                Some(at) => at,
                None => {
                    node.children.push(Node {
                        key: part.to_owned(),
                        ..Node::default()
                    });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at];
        }
        node.slot = Some(slot);
        Ok(slot)
    }

    /// `"vault:{request.operation}"` → literal `vault:` and the field's slot.
    fn template(&mut self, template: &str) -> Result<Vec<Part>, BuildError> {
        const KEY: &str = "action.template";
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err((KEY, format!("unmatched `}}` in {template:?}")));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| (KEY, format!("unclosed `{{` in {template:?}")))?;
            parts.push(Part::Field(self.slot(KEY, &after[..close])?));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err((KEY, format!("{template:?} names no `{{field}}`")));
        }
        Ok(parts)
    }
}

/// Walks one JSON value, storing the raw value at every mapped path below `node` and skipping
/// everything else unparsed.
struct Seek<'t, 'v, 'a> {
    node: &'t Node,
    values: &'v mut [Option<&'a RawValue>],
}

impl<'a> Seek<'_, '_, 'a> {
    /// Hands the value at `child` to its slot, or walks into it.
    fn child<E: de::Error>(&mut self, child: &Node, value: &'a RawValue) -> Result<(), E> {
        if let Some(slot) = child.slot.and_then(|slot| self.values.get_mut(slot)) {
            *slot = Some(value);
        }
        if child.children.is_empty() {
            return Ok(());
        }
        let mut json = serde_json::Deserializer::from_str(value.get());
        Seek {
            node: child,
            values: self.values,
        }
        .deserialize(&mut json)
        .map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match self.node.children.iter().find(|c| c.key == key.0) {
                Some(child) => {
                    let value: &'de RawValue = map.next_value()?;
                    self.child(child, value)?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let child = self
                .node
                .children
                .iter()
                .find(|c| c.key.parse() == Ok(index));
            match child {
                Some(child) => match seq.next_element::<&'de RawValue>()? {
                    Some(value) => self.child(child, value)?,
                    None => return Ok(()),
                },
                None => {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        return Ok(());
                    }
                }
            }
            index += 1;
        }
    }

    // A scalar where the mapping expects an object: the path is simply not there.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_runs_of_text() {
        assert!(glob("*", "anything"));
        assert!(glob(
            "*permission denied*",
            "1 error occurred:\n\t* permission denied\n\n"
        ));
        assert!(glob("403", "403"));
        assert!(!glob("403", "4031"));
        assert!(glob("a*c", "abc"));
        assert!(!glob("a*c", "abd"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn unix_times_keep_their_fractions() {
        assert_eq!(
            unix_nanos("1700000000.5", 1_000_000_000),
            Some(Timestamp(1_700_000_000_500_000_000))
        );
        assert_eq!(
            unix_nanos("1700000000123", 1_000_000),
            Some(Timestamp(1_700_000_000_123_000_000))
        );
        assert_eq!(unix_nanos("-1", 1), Some(Timestamp(-1)));
        assert_eq!(unix_nanos("1e9", 1), None);
        assert_eq!(unix_nanos("", 1), None);
        assert_eq!(unix_nanos("99999999999999999999", 1_000_000_000), None);
    }

    #[test]
    fn templates_are_checked_when_loaded() {
        let mut builder = Builder::default();
        assert!(builder.template("vault:{request.operation}").is_ok());
        assert!(builder.template("vault:{request.operation").is_err());
        assert!(builder.template("vault:}").is_err());
        assert!(builder.template("vault:{}").is_err());
        assert!(builder.template("vault").is_err());
    }
}
