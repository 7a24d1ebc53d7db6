//! What a rule looks at: the raw provider record, the normalised event, and the lens results.
//!
//! Sigma rules name fields of the raw record as the provider writes them; a dotted name walks
//! into nested objects (`userIdentity.type`). Where an object has no key for the next part of
//! the name, a key equal to the whole rest of the name is taken, so that keys holding dots are
//! found too (`annotations.authorization.k8s.io/decision` in Kubernetes audit). Arrays on the
//! way are searched element by element (a number picks one element), and an array at the end
//! offers each of its elements as a value.
//!
//! The raw record is parsed at most once per event, and only when a rule that survived the
//! index needs a field from it ([`Subject::dom`]).

use std::cell::OnceCell;

use std::borrow::Cow;

use nhiwatch_model::{content_id, Event, Source, Timestamp};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

/// A field a rule reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FieldRef {
    /// A dotted path into the raw record.
    Raw(Box<str>),
    /// A field of the normalised event or a lens result (native rules).
    Native(NativeField),
}

impl FieldRef {
    /// The name as a rule writes it.
    pub(crate) fn name(&self) -> String {
        match self {
            FieldRef::Raw(path) => path.to_string(),
            FieldRef::Native(field) => field.name().to_owned(),
        }
    }
}

/// The fields native rules may name besides `raw.<path>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum NativeField {
    Id,
    Source,
    IdentityId,
    IdentityKind,
    IdentitySession,
    IdentityCredential,
    Action,
    Service,
    Operation,
    ActionClass,
    Resource,
    Outcome,
    Error,
    SrcIp,
    UserAgent,
    BytesOut,
    Records,
    OutOfScope,
    Permitted,
    Declared,
    FirstSight,
    Sensitive,
}

impl NativeField {
    /// Every native field with its name(s); the first name is the canonical one.
    pub(crate) const ALL: [(&'static str, NativeField); 23] = [
        ("id", NativeField::Id),
        ("source", NativeField::Source),
        ("identity", NativeField::IdentityId),
        ("identity.id", NativeField::IdentityId),
        ("identity.kind", NativeField::IdentityKind),
        ("identity.session", NativeField::IdentitySession),
        ("identity.credential", NativeField::IdentityCredential),
        ("action", NativeField::Action),
        ("service", NativeField::Service),
        ("operation", NativeField::Operation),
        ("action_class", NativeField::ActionClass),
        ("resource", NativeField::Resource),
        ("outcome", NativeField::Outcome),
        ("error", NativeField::Error),
        ("src_ip", NativeField::SrcIp),
        ("user_agent", NativeField::UserAgent),
        ("bytes_out", NativeField::BytesOut),
        ("records", NativeField::Records),
        ("out_of_scope", NativeField::OutOfScope),
        ("permitted", NativeField::Permitted),
        ("declared", NativeField::Declared),
        ("first_sight", NativeField::FirstSight),
        ("sensitive", NativeField::Sensitive),
    ];

    /// The field a native rule names, if it is one.
    pub(crate) fn parse(name: &str) -> Option<NativeField> {
        NativeField::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    /// The canonical name.
    pub(crate) fn name(self) -> &'static str {
        NativeField::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }
}

/// Lens results the engine worked out for an event, for native rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lens {
    /// The policy judged the action not permitted (`out_of_scope`).
    pub out_of_scope: bool,
    /// The policy judged the action permitted.
    pub permitted: bool,
    /// The identity has a policy entry.
    pub declared: bool,
    /// This is the identity's first event in the stream.
    pub first_sight: bool,
    /// The action (and resource) is one the entry marks sensitive.
    pub sensitive: bool,
}

/// One value found at a field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Leaf<'v> {
    /// JSON null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A whole number beyond `i64`.
    UInt(u64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(&'v str),
    /// An object: present, but no value to compare.
    Object,
}

impl Leaf<'_> {
    /// Runs `f` on the value as text (numbers and booleans as JSON writes them); `None` for
    /// null and objects.
    pub(crate) fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> Option<R> {
        match *self {
            Leaf::Str(s) => Some(f(s)),
            Leaf::Bool(b) => Some(f(if b { "true" } else { "false" })),
            Leaf::Int(n) => Some(f(&n.to_string())),
            Leaf::UInt(n) => Some(f(&n.to_string())),
            Leaf::Float(x) => Some(f(&x.to_string())),
            Leaf::Null | Leaf::Object => None,
        }
    }

    /// The value as a number: numbers, and strings that parse as one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            Leaf::Int(n) => Some(n as f64),
            Leaf::UInt(n) => Some(n as f64),
            Leaf::Float(x) => Some(x),
            Leaf::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// One event as rules see it.
pub struct Subject<'s, 'a> {
    source: Source,
    time: Timestamp,
    event: Option<&'s Event<'a>>,
    raw: &'s str,
    lens: Lens,
    dom: OnceCell<Option<Value>>,
}

impl<'s, 'a> Subject<'s, 'a> {
    /// A normalised event with the lens results the engine worked out.
    pub fn new(event: &'s Event<'a>, lens: Lens) -> Self {
        Subject {
            source: event.source,
            time: event.time,
            event: Some(event),
            raw: event.raw.get(),
            lens,
            dom: OnceCell::new(),
        }
    }

    /// A raw provider record alone: Sigma rules see all of it; native rules see only `raw.*`
    /// fields and the source.
    pub fn raw(source: Source, raw: &'s str) -> Self {
        Subject {
            source,
            time: Timestamp(0),
            event: None,
            raw,
            lens: Lens::default(),
            dom: OnceCell::new(),
        }
    }

    /// The same record at a given time (a raw record has none of its own here).
    pub fn at(mut self, time: Timestamp) -> Self {
        self.time = time;
        self
    }

    /// The source format.
    pub fn source(&self) -> Source {
        self.source
    }

    /// When it happened.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// The event's id; for a raw record, a hash of its bytes.
    pub fn event_id(&self) -> Cow<'_, str> {
        match self.event {
            Some(event) => Cow::Borrowed(&event.id),
            None => Cow::Owned(content_id(self.raw.as_bytes())),
        }
    }

    /// The first value of a field as text (group-by and value-count fields).
    pub(crate) fn first_text(&self, field: &FieldRef) -> Option<String> {
        let mut out = None;
        self.visit(field, &mut |leaf| {
            out = leaf.with_text(str::to_owned);
            out.is_some()
        });
        out
    }

    /// The normalised event, when there is one.
    pub fn event(&self) -> Option<&'s Event<'a>> {
        self.event
    }

    /// The raw record, parsed on first use (`None` if it is not JSON, or nests deeper than
    /// [`MAX_PARSE_DEPTH`]).
    fn dom(&self) -> Option<&Value> {
        self.dom
            .get_or_init(|| {
                nesting_within(self.raw, MAX_PARSE_DEPTH)
                    .then(|| sonic_rs::from_str::<Value>(self.raw).ok())
                    .flatten()
            })
            .as_ref()
    }

    /// Calls `f` on each value of `field` until it returns true. `None`: the field is absent;
    /// `Some(matched)`: present, and whether some value satisfied `f`.
    pub(crate) fn visit(
        &self,
        field: &FieldRef,
        f: &mut dyn FnMut(Leaf<'_>) -> bool,
    ) -> Option<bool> {
        match field {
            FieldRef::Raw(path) => {
                let mut found = false;
                let matched = lookup(self.dom()?, path, f, &mut found);
                found.then_some(matched)
            }
            FieldRef::Native(native) => self.native(*native).map(f),
        }
    }

    /// Calls `f` on every string value anywhere in the raw record (keyword search) until it
    /// returns true.
    pub(crate) fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.dom().is_some_and(|dom| any_string(dom, f))
    }

    /// The value of a native field.
    fn native(&self, field: NativeField) -> Option<Leaf<'_>> {
        let lens = |b: bool| Some(Leaf::Bool(b));
        match field {
            NativeField::Source => return Some(Leaf::Str(self.source.as_str())),
            NativeField::OutOfScope => return lens(self.lens.out_of_scope),
            NativeField::Permitted => return lens(self.lens.permitted),
            NativeField::Declared => return lens(self.lens.declared),
            NativeField::FirstSight => return lens(self.lens.first_sight),
            NativeField::Sensitive => return lens(self.lens.sensitive),
            _ => {}
        }
        let event = self.event?;
        let text = |s: &'s str| Some(Leaf::Str(s));
        match field {
            NativeField::Id => text(&event.id),
            NativeField::IdentityId => text(&event.identity.id),
            NativeField::IdentityKind => text(event.identity.kind.as_str()),
            NativeField::IdentitySession => event.identity.session.as_deref().and_then(text),
            NativeField::IdentityCredential => event.identity.credential.as_deref().and_then(text),
            NativeField::Action => text(&event.action),
            NativeField::Service => text(event.service()),
            NativeField::Operation => text(event.operation()),
            NativeField::ActionClass => text(event.action_class.as_str()),
            NativeField::Resource => event.resource.as_deref().and_then(text),
            NativeField::Outcome => text(event.outcome.as_str()),
            NativeField::Error => event.error.as_deref().and_then(text),
            NativeField::SrcIp => event.src_ip.as_deref().and_then(text),
            NativeField::UserAgent => event.user_agent.as_deref().and_then(text),
            NativeField::BytesOut => event.bytes_out.map(Leaf::UInt),
            NativeField::Records => event.records.map(Leaf::UInt),
            NativeField::Source
            | NativeField::OutOfScope
            | NativeField::Permitted
            | NativeField::Declared
            | NativeField::FirstSight
            | NativeField::Sensitive => None,
        }
    }

    /// Reads a key straight from the raw text, without parsing the record: `false` when that
    /// cannot give the lookup's answer (a key with a dot in it could also match, or an array
    /// lies on the way), and the parsed record must be asked instead.
    fn lazy_key(&self, path: &str, f: &mut dyn FnMut(Option<&str>)) -> bool {
        let value = match sonic_rs::get_from_str(self.raw, path.split('.')) {
            Ok(value) => value,
            // Absent under the nested objects; a key holding dots could still name it.
            Err(e) if e.is_not_found() => {
                let mut segments = path.split('.');
                segments.next_back();
                return !segments.any(|segment| may_hold_dotted_key(self.raw, segment));
            }
            Err(_) => return false,
        };
        match value.get_type() {
            sonic_rs::JsonType::Null => {}
            sonic_rs::JsonType::String => f(value.as_str()),
            sonic_rs::JsonType::Number => f(Some(&number_text(value.as_raw_str()))),
            sonic_rs::JsonType::Boolean => f(Some(value.as_raw_str())),
            // Each element is a key: the parsed record offers them one by one.
            sonic_rs::JsonType::Array => return false,
            sonic_rs::JsonType::Object => f(None),
        }
        true
    }

    /// Whether the raw record has been parsed.
    pub(crate) fn parsed(&self) -> bool {
        self.dom.get().is_some()
    }

    /// Parses the raw record now (when rules will need it anyway).
    pub(crate) fn parse(&self) {
        self.dom();
    }

    /// Calls `f` with each index key text of `field` (see the index in `set.rs`): a native
    /// field; a raw field read straight from the raw text while the record is not parsed, or
    /// from the parsed record (each element of an array is a key). `f` gets `None` when the
    /// value is an object, so that every rule under the field must be tried; it is not called
    /// when the field is absent or null.
    pub(crate) fn key(&self, field: &FieldRef, f: &mut dyn FnMut(Option<&str>)) {
        let path = match field {
            FieldRef::Native(native) => {
                match self.native(*native) {
                    Some(Leaf::Null) | None => {}
                    Some(Leaf::Object) => f(None),
                    Some(leaf) => {
                        leaf.with_text(|text| f(Some(text)));
                    }
                }
                return;
            }
            FieldRef::Raw(path) => path,
        };
        if self.dom.get().is_none() && self.lazy_key(path, f) {
            return;
        }
        let Some(dom) = self.dom() else {
            return;
        };
        let mut found = false;
        lookup(
            dom,
            path,
            &mut |leaf| {
                match leaf {
                    Leaf::Null => {}
                    Leaf::Object => f(None),
                    leaf => {
                        leaf.with_text(|text| f(Some(text)));
                    }
                }
                false
            },
            &mut found,
        );
    }
}

/// Whether `raw` may hold a key that is `segment` followed by a dot (`"segment.`), which the
/// lookup would also follow.
fn may_hold_dotted_key(raw: &str, segment: &str) -> bool {
    const MAX: usize = 126;
    if segment.len() > MAX {
        return true;
    }
    let mut needle = [0u8; MAX + 2];
    needle[0] = b'"';
    needle[1..=segment.len()].copy_from_slice(segment.as_bytes());
    needle[segment.len() + 1] = b'.';
    std::str::from_utf8(&needle[..segment.len() + 2]).map_or(true, |n| raw.contains(n))
}

/// A JSON number as [`Leaf::with_text`] writes it, so that keys read from the raw text and
/// from the parsed record agree.
fn number_text(raw: &str) -> String {
    if let Ok(n) = raw.parse::<i64>() {
        n.to_string()
    } else if let Ok(n) = raw.parse::<u64>() {
        n.to_string()
    } else {
        raw.parse::<f64>()
            .map_or_else(|_| raw.to_owned(), |x| x.to_string())
    }
}

/// A JSON value as a leaf (arrays are expanded by the caller).
fn leaf(value: &Value) -> Leaf<'_> {
    if let Some(s) = value.as_str() {
        Leaf::Str(s)
    } else if let Some(b) = value.as_bool() {
        Leaf::Bool(b)
    } else if let Some(n) = value.as_i64() {
        Leaf::Int(n)
    } else if let Some(n) = value.as_u64() {
        Leaf::UInt(n)
    } else if let Some(x) = value.as_f64() {
        Leaf::Float(x)
    } else if value.is_null() {
        Leaf::Null
    } else {
        Leaf::Object
    }
}

/// Records that nest arrays and objects deeper than this are not parsed (their raw fields are
/// absent to rules): the parser and the lookups recurse, and a hostile record must not exhaust
/// the stack (48 levels fit a debug build's 2 MiB thread stack; real records nest 5 to 15).
const MAX_PARSE_DEPTH: usize = 48;

/// Whether `raw` nests arrays and objects at most `limit` deep. Counting the brackets is enough
/// for almost every record; only one with more than `limit` of them is scanned properly.
fn nesting_within(raw: &str, limit: usize) -> bool {
    let bytes = raw.as_bytes();
    if memchr::memchr2_iter(b'{', b'[', bytes)
        .take(limit + 1)
        .count()
        <= limit
    {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Offers `value` as leaves: each element of an array (nested arrays flattened), else itself.
/// (Recursion is bounded: records nest at most [`MAX_PARSE_DEPTH`] levels.)
fn leaves<'v>(value: &'v Value, f: &mut dyn FnMut(Leaf<'v>) -> bool) -> bool {
    match value.as_array() {
        Some(items) => items.iter().any(|item| leaves(item, f)),
        None => f(leaf(value)),
    }
}

/// Finds `path` under `value` (see the module documentation); sets `found` when it exists.
fn lookup<'v>(
    value: &'v Value,
    path: &str,
    f: &mut dyn FnMut(Leaf<'v>) -> bool,
    found: &mut bool,
) -> bool {
    if let Some(object) = value.as_object() {
        let mut here = false;
        if let Some((head, rest)) = path.split_once('.') {
            if let Some(child) = object.get(&head) {
                if lookup(child, rest, f, &mut here) {
                    *found = true;
                    return true;
                }
            }
        }
        // Not under the nested objects the dots name: a key holding the dots itself.
        if !here {
            if let Some(child) = object.get(&path) {
                *found = true;
                return leaves(child, f);
            }
        }
        *found |= here;
        false
    } else if let Some(items) = value.as_array() {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        if let Some(item) = head.parse::<usize>().ok().and_then(|i| items.get(i)) {
            let matched = match rest {
                Some(rest) => lookup(item, rest, f, found),
                None => {
                    *found = true;
                    leaves(item, f)
                }
            };
            if matched {
                return true;
            }
        }
        items.iter().any(|item| lookup(item, path, f, found))
    } else {
        false
    }
}

fn any_string(value: &Value, f: &mut dyn FnMut(&str) -> bool) -> bool {
    if let Some(s) = value.as_str() {
        f(s)
    } else if let Some(object) = value.as_object() {
        object.iter().any(|(_, v)| any_string(v, f))
    } else if let Some(items) = value.as_array() {
        items.iter().any(|v| any_string(v, f))
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(raw: &str, path: &str) -> Option<Vec<String>> {
        let subject = Subject::raw(Source::Cloudtrail, raw);
        let mut seen = Vec::new();
        subject
            .visit(&FieldRef::Raw(path.into()), &mut |leaf| {
                seen.push(format!("{leaf:?}"));
                false
            })
            .map(|_| seen)
    }

    #[test]
    fn dotted_paths_nested_keys_with_dots_and_arrays() {
        let raw = r#"{"a":{"b":{"c":1}},"annotations":{"authorization.k8s.io/decision":"allow"},
            "items":[{"n":"x"},{"n":"y"}],"tags":["p","q"],"z":null}"#;
        assert_eq!(values(raw, "a.b.c"), Some(vec!["Int(1)".into()]));
        assert_eq!(
            values(raw, "annotations.authorization.k8s.io/decision"),
            Some(vec!["Str(\"allow\")".into()])
        );
        assert_eq!(
            values(raw, "items.n"),
            Some(vec!["Str(\"x\")".into(), "Str(\"y\")".into()])
        );
        assert_eq!(values(raw, "items.1.n"), Some(vec!["Str(\"y\")".into()]));
        assert_eq!(
            values(raw, "tags"),
            Some(vec!["Str(\"p\")".into(), "Str(\"q\")".into()])
        );
        assert_eq!(values(raw, "z"), Some(vec!["Null".into()]));
        assert_eq!(values(raw, "a.b"), Some(vec!["Object".into()]));
        assert_eq!(values(raw, "a.x"), None);
        assert_eq!(values("not json", "a"), None);
        let deep = format!("{{\"d\":{}1{}}}", "[".repeat(5_000), "]".repeat(5_000));
        assert_eq!(
            values(&deep, "d"),
            None,
            "too deep to parse, and no overflow"
        );
        let nested = format!("{{\"d\":{}1{}}}", "[".repeat(46), "]".repeat(46));
        assert_eq!(
            values(&nested, "d"),
            Some(vec!["Int(1)".into()]),
            "deep, still parsed"
        );
        let many = format!("{{\"s\":\"{}\",\"d\":[[1]]}}", "[{".repeat(200));
        assert_eq!(
            values(&many, "d"),
            Some(vec!["Int(1)".into()]),
            "brackets in strings"
        );
        // The nested objects the dots name come first; a key holding the dots only otherwise.
        assert_eq!(
            values(r#"{"a":{"b":1},"a.b":2}"#, "a.b"),
            Some(vec!["Int(1)".into()])
        );
        assert_eq!(
            values(r#"{"a":{"c":1},"a.b":2}"#, "a.b"),
            Some(vec!["Int(2)".into()])
        );
    }

    #[test]
    fn keys_come_from_the_raw_text_without_a_parse() {
        let raw = r#"{"eventName":"StopLogging","n":403,"list":[1],"e":"a\"b"}"#;
        let subject = Subject::raw(Source::Cloudtrail, raw);
        let key = |name: &str| {
            let mut out = Vec::new();
            subject.key(&FieldRef::Raw(name.into()), &mut |k| {
                out.push(k.map(str::to_owned))
            });
            out
        };
        assert_eq!(key("eventName"), vec![Some("StopLogging".to_owned())]);
        assert_eq!(key("n"), vec![Some("403".to_owned())]);
        assert_eq!(key("n"), vec![Some("403".to_owned())]);
        assert_eq!(key("e"), vec![Some("a\"b".to_owned())]);
        assert!(key("missing").is_empty());
        assert!(subject.dom.get().is_none(), "no parse for top-level keys");
        assert_eq!(
            key("list"),
            vec![Some("1".to_owned())],
            "arrays from the parsed record"
        );
        // Nested keys are read from the raw text too, unless a key with a dot could also match.
        let nested = Subject::raw(Source::Cloudtrail, r#"{"a":{"b":"X"},"n":1}"#);
        let mut out = Vec::new();
        nested.key(&FieldRef::Raw("a.b".into()), &mut |k| {
            out.push(k.map(str::to_owned))
        });
        assert_eq!(out, vec![Some("X".to_owned())]);
        assert!(nested.dom.get().is_none());
        let dotted = Subject::raw(Source::Cloudtrail, r#"{"a":{"c":"X"},"a.b":"Y"}"#);
        let mut out = Vec::new();
        dotted.key(&FieldRef::Raw("a.b".into()), &mut |k| {
            out.push(k.map(str::to_owned))
        });
        assert_eq!(out, vec![Some("Y".to_owned())], "a key holding the dots");
        // Arrays on the way are read from the parsed record, element by element.
        let nested = Subject::raw(Source::Cloudtrail, r#"{"a":{"b":["X","y"]},"n":1.50}"#);
        let mut out = Vec::new();
        nested.key(&FieldRef::Raw("a.b".into()), &mut |k| {
            out.push(k.map(str::to_owned))
        });
        assert_eq!(out, vec![Some("X".to_owned()), Some("y".to_owned())]);
        let mut out = Vec::new();
        nested.key(&FieldRef::Raw("n".into()), &mut |k| {
            out.push(k.map(str::to_owned))
        });
        assert_eq!(out, vec![Some("1.5".to_owned())], "as the leaf text");
    }
}
