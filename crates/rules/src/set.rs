//! A loaded, compiled set of rules and its index.
//!
//! ## The index
//!
//! Most rules can only match when a field has one of a few exact values or prefixes: a
//! CloudTrail rule names its `eventName`, a Kubernetes rule its `verb` and `objectRef.resource`,
//! a GitHub rule its `action`, a native rule its `action`. For each source the set picks such
//! key fields — the one most rules require (the one with more distinct values on a tie), then
//! the next for the rules left, up to six — and files each rule under the values it requires.
//! A value that holds many rules is split once more on a second field. An event then costs one
//! read of each key field and a hash lookup per key; only the rules found there, and the few
//! that no key covers, are evaluated. A top-level key is read from the raw text; the record is
//! parsed (once) only when a rule or a nested key needs it, or for every event of a source
//! that has rules no key covers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nhiwatch_model::Source;
use rustc_hash::FxHashMap;

use crate::correlation::{CorrelationDef, Getter, Threshold};
use crate::detection::{
    Detection, Key, Namespace, NativeFields, PlaceholderScope, Requirement, Selection,
};
use crate::document::{
    parse_file, CorrelationDoc, CorrelationType, Doc, Level, LogSourceMap, NativeKind,
};
use crate::error::{LoadErrors, RuleError};
use crate::pattern::fold_key;
use crate::record::{FieldRef, Subject};
use crate::sequence::{SequenceDef, Step};

/// Options for loading rules.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Log sources to read beyond the built-in mapping (checked first).
    pub logsources: Vec<LogSourceMap>,
    /// Values of `%placeholder%`s for the `expand` modifier. A rule whose placeholder has no
    /// values is refused, as the Sigma specification requires.
    pub placeholders: FxHashMap<String, Vec<String>>,
}

impl LoadOptions {
    /// Reads placeholders from a YAML file: a map from name (without `%`) to a value or a
    /// list of values.
    pub fn with_placeholders_file(mut self, path: &Path) -> Result<Self, RuleError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| RuleError::new(&file, None, format!("cannot read: {e}")))?;
        let map: std::collections::BTreeMap<String, crate::document::Strings> =
            serde_norway::from_str(&text).map_err(|e| RuleError::yaml(&file, &e, ""))?;
        self.placeholders
            .extend(map.into_iter().map(|(k, v)| (k, v.0)));
        Ok(self)
    }
}

/// What sort of rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// A Sigma detection rule.
    Sigma,
    /// A Sigma correlation rule.
    Correlation,
    /// A native single-event rule.
    Event,
    /// A native sequence rule.
    Sequence,
}

impl RuleKind {
    /// The name used in findings.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Sigma => "sigma",
            RuleKind::Correlation => "sigma_correlation",
            RuleKind::Event => "native",
            RuleKind::Sequence => "native_sequence",
        }
    }
}

/// A rule's identity and metadata.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    /// `id`, else `name`, else `file#line`.
    pub id: String,
    /// Sigma `name`, used by correlations to refer to it.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: Option<String>,
    /// `level` (medium when absent).
    pub level: Level,
    /// `tags` (ATT&CK: `attack.t1562.008`, `attack.defense-evasion`).
    pub tags: Vec<String>,
    /// What sort of rule.
    pub kind: RuleKind,
    /// The file it was read from.
    pub file: String,
    /// The line its document starts on.
    pub line: usize,
    /// The sources it applies to.
    pub sources: Vec<Source>,
    /// Whether its matches become findings (rules that only feed a correlation do not,
    /// unless the correlation says `generate: true`).
    pub generate: bool,
}

/// How the rules of one source are indexed ([`RuleSet::index_summary`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSummary {
    /// The source.
    pub source: Source,
    /// Its key fields, in the order they are read.
    pub keys: Vec<IndexKey>,
    /// Rules no key covers: tried on every event of the source.
    pub unindexed: usize,
}

/// One key field of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexKey {
    /// The field, as rules name it.
    pub field: String,
    /// Distinct values (and prefixes) rules are filed under.
    pub values: usize,
    /// Rules filed under it.
    pub rules: usize,
}

/// A rule that was read but is not run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: String,
    /// The line its document starts on.
    pub line: usize,
    /// Its title or id.
    pub title: String,
    /// Why it is not run.
    pub reason: String,
}

/// How a rule decides, past its per-event test.
#[derive(Clone, Debug)]
pub(crate) enum Logic {
    /// A Sigma detection or native event rule: each match is a hit.
    Single,
    Correlation(CorrelationDef),
    Sequence(SequenceDef),
}

/// A per-event test.
#[derive(Clone, Debug)]
pub(crate) enum Test {
    Sigma {
        detection: Detection,
        filters: Vec<Detection>,
    },
    Native {
        where_: Selection,
        unless: Option<Selection>,
    },
}

impl Test {
    fn matches(&self, s: &Subject<'_, '_>) -> bool {
        match self {
            Test::Sigma { detection, filters } => {
                detection.matches(s) && !filters.iter().any(|f| f.matches(s))
            }
            Test::Native { where_, unless } => {
                where_.matches(s) && !unless.as_ref().is_some_and(|u| u.matches(s))
            }
        }
    }

    fn requirements(&self) -> Vec<Requirement> {
        match self {
            Test::Sigma { detection, .. } => detection.requirements(),
            Test::Native { where_, .. } => where_.requirements(),
        }
    }
}

/// A per-event test and the rule (and sequence step) it belongs to.
#[derive(Clone, Debug)]
pub(crate) struct Matcher {
    pub(crate) rule: u32,
    pub(crate) step: u16,
    pub(crate) test: Test,
}

/// Rules filed under the values of one key field.
#[derive(Clone, Debug)]
struct KeyLevel {
    field: FieldRef,
    exact: FxHashMap<Box<str>, Node>,
    prefix: Vec<(Box<str>, Node)>,
}

/// The rules under one key value, possibly split again on a second field.
#[derive(Clone, Debug, Default)]
struct Node {
    matchers: Vec<u32>,
    sub: Option<Box<KeyLevel>>,
}

/// The index of one source.
#[derive(Clone, Debug, Default)]
struct SourceIndex {
    levels: Vec<KeyLevel>,
    /// Matchers no key covers: tried on every event.
    rest: Vec<u32>,
    /// Parse every record before reading keys: rules no key covers need it anyway, or several
    /// raw key fields would each scan the raw text.
    parse_first: bool,
}

impl KeyLevel {
    /// Adds the matchers this event's key values select.
    fn collect(&self, subject: &Subject<'_, '_>, out: &mut Vec<u32>) {
        subject.key(&self.field, &mut |key| match key {
            Some(text) => with_folded(text, |folded| {
                if let Some(node) = self.exact.get(folded) {
                    node.collect(subject, out);
                }
                for (prefix, node) in &self.prefix {
                    if folded.starts_with(&**prefix) {
                        node.collect(subject, out);
                    }
                }
            }),
            // An object, or an array not yet parsed, where a key was expected: try every rule.
            None => {
                for node in self
                    .exact
                    .values()
                    .chain(self.prefix.iter().map(|(_, n)| n))
                {
                    node.collect(subject, out);
                }
            }
        });
    }
}

impl Node {
    /// Every matcher under this node.
    fn all(&self, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.matchers);
        if let Some(sub) = &self.sub {
            for node in sub.exact.values().chain(sub.prefix.iter().map(|(_, n)| n)) {
                node.all(out);
            }
        }
    }

    fn collect(&self, subject: &Subject<'_, '_>, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.matchers);
        if let Some(sub) = &self.sub {
            sub.collect(subject, out);
        }
    }
}

/// A value holding more matchers than this is split on a second field.
const SPLIT_ABOVE: usize = 4;

/// Most key fields per source.
const MAX_KEYS: usize = 6;

/// A compiled rule set. Cheap to share (`Arc`); evaluation state lives in an
/// [`Evaluator`](crate::Evaluator).
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<RuleInfo>,
    pub(crate) logic: Vec<Logic>,
    pub(crate) matchers: Vec<Matcher>,
    /// Per rule, the correlations fed by it: (correlation rule, input position).
    pub(crate) consumers: Vec<Vec<(u32, usize)>>,
    index: Vec<SourceIndex>,
    skipped: Vec<Skipped>,
    /// Some rule reads lens results or normalised fields.
    pub(crate) native: bool,
}

/// A document read, before references between rules are resolved.
struct Pending {
    info: RuleInfo,
    body: Body,
}

enum Body {
    Detection(Detection),
    Correlation(Box<CorrelationDoc>),
    Event(Selection, Option<Selection>),
    Sequence(SequenceDef, Vec<(Selection, Option<Selection>)>),
}

/// A Sigma filter document: a detection that, when it matches, silences the rules it names.
struct Filter {
    file: String,
    line: usize,
    detection: Detection,
    rules: Vec<String>,
}

/// What a document turned out to be.
enum Classified {
    Rule(Pending),
    Filter(Filter),
    Skip(Skipped),
}

impl RuleSet {
    /// Loads rule files and directories (walked recursively, in name order, for `.yml` and
    /// `.yaml` files; `*.tests.yml` files hold rule tests and are not rules). Every error of
    /// every file is reported together.
    pub fn load<P: AsRef<Path>>(paths: &[P], options: &LoadOptions) -> Result<RuleSet, LoadErrors> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            collect_files(path.as_ref(), &mut files, &mut errors);
        }
        let mut texts = Vec::new();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => texts.push((file.display().to_string(), text)),
                Err(e) => errors.push(RuleError::new(
                    &file.display().to_string(),
                    None,
                    format!("cannot read: {e}"),
                )),
            }
        }
        let sources: Vec<(&str, &str)> = texts
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        match RuleSet::compile(&sources, options) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(LoadErrors(errors)),
            Err(LoadErrors(more)) => {
                errors.extend(more);
                Err(LoadErrors(errors))
            }
        }
    }

    /// Compiles rules from texts: `(file name, YAML text)` pairs.
    pub fn compile(files: &[(&str, &str)], options: &LoadOptions) -> Result<RuleSet, LoadErrors> {
        let _placeholders = PlaceholderScope::enter(&options.placeholders);
        let mut errors = Vec::new();
        let mut skipped = Vec::new();
        let mut pending = Vec::new();
        let mut filters = Vec::new();
        for (file, text) in files {
            let (docs, file_errors) = parse_file(text, file);
            errors.extend(file_errors);
            for located in docs {
                match classify(located.doc, file, located.line, &options.logsources) {
                    Ok(Classified::Rule(p)) => pending.push(p),
                    Ok(Classified::Filter(f)) => filters.push(f),
                    Ok(Classified::Skip(skip)) => skipped.push(skip),
                    Err(e) => errors.push(e),
                }
            }
        }
        let set = link(pending, filters, skipped, &mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// The rules, by index.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// Rules read but not run (log sources nhiwatch does not read, unsupported types).
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// How many rules run.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule runs.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules whose single-event test matches the subject (Sigma detection rules and native
    /// event rules; correlations and sequences need a stream, see [`crate::Evaluator`]).
    pub fn matching(&self, subject: &Subject<'_, '_>) -> Vec<&RuleInfo> {
        let mut candidates = Vec::new();
        self.candidates(subject, &mut candidates, false);
        let mut out: Vec<&RuleInfo> = candidates
            .iter()
            .filter_map(|&m| self.matchers.get(m as usize))
            .filter(|m| matches!(self.logic.get(m.rule as usize), Some(Logic::Single)))
            .filter(|m| m.test.matches(subject))
            .filter_map(|m| self.rules.get(m.rule as usize))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The matchers worth evaluating for this subject, into `out` (cleared first, sorted,
    /// without duplicates). `parse_first`: the caller expects the record to be parsed anyway
    /// (most recent events of this source were), so keys are read from the parsed record.
    pub(crate) fn candidates(
        &self,
        subject: &Subject<'_, '_>,
        out: &mut Vec<u32>,
        parse_first: bool,
    ) {
        out.clear();
        let Some(index) = self.index.get(source_slot(subject.source())) else {
            return;
        };
        if index.parse_first || parse_first {
            subject.parse();
        }
        out.extend_from_slice(&index.rest);
        for level in &index.levels {
            level.collect(subject, out);
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Whether the matcher's test holds.
    pub(crate) fn test(&self, matcher: u32, subject: &Subject<'_, '_>) -> bool {
        self.matchers
            .get(matcher as usize)
            .is_some_and(|m| m.test.matches(subject))
    }

    /// How rules are indexed, per source: the key fields (with the number of values and of
    /// rules under them), and the number of rules no key covers (tried on every event). For
    /// `rules check` and tuning.
    pub fn index_summary(&self) -> Vec<IndexSummary> {
        Source::ALL
            .iter()
            .zip(&self.index)
            .filter(|(_, i)| !i.levels.is_empty() || !i.rest.is_empty())
            .map(|(source, index)| {
                let keys = index
                    .levels
                    .iter()
                    .map(|level| {
                        let nodes = level
                            .exact
                            .values()
                            .chain(level.prefix.iter().map(|(_, n)| n));
                        let mut rules: Vec<u32> = Vec::new();
                        for node in nodes {
                            node.all(&mut rules);
                        }
                        rules.sort_unstable();
                        rules.dedup();
                        IndexKey {
                            field: level.field.name(),
                            values: level.exact.len() + level.prefix.len(),
                            rules: rules.len(),
                        }
                    })
                    .collect();
                IndexSummary {
                    source: *source,
                    keys,
                    unindexed: index.rest.len(),
                }
            })
            .collect()
    }

    /// How a correlation or sequence decides, for findings: its type, window, grouping,
    /// condition and the rules or steps it follows.
    pub(crate) fn logic_json(&self, rule: usize) -> Option<serde_json::Value> {
        let id = |i: &u32| self.rules.get(*i as usize).map(|r| r.id.clone());
        match self.logic.get(rule)? {
            Logic::Single => None,
            Logic::Correlation(def) => Some(serde_json::json!({
                "type": def.kind.as_str(),
                "rules": def.inputs.iter().filter_map(id).collect::<Vec<_>>(),
                "group_by": def.group_names,
                "timespan_seconds": def.timespan / 1_000_000_000,
                "condition": def.threshold.to_json(),
            })),
            Logic::Sequence(def) => Some(serde_json::json!({
                "type": "sequence",
                "by": if def.by.is_empty() { vec!["identity".to_owned()] } else { def.by.iter().map(FieldRef::name).collect() },
                "within_seconds": def.within / 1_000_000_000,
                "steps": def.steps.iter().map(|s| serde_json::json!({"name": s.name, "min": s.min})).collect::<Vec<_>>(),
            })),
        }
    }

    /// Shares the set.
    pub fn shared(self) -> Arc<RuleSet> {
        Arc::new(self)
    }
}

/// The index slot of a source.
pub(crate) fn source_slot(source: Source) -> usize {
    Source::ALL.iter().position(|s| *s == source).unwrap_or(0)
}

/// Lower-cases a key without allocating when it is short ASCII.
fn with_folded(text: &str, f: impl FnOnce(&str)) {
    const MAX: usize = 96;
    if text.len() <= MAX && text.is_ascii() {
        let mut buf = [0u8; MAX];
        for (slot, byte) in buf.iter_mut().zip(text.bytes()) {
            *slot = byte.to_ascii_lowercase();
        }
        if let Ok(folded) = std::str::from_utf8(&buf[..text.len()]) {
            f(folded);
        }
    } else {
        f(&fold_key(text));
    }
}

/// Rule files under `path`, in name order.
pub(crate) fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<RuleError>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                errors.push(RuleError::new(
                    &path.display().to_string(),
                    None,
                    format!("cannot read: {e}"),
                ));
                return;
            }
        };
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden && (entry.is_dir() || is_rule_file(&entry)) {
                collect_files(&entry, files, errors);
            }
        }
    } else if path.exists() {
        files.push(path.to_path_buf());
    } else {
        errors.push(RuleError::new(
            &path.display().to_string(),
            None,
            "no such file or directory",
        ));
    }
}

/// A `.yml`/`.yaml` file that is not a test file (`*.tests.yml`).
pub(crate) fn is_rule_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yml") || name.ends_with(".yaml")) && !is_test_file(path)
}

/// A rule test file: `<rule file stem>.tests.yml`.
pub(crate) fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tests.yml") || name.ends_with(".tests.yaml")
}

/// Turns a document into a pending rule (or a skip, or an error naming its line).
fn classify(
    doc: Doc,
    file: &str,
    line: usize,
    logsources: &[LogSourceMap],
) -> Result<Classified, RuleError> {
    let error = |message: String| RuleError::new(file, Some(line), message);
    let label = doc
        .title
        .clone()
        .or_else(|| doc.id.clone())
        .unwrap_or_else(|| format!("document at line {line}"));
    let skip = |reason: String| Skipped {
        file: file.to_owned(),
        line,
        title: label.clone(),
        reason,
    };
    let native_keys = doc.where_.is_some()
        || doc.unless.is_some()
        || doc.sequence.is_some()
        || doc.sources.is_some();
    let sigma_keys = doc.detection.is_some()
        || doc.correlation.is_some()
        || doc.logsource.is_some()
        || doc.filter.is_some();
    let mut info = RuleInfo {
        id: doc
            .id
            .clone()
            .or_else(|| doc.name.clone())
            .unwrap_or_else(|| format!("{file}#{line}")),
        name: doc.name.clone(),
        title: doc.title.clone().unwrap_or_default(),
        description: doc.description.clone(),
        level: doc.level.unwrap_or(Level::Medium),
        tags: doc.tags.clone(),
        kind: RuleKind::Sigma,
        file: file.to_owned(),
        line,
        sources: Vec::new(),
        generate: true,
    };
    if let Some(kind) = doc.nhiwatch {
        if sigma_keys {
            return Err(error("a native rule (`nhiwatch:`) takes `where`/`sequence`, not Sigma's `logsource`, `detection`, `correlation` or `filter`".into()));
        }
        if doc.id.is_none() {
            return Err(error("a native rule needs an `id`".into()));
        }
        if doc.title.is_none() {
            return Err(error("a native rule needs a `title`".into()));
        }
        info.sources = doc.sources.unwrap_or_else(|| Source::ALL.to_vec());
        let body = match (kind, doc.where_, doc.sequence) {
            (NativeKind::Event, Some(where_), None) => {
                info.kind = RuleKind::Event;
                Body::Event(where_.0, doc.unless.map(|u| u.0))
            }
            (NativeKind::Sequence, None, Some(sequence)) => {
                if doc.unless.is_some() {
                    return Err(error(
                        "a sequence takes `unless` per step, not at the top".into(),
                    ));
                }
                if sequence.steps.is_empty() {
                    return Err(error("a sequence needs at least one step".into()));
                }
                info.kind = RuleKind::Sequence;
                let mut steps = Vec::new();
                let mut tests = Vec::new();
                for (i, step) in sequence.steps.into_iter().enumerate() {
                    if step.min == 0 {
                        return Err(error(format!(
                            "step {} has `min: 0`; a step needs at least one event",
                            i + 1
                        )));
                    }
                    steps.push(Step {
                        name: step.name.unwrap_or_else(|| format!("step {}", i + 1)),
                        min: step.min,
                    });
                    tests.push((step.where_.0, step.unless.map(|u| u.0)));
                }
                Body::Sequence(
                    SequenceDef {
                        within: sequence.within.0,
                        by: sequence.by.map(|b| b.0).unwrap_or_default(),
                        steps,
                    },
                    tests,
                )
            }
            (NativeKind::Event, _, _) => {
                return Err(error(
                    "`nhiwatch: event` needs `where` (and no `sequence`)".into(),
                ))
            }
            (NativeKind::Sequence, _, _) => {
                return Err(error(
                    "`nhiwatch: sequence` needs `sequence` (and no top-level `where`)".into(),
                ))
            }
        };
        return Ok(Classified::Rule(Pending { info, body }));
    }
    if native_keys {
        return Err(error("`where`, `unless`, `sequence` and `sources` belong to native rules; add `nhiwatch: event` or `nhiwatch: sequence`".into()));
    }
    if let Some(filter) = doc.filter {
        return Ok(Classified::Filter(Filter {
            file: file.to_owned(),
            line,
            detection: filter.0,
            rules: filter.1,
        }));
    }
    if doc.title.is_none() {
        return Err(error("a Sigma rule needs a `title`".into()));
    }
    if let Some(mut correlation) = doc.correlation {
        // `generate` sits at the top of a correlation rule (specification); inside is accepted too.
        correlation.generate = doc.generate.or(correlation.generate);
        if doc.detection.is_some() {
            return Err(error(
                "a document is either a detection or a correlation, not both".into(),
            ));
        }
        if correlation.kind == CorrelationType::ValuePercentile {
            return Ok(Classified::Skip(skip(
                "correlation type value_percentile is not supported".into(),
            )));
        }
        info.kind = RuleKind::Correlation;
        return Ok(Classified::Rule(Pending {
            info,
            body: Body::Correlation(Box::new(correlation)),
        }));
    }
    let Some(detection) = doc.detection else {
        return Err(error("a Sigma rule needs `detection` (or `correlation`, or `filter`); a native rule needs `nhiwatch: event` or `nhiwatch: sequence`".into()));
    };
    let Some(logsource) = doc.logsource else {
        return Err(error("a Sigma rule needs a `logsource`".into()));
    };
    match logsource.source(logsources) {
        Some(source) => {
            info.sources = vec![source];
            Ok(Classified::Rule(Pending {
                info,
                body: Body::Detection(detection.0),
            }))
        }
        None => Ok(Classified::Skip(skip(format!(
            "log source {} is not one nhiwatch reads (aws/cloudtrail, kubernetes/audit, github/audit, opentelemetry, nhiwatch/<source>)",
            logsource.describe()
        )))),
    }
}

/// Resolves references (correlations, filters), decides which rules generate findings, and
/// builds the matchers and the index.
fn link(
    rules: Vec<Pending>,
    filters: Vec<Filter>,
    mut skipped: Vec<Skipped>,
    errors: &mut Vec<RuleError>,
) -> RuleSet {
    let at =
        |info: &RuleInfo, message: String| RuleError::new(&info.file, Some(info.line), message);
    let mut by_id: FxHashMap<&str, usize> = FxHashMap::default();
    let mut by_name: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
    for (i, p) in rules.iter().enumerate() {
        if let Some(&earlier) = by_id.get(p.info.id.as_str()) {
            let first = &rules[earlier].info;
            errors.push(at(
                &p.info,
                format!(
                    "rule id `{}` is also used at {}:{}",
                    p.info.id, first.file, first.line
                ),
            ));
            continue;
        }
        by_id.insert(&p.info.id, i);
        if let Some(name) = &p.info.name {
            by_name.entry(name).or_default().push(i);
        }
    }
    // A reference is an id, else a name (one in the same file wins).
    let resolve = |file: &str, reference: &str| -> Result<usize, String> {
        if let Some(&i) = by_id.get(reference) {
            return Ok(i);
        }
        let candidates = by_name.get(reference).map(Vec::as_slice).unwrap_or(&[]);
        let same_file: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| rules[i].info.file == file)
            .collect();
        match (candidates, same_file.as_slice()) {
            ([one], _) | (_, [one]) => Ok(*one),
            ([], _) => Err(format!(
                "refers to rule `{reference}`, which no loaded rule has as its id or name"
            )),
            _ => Err(format!(
                "refers to rule name `{reference}`, which several files use; refer to it by id"
            )),
        }
    };

    let n = rules.len();
    let mut inputs: Vec<Option<Vec<usize>>> = vec![None; n];
    for (i, p) in rules.iter().enumerate() {
        let Body::Correlation(doc) = &p.body else {
            continue;
        };
        let mut list = Vec::new();
        for reference in &doc.rules.0 {
            match resolve(&p.info.file, reference) {
                Ok(j) if j == i => errors.push(at(&p.info, "a correlation cannot refer to itself".into())),
                Ok(j) if list.contains(&j) => errors.push(at(&p.info, format!("rule `{reference}` is listed twice"))),
                Ok(j) if matches!(rules[j].body, Body::Sequence(..)) => errors.push(at(
                    &p.info,
                    format!("rule `{reference}` is a native sequence; correlations take detections, native event rules and correlations"),
                )),
                Ok(j) => list.push(j),
                Err(e) => errors.push(at(&p.info, format!("correlation {e}"))),
            }
        }
        if doc.rules.0.is_empty() {
            errors.push(at(&p.info, "a correlation needs `rules`".into()));
        }
        inputs[i] = Some(list);
    }

    let mut infos: Vec<RuleInfo> = rules.iter().map(|p| p.info.clone()).collect();
    // Sources follow chains of correlations; cycles are refused.
    let mut sources: Vec<Option<Vec<Source>>> = infos
        .iter()
        .zip(&inputs)
        .map(|(info, inputs)| inputs.is_none().then(|| info.sources.clone()))
        .collect();
    for (i, info) in infos.iter().enumerate() {
        if let Err(cycle) = chain_sources(i, &inputs, &mut sources, &mut Vec::new()) {
            errors.push(at(
                info,
                format!("correlations refer to each other in a cycle: {cycle}"),
            ));
        }
    }
    for (info, s) in infos.iter_mut().zip(sources) {
        info.sources = s.unwrap_or_default();
    }

    // A rule that feeds a correlation makes findings of its own only if a correlation it
    // feeds says `generate: true`.
    let mut consumers: Vec<Vec<(u32, usize)>> = vec![Vec::new(); n];
    let mut fed = vec![false; n];
    let mut forced = vec![false; n];
    for (i, list) in inputs.iter().enumerate() {
        let Some(list) = list else { continue };
        let generate = match &rules[i].body {
            Body::Correlation(doc) => doc.generate.unwrap_or(false),
            _ => false,
        };
        for (position, &j) in list.iter().enumerate() {
            consumers[j].push((i as u32, position));
            fed[j] = true;
            forced[j] |= generate;
        }
    }
    for (j, info) in infos.iter_mut().enumerate() {
        info.generate = !fed[j] || forced[j];
    }

    let mut logic = Vec::with_capacity(n);
    let mut tests: Vec<Vec<Test>> = Vec::with_capacity(n);
    let mut native = false;
    for (i, p) in rules.iter().enumerate() {
        match &p.body {
            Body::Detection(detection) => {
                logic.push(Logic::Single);
                tests.push(vec![Test::Sigma {
                    detection: detection.clone(),
                    filters: Vec::new(),
                }]);
            }
            Body::Event(where_, unless) => {
                native = true;
                logic.push(Logic::Single);
                tests.push(vec![Test::Native {
                    where_: where_.clone(),
                    unless: unless.clone(),
                }]);
            }
            Body::Sequence(def, steps) => {
                native = true;
                logic.push(Logic::Sequence(def.clone()));
                tests.push(
                    steps
                        .iter()
                        .map(|(where_, unless)| Test::Native {
                            where_: where_.clone(),
                            unless: unless.clone(),
                        })
                        .collect(),
                );
            }
            Body::Correlation(doc) => {
                let list = inputs[i].as_deref().unwrap_or_default();
                match correlation(doc, list, &rules) {
                    Ok(def) => logic.push(Logic::Correlation(def)),
                    Err(e) => {
                        errors.push(at(&p.info, e));
                        logic.push(Logic::Single);
                    }
                }
                tests.push(Vec::new());
            }
        }
    }
    // Filters silence the detection rules they name.
    for f in filters {
        for reference in &f.rules {
            let found =
                resolve(&f.file, reference).map(|j| tests.get_mut(j).and_then(|t| t.first_mut()));
            match found {
                Ok(Some(Test::Sigma { filters, .. })) => filters.push(f.detection.clone()),
                Ok(_) => errors.push(RuleError::new(
                    &f.file,
                    Some(f.line),
                    format!("filter refers to `{reference}`, which is not a Sigma detection rule"),
                )),
                Err(e) => errors.push(RuleError::new(&f.file, Some(f.line), format!("filter {e}"))),
            }
        }
    }

    let mut matchers = Vec::new();
    for (rule, rule_tests) in tests.into_iter().enumerate() {
        for (step, test) in rule_tests.into_iter().enumerate() {
            matchers.push(Matcher {
                rule: rule as u32,
                step: step as u16,
                test,
            });
        }
    }
    let index = Source::ALL
        .iter()
        .map(|source| build_index(*source, &matchers, &infos))
        .collect();
    skipped.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    RuleSet {
        rules: infos,
        logic,
        matchers,
        consumers,
        index,
        skipped,
        native,
    }
}

/// The sources of rule `i`, following correlation chains.
fn chain_sources(
    i: usize,
    inputs: &[Option<Vec<usize>>],
    sources: &mut [Option<Vec<Source>>],
    visiting: &mut Vec<usize>,
) -> Result<Vec<Source>, String> {
    if let Some(known) = &sources[i] {
        return Ok(known.clone());
    }
    if visiting.contains(&i) {
        return Err(format!("rule {} is reached again", i + 1));
    }
    visiting.push(i);
    let mut union = Vec::new();
    for &j in inputs[i].as_deref().unwrap_or_default() {
        for source in chain_sources(j, inputs, sources, visiting)? {
            if !union.contains(&source) {
                union.push(source);
            }
        }
    }
    visiting.pop();
    sources[i] = Some(union.clone());
    Ok(union)
}

/// Compiles a correlation over its resolved inputs.
fn correlation(
    doc: &CorrelationDoc,
    inputs: &[usize],
    rules: &[Pending],
) -> Result<CorrelationDef, String> {
    let getter = |j: usize, name: &str, aliases: bool| -> Result<Getter, String> {
        let info = &rules[j].info;
        let field = if aliases {
            doc.aliases
                .get(name)
                .and_then(|map| {
                    info.name
                        .as_ref()
                        .and_then(|n| map.get(n))
                        .or_else(|| map.get(&info.id))
                })
                .map_or(name, String::as_str)
        } else {
            name
        };
        match &rules[j].body {
            Body::Correlation(upstream) => upstream
                .group_by
                .0
                .iter()
                .position(|g| g == field)
                .map(Getter::Group)
                .ok_or_else(|| {
                    format!(
                        "rule `{}` is a correlation grouped by [{}]; it has no `{field}` to pass on",
                        info.id,
                        upstream.group_by.0.join(", ")
                    )
                }),
            Body::Event(..) => NativeFields::resolve(field).map(Getter::Field),
            Body::Detection(_) | Body::Sequence(..) => Ok(Getter::Field(FieldRef::Raw(field.into()))),
        }
    };
    let group = inputs
        .iter()
        .map(|&j| {
            doc.group_by
                .0
                .iter()
                .map(|g| getter(j, g, true))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let condition = doc.condition.clone().unwrap_or_default();
    let value_fields = condition.field.clone().unwrap_or_default().0;
    let value = inputs
        .iter()
        .map(|&j| {
            value_fields
                .iter()
                .map(|f| getter(j, f, false))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut threshold = Threshold::new(&condition);
    match doc.kind {
        CorrelationType::EventCount if threshold.is_empty() => {
            return Err("an event_count correlation needs a `condition` (e.g. `gte: 10`)".into())
        }
        CorrelationType::ValueCount | CorrelationType::ValueSum | CorrelationType::ValueAvg => {
            if value_fields.is_empty() {
                return Err(format!(
                    "a {:?} correlation needs `condition.field`: the field whose values it counts or adds",
                    doc.kind
                )
                .to_lowercase());
            }
            if threshold.is_empty() {
                return Err(
                    "this correlation needs a comparison in `condition` (e.g. `gte: 10`)".into(),
                );
            }
        }
        CorrelationType::Temporal if threshold.bounded_above() => {
            return Err(
                "a temporal condition counts the rules that matched; use `gt` or `gte`".into(),
            )
        }
        CorrelationType::Temporal | CorrelationType::TemporalOrdered if threshold.is_empty() => {
            threshold = Threshold::at_least(inputs.len());
        }
        _ => {}
    }
    if doc.kind == CorrelationType::TemporalOrdered {
        threshold = Threshold::at_least(inputs.len());
    }
    Ok(CorrelationDef {
        kind: doc.kind,
        inputs: inputs.iter().map(|&j| j as u32).collect(),
        group_names: doc.group_by.0.iter().map(|g| g.as_str().into()).collect(),
        group,
        value,
        timespan: doc.timespan.0,
        threshold,
    })
}

/// A matcher and what it requires, while the index is built.
type Item = (u32, Vec<Requirement>);

/// Files the matchers of one source under key values (see the module documentation).
fn build_index(source: Source, matchers: &[Matcher], infos: &[RuleInfo]) -> SourceIndex {
    let items: Vec<Item> = matchers
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            infos
                .get(m.rule as usize)
                .is_some_and(|info| info.sources.contains(&source))
        })
        .map(|(i, m)| (i as u32, m.test.requirements()))
        .collect();
    let (levels, rest) = split(items, None, MAX_KEYS);
    let raw_levels = levels
        .iter()
        .filter(|l| matches!(l.field, FieldRef::Raw(_)))
        .count();
    SourceIndex {
        parse_first: !rest.is_empty() || raw_levels > 1,
        levels,
        rest,
    }
}

/// Files `items` under up to `max_levels` key fields (not `exclude`); returns the levels and
/// the matchers no key covers. Values that hold many matchers are split once more.
fn split(
    mut items: Vec<Item>,
    exclude: Option<&FieldRef>,
    max_levels: usize,
) -> (Vec<KeyLevel>, Vec<u32>) {
    let mut levels = Vec::new();
    while levels.len() < max_levels {
        let Some(field) = best_field(&items, exclude) else {
            break;
        };
        let mut exact: FxHashMap<Box<str>, Vec<Item>> = FxHashMap::default();
        let mut prefix: Vec<(Box<str>, Vec<Item>)> = Vec::new();
        items.retain(|item| {
            let Some((_, keys)) = item.1.iter().find(|(f, _)| *f == field) else {
                return true;
            };
            for key in keys {
                match key {
                    Key::Exact(text) => exact
                        .entry(text.as_str().into())
                        .or_default()
                        .push(item.clone()),
                    Key::Prefix(text) => match prefix.iter_mut().find(|(p, _)| **p == **text) {
                        Some((_, list)) => list.push(item.clone()),
                        None => prefix.push((text.as_str().into(), vec![item.clone()])),
                    },
                }
            }
            false
        });
        let node = |list: Vec<Item>| -> Node {
            if exclude.is_some() || list.len() <= SPLIT_ABOVE {
                return Node {
                    matchers: list.into_iter().map(|(m, _)| m).collect(),
                    sub: None,
                };
            }
            let (mut sub, matchers) = split(list, Some(&field), 1);
            Node {
                matchers,
                sub: sub.pop().map(Box::new),
            }
        };
        levels.push(KeyLevel {
            field: field.clone(),
            exact: exact.into_iter().map(|(k, list)| (k, node(list))).collect(),
            prefix: prefix
                .into_iter()
                .map(|(k, list)| (k, node(list)))
                .collect(),
        });
    }
    (levels, items.into_iter().map(|(m, _)| m).collect())
}

/// The key field most of `items` require; on a tie, the one with more distinct keys.
fn best_field(items: &[Item], exclude: Option<&FieldRef>) -> Option<FieldRef> {
    let mut stats: Vec<(FieldRef, usize, Vec<&Key>)> = Vec::new();
    for (_, requirements) in items {
        let mut seen: Vec<&FieldRef> = Vec::new();
        for (field, keys) in requirements {
            if Some(field) == exclude || seen.contains(&field) {
                continue;
            }
            seen.push(field);
            let slot = match stats.iter().position(|(f, _, _)| f == field) {
                Some(i) => i,
                None => {
                    stats.push((field.clone(), 0, Vec::new()));
                    stats.len() - 1
                }
            };
            stats[slot].1 += 1;
            for key in keys {
                if !stats[slot].2.contains(&key) {
                    stats[slot].2.push(key);
                }
            }
        }
    }
    stats
        .into_iter()
        .max_by(|a, b| {
            (a.1, a.2.len())
                .cmp(&(b.1, b.2.len()))
                .then_with(|| b.0.name().cmp(&a.0.name()))
        })
        .map(|(field, _, _)| field)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn compile(files: &[(&str, &str)]) -> Result<RuleSet, LoadErrors> {
        RuleSet::compile(files, &LoadOptions::default())
    }

    fn error(text: &str) -> RuleError {
        let errors = compile(&[("rules/bad.yml", text)]).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        errors.0[0].clone()
    }

    const HEAD: &str = "title: t\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n";

    #[test]
    fn errors_name_the_file_line_and_column() {
        let e = error(&format!(
            "{HEAD}    selection:\n        eventName|contanis: x\n    condition: selection\n"
        ));
        assert_eq!(
            (e.file.as_str(), e.line, e.column),
            ("rules/bad.yml", Some(5), Some(9)),
            "{e}"
        );
        assert!(e.message.contains("unknown modifier `contanis`"), "{e}");
        assert!(e.to_string().starts_with("rules/bad.yml:5:9: "), "{e}");

        let e = error(&format!(
            "{HEAD}    selection:\n        eventName: x\n    condition: selection and nope\n"
        ));
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("`nope`"), "{e}");

        let e = error(&format!(
            "{HEAD}    selection:\n        userAgent|re: '(unclosed'\n    condition: selection\n"
        ));
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("invalid regular expression"), "{e}");

        let e = error(&format!(
            "{HEAD}    selection:\n        eventName: [x\n    condition: selection\n"
        ));
        assert!(e.line.is_some(), "YAML syntax errors carry a line: {e}");

        // Document-level problems name the line the document starts on.
        let valid =
            "title: v\nlogsource: {product: aws}\ndetection:\n    s: {a: 1}\n    condition: s\n";
        let e = error(&format!(
            "title: t\ndetection:\n    s: {{a: 1}}\n    condition: s\n---\n{valid}"
        ));
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("needs a `logsource`"), "{e}");
        let e = error(&format!(
            "{valid}---\ntitle: u\nlogsource: {{product: aws}}\n"
        ));
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains("needs `detection`"), "{e}");

        let e = error("nhiwatch: event\nid: n\ntitle: t\nwhere:\n    acton: x\n");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("not a field of native rules"), "{e}");
    }

    #[test]
    fn references_between_rules_are_checked() {
        let e = error("title: c\ncorrelation:\n    type: event_count\n    rules: [nowhere]\n    group-by: [a]\n    timespan: 5m\n    condition: {gte: 2}\n");
        assert!(e.message.contains("`nowhere`"), "{e}");
        let twice = compile(&[
            (
                "a.yml",
                &format!("id: same\n{HEAD}    s: {{a: 1}}\n    condition: s\n"),
            ),
            (
                "b.yml",
                &format!("id: same\n{HEAD}    s: {{a: 1}}\n    condition: s\n"),
            ),
        ])
        .unwrap_err();
        assert!(
            twice.0[0].message.contains("also used at a.yml:1"),
            "{twice}"
        );
        let cycle = compile(&[(
            "c.yml",
            "title: a\nname: a\ncorrelation: {type: temporal, rules: [b, x], group-by: [f], timespan: 1m}\n---\ntitle: b\nname: b\ncorrelation: {type: temporal, rules: [a, x], group-by: [f], timespan: 1m}\n---\ntitle: x\nname: x\nlogsource: {product: aws}\ndetection: {s: {a: 1}, condition: s}\n",
        )])
        .unwrap_err();
        assert!(cycle.to_string().contains("cycle"), "{cycle}");
    }

    #[test]
    fn unreadable_sources_are_skipped_not_refused() {
        let set = compile(&[(
            "w.yml",
            "title: w\nlogsource: {product: windows, category: process_creation}\ndetection: {s: {Image: x}, condition: s}\n",
        )])
        .unwrap();
        assert!(set.is_empty());
        assert!(set.skipped()[0].reason.contains("not one nhiwatch reads"));
    }

    #[test]
    fn filters_silence_the_rules_they_name() {
        let set = compile(&[(
            "f.yml",
            &format!("id: r\n{HEAD}    s: {{eventName: StopLogging}}\n    condition: s\n---\ntitle: maintenance role\nlogsource: {{product: aws}}\nfilter:\n    rules: [r]\n    selection:\n        userIdentity.arn|contains: maintenance\n    condition: selection\n"),
        )])
        .unwrap();
        let hit = |arn: &str| {
            let raw = format!(r#"{{"eventName":"StopLogging","userIdentity":{{"arn":"{arn}"}}}}"#);
            !set.matching(&Subject::raw(Source::Cloudtrail, &raw))
                .is_empty()
        };
        assert!(hit("arn:aws:iam::1:role/ci"));
        assert!(!hit("arn:aws:iam::1:role/maintenance"));
    }

    /// The index never hides a match: on every Panther test event, the rules found through the
    /// index are exactly those a test of every rule finds.
    #[test]
    fn the_index_finds_every_match() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = RuleSet::load(
            &[root.join("rules"), root.join("tests/panther")],
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let summary = set.index_summary();
        let key_of = |source: Source| {
            summary
                .iter()
                .find(|s| s.source == source)
                .and_then(|s| s.keys.first())
                .map(|k| k.field.clone())
        };
        assert_eq!(key_of(Source::Cloudtrail).as_deref(), Some("eventName"));
        assert_eq!(key_of(Source::GithubAudit).as_deref(), Some("action"));
        assert_eq!(
            key_of(Source::K8sAudit).as_deref(),
            Some("objectRef.resource")
        );
        let corpus = root.join("../../../shared/corpus/rule_tests");
        let mut checked = 0;
        for (file, source) in [
            (
                "panther_rule_tests.AWS.CloudTrail.jsonl",
                Source::Cloudtrail,
            ),
            (
                "panther_rule_tests.Amazon.EKS.Audit.jsonl",
                Source::K8sAudit,
            ),
            ("panther_rule_tests.GitHub.Audit.jsonl", Source::GithubAudit),
        ] {
            let text = std::fs::read_to_string(corpus.join(file)).expect("the corpus");
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
                let raw = value["log"].to_string();
                let subject = Subject::raw(source, &raw);
                let indexed: Vec<&str> = set
                    .matching(&subject)
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect();
                let mut everything: Vec<&str> = set
                    .matchers
                    .iter()
                    .filter(|m| matches!(set.logic[m.rule as usize], Logic::Single))
                    .filter(|m| set.rules[m.rule as usize].sources.contains(&source))
                    .filter(|m| m.test.matches(&subject))
                    .map(|m| set.rules[m.rule as usize].id.as_str())
                    .collect();
                everything.sort();
                assert_eq!(indexed, everything, "{raw}");
                checked += 1;
            }
        }
        assert!(checked > 800, "{checked}");
    }
}
