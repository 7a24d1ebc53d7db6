//! Sigma detections: search identifiers (selections) and the condition over them, compiled while
//! the YAML is read so that every error carries the line and column of the value at fault.
//!
//! - A **map** is an AND of field checks; a **list of maps** is an OR of maps; a **list of
//!   strings** (or a map keyed `'|modifiers'`) is a keyword search over every string value of
//!   the record, each keyword matched as a substring unless its modifiers say otherwise.
//! - A field key is `field|modifier|modifier`; values are a scalar, a list (OR; AND with
//!   `|all`) or `null` (the field is absent or null).
//! - Modifiers (Sigma modifiers appendix, 2.1): `contains`, `startswith`, `endswith`, `all`,
//!   `exists`, `cased`, `neq`, `windash`, `re` with `i`/`m`/`s`, `base64`, `base64offset`,
//!   `utf16le`/`wide`, `utf16be`, `utf16`, `lt`, `lte`, `gt`, `gte`, `cidr`, `expand`,
//!   `fieldref`, and the time parts `minute`, `hour`, `day`, `week`, `month`, `year`.
//!   Transformations apply in the order written.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use nhiwatch_model::Timestamp;
use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::condition::{self, Cond, Expr};
use crate::pattern::{base64, base64_offsets, fold_key, Pattern, SigmaString};
use crate::record::{FieldRef, Leaf, NativeField, Subject};

thread_local! {
    /// Placeholder values for `|expand`, while rules are read (see [`crate::LoadOptions`]).
    static PLACEHOLDERS: RefCell<FxHashMap<String, Vec<String>>> = RefCell::new(FxHashMap::default());
}

thread_local! {
    /// The search identifiers of the document being read, when known beforehand, so that a
    /// condition naming one that does not exist is reported at the condition itself.
    static DECLARED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Declares the search identifiers of one document for the duration of its read.
pub(crate) struct DeclaredNames {
    previous: Option<Vec<String>>,
}

impl DeclaredNames {
    pub(crate) fn enter(names: Option<Vec<String>>) -> DeclaredNames {
        let previous = DECLARED.with(|cell| cell.replace(names));
        DeclaredNames { previous }
    }
}

impl Drop for DeclaredNames {
    fn drop(&mut self) {
        let previous = self.previous.take();
        DECLARED.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// Sets the placeholders for the duration of one read.
pub(crate) struct PlaceholderScope {
    previous: FxHashMap<String, Vec<String>>,
}

impl PlaceholderScope {
    pub(crate) fn enter(values: &FxHashMap<String, Vec<String>>) -> PlaceholderScope {
        let previous = PLACEHOLDERS.with(|cell| cell.replace(values.clone()));
        PlaceholderScope { previous }
    }
}

impl Drop for PlaceholderScope {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.previous);
        PLACEHOLDERS.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// Which fields a detection may name.
pub(crate) trait Namespace {
    /// Resolves a field name.
    fn resolve(name: &str) -> Result<FieldRef, String>;
}

/// Sigma: any dotted path into the raw record.
pub(crate) struct RawFields;

impl Namespace for RawFields {
    fn resolve(name: &str) -> Result<FieldRef, String> {
        if name.is_empty() {
            return Err("a field name is empty".into());
        }
        Ok(FieldRef::Raw(name.into()))
    }
}

/// Native rules: the normalised event, lens results, and `raw.<path>`.
pub(crate) struct NativeFields;

impl Namespace for NativeFields {
    fn resolve(name: &str) -> Result<FieldRef, String> {
        if let Some(path) = name.strip_prefix("raw.") {
            return RawFields::resolve(path);
        }
        NativeField::parse(name).map(FieldRef::Native).ok_or_else(|| {
            let known: Vec<&str> = NativeField::ALL.iter().map(|(n, _)| *n).collect();
            format!(
                "`{name}` is not a field of native rules; use one of {}, or `raw.<path>` for the provider's record",
                known.join(", ")
            )
        })
    }
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Cmp {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Cmp::Lt => left < right,
            Cmp::Lte => left <= right,
            Cmp::Gt => left > right,
            Cmp::Gte => left >= right,
        }
    }
}

/// A part of a date (`|hour` and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DatePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl DatePart {
    /// The part of an RFC 3339 time, UTC.
    fn of(self, text: &str) -> Option<i64> {
        let secs = Timestamp::parse_rfc3339(text.trim()).ok()?.unix_seconds();
        let days = secs.div_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Some(match self {
            DatePart::Minute => secs.rem_euclid(3_600) / 60,
            DatePart::Hour => secs.rem_euclid(86_400) / 3_600,
            DatePart::Day => day,
            DatePart::Month => month,
            DatePart::Year => year,
            DatePart::Week => iso_week(days, year),
        })
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO 8601 week number of a day.
fn iso_week(days: i64, year: i64) -> i64 {
    // 1970-01-01 was a Thursday; Monday = 1.
    let weekday = |d: i64| (d + 3).rem_euclid(7) + 1;
    let ordinal = days - days_from_civil(year, 1, 1) + 1;
    let week = (ordinal - weekday(days) + 10) / 7;
    let weeks_in = |y: i64| {
        let jan1 = weekday(days_from_civil(y, 1, 1));
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if jan1 == 4 || (leap && jan1 == 3) {
            53
        } else {
            52
        }
    };
    if week < 1 {
        weeks_in(year - 1)
    } else if week > weeks_in(year) {
        1
    } else {
        week
    }
}

/// An IP network (`|cidr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not a CIDR network (e.g. `10.0.0.0/8`, `2001:db8::/32`)");
        let (address, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { network, bits })
    }

    fn contains(&self, text: &str) -> bool {
        let Ok(address) = text.trim().parse::<IpAddr>() else {
            return false;
        };
        let prefix = |bytes: &[u8], other: &[u8]| {
            let full = usize::from(self.bits / 8);
            let rest = self.bits % 8;
            bytes[..full] == other[..full]
                && (rest == 0 || {
                    let mask = 0xffu8 << (8 - rest);
                    bytes[full] & mask == other[full] & mask
                })
        };
        match (self.network, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix(&n.octets(), &a.octets()),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(&n.octets(), &a.octets()),
            (IpAddr::V4(n), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| prefix(&n.octets(), &a.octets())),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

/// How a `|fieldref` compares the two fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefOp {
    Equal,
    StartsWith,
    EndsWith,
    Contains,
}

/// One value a field is compared with.
#[derive(Clone, Debug)]
pub(crate) enum ValueTest {
    /// A string pattern (wildcards, modifiers, regular expression).
    Str(Pattern),
    /// A number written as a number: equal numbers, or a string equal to its text.
    Num(f64, Box<str>),
    /// `true` / `false`.
    Bool(bool),
    /// `|lt` and friends.
    Cmp(Cmp, f64),
    /// `|cidr`.
    Cidr(Cidr),
    /// A time part, compared with a number.
    Date(DatePart, Option<Cmp>, f64),
    /// `|fieldref`: the value of another field.
    FieldRef(FieldRef, RefOp, bool),
}

impl ValueTest {
    fn test(&self, leaf: Leaf<'_>, subject: &Subject<'_, '_>) -> bool {
        match self {
            ValueTest::Str(pattern) => leaf.with_text(|t| pattern.is_match(t)).unwrap_or(false),
            ValueTest::Num(n, text) => match leaf {
                Leaf::Str(s) => {
                    s.trim().parse::<f64>().is_ok_and(|x| x == *n) || s.eq_ignore_ascii_case(text)
                }
                _ => leaf.as_f64() == Some(*n),
            },
            ValueTest::Bool(b) => match leaf {
                Leaf::Bool(x) => x == *b,
                Leaf::Str(s) => s.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
                _ => false,
            },
            ValueTest::Cmp(cmp, n) => leaf.as_f64().is_some_and(|x| cmp.holds(x, *n)),
            ValueTest::Cidr(cidr) => matches!(leaf, Leaf::Str(s) if cidr.contains(s)),
            ValueTest::Date(part, cmp, n) => match leaf {
                Leaf::Str(s) => part.of(s).is_some_and(|x| {
                    let x = x as f64;
                    match cmp {
                        Some(cmp) => cmp.holds(x, *n),
                        None => x == *n,
                    }
                }),
                _ => false,
            },
            ValueTest::FieldRef(other, op, cased) => {
                let Some(mine) = leaf.with_text(str::to_owned) else {
                    return false;
                };
                let fold = |s: &str| {
                    if *cased {
                        s.to_owned()
                    } else {
                        s.to_lowercase()
                    }
                };
                let mine = fold(&mine);
                subject
                    .visit(other, &mut |theirs| {
                        theirs
                            .with_text(|t| {
                                let t = fold(t);
                                match op {
                                    RefOp::Equal => mine == t,
                                    RefOp::StartsWith => mine.starts_with(&t),
                                    RefOp::EndsWith => mine.ends_with(&t),
                                    RefOp::Contains => mine.contains(&t),
                                }
                            })
                            .unwrap_or(false)
                    })
                    .unwrap_or(false)
            }
        }
    }

    /// The index key this value requires: an exact text or a prefix (lower-cased).
    fn key(&self) -> Option<Key> {
        match self {
            ValueTest::Str(pattern) => match (pattern.exact(), pattern.prefix()) {
                (Some(text), _) => Some(Key::Exact(fold_key(text).into_owned())),
                (_, Some(text)) if !text.is_empty() => {
                    Some(Key::Prefix(fold_key(text).into_owned()))
                }
                _ => None,
            },
            ValueTest::Bool(b) => Some(Key::Exact(b.to_string())),
            _ => None,
        }
    }
}

/// What an index key requires of a field's value (lower-cased).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    /// The whole value.
    Exact(String),
    /// Its beginning.
    Prefix(String),
}

/// A field and the keys one of which its value must have.
pub(crate) type Requirement = (FieldRef, Vec<Key>);

/// What a field check tests.
#[derive(Clone, Debug)]
pub(crate) enum Test {
    /// `|exists: true/false`.
    Exists(bool),
    /// `field: null`: absent or null.
    Null,
    /// Values: each entry is one value of the rule with its alternatives (a value that a
    /// modifier expanded, like `windash`); entries are ORed, or ANDed with `all`; `neq` holds
    /// when the field has a value and none of them matches.
    Values {
        all: bool,
        neq: bool,
        values: Vec<Vec<ValueTest>>,
    },
}

/// One key of a selection map: a field (or, with no field, a keyword search) and its test.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub(crate) field: Option<FieldRef>,
    pub(crate) test: Test,
}

impl Check {
    fn matches(&self, s: &Subject<'_, '_>) -> bool {
        let Some(field) = &self.field else {
            return self.keywords(s);
        };
        match &self.test {
            Test::Exists(want) => s.visit(field, &mut |_| false).is_some() == *want,
            Test::Null => s
                .visit(field, &mut |leaf| leaf == Leaf::Null)
                .unwrap_or(true),
            Test::Values {
                neq: true, values, ..
            } => {
                let mut valued = false;
                let equal = s.visit(field, &mut |leaf| {
                    if matches!(leaf, Leaf::Null | Leaf::Object) {
                        return false;
                    }
                    valued = true;
                    values.iter().flatten().any(|v| v.test(leaf, s))
                });
                valued && equal == Some(false)
            }
            Test::Values {
                all: true, values, ..
            } => values.iter().all(|alternatives| {
                s.visit(field, &mut |leaf| {
                    alternatives.iter().any(|v| v.test(leaf, s))
                }) == Some(true)
            }),
            Test::Values { values, .. } => {
                s.visit(field, &mut |leaf| {
                    values.iter().flatten().any(|v| v.test(leaf, s))
                }) == Some(true)
            }
        }
    }

    fn keywords(&self, s: &Subject<'_, '_>) -> bool {
        let Test::Values { all, values, .. } = &self.test else {
            return false;
        };
        let any = |alternatives: &[ValueTest]| {
            s.any_string(&mut |text| alternatives.iter().any(|v| v.test(Leaf::Str(text), s)))
        };
        if *all {
            values.iter().all(|a| any(a))
        } else {
            values.iter().any(|a| any(a))
        }
    }

    /// The index requirement: this field must equal one of these keys.
    fn requirement(&self) -> Option<Requirement> {
        let field = self.field.clone()?;
        let Test::Values {
            all: false,
            neq: false,
            values,
        } = &self.test
        else {
            return None;
        };
        let mut keys = Vec::new();
        for value in values.iter().flatten() {
            keys.push(value.key()?);
        }
        (!keys.is_empty()).then_some((field, keys))
    }
}

/// A search identifier: a map of checks (AND) or a list of maps (OR).
#[derive(Clone, Debug)]
pub(crate) enum Selection {
    All(Vec<Check>),
    Any(Vec<Selection>),
}

impl Selection {
    pub(crate) fn matches(&self, s: &Subject<'_, '_>) -> bool {
        match self {
            Selection::All(checks) => checks.iter().all(|c| c.matches(s)),
            Selection::Any(items) => items.iter().any(|i| i.matches(s)),
        }
    }

    /// Index requirements: each says "this field must equal one of these keys".
    pub(crate) fn requirements(&self) -> Vec<Requirement> {
        match self {
            Selection::All(checks) => checks.iter().filter_map(Check::requirement).collect(),
            Selection::Any(items) => intersect(items.iter().map(Selection::requirements).collect()),
        }
    }
}

/// Requirements that hold for an OR of alternatives: the fields every alternative requires,
/// with the union of their keys.
fn intersect(alternatives: Vec<Vec<Requirement>>) -> Vec<Requirement> {
    let mut iter = alternatives.into_iter();
    let Some(mut common) = iter.next() else {
        return Vec::new();
    };
    for other in iter {
        common = common
            .into_iter()
            .filter_map(|(field, mut keys)| {
                let (_, more) = other.iter().find(|(f, _)| *f == field)?;
                keys.extend(more.iter().cloned());
                Some((field, keys))
            })
            .collect();
    }
    for (_, keys) in &mut common {
        keys.sort();
        keys.dedup();
    }
    common
}

/// A detection: named selections and the condition over them.
#[derive(Clone, Debug)]
pub(crate) struct Detection {
    pub(crate) selections: Vec<Selection>,
    pub(crate) condition: Cond,
}

impl Detection {
    /// Whether the subject matches.
    pub(crate) fn matches(&self, s: &Subject<'_, '_>) -> bool {
        self.condition
            .eval(&mut |i| self.selections.get(i).is_some_and(|sel| sel.matches(s)))
    }

    /// Index requirements of the whole condition.
    pub(crate) fn requirements(&self) -> Vec<Requirement> {
        self.cond_requirements(&self.condition)
    }

    fn cond_requirements(&self, cond: &Cond) -> Vec<Requirement> {
        match cond {
            Cond::Sel(i) => self
                .selections
                .get(*i)
                .map(Selection::requirements)
                .unwrap_or_default(),
            Cond::Not(_) => Vec::new(),
            Cond::And(items) => items
                .iter()
                .flat_map(|c| self.cond_requirements(c))
                .collect(),
            Cond::Or(items) => intersect(items.iter().map(|c| self.cond_requirements(c)).collect()),
            Cond::AtLeast(n, items) if *n >= items.len() => items
                .iter()
                .flat_map(|i| self.cond_requirements(&Cond::Sel(*i)))
                .collect(),
            Cond::AtLeast(0, _) => Vec::new(),
            Cond::AtLeast(_, items) => intersect(
                items
                    .iter()
                    .map(|i| self.cond_requirements(&Cond::Sel(*i)))
                    .collect(),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Modifiers

/// A transformation of the value, in the order written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transform {
    Contains,
    StartsWith,
    EndsWith,
    Windash,
    Base64,
    Base64Offset,
    Utf16Le,
    Utf16Be,
    Utf16,
}

/// What kind of comparison the value takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Re { i: bool, m: bool, s: bool },
    Cmp(Cmp),
    Cidr,
    Exists,
    FieldRef,
    Date(DatePart, Option<Cmp>),
}

/// A parsed field key: `field|modifier|...`.
#[derive(Clone, Debug)]
pub(crate) struct FieldKey {
    field: Option<FieldRef>,
    transforms: Vec<Transform>,
    kind: Kind,
    all: bool,
    cased: bool,
    neq: bool,
    expand: bool,
}

impl FieldKey {
    fn parse<N: Namespace>(text: &str) -> Result<FieldKey, String> {
        let mut parts = text.split('|');
        let name = parts.next().unwrap_or("");
        let field = if name.is_empty() {
            None
        } else {
            Some(N::resolve(name)?)
        };
        let mut key = FieldKey {
            field,
            transforms: Vec::new(),
            kind: Kind::Plain,
            all: false,
            cased: false,
            neq: false,
            expand: false,
        };
        let set_kind = |key: &mut FieldKey, kind: Kind, name: &str| -> Result<(), String> {
            match (key.kind, kind) {
                (Kind::Plain, _) => key.kind = kind,
                (Kind::Date(part, None), Kind::Cmp(cmp)) => key.kind = Kind::Date(part, Some(cmp)),
                (Kind::Cmp(cmp), Kind::Date(part, None)) => key.kind = Kind::Date(part, Some(cmp)),
                _ => {
                    return Err(format!(
                    "modifier `{name}` cannot be combined with the modifiers before it in `{text}`"
                ))
                }
            }
            Ok(())
        };
        for modifier in parts {
            let re_flag = |key: &mut FieldKey, flag: char| -> Result<(), String> {
                match &mut key.kind {
                    Kind::Re { i, m, s } => {
                        match flag {
                            'i' => *i = true,
                            'm' => *m = true,
                            _ => *s = true,
                        }
                        Ok(())
                    }
                    _ => Err(format!("modifier `{modifier}` only follows `re`")),
                }
            };
            match modifier {
                "contains" => key.transforms.push(Transform::Contains),
                "startswith" => key.transforms.push(Transform::StartsWith),
                "endswith" => key.transforms.push(Transform::EndsWith),
                "windash" => key.transforms.push(Transform::Windash),
                "base64" => key.transforms.push(Transform::Base64),
                "base64offset" => key.transforms.push(Transform::Base64Offset),
                "utf16le" | "wide" => key.transforms.push(Transform::Utf16Le),
                "utf16be" => key.transforms.push(Transform::Utf16Be),
                "utf16" => key.transforms.push(Transform::Utf16),
                "all" => key.all = true,
                "cased" => key.cased = true,
                "neq" => key.neq = true,
                "expand" => key.expand = true,
                "re" => set_kind(&mut key, Kind::Re { i: false, m: false, s: false }, modifier)?,
                "i" | "ignorecase" => re_flag(&mut key, 'i')?,
                "m" | "multiline" => re_flag(&mut key, 'm')?,
                "s" | "dotall" => re_flag(&mut key, 's')?,
                "lt" => set_kind(&mut key, Kind::Cmp(Cmp::Lt), modifier)?,
                "lte" => set_kind(&mut key, Kind::Cmp(Cmp::Lte), modifier)?,
                "gt" => set_kind(&mut key, Kind::Cmp(Cmp::Gt), modifier)?,
                "gte" => set_kind(&mut key, Kind::Cmp(Cmp::Gte), modifier)?,
                "cidr" => set_kind(&mut key, Kind::Cidr, modifier)?,
                "exists" => set_kind(&mut key, Kind::Exists, modifier)?,
                "fieldref" => set_kind(&mut key, Kind::FieldRef, modifier)?,
                "minute" => set_kind(&mut key, Kind::Date(DatePart::Minute, None), modifier)?,
                "hour" => set_kind(&mut key, Kind::Date(DatePart::Hour, None), modifier)?,
                "day" => set_kind(&mut key, Kind::Date(DatePart::Day, None), modifier)?,
                "week" => set_kind(&mut key, Kind::Date(DatePart::Week, None), modifier)?,
                "month" => set_kind(&mut key, Kind::Date(DatePart::Month, None), modifier)?,
                "year" => set_kind(&mut key, Kind::Date(DatePart::Year, None), modifier)?,
                "" => return Err(format!("an empty modifier in `{text}`")),
                other => {
                    return Err(format!(
                        "unknown modifier `{other}` in `{text}`; Sigma's modifiers are contains, startswith, \
                         endswith, all, exists, cased, neq, windash, re (with i, m, s), base64, base64offset, \
                         utf16le, utf16be, utf16, wide, lt, lte, gt, gte, cidr, expand, fieldref, minute, hour, \
                         day, week, month, year"
                    ))
                }
            }
        }
        key.validate(text)?;
        Ok(key)
    }

    fn validate(&self, text: &str) -> Result<(), String> {
        let string_like = matches!(self.kind, Kind::Plain | Kind::FieldRef);
        let encodes = self.transforms.iter().any(|t| {
            matches!(
                t,
                Transform::Windash
                    | Transform::Base64
                    | Transform::Base64Offset
                    | Transform::Utf16Le
                    | Transform::Utf16Be
                    | Transform::Utf16
            )
        });
        if !self.transforms.is_empty() && !string_like {
            return Err(format!(
                "string modifiers (contains, startswith, base64...) cannot be combined with the comparison in `{text}`"
            ));
        }
        if self.kind == Kind::FieldRef && encodes {
            return Err(format!(
                "`fieldref` compares fields as they are; drop the encoding modifiers in `{text}`"
            ));
        }
        if self.kind == Kind::Exists && (self.all || self.neq || self.cased || self.expand) {
            return Err(format!("`exists` takes no other modifier, in `{text}`"));
        }
        if self.neq && self.all {
            return Err(format!("`neq` and `all` cannot be combined, in `{text}`"));
        }
        if self.field.is_none() && !matches!(self.kind, Kind::Plain | Kind::Re { .. }) {
            return Err(format!(
                "a keyword search (a key without a field name) takes only string modifiers, in `{text}`"
            ));
        }
        if self.field.is_none() && self.neq {
            return Err(format!("a keyword search cannot take `neq`, in `{text}`"));
        }
        Ok(())
    }

    /// The key of a keyword list: plain substrings.
    fn keywords() -> FieldKey {
        FieldKey {
            field: None,
            transforms: Vec::new(),
            kind: Kind::Plain,
            all: false,
            cased: false,
            neq: false,
            expand: false,
        }
    }

    /// Compiles one scalar of the rule into its alternatives.
    fn compile<N: Namespace>(&self, scalar: Scalar<'_>) -> Result<Vec<ValueTest>, String> {
        match self.kind {
            Kind::Exists => Err("`exists` takes `true` or `false`".into()),
            Kind::Cmp(cmp) => Ok(vec![ValueTest::Cmp(cmp, scalar.number("a comparison")?)]),
            Kind::Date(part, cmp) => Ok(vec![ValueTest::Date(
                part,
                cmp,
                scalar.number("a date part")?,
            )]),
            Kind::Cidr => Ok(vec![ValueTest::Cidr(Cidr::parse(&scalar.text())?)]),
            Kind::FieldRef => {
                let op = match self.transforms.as_slice() {
                    [] => RefOp::Equal,
                    [Transform::StartsWith] => RefOp::StartsWith,
                    [Transform::EndsWith] => RefOp::EndsWith,
                    [Transform::Contains] => RefOp::Contains,
                    _ => {
                        return Err(
                            "`fieldref` takes at most one of contains, startswith, endswith".into(),
                        )
                    }
                };
                Ok(vec![ValueTest::FieldRef(
                    N::resolve(&scalar.text())?,
                    op,
                    self.cased,
                )])
            }
            Kind::Re { i, m, s } => {
                let Scalar::Str(source) = scalar else {
                    return Err("a regular expression must be a string".into());
                };
                let regex = regex::RegexBuilder::new(source)
                    .case_insensitive(i)
                    .multi_line(m)
                    .dot_matches_new_line(s)
                    .build()
                    .map_err(|e| format!("invalid regular expression: {e}"))?;
                Ok(vec![ValueTest::Str(Pattern::regex(regex))])
            }
            Kind::Plain => match scalar {
                Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_)
                    if self.transforms.is_empty() && self.field.is_some() && !self.expand =>
                {
                    Ok(vec![ValueTest::Num(
                        scalar.number("a number")?,
                        scalar.text().into(),
                    )])
                }
                Scalar::Bool(b) if self.transforms.is_empty() && self.field.is_some() => {
                    Ok(vec![ValueTest::Bool(b)])
                }
                _ => self.strings(&scalar.text()),
            },
        }
    }

    /// A string value through `expand` and the transformations, into patterns.
    fn strings(&self, text: &str) -> Result<Vec<ValueTest>, String> {
        let mut values: Vec<SigmaString> = if self.expand {
            expand(text)?
                .iter()
                .map(|t| SigmaString::parse(t))
                .collect()
        } else {
            vec![SigmaString::parse(text)]
        };
        let mut transforms = self.transforms.clone();
        if self.field.is_none()
            && !transforms.iter().any(|t| {
                matches!(
                    t,
                    Transform::Contains | Transform::StartsWith | Transform::EndsWith
                )
            })
        {
            // A keyword is found anywhere in a value.
            transforms.push(Transform::Contains);
        }
        for transform in transforms {
            let mut next = Vec::new();
            for value in values {
                match transform {
                    Transform::Contains => next.push(value.star_before().star_after()),
                    Transform::StartsWith => next.push(value.star_after()),
                    Transform::EndsWith => next.push(value.star_before()),
                    Transform::Windash => next.extend(value.windash()),
                    Transform::Base64 | Transform::Base64Offset => {
                        let bytes = value.plain_bytes().ok_or(
                            "a value with wildcards cannot be base64-encoded; put `contains` after `base64`",
                        )?;
                        if transform == Transform::Base64 {
                            next.push(SigmaString::literal(base64(&bytes).as_bytes()));
                        } else {
                            next.extend(
                                base64_offsets(&bytes)
                                    .iter()
                                    .map(|v| SigmaString::literal(v.as_bytes())),
                            );
                        }
                    }
                    Transform::Utf16Le | Transform::Utf16Be | Transform::Utf16 => {
                        let bytes = value
                            .plain_bytes()
                            .ok_or("a value with wildcards cannot be re-encoded as UTF-16")?;
                        let text = String::from_utf8_lossy(&bytes);
                        let mut out = Vec::new();
                        if transform == Transform::Utf16 {
                            out.extend_from_slice(&[0xff, 0xfe]);
                        }
                        for unit in text.encode_utf16() {
                            if transform == Transform::Utf16Be {
                                out.extend_from_slice(&unit.to_be_bytes());
                            } else {
                                out.extend_from_slice(&unit.to_le_bytes());
                            }
                        }
                        next.push(SigmaString::literal(&out));
                    }
                }
            }
            if next.len() > 4_096 {
                return Err("the modifiers expand this value into more than 4,096 strings".into());
            }
            values = next;
        }
        values
            .into_iter()
            .map(|v| {
                Pattern::new(v, self.cased).map(ValueTest::Str).ok_or_else(|| {
                    "a UTF-16 value must be base64-encoded afterwards (e.g. `|utf16le|base64offset|contains`)"
                        .to_owned()
                })
            })
            .collect()
    }
}

/// Replaces `%name%` placeholders with their configured values (every combination);
/// `\%` is a plain percent sign.
fn expand(text: &str) -> Result<Vec<String>, String> {
    let mut results = vec![String::new()];
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("\\%") {
            results.iter_mut().for_each(|r| r.push('%'));
            rest = after;
        } else if let Some(after) = rest.strip_prefix('%') {
            let Some(end) = after.find('%') else {
                results.iter_mut().for_each(|r| r.push('%'));
                rest = after;
                continue;
            };
            let name = &after[..end];
            let values = PLACEHOLDERS.with(|p| p.borrow().get(name).cloned()).ok_or_else(|| {
                format!("placeholder `%{name}%` has no values; define it in the placeholders file (--placeholders)")
            })?;
            results = results
                .iter()
                .flat_map(|r| values.iter().map(move |v| format!("{r}{v}")))
                .collect();
            rest = &after[end + 1..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            results.iter_mut().for_each(|r| r.push(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(results)
}

/// A scalar of the YAML.
#[derive(Clone, Copy, Debug)]
enum Scalar<'t> {
    Str(&'t str),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

impl Scalar<'_> {
    fn text(&self) -> String {
        match *self {
            Scalar::Str(s) => s.to_owned(),
            Scalar::Int(n) => n.to_string(),
            Scalar::UInt(n) => n.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }

    fn number(&self, what: &str) -> Result<f64, String> {
        match *self {
            Scalar::Int(n) => Ok(n as f64),
            Scalar::UInt(n) => Ok(n as f64),
            Scalar::Float(x) => Ok(x),
            Scalar::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{what} needs a number, not `{s}`")),
            Scalar::Bool(b) => Err(format!("{what} needs a number, not `{b}`")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialisation (errors raised inside visitors carry the YAML position)

/// A Sigma detection as read from YAML (fields of the raw record).
pub(crate) struct SigmaDetection(pub(crate) Detection);

impl<'de> serde::Deserialize<'de> for SigmaDetection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DetectionVisitor::<RawFields> {
            filter: false,
            _n: PhantomData,
        })
        .map(|(detection, _)| SigmaDetection(detection))
    }
}

/// The `filter` of a Sigma filter document: the rules it tunes and a detection.
pub(crate) struct SigmaFilter(pub(crate) Detection, pub(crate) Vec<String>);

impl<'de> serde::Deserialize<'de> for SigmaFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DetectionVisitor::<RawFields> {
            filter: true,
            _n: PhantomData,
        })
        .map(|(detection, rules)| SigmaFilter(detection, rules))
    }
}

/// A native rule's `where`/`unless`: one selection over native fields.
pub(crate) struct NativeSelection(pub(crate) Selection);

impl<'de> serde::Deserialize<'de> for NativeSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SelectionSeed::<NativeFields>(PhantomData)
            .deserialize(d)
            .map(NativeSelection)
    }
}

/// Reads a detection map; for a filter, also its `rules` list.
struct DetectionVisitor<N> {
    filter: bool,
    _n: PhantomData<N>,
}

impl<'de, N: Namespace> Visitor<'de> for DetectionVisitor<N> {
    type Value = (Detection, Vec<String>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of search identifiers and a `condition`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names: Vec<Box<str>> = Vec::new();
        let mut selections = Vec::new();
        let mut condition: Option<Result<Cond, Vec<Expr>>> = None;
        let mut rules = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "condition" => {
                    // Resolve against every identifier of the detection when the document's
                    // were declared beforehand, else against those seen so far.
                    let declared = DECLARED.with(|cell| cell.borrow().clone());
                    let refs: Vec<&str> = match &declared {
                        Some(all) => all.iter().map(String::as_str).collect(),
                        None => names.iter().map(|n| &**n).collect(),
                    };
                    condition = Some(map.next_value_seed(ConditionSeed {
                        names: &refs,
                        strict: declared.is_some(),
                    })?);
                }
                "rules" if self.filter => {
                    rules = map.next_value::<crate::document::Strings>()?.0;
                }
                "timeframe" => {
                    return Err(de::Error::custom(
                        "`timeframe` belongs to Sigma 1 aggregations; write a correlation rule with `timespan`",
                    ))
                }
                _ => {
                    if names.iter().any(|n| **n == *key) {
                        return Err(de::Error::custom(format!("search identifier `{key}` appears twice")));
                    }
                    selections.push(map.next_value_seed(SelectionSeed::<N>(PhantomData))?);
                    names.push(key.into());
                }
            }
        }
        let refs: Vec<&str> = names.iter().map(|n| &**n).collect();
        let condition = match condition {
            None => return Err(de::Error::custom("the detection has no `condition`")),
            Some(Ok(cond)) => cond,
            // The condition came before some identifiers: resolve it now.
            Some(Err(exprs)) => or(exprs
                .iter()
                .map(|e| condition::resolve(e, &refs))
                .collect::<Result<Vec<_>, _>>()
                .map_err(de::Error::custom)?),
        };
        if selections.is_empty() {
            return Err(de::Error::custom("the detection has no search identifier"));
        }
        if self.filter && rules.is_empty() {
            return Err(de::Error::custom(
                "a filter needs `rules`: the ids or names of the rules it tunes",
            ));
        }
        Ok((
            Detection {
                selections,
                condition,
            },
            rules,
        ))
    }
}

fn or(mut items: Vec<Cond>) -> Cond {
    if items.len() == 1 {
        items.remove(0)
    } else {
        Cond::Or(items)
    }
}

/// Reads `condition` (a string, or a list of strings ORed), resolving it against the
/// identifiers seen so far; `Err` keeps it for later when it names one not yet seen.
struct ConditionSeed<'n> {
    names: &'n [&'n str],
    /// `names` are all of the detection's identifiers: an unknown name is an error here.
    strict: bool,
}

impl ConditionSeed<'_> {
    fn finish<E: de::Error>(&self, exprs: Vec<Expr>) -> Result<Result<Cond, Vec<Expr>>, E> {
        match exprs
            .iter()
            .map(|e| condition::resolve(e, self.names))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(conds) => Ok(Ok(or(conds))),
            Err(e) if self.strict => Err(E::custom(e)),
            Err(_) => Ok(Err(exprs)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ConditionSeed<'_> {
    type Value = Result<Cond, Vec<Expr>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ConditionSeed<'_> {
    type Value = Result<Cond, Vec<Expr>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a condition, or a list of conditions")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let expr = condition::parse(text).map_err(|e| E::custom(format!("condition: {e}")))?;
        self.finish(vec![expr])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut exprs = Vec::new();
        while let Some(text) = seq.next_element::<String>()? {
            exprs.push(
                condition::parse(&text)
                    .map_err(|e| de::Error::custom(format!("condition: {e}")))?,
            );
        }
        if exprs.is_empty() {
            return Err(de::Error::custom("the condition list is empty"));
        }
        self.finish(exprs)
    }
}

/// Reads one search identifier.
struct SelectionSeed<N>(PhantomData<N>);

impl<'de, N: Namespace> DeserializeSeed<'de> for SelectionSeed<N> {
    type Value = Selection;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Selection, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, N: Namespace> Visitor<'de> for SelectionSeed<N> {
    type Value = Selection;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of fields to values, a list of such maps, or a list of keywords")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Selection, A::Error> {
        let mut checks = Vec::new();
        while let Some(key) = map.next_key_seed(FieldKeySeed::<N>(PhantomData))? {
            let test = map.next_value_seed(ValuesSeed::<N> {
                key: &key,
                _n: PhantomData,
            })?;
            checks.push(Check {
                field: key.field,
                test,
            });
        }
        if checks.is_empty() {
            return Err(de::Error::custom("a selection map is empty"));
        }
        Ok(Selection::All(checks))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Selection, A::Error> {
        let mut maps = Vec::new();
        let mut keywords = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed::<N>(PhantomData))? {
            match item {
                Item::Map(selection) => maps.push(selection),
                Item::Keyword(values) => keywords.push(values),
            }
        }
        match (maps.is_empty(), keywords.is_empty()) {
            (false, true) => Ok(Selection::Any(maps)),
            (true, false) => Ok(Selection::All(vec![Check {
                field: None,
                test: Test::Values {
                    all: false,
                    neq: false,
                    values: keywords,
                },
            }])),
            (true, true) => Err(de::Error::custom("a selection list is empty")),
            (false, false) => Err(de::Error::custom(
                "a selection list mixes maps and keywords; put the keywords in a search identifier of their own",
            )),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Selection, E> {
        let values = FieldKey::keywords()
            .compile::<N>(Scalar::Str(text))
            .map_err(E::custom)?;
        Ok(Selection::All(vec![Check {
            field: None,
            test: Test::Values {
                all: false,
                neq: false,
                values: vec![values],
            },
        }]))
    }
}

enum Item {
    Map(Selection),
    Keyword(Vec<ValueTest>),
}

/// Reads one element of a selection list: a map, or a keyword.
struct ItemSeed<N>(PhantomData<N>);

impl<'de, N: Namespace> DeserializeSeed<'de> for ItemSeed<N> {
    type Value = Item;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, N: Namespace> Visitor<'de> for ItemSeed<N> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of fields to values, or a keyword")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
        SelectionSeed::<N>(PhantomData)
            .visit_map(map)
            .map(Item::Map)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Item, E> {
        self.keyword(Scalar::Str(text))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Item, E> {
        self.keyword(Scalar::Int(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Item, E> {
        self.keyword(Scalar::UInt(n))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Item, E> {
        self.keyword(Scalar::Float(x))
    }
}

impl<N: Namespace> ItemSeed<N> {
    fn keyword<E: de::Error>(&self, scalar: Scalar<'_>) -> Result<Item, E> {
        FieldKey::keywords()
            .compile::<N>(scalar)
            .map(Item::Keyword)
            .map_err(E::custom)
    }
}

/// Reads a field key.
struct FieldKeySeed<N>(PhantomData<N>);

impl<'de, N: Namespace> DeserializeSeed<'de> for FieldKeySeed<N> {
    type Value = FieldKey;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FieldKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, N: Namespace> Visitor<'de> for FieldKeySeed<N> {
    type Value = FieldKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name with optional `|modifiers`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<FieldKey, E> {
        FieldKey::parse::<N>(text).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<FieldKey, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<FieldKey, E> {
        self.visit_str(&n.to_string())
    }
}

/// Reads the value(s) of one field key.
struct ValuesSeed<'k, N> {
    key: &'k FieldKey,
    _n: PhantomData<N>,
}

impl<'de, N: Namespace> DeserializeSeed<'de> for ValuesSeed<'_, N> {
    type Value = Test;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Test, D::Error> {
        d.deserialize_any(self)
    }
}

impl<N: Namespace> ValuesSeed<'_, N> {
    fn single<E: de::Error>(&self, scalar: Scalar<'_>) -> Result<Test, E> {
        if self.key.kind == Kind::Exists {
            return match scalar {
                Scalar::Bool(b) => Ok(Test::Exists(b)),
                _ => Err(E::custom("`exists` takes `true` or `false`")),
            };
        }
        if self.key.all && self.key.field.is_some() {
            return Err(E::custom(
                "`all` needs a list of values; for one value drop `all` (Sigma specification)",
            ));
        }
        let values = self.key.compile::<N>(scalar).map_err(E::custom)?;
        Ok(Test::Values {
            all: self.key.all,
            neq: self.key.neq,
            values: vec![values],
        })
    }
}

impl<'de, N: Namespace> Visitor<'de> for ValuesSeed<'_, N> {
    type Value = Test;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value, a list of values, or null")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Test, E> {
        self.single(Scalar::Str(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Test, E> {
        self.single(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Test, E> {
        self.single(Scalar::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Test, E> {
        self.single(Scalar::Float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Test, E> {
        self.single(Scalar::Bool(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Test, E> {
        let key = self.key;
        if key.field.is_none() {
            return Err(E::custom("a keyword cannot be null"));
        }
        if key.kind != Kind::Plain || !key.transforms.is_empty() || key.all || key.neq || key.expand
        {
            return Err(E::custom(
                "`null` takes no modifiers; it matches an absent or null field",
            ));
        }
        Ok(Test::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Test, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Test, A::Error> {
        if self.key.kind == Kind::Exists {
            return Err(de::Error::custom(
                "`exists` takes `true` or `false`, not a list",
            ));
        }
        let mut values = Vec::new();
        while let Some(alternatives) = seq.next_element_seed(ScalarSeed::<N> {
            key: self.key,
            _n: PhantomData,
        })? {
            values.push(alternatives);
        }
        if values.is_empty() {
            return Err(de::Error::custom(
                "an empty list of values matches nothing; remove it",
            ));
        }
        Ok(Test::Values {
            all: self.key.all,
            neq: self.key.neq,
            values,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Test, A::Error> {
        Err(de::Error::custom(
            "a field's value cannot be a map; name nested fields with dots (`a.b: value`)",
        ))
    }
}

/// Reads one element of a list of values.
struct ScalarSeed<'k, N> {
    key: &'k FieldKey,
    _n: PhantomData<N>,
}

impl<'de, N: Namespace> DeserializeSeed<'de> for ScalarSeed<'_, N> {
    type Value = Vec<ValueTest>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<ValueTest>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<N: Namespace> ScalarSeed<'_, N> {
    fn compile<E: de::Error>(&self, scalar: Scalar<'_>) -> Result<Vec<ValueTest>, E> {
        self.key.compile::<N>(scalar).map_err(E::custom)
    }
}

impl<'de, N: Namespace> Visitor<'de> for ScalarSeed<'_, N> {
    type Value = Vec<ValueTest>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.compile(Scalar::Str(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.compile(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.compile(Scalar::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.compile(Scalar::Float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.compile(Scalar::Bool(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(
            "`null` cannot be part of a list of values; give it a search identifier of its own (Sigma specification)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_parts() {
        let t = "2024-12-30T23:45:00Z"; // a Monday in ISO week 1 of 2025
        assert_eq!(DatePart::Minute.of(t), Some(45));
        assert_eq!(DatePart::Hour.of(t), Some(23));
        assert_eq!(DatePart::Day.of(t), Some(30));
        assert_eq!(DatePart::Month.of(t), Some(12));
        assert_eq!(DatePart::Year.of(t), Some(2024));
        assert_eq!(DatePart::Week.of(t), Some(1));
        assert_eq!(DatePart::Week.of("2021-01-03T00:00:00Z"), Some(53));
        assert_eq!(DatePart::Week.of("2024-06-15T12:00:00Z"), Some(24));
        assert_eq!(DatePart::Hour.of("not a date"), None);
    }

    #[test]
    fn cidr_networks() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3"));
        assert!(!net.contains("11.0.0.1"));
        assert!(!net.contains("cloudtrail.amazonaws.com"));
        assert!(net.contains("::ffff:10.0.0.1"));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1"));
        assert!(!v6.contains("2001:db9::1"));
        let odd = Cidr::parse("192.168.0.0/20").unwrap();
        assert!(odd.contains("192.168.15.255"));
        assert!(!odd.contains("192.168.16.0"));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains("1.2.3.4"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn modifier_errors_name_the_problem() {
        let err = |k: &str| FieldKey::parse::<RawFields>(k).unwrap_err();
        assert!(err("a|contanis").contains("unknown modifier `contanis`"));
        assert!(err("a|i").contains("only follows `re`"));
        assert!(err("a|re|cidr").contains("cannot be combined"));
        assert!(err("a|contains|gt").contains("cannot be combined"));
        assert!(err("a|exists|all").contains("no other modifier"));
        assert!(FieldKey::parse::<RawFields>("a|re|i|m|s").is_ok());
        assert!(FieldKey::parse::<RawFields>("a|hour|gte").is_ok());
        assert!(FieldKey::parse::<NativeFields>("acton")
            .unwrap_err()
            .contains("not a field"));
        assert!(FieldKey::parse::<NativeFields>("raw.eventName").is_ok());
    }

    #[test]
    fn placeholders_expand_or_fail() {
        let mut values = FxHashMap::default();
        values.insert(
            "Admins".to_owned(),
            vec!["root".to_owned(), "admin*".to_owned()],
        );
        let _scope = PlaceholderScope::enter(&values);
        assert_eq!(expand("%Admins%").unwrap(), vec!["root", "admin*"]);
        assert_eq!(
            expand(r"\%plain%Admins%").unwrap(),
            vec!["%plainroot", "%plainadmin*"]
        );
        assert!(expand("%Nope%").unwrap_err().contains("no values"));
    }
}
