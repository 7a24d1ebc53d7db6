//! Rule files as written: YAML documents, Sigma or native, read with serde_norway.
//!
//! A file holds one or more documents (`---`). Each is read straight from the text into typed
//! structures whose values are checked while they are read, so an error carries its line and
//! column. Sigma 1 collections (`action: global`, `reset`, `repeat`) are merged first and then
//! read from the merged values; their errors name the document instead of a line.

use std::collections::BTreeMap;
use std::fmt;

use nhiwatch_model::{Severity, Source};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_norway::{Mapping, Value};

use crate::detection::{DeclaredNames, NativeSelection, SigmaDetection, SigmaFilter};
use crate::error::RuleError;
use crate::record::FieldRef;

/// One string or a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Strings(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Strings, E> {
                Ok(Strings(vec![v.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(Strings(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A Sigma `level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Context, not an alert; reported as low.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Level {
    /// The name Sigma uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    /// The finding severity: informational and low are low.
    pub fn severity(self) -> Severity {
        match self {
            Level::Informational | Level::Low => Severity::Low,
            Level::Medium => Severity::Medium,
            Level::High => Severity::High,
            Level::Critical => Severity::Critical,
        }
    }
}

/// A Sigma `logsource`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub(crate) struct LogSource {
    pub category: Option<String>,
    pub product: Option<String>,
    pub service: Option<String>,
}

impl LogSource {
    /// The nhiwatch source this log source names: the first matching entry of `extra`, else
    /// the built-in mapping; `None` when nhiwatch does not read it.
    pub(crate) fn source(&self, extra: &[LogSourceMap]) -> Option<Source> {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        if let Some(map) = extra.iter().find(|m| {
            same(&m.category, &self.category)
                && same(&m.product, &self.product)
                && same(&m.service, &self.service)
        }) {
            return Some(map.source);
        }
        let lower = |s: &Option<String>| s.as_deref().map(str::to_ascii_lowercase);
        let (product, service, category) = (
            lower(&self.product),
            lower(&self.service),
            lower(&self.category),
        );
        match (product.as_deref(), service.as_deref()) {
            (Some("aws"), None | Some("cloudtrail")) => Some(Source::Cloudtrail),
            (Some("aws"), Some("eks")) => Some(Source::K8sAudit),
            (Some("kubernetes"), None | Some("audit")) => Some(Source::K8sAudit),
            (Some("github"), None | Some("audit")) => Some(Source::GithubAudit),
            (Some("opentelemetry" | "otel"), _) => Some(Source::Otel),
            (Some("nhiwatch"), Some(service)) => {
                Source::ALL.into_iter().find(|s| s.as_str() == service)
            }
            (None, Some("cloudtrail")) => Some(Source::Cloudtrail),
            (None, None) if category.as_deref() == Some("cloudtrail") => Some(Source::Cloudtrail),
            _ => None,
        }
    }

    /// The log source as written, for messages.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("category", &self.category),
            ("product", &self.product),
            ("service", &self.service),
        ] {
            if let Some(value) = value {
                parts.push(format!("{key}: {value}"));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// An extra `logsource` mapping: rules whose log source has every given key (case-insensitive)
/// read events of `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSourceMap {
    /// `category`, when it must match.
    pub category: Option<String>,
    /// `product`, when it must match.
    pub product: Option<String>,
    /// `service`, when it must match.
    pub service: Option<String>,
    /// The nhiwatch source.
    pub source: Source,
}

/// A duration such as `10m` (nanoseconds), checked while read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Duration(pub(crate) i64);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `30s`, `10m`, `1h` or `1d`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                nhiwatch_policy::parse_duration(v)
                    .map(Duration)
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Native field names (`by:`), checked while read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NativeFieldList(pub(crate) Vec<FieldRef>);

impl<'de> Deserialize<'de> for NativeFieldList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NativeFieldList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name or a list of field names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NativeFieldList, E> {
                use crate::detection::Namespace;
                crate::detection::NativeFields::resolve(v)
                    .map(|f| NativeFieldList(vec![f]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NativeFieldList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<NativeFieldList>()? {
                    out.extend(item.0);
                }
                Ok(NativeFieldList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A correlation type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CorrelationType {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
    ValueSum,
    ValueAvg,
    ValuePercentile,
}

impl CorrelationType {
    /// The name Sigma uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
            CorrelationType::ValueSum => "value_sum",
            CorrelationType::ValueAvg => "value_avg",
            CorrelationType::ValuePercentile => "value_percentile",
        }
    }
}

/// A correlation's `condition`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorrelationCondition {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
    pub eq: Option<f64>,
    pub neq: Option<f64>,
    pub field: Option<Strings>,
}

/// A correlation section.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorrelationDoc {
    #[serde(rename = "type")]
    pub kind: CorrelationType,
    pub rules: Strings,
    #[serde(rename = "group-by", default)]
    pub group_by: Strings,
    pub timespan: Duration,
    pub condition: Option<CorrelationCondition>,
    #[serde(default)]
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    pub generate: Option<bool>,
}

/// The kind of a native rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NativeKind {
    /// One event matches.
    Event,
    /// Events in order, within a window, per identity (or other fields).
    Sequence,
}

fn one() -> u32 {
    1
}

/// One step of a native sequence.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepDoc {
    pub name: Option<String>,
    #[serde(rename = "where")]
    pub where_: NativeSelection,
    pub unless: Option<NativeSelection>,
    #[serde(default = "one")]
    pub min: u32,
}

/// A native sequence.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SequenceDoc {
    pub within: Duration,
    #[serde(default)]
    pub by: Option<NativeFieldList>,
    pub steps: Vec<StepDoc>,
}

/// One YAML document of a rule file, Sigma or native.
#[derive(serde::Deserialize)]
pub(crate) struct Doc {
    pub title: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub level: Option<Level>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub logsource: Option<LogSource>,
    pub detection: Option<SigmaDetection>,
    pub correlation: Option<CorrelationDoc>,
    pub filter: Option<SigmaFilter>,
    pub generate: Option<bool>,
    pub nhiwatch: Option<NativeKind>,
    pub sources: Option<Vec<Source>>,
    #[serde(rename = "where")]
    pub where_: Option<NativeSelection>,
    pub unless: Option<NativeSelection>,
    pub sequence: Option<SequenceDoc>,
}

/// A document and where it starts.
pub(crate) struct Located {
    pub doc: Doc,
    /// 1-based line where the document starts.
    pub line: usize,
}

/// Reads every document of a rule file. Documents that fail are reported; the others are kept.
pub(crate) fn parse_file(text: &str, file: &str) -> (Vec<Located>, Vec<RuleError>) {
    let mut errors = Vec::new();
    let starts = document_starts(text);
    // First pass: generic values, to find empty documents and Sigma 1 collection actions.
    let mut values = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        match Value::deserialize(document) {
            Ok(value) => values.push(value),
            Err(err) => {
                errors.push(RuleError::yaml(file, &err, ""));
                // After a syntax error the stream cannot be trusted further.
                return (Vec::new(), errors);
            }
        }
    }
    let line_of = |i: usize| starts.get(i).copied().unwrap_or(1);
    let mut docs = Vec::new();
    let has_actions = values
        .iter()
        .any(|v| v.as_mapping().is_some_and(|m| m.contains_key("action")));
    if has_actions {
        for (i, value) in merge_collection(values, file, &mut errors) {
            match Doc::deserialize(value) {
                Ok(doc) => docs.push(Located {
                    doc,
                    line: line_of(i),
                }),
                Err(err) => errors.push(RuleError::yaml(
                    file,
                    &err,
                    &format!("document {} (after applying `action`): ", i + 1),
                )),
            }
        }
        return (docs, errors);
    }
    for (i, (document, value)) in serde_norway::Deserializer::from_str(text)
        .zip(&values)
        .enumerate()
    {
        if value.is_null() {
            continue;
        }
        let _declared = DeclaredNames::enter(search_identifiers(value));
        match Doc::deserialize(document) {
            Ok(doc) => docs.push(Located {
                doc,
                line: line_of(i),
            }),
            Err(err) => errors.push(RuleError::yaml(file, &err, "")),
        }
    }
    (docs, errors)
}

/// The search identifiers of a document's `detection` (or `filter`), read from its generic
/// value: every key but `condition` (and a filter's `rules`).
fn search_identifiers(value: &Value) -> Option<Vec<String>> {
    let block = value.get("detection").or_else(|| value.get("filter"))?;
    let names = block
        .as_mapping()?
        .keys()
        .filter_map(Value::as_str)
        .filter(|k| !matches!(*k, "condition" | "rules" | "timeframe"))
        .map(str::to_owned)
        .collect();
    Some(names)
}

/// Applies Sigma 1 collection actions: `global` documents are merged into every later
/// document until `reset`; `repeat` is the previous document with its own keys on top.
fn merge_collection(
    values: Vec<Value>,
    file: &str,
    errors: &mut Vec<RuleError>,
) -> Vec<(usize, Value)> {
    let mut global = Mapping::new();
    let mut previous: Option<Mapping> = None;
    let mut out = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let Value::Mapping(mut mapping) = value else {
            if !value.is_null() {
                errors.push(RuleError::new(
                    file,
                    None,
                    format!("document {} is not a map", i + 1),
                ));
            }
            continue;
        };
        let action = mapping.remove("action");
        match action.as_ref().and_then(Value::as_str) {
            Some("global") => {
                global = mapping;
                continue;
            }
            Some("reset") => {
                global = Mapping::new();
                continue;
            }
            Some("repeat") => {
                let Some(mut base) = previous.clone() else {
                    errors.push(RuleError::new(
                        file,
                        None,
                        format!(
                            "document {}: `action: repeat` has no document before it",
                            i + 1
                        ),
                    ));
                    continue;
                };
                merge(&mut base, mapping);
                mapping = base;
            }
            Some(other) => {
                errors.push(RuleError::new(
                    file,
                    None,
                    format!(
                        "document {}: unknown `action: {other}` (global, reset or repeat)",
                        i + 1
                    ),
                ));
                continue;
            }
            None => {}
        }
        previous = Some(mapping.clone());
        let mut merged = global.clone();
        merge(&mut merged, mapping);
        out.push((i, Value::Mapping(merged)));
    }
    out
}

/// Deep-merges `over` into `base` (maps merge, anything else replaces).
fn merge(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Mapping(existing)), Value::Mapping(more)) => merge(existing, more),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The first line of each document: line 1, and the line after each `---` separator (a
/// leading separator opens the first document).
fn document_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            starts.push(i + 2);
            seen_content = true;
        } else if !seen_content && !trimmed.is_empty() && !trimmed.starts_with('#') {
            starts.push(1);
            seen_content = true;
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsources_map_to_sources() {
        let ls = |p: Option<&str>, s: Option<&str>| LogSource {
            category: None,
            product: p.map(str::to_owned),
            service: s.map(str::to_owned),
        };
        let none: &[LogSourceMap] = &[];
        assert_eq!(
            ls(Some("aws"), Some("cloudtrail")).source(none),
            Some(Source::Cloudtrail)
        );
        assert_eq!(ls(Some("aws"), None).source(none), Some(Source::Cloudtrail));
        assert_eq!(
            ls(Some("kubernetes"), Some("audit")).source(none),
            Some(Source::K8sAudit)
        );
        assert_eq!(
            ls(Some("aws"), Some("eks")).source(none),
            Some(Source::K8sAudit)
        );
        assert_eq!(
            ls(Some("github"), Some("audit")).source(none),
            Some(Source::GithubAudit)
        );
        assert_eq!(
            ls(Some("nhiwatch"), Some("agent_trace")).source(none),
            Some(Source::AgentTrace)
        );
        assert_eq!(ls(Some("windows"), Some("security")).source(none), None);
        assert_eq!(ls(Some("aws"), Some("guardduty")).source(none), None);
        let extra = [LogSourceMap {
            category: None,
            product: Some("Windows".into()),
            service: None,
            source: Source::Jsonl,
        }];
        assert_eq!(
            ls(Some("windows"), Some("security")).source(&extra),
            Some(Source::Jsonl)
        );
    }

    #[test]
    fn documents_start_after_separators() {
        assert_eq!(document_starts("a: 1\n---\nb: 2\n"), vec![1, 3]);
        assert_eq!(document_starts("# c\n---\na: 1\n---\nb: 2\n"), vec![3, 5]);
    }

    #[test]
    fn collections_merge_global_and_repeat() {
        let text = "action: global\ntitle: shared\nlogsource: {product: aws}\n---\nid: a\n---\naction: repeat\nid: b\n---\naction: reset\n---\nid: c\n";
        let values: Vec<Value> = serde_norway::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        let mut errors = Vec::new();
        let merged = merge_collection(values, "f", &mut errors);
        assert!(errors.is_empty());
        let titles: Vec<Option<&str>> = merged
            .iter()
            .map(|(_, v)| v.get("title").and_then(Value::as_str))
            .collect();
        assert_eq!(titles, vec![Some("shared"), Some("shared"), None]);
        assert_eq!(merged[1].1.get("id").and_then(Value::as_str), Some("b"));
    }
}
