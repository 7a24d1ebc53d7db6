//! # nhiwatch-policy
//!
//! The policy file of DESIGN.md: which identities are declared, what each may do (the
//! *permitted* lens: `allow`/`deny` rules, AWS IAM policy documents, an agent's tool scope) and
//! how and when it is expected to act (the *expected* lens: `workflow`, `hours`), what is
//! `sensitive`, and what a finding of each severity leads to (`decision`).
//!
//! ```yaml
//! require_declared: true              # an identity no entry matches is itself a finding
//! identities:
//!   - match: "arn:aws:iam::*:role/ci-deployer"   # glob on identity.id; the first entry that matches wins
//!     kind: role
//!     owner: platform-team
//!     allow:
//!       - action: "ecr:*"
//!       - action: "ecs:UpdateService"
//!         resource: "arn:aws:ecs:*:*:service/prod/*"   # a glob or a list of globs
//!     deny:
//!       - action: "iam:*"
//!     iam_policy: policies/ci-deployer.json   # or a list; relative to this file's folder
//!     workflow:
//!       steps: "sts:GetCallerIdentity ecr:GetAuthorizationToken ecr:*+ ecs:UpdateService ecs:Describe*"
//!       window: 30m                            # default 1h
//!     hours: "Mon-Fri 05:00-21:00 UTC"         # or a list; `,` separates ranges too
//!     sensitive: ["secretsmanager:GetSecretValue", {resource: "arn:aws:s3:::payroll/*"}]
//!     decision: {high: block, medium: review}
//!   - match: "coding-agent/*"
//!     kind: agent
//!     tools:                                   # extension: an agent's tool scope
//!       - name: read_file
//!         paths: ["/workspace/**"]
//!       - name: http_get
//!         hosts: ["*.example.com"]
//!       - name: "search*"
//! ```
//!
//! ## Choices
//!
//! - **Identity matching: the first entry whose `match` glob matches wins**, in file order, as
//!   in a firewall rule list. It is predictable and lets a specific entry precede a catch-all;
//!   `policy check` warns when an entry can never be reached because an earlier glob already
//!   covers it. Identity globs are case-sensitive and `*` crosses `/` and `:`.
//! - **Globs** are globset's (see [`pattern`](crate::PatternSet)); action globs ignore case, as
//!   IAM does; resource globs do not.
//! - **Extensions of the DESIGN.md format**, all optional: `require_declared` (top level);
//!   `tools` (entries with `name`, and optional `paths`, `hosts`, `targets` globs over the tool
//!   call's target); `sensitive` items may be `{action, resource}` maps as well as action globs;
//!   `resource`, `iam_policy` and `hours` accept lists.
//! - How the entitlement sources combine, and how events without a resource are judged: see
//!   [`Entry`]. IAM evaluation: see [`iam`]. Workflow syntax: see [`Workflow`]. Hours: see
//!   [`Hours`].
//!
//! Every error names the file, line and column and the key path
//! (`policy.yaml:14:17: identities[0].allow[1].action: `ecs:[` is not a valid glob`).

#![warn(missing_docs)]

mod entry;
mod file;
mod hours;
pub mod iam;
mod pattern;
mod util;
mod wildcard;
mod workflow;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use nhiwatch_model::Severity;
use serde::Serialize;

pub use entry::{
    host_of, ActionProfile, Entry, EntryId, Grant, GrantPattern, Judgement, ProfileCache, Refusal,
    Rule, SensitiveItem, ToolRule, Verdict, DEFAULT_WORKFLOW_WINDOW,
};
pub use hours::Hours;
pub use iam::{IamDecision, RequestContext, StatementRef};
pub use pattern::{Pattern, PatternSet};
pub use util::parse_duration;
pub use workflow::{Move, Workflow, MAX_STEPS};

use file::{BaseDir, RawPolicy};
use pattern::Flavour;

/// Why a policy file could not be loaded: the file, where in it, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, starting with the key path where there is one
    /// (`identities[0].allow[1].action: ...`).
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// A loaded, compiled policy.
#[derive(Debug)]
pub struct Policy {
    source: String,
    entries: Vec<Entry>,
    matchers: PatternSet,
    require_declared: bool,
}

impl Policy {
    /// Loads a policy file; relative `iam_policy` paths resolve against the file's folder.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: name.clone(),
            line: None,
            column: None,
            message: format!("cannot read the policy file: {e}"),
        })?;
        Policy::parse(&text, &name, path.parent())
    }

    /// Reads a policy from YAML text. `name` names it in errors; `base_dir` is where relative
    /// `iam_policy` paths resolve (the working directory when `None`).
    pub fn parse(text: &str, name: &str, base_dir: Option<&Path>) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = {
            let _base = BaseDir::enter(base_dir);
            if text.trim().is_empty() {
                RawPolicy {
                    identities: Vec::new(),
                    require_declared: false,
                }
            } else {
                serde_norway::from_str(text).map_err(|e| yaml_error(name, &e))?
            }
        };
        let patterns: Vec<&str> = raw
            .identities
            .iter()
            .map(|e| e.pattern.text.as_str())
            .collect();
        let matchers =
            PatternSet::new(&patterns, Flavour::Exact).map_err(|message| PolicyError {
                file: name.to_owned(),
                line: None,
                column: None,
                message: format!("identities: {message}"),
            })?;
        let mut shared = Shared::default();
        let entries = raw
            .identities
            .into_iter()
            .enumerate()
            .map(|(index, raw)| compile_entry(index, raw, &mut shared))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| PolicyError {
                file: name.to_owned(),
                line: None,
                column: None,
                message,
            })?;
        Ok(Policy {
            source: name.to_owned(),
            entries,
            matchers,
            require_declared: raw.require_declared,
        })
    }

    /// Where the policy came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// An entry by id.
    pub fn entry(&self, id: EntryId) -> Option<&Entry> {
        self.entries.get(id.0 as usize)
    }

    /// Whether an identity no entry matches is itself a finding.
    pub fn require_declared(&self) -> bool {
        self.require_declared
    }

    /// The entry that governs an identity: the first whose `match` glob matches its id.
    /// Callers cache the answer per identity.
    pub fn entry_for(&self, identity_id: &str) -> Option<EntryId> {
        self.matchers
            .first_match(identity_id)
            .map(|index| EntryId(index as u32))
    }

    /// A summary for `policy check`: what was declared, what cannot be evaluated, and warnings.
    pub fn summary(&self) -> Summary {
        let mut unevaluable = Vec::new();
        let mut warnings = Vec::new();
        let mut entries = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            for (d, doc) in entry.iam().documents().iter().enumerate() {
                for (s, statement) in doc.statements().iter().enumerate() {
                    let at = StatementRef {
                        doc: d as u16,
                        index: s as u16,
                    };
                    for what in statement.unevaluable() {
                        unevaluable.push(Unevaluable {
                            entry: entry.index(),
                            identity: entry.pattern().to_owned(),
                            statement: entry.iam().describe(at),
                            what: what.clone(),
                        });
                    }
                }
            }
            if let Some(earlier) = self.shadowed_by(entry) {
                warnings.push(format!(
                    "identities[{}] (`{}`) is never used: identities[{}] (`{}`) comes first and matches it",
                    entry.index(),
                    entry.pattern(),
                    earlier.index(),
                    earlier.pattern()
                ));
            }
            if !entry.deny_rules().is_empty() && !entry.has_entitlements() {
                warnings.push(format!(
                    "identities[{}] (`{}`) has deny rules but no allow, tools or iam_policy: everything else it does is permitted",
                    entry.index(),
                    entry.pattern()
                ));
            }
            entries.push(EntrySummary::of(entry));
        }
        Summary {
            source: self.source.clone(),
            identities: self.entries.len(),
            require_declared: self.require_declared,
            entries,
            unevaluable,
            warnings,
        }
    }

    /// The earlier entry that always wins over `entry`, when one does: the same glob, or a
    /// glob without wildcards that an earlier glob matches.
    fn shadowed_by(&self, entry: &Entry) -> Option<&Entry> {
        let literal = !entry.pattern().contains(['*', '?', '[', '{']);
        self.entries[..entry.index()].iter().find(|earlier| {
            earlier.pattern() == entry.pattern()
                || (literal
                    && self
                        .matchers
                        .matches(entry.pattern())
                        .contains(&earlier.index()))
        })
    }
}

fn yaml_error(file: &str, error: &serde_norway::Error) -> PolicyError {
    let location = error.location();
    let mut message = error.to_string();
    if let Some(at) = &location {
        // The location is reported in its own fields; drop serde_norway's trailing copy.
        let suffix = format!(" at line {} column {}", at.line(), at.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    PolicyError {
        file: file.to_owned(),
        line: location.as_ref().map(|at| at.line()),
        column: location.as_ref().map(|at| at.column()),
        message,
    }
}

/// Workflows and hours written identically in several entries are compiled once and shared,
/// so that a fleet of entries keeps one copy in memory (and in the processor's cache).
#[derive(Default)]
struct Shared {
    workflows: HashMap<String, Arc<Workflow>>,
    hours: HashMap<String, Arc<Hours>>,
}

fn compile_entry(index: usize, raw: file::RawEntry, shared: &mut Shared) -> Result<Entry, String> {
    let at = |key: &str, message: String| format!("identities[{index}].{key}: {message}");
    let rules = |raw: Vec<file::RawRule>, key: &str| -> Result<(Vec<Rule>, PatternSet), String> {
        let actions: Vec<&str> = raw.iter().map(|r| r.action.text.as_str()).collect();
        let set = PatternSet::new(&actions, Flavour::Action).map_err(|m| at(key, m))?;
        let rules = raw
            .iter()
            .map(|rule| {
                let resources = glob_list(&rule.resource).map_err(|m| at(key, m))?;
                Ok(Rule {
                    action: rule.action.text.clone(),
                    resources,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((rules, set))
    };
    let (allow, allow_actions) = rules(raw.allow, "allow")?;
    let (deny, deny_actions) = rules(raw.deny, "deny")?;

    let mut tools = Vec::with_capacity(raw.tools.len());
    let mut tool_names = Vec::with_capacity(raw.tools.len());
    for tool in &raw.tools {
        let name = tool
            .name
            .text
            .strip_prefix("tool:")
            .unwrap_or(&tool.name.text);
        tool_names.push(format!("tool:{name}"));
        tools.push(ToolRule {
            name: name.to_owned(),
            paths: glob_list(&tool.paths).map_err(|m| at("tools", m))?,
            hosts: glob_list(&tool.hosts).map_err(|m| at("tools", m))?,
            targets: glob_list(&tool.targets).map_err(|m| at("tools", m))?,
        });
    }
    let tool_actions = PatternSet::new(&tool_names, Flavour::Action).map_err(|m| at("tools", m))?;

    let docs = raw
        .iam_policy
        .map(|files| files.0.into_iter().flat_map(|file| file.docs).collect())
        .unwrap_or_default();

    let mut sensitive = Vec::with_capacity(raw.sensitive.len());
    let mut sensitive_action_texts = Vec::with_capacity(raw.sensitive.len());
    let mut sensitive_action_items = Vec::with_capacity(raw.sensitive.len());
    let mut sensitive_any_action = Vec::new();
    for (index, item) in raw.sensitive.iter().enumerate() {
        let action = item
            .action
            .as_ref()
            .map(|g| Pattern::new(&g.text, Flavour::Action))
            .transpose()
            .map_err(|m| at("sensitive", m))?;
        let resource = item
            .resource
            .as_ref()
            .map(|g| PatternSet::new(&[g.text.as_str()], Flavour::Exact))
            .transpose()
            .map_err(|m| at("sensitive", m))?;
        match (&action, &resource) {
            (None, Some(resource)) => {
                sensitive_any_action.push((index as u16, resource.matcher().clone()))
            }
            _ => {
                sensitive_action_texts
                    .push(action.as_ref().map_or("*", Pattern::as_str).to_owned());
                sensitive_action_items.push(index as u16);
            }
        }
        sensitive.push(SensitiveItem { action, resource });
    }
    let sensitive_actions = PatternSet::new(&sensitive_action_texts, Flavour::Action)
        .map_err(|m| at("sensitive", m))?;

    let mut decision = [None; 4];
    for (severity, choice) in raw.decision {
        decision[severity as usize] = Some(choice);
    }
    let (workflow, window) = match raw.workflow {
        Some(w) => {
            let workflow = shared
                .workflows
                .entry(w.steps.0.text().to_owned())
                .or_insert_with(|| Arc::new(w.steps.0))
                .clone();
            (
                Some(workflow),
                w.window.map_or(DEFAULT_WORKFLOW_WINDOW, |d| d.0),
            )
        }
        None => (None, DEFAULT_WORKFLOW_WINDOW),
    };
    let hours = raw.hours.map(|h| {
        shared
            .hours
            .entry(h.0.text().to_owned())
            .or_insert_with(|| Arc::new(h.0))
            .clone()
    });
    Ok(Entry {
        index,
        pattern: raw.pattern.text,
        kind: raw.kind,
        owner: raw.owner,
        allow,
        allow_actions,
        deny,
        deny_actions,
        tools,
        tool_actions,
        iam: iam::IamPolicies::new(docs),
        workflow,
        window,
        hours,
        sensitive,
        sensitive_actions,
        sensitive_action_items,
        sensitive_any_action,
        decision,
    })
}

/// Compiles an optional list of checked globs into one set of their flavour.
fn glob_list<K: file::GlobKind>(
    list: &Option<util::OneOrMany<file::Glob<K>>>,
) -> Result<Option<PatternSet>, String> {
    list.as_ref()
        .map(|list| {
            let texts: Vec<&str> = list.0.iter().map(|g| g.text.as_str()).collect();
            PatternSet::new(&texts, K::FLAVOUR)
        })
        .transpose()
}

/// What `policy check` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The policy file.
    pub source: String,
    /// How many identity entries.
    pub identities: usize,
    /// Whether undeclared identities are findings.
    pub require_declared: bool,
    /// One summary per entry.
    pub entries: Vec<EntrySummary>,
    /// Every IAM condition or policy variable that cannot be evaluated from telemetry.
    pub unevaluable: Vec<Unevaluable>,
    /// Problems that are not errors (an entry that can never match, deny rules alone).
    pub warnings: Vec<String>,
}

/// One entry, counted.
#[derive(Clone, Debug, Serialize)]
pub struct EntrySummary {
    /// Position in the file.
    pub index: usize,
    /// The `match` glob.
    pub pattern: String,
    /// The declared kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// The declared owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// How many allow rules.
    pub allow_rules: usize,
    /// How many deny rules.
    pub deny_rules: usize,
    /// How many tool entries.
    pub tools: usize,
    /// The IAM documents' sources.
    pub iam_documents: Vec<String>,
    /// How many IAM statements in all.
    pub iam_statements: usize,
    /// The workflow, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowSummary>,
    /// The approved hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// How many sensitive items.
    pub sensitive: usize,
    /// The decision per severity the entry sets.
    pub decision: Vec<(String, String)>,
}

/// A workflow, summarised.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowSummary {
    /// The expression.
    pub steps: String,
    /// Step occurrences (automaton states).
    pub positions: usize,
    /// The run window, in seconds.
    pub window_seconds: i64,
}

/// An IAM condition or policy variable that cannot be evaluated from telemetry.
#[derive(Clone, Debug, Serialize)]
pub struct Unevaluable {
    /// The entry's index.
    pub entry: usize,
    /// The entry's `match` glob.
    pub identity: String,
    /// The statement (`file.json Sid "X"`).
    pub statement: String,
    /// What cannot be evaluated (`condition StringEquals aws:ResourceTag/team`).
    pub what: String,
}

impl EntrySummary {
    fn of(entry: &Entry) -> Self {
        EntrySummary {
            index: entry.index(),
            pattern: entry.pattern().to_owned(),
            kind: entry.kind().map(|k| k.as_str()),
            owner: entry.owner().map(str::to_owned),
            allow_rules: entry.allow_rules().len(),
            deny_rules: entry.deny_rules().len(),
            tools: entry.tools().len(),
            iam_documents: entry
                .iam()
                .documents()
                .iter()
                .map(|d| d.source().to_owned())
                .collect(),
            iam_statements: entry
                .iam()
                .documents()
                .iter()
                .map(|d| d.statements().len())
                .sum(),
            workflow: entry.workflow().map(|w| WorkflowSummary {
                steps: w.text().to_owned(),
                positions: w.steps(),
                window_seconds: entry.workflow_window() / 1_000_000_000,
            }),
            hours: entry.hours().map(|h| h.text().to_owned()),
            sensitive: entry.sensitive().len(),
            decision: [
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ]
            .into_iter()
            .filter_map(|s| {
                entry
                    .decision(s)
                    .map(|d| (s.as_str().to_owned(), d.as_str().to_owned()))
            })
            .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
