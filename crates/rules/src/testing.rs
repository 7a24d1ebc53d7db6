//! Rule tests: example events kept next to each rule, expected to fire it or not (the way
//! Panther keeps `Tests:` with its rules).
//!
//! For a rule file `name.yml`, the file `name.tests.yml` beside it holds a list of cases:
//!
//! ```yaml
//! - name: a role stops CloudTrail logging
//!   expect: true            # the rule fires on these events
//!   log: {"eventVersion": "1.08", "eventName": "StopLogging", ...}
//! - name: a sequence of events
//!   expect: true
//!   logs:                   # in order
//!     - {...}
//!     - {...}
//!   rule: some-rule-id      # optional: which rule of the file (default: the ones that make findings)
//!   policy: policy.yml      # optional: a policy file (relative to the test file), for lens fields
//! ```
//!
//! Each case runs through the same path as `nhiwatch detect`: its records are decoded (format
//! detected per record), handed to a fresh engine whose only detector is the rules, and the
//! case passes when a finding of the target rule appears exactly when `expect` says so. A
//! record no decoder accepts is still evaluated, as a raw record of the rule's source, so that
//! Sigma rules can be tested on partial examples; the case notes it.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nhiwatch_decode::{sniff, Decoders};
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{
    content_id, ActionClass, Event, Finding, FindingKind, Identity, IdentityKind, Outcome, Source,
    Timestamp,
};
use nhiwatch_policy::Policy;
use serde_json::value::RawValue;

use crate::detector::RulesDetector;
use crate::error::{LoadErrors, RuleError};
use crate::set::{collect_files, is_test_file, LoadOptions, RuleSet, Skipped};

/// One case of a test file, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDoc {
    name: String,
    expect: bool,
    log: Option<serde_json::Value>,
    logs: Option<Vec<serde_json::Value>>,
    rule: Option<String>,
    policy: Option<PathBuf>,
}

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    /// The test file.
    pub file: String,
    /// The case's name.
    pub name: String,
    /// Whether the target rule was expected to fire.
    pub expect: bool,
    /// Whether it fired.
    pub fired: bool,
    /// Ids of every rule that fired on the case.
    pub rules_fired: Vec<String>,
    /// Remarks: records that were not decodable, and the like.
    pub notes: Vec<String>,
}

impl CaseResult {
    /// Whether the rule did what the case expected.
    pub fn passed(&self) -> bool {
        self.expect == self.fired
    }
}

/// The outcome of a test run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestReport {
    /// Every case, in file order.
    pub cases: Vec<CaseResult>,
    /// Rule files with no test file beside them.
    pub untested: Vec<String>,
    /// Rules read but not run.
    pub skipped: Vec<Skipped>,
}

impl TestReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Loads every rule under `paths` and runs every test file found there.
pub fn run_tests<P: AsRef<Path>>(
    paths: &[P],
    options: &LoadOptions,
) -> Result<TestReport, LoadErrors> {
    let set = Arc::new(RuleSet::load(paths, options)?);
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        collect_all(path.as_ref(), &mut files, &mut errors);
    }
    let mut report = TestReport {
        skipped: set.skipped().to_vec(),
        ..TestReport::default()
    };
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let has_tests = test_file_for(file).is_some_and(|t| t.exists());
        if !has_tests {
            report.untested.push(file.display().to_string());
        }
    }
    for test_file in files.iter().filter(|f| is_test_file(f)) {
        let name = test_file.display().to_string();
        let Some(rule_file) = rule_file_for(test_file) else {
            errors.push(RuleError::new(
                &name,
                None,
                "no rule file beside this test file (expected `<name>.yml`)",
            ));
            continue;
        };
        let text = match std::fs::read_to_string(test_file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(RuleError::new(&name, None, format!("cannot read: {e}")));
                continue;
            }
        };
        let cases: Vec<CaseDoc> = match serde_norway::from_str(&text) {
            Ok(cases) => cases,
            Err(e) => {
                errors.push(RuleError::yaml(&name, &e, ""));
                continue;
            }
        };
        let rule_file = rule_file.display().to_string();
        for case in cases {
            match run_case(&set, &rule_file, test_file, case) {
                Ok(result) => report.cases.push(result),
                Err(message) => errors.push(RuleError::new(&name, None, message)),
            }
        }
    }
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Every `.yml`/`.yaml` file under `path`, rules and tests alike.
fn collect_all(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<RuleError>) {
    let mut rules = Vec::new();
    collect_files(path, &mut rules, errors);
    for rule in rules {
        if let Some(test) = test_file_for(&rule).filter(|t| t.exists()) {
            files.push(rule);
            files.push(test);
        } else {
            files.push(rule);
        }
    }
}

fn test_file_for(rule: &Path) -> Option<PathBuf> {
    let name = rule.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".yml")
        .or_else(|| name.strip_suffix(".yaml"))?;
    Some(rule.with_file_name(format!("{stem}.tests.yml")))
}

fn rule_file_for(test: &Path) -> Option<PathBuf> {
    let name = test.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".tests.yml")
        .or_else(|| name.strip_suffix(".tests.yaml"))?;
    ["yml", "yaml"]
        .iter()
        .map(|ext| test.with_file_name(format!("{stem}.{ext}")))
        .find(|p| p.exists())
}

fn run_case(
    set: &Arc<RuleSet>,
    rule_file: &str,
    test_file: &Path,
    case: CaseDoc,
) -> Result<CaseResult, String> {
    let targets: Vec<&str> = {
        let in_file: Vec<_> = set.rules().iter().filter(|r| r.file == rule_file).collect();
        let chosen: Vec<&str> = match &case.rule {
            Some(id) => in_file
                .iter()
                .filter(|r| r.id == *id || r.name.as_deref() == Some(id))
                .map(|r| r.id.as_str())
                .collect(),
            None => {
                let generating: Vec<&str> = in_file
                    .iter()
                    .filter(|r| r.generate)
                    .map(|r| r.id.as_str())
                    .collect();
                if generating.is_empty() {
                    in_file.iter().map(|r| r.id.as_str()).collect()
                } else {
                    generating
                }
            }
        };
        if chosen.is_empty() {
            return Err(format!(
                "case `{}`: {} has no rule to test{}",
                case.name,
                rule_file,
                case.rule
                    .as_deref()
                    .map(|r| format!(" named `{r}`"))
                    .unwrap_or_default()
            ));
        }
        chosen
    };
    let fallback_source = set
        .rules()
        .iter()
        .find(|r| targets.contains(&r.id.as_str()))
        .and_then(|r| r.sources.first().copied())
        .unwrap_or(Source::Jsonl);
    let policy = match &case.policy {
        Some(path) => {
            let path = test_file.parent().unwrap_or(Path::new(".")).join(path);
            Some(Arc::new(
                Policy::load(&path).map_err(|e| format!("case `{}`: {e}", case.name))?,
            ))
        }
        None => None,
    };
    let logs: Vec<serde_json::Value> = match (case.log, case.logs) {
        (Some(log), None) => vec![log],
        (None, Some(logs)) if !logs.is_empty() => logs,
        _ => {
            return Err(format!(
                "case `{}` needs `log` (one record) or `logs` (a list)",
                case.name
            ))
        }
    };
    let config = EngineConfig::default();
    let detector = RulesDetector::new(Arc::clone(set), &config);
    let mut engine = Engine::with_detectors(policy, config, vec![Box::new(detector)]);
    let mut findings: Vec<Finding> = Vec::new();
    let mut notes = Vec::new();
    let mut decoders = Decoders::default();
    for (i, log) in logs.iter().enumerate() {
        let text = serde_json::to_string(log).map_err(|e| e.to_string())?;
        let mut sink = |f: Finding| findings.push(f);
        let decoded = match sniff(&text) {
            Some(format) => {
                let mut any = false;
                decoders
                    .decode(format, &text, &mut |event| {
                        any = true;
                        engine.process(&event, &mut sink);
                    })
                    .map(|()| any)
                    .map_err(|e| format!("not decodable as {}: {e}", format.as_str()))
            }
            None => Err("no decoder recognises it".to_owned()),
        };
        match decoded {
            Ok(_) => {}
            Err(reason) => {
                notes.push(format!(
                    "record {}: {reason}; evaluated as a raw {} record",
                    i + 1,
                    fallback_source
                ));
                let raw = RawValue::from_string(text.clone()).map_err(|e| e.to_string())?;
                let event = Event {
                    id: content_id(text.as_bytes()).into(),
                    time: Timestamp(i as i64 * 1_000_000_000),
                    time_inferred: true,
                    source: fallback_source,
                    identity: Identity::new("unknown", IdentityKind::Unknown),
                    action: "unknown".into(),
                    action_class: ActionClass::Other,
                    resource: None,
                    outcome: Outcome::Success,
                    error: None,
                    src_ip: None,
                    user_agent: None,
                    bytes_out: None,
                    records: None,
                    raw: Cow::Owned(raw),
                };
                engine.process(&event, &mut sink);
            }
        }
    }
    let mut sink = |f: Finding| findings.push(f);
    decoders.finish(&mut |event| engine.process(&event, &mut sink));
    engine.finish(&mut sink);
    let mut rules_fired: Vec<String> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Rule)
        .filter_map(|f| {
            f.evidence
                .detail
                .pointer("/rule/id")
                .and_then(|v| v.as_str())
        })
        .map(str::to_owned)
        .collect();
    rules_fired.sort();
    rules_fired.dedup();
    let fired = rules_fired.iter().any(|id| targets.contains(&id.as_str()));
    Ok(CaseResult {
        file: test_file.display().to_string(),
        name: case.name,
        expect: case.expect,
        fired,
        rules_fired,
        notes,
    })
}
