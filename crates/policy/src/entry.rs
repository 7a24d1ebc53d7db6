//! One compiled policy entry, and the judgement of an event against it.
//!
//! ## Entitlements
//!
//! An entry's entitlements are the union of three sources: its `allow`/`deny` rules, its `tools`
//! (an agent's tool scope) and its `iam_policy` documents. They combine as IAM combines several
//! identity policies: an explicit deny anywhere wins (a `deny` rule or an IAM `Deny`), otherwise
//! one grant anywhere permits the action.
//!
//! Which actions are judged at all depends on which sources the entry has: `allow` rules and IAM
//! documents govern every action; `tools` govern `tool:*` actions only (so an agent entry with a
//! tool scope is not faulted for its model calls); an entry with none of the three has no
//! entitlement lens, though its `deny` rules still apply.
//!
//! An event without a resource cannot be checked against a resource constraint: a grant is given
//! the benefit of the doubt and a deny is not applied on a guess; the judgement says so
//! ([`Judgement::resource_unknown`]).
//!
//! ## Speed
//!
//! Everything that depends on the action alone — which rules', tools', IAM statements', workflow
//! steps' and sensitive patterns' action parts match — is computed once per (entry, action) into
//! an [`ActionProfile`] and cached by [`ProfileCache`]. Per event, only the resource constraints of
//! the few rules that matched the action remain to check.

use std::fmt::Write;
use std::sync::Arc;

use indexmap::IndexSet;
use nhiwatch_model::{Decision, IdentityKind, Severity, Sym, Timestamp};
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::hours::Hours;
use crate::iam::{Effect, IamDecision, IamPolicies, RequestContext, StatementRef};
use crate::pattern::{Pattern, PatternSet, SetMatcher};
use crate::workflow::Workflow;

/// The index of an entry in its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub u32);

/// An `allow` or `deny` rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The action glob as written.
    pub action: String,
    /// Resource globs; `None` = any resource.
    pub resources: Option<PatternSet>,
}

/// One entry of an agent's tool scope.
#[derive(Clone, Debug)]
pub struct ToolRule {
    /// The tool-name glob as written (without `tool:`).
    pub name: String,
    /// Globs on the call's target as a file path (`*` stays in one directory, `**` crosses).
    pub paths: Option<PatternSet>,
    /// Globs on the host of the call's target (a URL's host, or a bare host name).
    pub hosts: Option<PatternSet>,
    /// Globs on the call's target as a whole (an IBAN, an e-mail address, a channel).
    pub targets: Option<PatternSet>,
}

impl ToolRule {
    fn constrained(&self) -> bool {
        self.paths.is_some() || self.hosts.is_some() || self.targets.is_some()
    }

    fn admits(&self, target: &str) -> bool {
        self.paths.as_ref().is_some_and(|p| p.is_match(target))
            || self
                .hosts
                .as_ref()
                .is_some_and(|p| p.is_match(host_of(target)))
            || self.targets.as_ref().is_some_and(|p| p.is_match(target))
    }
}

/// The host named by a tool target: a URL's host (no user, no port), or the text before the
/// first `/` of anything else (`example.com/path`, `example.com`).
pub fn host_of(target: &str) -> &str {
    let rest = target.split_once("://").map_or(target, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Something the policy marks sensitive: an action glob, a resource glob, or both.
#[derive(Clone, Debug)]
pub struct SensitiveItem {
    /// The action glob; `None` = any action.
    pub action: Option<Pattern>,
    /// The resource glob; `None` = any resource.
    pub resource: Option<PatternSet>,
}

impl SensitiveItem {
    /// The item as written: `s3:GetObject`, `resource arn:...`, or `s3:GetObject on arn:...`.
    pub fn describe(&self) -> String {
        match (&self.action, &self.resource) {
            (Some(a), None) => a.as_str().to_owned(),
            (None, Some(r)) => format!("resource {}", r.texts().join(", ")),
            (Some(a), Some(r)) => format!("{} on {}", a.as_str(), r.texts().join(", ")),
            (None, None) => "*".to_owned(),
        }
    }
}

/// What grants an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grant {
    /// `allow[i]`.
    Allow(u32),
    /// `tools[i]`.
    Tool(u32),
    /// An IAM `Allow` statement.
    Iam(StatementRef),
}

/// Why an action is not permitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `deny[i]` matches.
    Deny(u32),
    /// An IAM `Deny` statement matches.
    IamDeny(StatementRef),
    /// Nothing grants it.
    NoGrant,
}

/// The entitlement lens's answer for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The entry has no entitlement covering this action: not judged.
    Unjudged,
    /// Permitted, by this grant.
    Permitted(Grant),
    /// Not permitted, for this reason.
    NotPermitted(Refusal),
}

/// A verdict and the caveats that go with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// An IAM statement with a condition or policy variable that could not be evaluated and
    /// that could change the verdict.
    pub uncertain: Option<StatementRef>,
    /// The event had no resource and a resource constraint could not be checked.
    pub resource_unknown: bool,
}

impl Judgement {
    /// The judgement of an event nothing judges.
    pub const UNJUDGED: Judgement = Judgement {
        verdict: Verdict::Unjudged,
        uncertain: None,
        resource_unknown: false,
    };

    /// Whether the verdict is "not permitted".
    pub fn is_refused(&self) -> bool {
        matches!(self.verdict, Verdict::NotPermitted(_))
    }
}

/// One `allow` or `deny` rule whose action part matches, with its resource constraint copied
/// beside the profile's other data (`None`: any resource).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RuleCheck {
    index: u32,
    resources: Option<SetMatcher>,
}

/// Everything about one action under one entry that does not depend on the event: computed once
/// and cached ([`ProfileCache`]). It carries copies of the resource constraints that may apply,
/// so that judging an event touches the profile and, at most, those few patterns — never the
/// entry's rule lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ActionProfile {
    /// The judgement, when the action alone decides it (no resource constraint or IAM
    /// statement is in play): most events are judged from the profile alone.
    fixed: Option<Judgement>,
    /// The workflow positions whose step glob matches the action (0: foreign to the workflow,
    /// or no workflow).
    pub workflow: u64,
    /// A sensitive item that matches on the action alone.
    pub sensitive_action: Option<u16>,
    governed: bool,
    /// Matching deny rules, in index order.
    deny: Box<[RuleCheck]>,
    /// Matching allow rules, in index order.
    allow: Box<[RuleCheck]>,
    /// Matching tool entries.
    tools: Box<[u32]>,
    /// IAM statements whose action part matches.
    iam: Box<[StatementRef]>,
    /// Sensitive items whose action part matches and whose resource part remains to check.
    sensitive_resource: Box<[(u16, SetMatcher)]>,
}

/// One policy entry, compiled.
#[derive(Clone, Debug)]
pub struct Entry {
    pub(crate) index: usize,
    pub(crate) pattern: String,
    pub(crate) kind: Option<IdentityKind>,
    pub(crate) owner: Option<String>,
    pub(crate) allow: Vec<Rule>,
    pub(crate) allow_actions: PatternSet,
    pub(crate) deny: Vec<Rule>,
    pub(crate) deny_actions: PatternSet,
    pub(crate) tools: Vec<ToolRule>,
    pub(crate) tool_actions: PatternSet,
    pub(crate) iam: IamPolicies,
    pub(crate) workflow: Option<Arc<Workflow>>,
    pub(crate) window: i64,
    pub(crate) hours: Option<Arc<Hours>>,
    pub(crate) sensitive: Vec<SensitiveItem>,
    /// The action globs of the sensitive items that have one (index into `sensitive` per glob).
    pub(crate) sensitive_actions: PatternSet,
    pub(crate) sensitive_action_items: Vec<u16>,
    /// Sensitive items with a resource and no action: they apply to every action, so they are
    /// kept once per entry rather than copied into every profile.
    pub(crate) sensitive_any_action: Vec<(u16, SetMatcher)>,
    pub(crate) decision: [Option<Decision>; 4],
}

/// The default length of a workflow run when `window` is not given.
pub const DEFAULT_WORKFLOW_WINDOW: i64 = 3_600 * 1_000_000_000;

impl Entry {
    /// Its position in the policy file (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The identity glob (`match`).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The declared kind.
    pub fn kind(&self) -> Option<IdentityKind> {
        self.kind
    }

    /// The declared owner.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The `allow` rules.
    pub fn allow_rules(&self) -> &[Rule] {
        &self.allow
    }

    /// The `deny` rules.
    pub fn deny_rules(&self) -> &[Rule] {
        &self.deny
    }

    /// The tool scope.
    pub fn tools(&self) -> &[ToolRule] {
        &self.tools
    }

    /// The IAM documents.
    pub fn iam(&self) -> &IamPolicies {
        &self.iam
    }

    /// The approved workflow.
    pub fn workflow(&self) -> Option<&Workflow> {
        self.workflow.as_deref()
    }

    /// The longest a workflow run may last (nanoseconds); a run older than this is over.
    pub fn workflow_window(&self) -> i64 {
        self.window
    }

    /// The approved hours.
    pub fn hours(&self) -> Option<&Hours> {
        self.hours.as_deref()
    }

    /// The sensitive items.
    pub fn sensitive(&self) -> &[SensitiveItem] {
        &self.sensitive
    }

    /// Whether any entitlement source (allow rules, tools, IAM) is present.
    pub fn has_entitlements(&self) -> bool {
        !self.allow.is_empty() || !self.tools.is_empty() || !self.iam.is_empty()
    }

    /// The decision the policy sets for a severity, when it sets one.
    pub fn decision(&self, severity: Severity) -> Option<Decision> {
        self.decision[severity as usize]
    }

    /// Whether `time` is outside the approved hours (false when the entry sets none).
    pub fn outside_hours(&self, time: Timestamp) -> bool {
        self.hours.as_ref().is_some_and(|h| !h.contains(time))
    }

    /// Computes the profile of an action (the expensive part; cache it with [`ProfileCache`]).
    pub fn profile(&self, action: &str) -> ActionProfile {
        let is_tool = action
            .get(..5)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("tool:"));
        let checks = |rules: &[Rule], set: &PatternSet| -> Box<[RuleCheck]> {
            set.matches(action)
                .into_iter()
                .filter_map(|i| {
                    let rule = rules.get(i)?;
                    Some(RuleCheck {
                        index: i as u32,
                        resources: rule.resources.as_ref().map(|r| r.matcher().clone()),
                    })
                })
                .collect()
        };
        let mut sensitive_action = None;
        let mut sensitive_resource = Vec::new();
        for glob in self.sensitive_actions.matches(action) {
            let Some(&index) = self.sensitive_action_items.get(glob) else {
                continue;
            };
            let Some(item) = self.sensitive.get(usize::from(index)) else {
                continue;
            };
            match &item.resource {
                None => {
                    sensitive_action.get_or_insert(index);
                }
                Some(resource) => sensitive_resource.push((index, resource.matcher().clone())),
            }
        }
        let mut profile = ActionProfile {
            fixed: None,
            workflow: self.workflow.as_ref().map_or(0, |w| w.classify(action)),
            sensitive_action,
            governed: !self.allow.is_empty()
                || !self.iam.is_empty()
                || (is_tool && !self.tools.is_empty()),
            deny: checks(&self.deny, &self.deny_actions),
            allow: checks(&self.allow, &self.allow_actions),
            tools: if is_tool {
                self.tool_actions
                    .matches(action)
                    .into_iter()
                    .map(|i| i as u32)
                    .collect()
            } else {
                Box::default()
            },
            iam: self.iam.statements_for_action(action).into_boxed_slice(),
            sensitive_resource: sensitive_resource.into_boxed_slice(),
        };
        profile.fixed = self.fixed_judgement(&profile);
        profile
    }

    /// The judgement [`Entry::judge`] gives for every resource, when no resource constraint or
    /// IAM statement can change it: nothing the profile checks reads the event, or the first
    /// rule in each list is decisive and unconstrained.
    fn fixed_judgement(&self, profile: &ActionProfile) -> Option<Judgement> {
        let event_free = profile.deny.iter().all(|rule| rule.resources.is_none())
            && profile.allow.iter().all(|rule| rule.resources.is_none())
            && profile
                .tools
                .iter()
                .all(|&i| self.tools.get(i as usize).is_some_and(|t| !t.constrained()))
            && self.iam.request_free(&profile.iam);
        if event_free {
            return Some(self.judge_checks(profile, None, &RequestContext::default()));
        }
        let verdict = |verdict| {
            Some(Judgement {
                verdict,
                ..Judgement::UNJUDGED
            })
        };
        if let Some(first) = profile.deny.first() {
            return match first.resources {
                Some(_) => None,
                None => verdict(Verdict::NotPermitted(Refusal::Deny(first.index))),
            };
        }
        if !profile.iam.is_empty() {
            return None;
        }
        if !profile.governed {
            return verdict(Verdict::Unjudged);
        }
        if let Some(first) = profile.allow.first() {
            return match first.resources {
                Some(_) => None,
                None => verdict(Verdict::Permitted(Grant::Allow(first.index))),
            };
        }
        match profile.tools.first() {
            Some(&first) => match self.tools.get(first as usize) {
                Some(tool) if !tool.constrained() => {
                    verdict(Verdict::Permitted(Grant::Tool(first)))
                }
                _ => None,
            },
            None => verdict(Verdict::NotPermitted(Refusal::NoGrant)),
        }
    }

    /// Judges one event: its action's profile, its resource and request context.
    pub fn judge(
        &self,
        profile: &ActionProfile,
        resource: Option<&str>,
        ctx: &RequestContext<'_>,
    ) -> Judgement {
        match profile.fixed {
            Some(fixed) => fixed,
            None => self.judge_checks(profile, resource, ctx),
        }
    }

    /// Judges an event against every check of its action's profile.
    fn judge_checks(
        &self,
        profile: &ActionProfile,
        resource: Option<&str>,
        ctx: &RequestContext<'_>,
    ) -> Judgement {
        let mut judgement = Judgement::UNJUDGED;
        // Explicit denies first: a policy-file deny rule, then IAM.
        for check in profile.deny.iter() {
            match (&check.resources, resource) {
                (None, _) => {}
                (Some(set), Some(resource)) if set.is_match(resource) => {}
                (Some(_), None) => {
                    judgement.resource_unknown = true;
                    continue;
                }
                (Some(_), Some(_)) => continue,
            }
            judgement.verdict = Verdict::NotPermitted(Refusal::Deny(check.index));
            return judgement;
        }
        let iam =
            (!profile.iam.is_empty()).then(|| self.iam.evaluate_with(&profile.iam, resource, ctx));
        if let Some(result) = iam {
            judgement.uncertain = result.uncertain;
            judgement.resource_unknown |= result.resource_unknown;
            if let (IamDecision::ExplicitDeny, Some(at)) = (result.decision, result.statement) {
                judgement.verdict = Verdict::NotPermitted(Refusal::IamDeny(at));
                return judgement;
            }
        }
        if !profile.governed {
            return judgement;
        }
        for check in profile.allow.iter() {
            let granted = match (&check.resources, resource) {
                (None, _) => true,
                (Some(set), Some(resource)) => set.is_match(resource),
                (Some(_), None) => {
                    judgement.resource_unknown = true;
                    true
                }
            };
            if granted {
                judgement.verdict = Verdict::Permitted(Grant::Allow(check.index));
                return judgement;
            }
        }
        for &i in profile.tools.iter() {
            let Some(tool) = self.tools.get(i as usize) else {
                continue;
            };
            let granted = match resource {
                _ if !tool.constrained() => true,
                Some(target) => tool.admits(target),
                None => {
                    judgement.resource_unknown = true;
                    true
                }
            };
            if granted {
                judgement.verdict = Verdict::Permitted(Grant::Tool(i));
                return judgement;
            }
        }
        judgement.verdict = match iam {
            Some(result) if result.decision == IamDecision::Allow => match result.statement {
                Some(at) => Verdict::Permitted(Grant::Iam(at)),
                None => Verdict::NotPermitted(Refusal::NoGrant),
            },
            _ => Verdict::NotPermitted(Refusal::NoGrant),
        };
        judgement
    }

    /// The sensitive item an event touches, if any: by action alone, or by action and resource.
    pub fn sensitive_match(&self, profile: &ActionProfile, resource: Option<&str>) -> Option<u16> {
        if profile.sensitive_action.is_some() {
            return profile.sensitive_action;
        }
        let resource = resource?;
        profile
            .sensitive_resource
            .iter()
            .chain(&self.sensitive_any_action)
            .find(|(_, matcher)| matcher.is_match(resource))
            .map(|(index, _)| *index)
    }

    /// A short description of a grant, e.g. `allow[1] ecs:UpdateService on arn:...`.
    pub fn describe_grant(&self, grant: Grant) -> String {
        match grant {
            Grant::Allow(i) => match self.allow.get(i as usize) {
                Some(rule) => format!("allow[{i}] {}", describe_rule(rule)),
                None => format!("allow[{i}]"),
            },
            Grant::Tool(i) => match self.tools.get(i as usize) {
                Some(tool) => format!("tools[{i}] {}", describe_tool(tool)),
                None => format!("tools[{i}]"),
            },
            Grant::Iam(at) => format!("IAM {}", self.iam.describe(at)),
        }
    }

    /// A short description of a refusal: the deny that matched, or that nothing grants.
    pub fn describe_refusal(&self, refusal: Refusal) -> String {
        match refusal {
            Refusal::Deny(i) => match self.deny.get(i as usize) {
                Some(rule) => format!("denied by deny[{i}] {}", describe_rule(rule)),
                None => format!("denied by deny[{i}]"),
            },
            Refusal::IamDeny(at) => format!("denied by IAM {}", self.iam.describe(at)),
            Refusal::NoGrant => {
                "no allow rule, tool entry or IAM Allow statement grants it".to_owned()
            }
        }
    }

    /// The permitted set in words, one line per grant (allow rules, tools, IAM Allow
    /// statements), at most `limit` lines: what an out-of-scope action was compared with.
    pub fn permitted_set(&self, limit: usize) -> Vec<String> {
        let iam_allows = || {
            self.iam
                .documents()
                .iter()
                .enumerate()
                .flat_map(|(d, doc)| {
                    doc.statements()
                        .iter()
                        .enumerate()
                        .map(move |(s, statement)| (d, s, statement))
                })
                .filter(|(_, _, statement)| statement.effect() == Effect::Allow)
        };
        let total = self.allow.len() + self.tools.len() + iam_allows().count();
        // Only the lines shown are written out: a finding is raised per episode, and an entry
        // may hold hundreds of grants.
        let mut lines: Vec<String> = self
            .allow
            .iter()
            .map(describe_rule)
            .chain(
                self.tools
                    .iter()
                    .map(|tool| format!("tool {}", describe_tool(tool))),
            )
            .chain(iam_allows().map(|(d, s, statement)| {
                let at = StatementRef {
                    doc: d as u16,
                    index: s as u16,
                };
                let verb = if statement.not_action() {
                    "Allow all but"
                } else {
                    "Allow"
                };
                let on = if statement.not_resource() {
                    "on all but"
                } else {
                    "on"
                };
                format!(
                    "IAM {}: {verb} {} {on} {}",
                    self.iam.describe(at),
                    statement.actions().join(", "),
                    statement.resources().join(", ")
                )
            }))
            .take(limit)
            .collect();
        if total > limit {
            lines.push(format!("… and {} more", total - limit));
        }
        lines
    }

    /// Every grant pattern, for the access report's "permitted but never used".
    pub fn grant_patterns(&self) -> Vec<GrantPattern> {
        let mut grants = Vec::new();
        for (i, rule) in self.allow.iter().enumerate() {
            grants.push(GrantPattern {
                source: format!("allow[{i}]"),
                pattern: rule.action.clone(),
                matcher: GrantMatcher::Allow(i),
            });
        }
        for (i, tool) in self.tools.iter().enumerate() {
            grants.push(GrantPattern {
                source: format!("tools[{i}]"),
                pattern: format!("tool:{}", tool.name),
                matcher: GrantMatcher::Tool(i),
            });
        }
        for (d, doc) in self.iam.documents().iter().enumerate() {
            for (s, statement) in doc.statements().iter().enumerate() {
                if statement.effect() != Effect::Allow {
                    continue;
                }
                let at = StatementRef {
                    doc: d as u16,
                    index: s as u16,
                };
                let source = format!("IAM {}", self.iam.describe(at));
                if statement.not_action() {
                    grants.push(GrantPattern {
                        source,
                        pattern: format!("NotAction {}", statement.actions().join(", ")),
                        matcher: GrantMatcher::IamStatement(at),
                    });
                    continue;
                }
                for pattern in statement.actions() {
                    grants.push(GrantPattern {
                        source: source.clone(),
                        pattern: pattern.clone(),
                        matcher: GrantMatcher::IamAction(pattern.clone()),
                    });
                }
            }
        }
        grants
    }
}

/// One grant of an entry, as a pattern over actions.
#[derive(Clone, Debug)]
pub struct GrantPattern {
    /// Where it comes from: `allow[0]`, `tools[2]`, `IAM deploy.json Sid "Deploy"`.
    pub source: String,
    /// The action pattern (or `NotAction ...`).
    pub pattern: String,
    matcher: GrantMatcher,
}

#[derive(Clone, Debug)]
enum GrantMatcher {
    Allow(usize),
    Tool(usize),
    IamStatement(StatementRef),
    IamAction(String),
}

impl GrantPattern {
    /// Whether this grant's action part covers `action` (resources aside).
    pub fn covers(&self, entry: &Entry, action: &str) -> bool {
        match &self.matcher {
            GrantMatcher::Allow(i) => entry
                .allow
                .get(*i)
                .is_some_and(|_| entry.allow_actions.matches(action).contains(i)),
            GrantMatcher::Tool(i) => entry.tool_actions.matches(action).contains(i),
            GrantMatcher::IamStatement(at) => entry
                .iam
                .statement(*at)
                .is_some_and(|s| s.admits_action(action)),
            GrantMatcher::IamAction(pattern) => crate::iam::action_matches(pattern, action),
        }
    }
}

fn describe_rule(rule: &Rule) -> String {
    match &rule.resources {
        None => rule.action.clone(),
        Some(set) => format!("{} on {}", rule.action, set.texts().join(", ")),
    }
}

fn describe_tool(tool: &ToolRule) -> String {
    let mut text = tool.name.clone();
    for (label, set) in [
        ("paths", &tool.paths),
        ("hosts", &tool.hosts),
        ("targets", &tool.targets),
    ] {
        if let Some(set) = set {
            let _ = write!(text, " {label} {}", set.texts().join(", "));
        }
    }
    text
}

/// Caches [`ActionProfile`]s per (entry, interned action). Equal profiles are stored once:
/// entries written from one template (a rule set per team, per environment) share most of
/// theirs, so a policy of thousands of entries keeps a few hundred profiles, and the per-event
/// lookup — one probe of a compact index, then the shared profile — stays in cache.
/// Bounded by the number of distinct actions each entry's identities perform, which is small
/// (hundreds) even for busy roles.
#[derive(Debug, Default)]
pub struct ProfileCache {
    /// (entry, action) to the index of its profile in `profiles`.
    index: FxHashMap<(EntryId, Sym), u32>,
    /// The distinct profiles, each once, in the order they were first computed.
    profiles: IndexSet<ActionProfile, FxBuildHasher>,
}

impl ProfileCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The profile of `action` (interned as `sym`) under the entry `id`, computed on first use.
    pub fn profile(
        &mut self,
        id: EntryId,
        entry: &Entry,
        sym: Sym,
        action: &str,
    ) -> &ActionProfile {
        let at = match self.index.get(&(id, sym)) {
            Some(&at) => at as usize,
            None => {
                let (at, _) = self.profiles.insert_full(entry.profile(action));
                self.index.insert((id, sym), at as u32);
                at
            }
        };
        &self.profiles[at]
    }

    /// How many (entry, action) pairs are cached.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many distinct profiles those pairs share.
    pub fn distinct(&self) -> usize {
        self.profiles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The action-only shortcut must agree with the full judgement for every resource.
    #[test]
    fn fixed_judgements_agree_with_the_full_judgement() {
        let policy = crate::Policy::parse(
            r#"
identities:
  - match: x
    allow:
      - action: "s3:Get*"
        resource: "arn:aws:s3:::data/*"
      - action: "s3:*"
      - action: "ec2:*"
    deny:
      - action: "s3:DeleteObject"
        resource: "arn:aws:s3:::data/*"
      - action: "iam:*"
    tools:
      - name: "read_*"
        paths: ["/w/**"]
      - name: "search"
"#,
            "p",
            None,
        )
        .unwrap();
        let entry = &policy.entries()[0];
        let ctx = RequestContext::default();
        for action in [
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
            "ec2:RunInstances",
            "iam:PassRole",
            "tool:read_file",
            "tool:search",
            "tool:send",
            "lambda:Invoke",
        ] {
            let profile = entry.profile(action);
            let full = ActionProfile {
                fixed: None,
                ..profile.clone()
            };
            for resource in [
                None,
                Some("arn:aws:s3:::data/k"),
                Some("arn:aws:s3:::other/k"),
                Some("/w/a"),
                Some("/etc/x"),
            ] {
                assert_eq!(
                    entry.judge(&profile, resource, &ctx).verdict,
                    entry.judge(&full, resource, &ctx).verdict,
                    "{action} on {resource:?}"
                );
            }
        }
        assert!(entry.profile("ec2:RunInstances").fixed.is_some());
        assert!(entry.profile("iam:PassRole").fixed.is_some());
        assert!(entry.profile("s3:GetObject").fixed.is_none());
    }

    /// IAM statements that apply to any resource without a condition on the request are
    /// worked out once per action; the rest still per event, and both agree.
    #[test]
    fn request_free_iam_statements_are_judged_once_per_action() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("iam.json"),
            r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"s3:*","Resource":"*"},
            {"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::keep"},
            {"Effect":"Allow","Action":"ec2:*","Resource":"*",
             "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
            {"Effect":"Allow","Action":"sts:*","Resource":"*",
             "Condition":{"StringEquals":{"aws:PrincipalTag/team":"a"}}}]}"#,
        )
        .unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            "identities:\n  - match: x\n    iam_policy: iam.json\n    allow:\n      - action: \"logs:*\"\n",
        )
        .unwrap();
        let policy = crate::Policy::load(&path).unwrap();
        let entry = &policy.entries()[0];
        for (action, fixed) in [
            ("s3:GetObject", true),
            ("s3:DeleteBucket", false),
            ("ec2:RunInstances", false),
            ("sts:AssumeRole", true),
            ("logs:PutLogEvents", true),
            ("kms:Decrypt", true),
        ] {
            let profile = entry.profile(action);
            assert_eq!(profile.fixed.is_some(), fixed, "{action}");
            let full = ActionProfile {
                fixed: None,
                ..profile.clone()
            };
            for resource in [None, Some("arn:aws:s3:::keep"), Some("arn:aws:s3:::other")] {
                for ip in [None, Some("10.1.2.3"), Some("192.0.2.1")] {
                    let ctx = RequestContext { source_ip: ip };
                    assert_eq!(
                        entry.judge(&profile, resource, &ctx),
                        entry.judge(&full, resource, &ctx),
                        "{action} on {resource:?} from {ip:?}"
                    );
                }
            }
        }
    }

    /// Entries written from one template share their profiles; different rules do not.
    #[test]
    fn equal_profiles_are_stored_once() {
        let mut yaml = String::from("identities:\n");
        for team in ["a", "b", "c"] {
            yaml.push_str(&format!(
                "  - match: \"role/{team}\"\n    allow:\n      - action: \"s3:Get*\"\n      - action: \"s3:Put*\"\n        resource: \"arn:aws:s3:::{}/*\"\n",
                if team == "c" { "other" } else { "shared" }
            ));
        }
        let policy = crate::Policy::parse(&yaml, "p", None).unwrap();
        let mut cache = ProfileCache::new();
        for (i, entry) in policy.entries().iter().enumerate() {
            let id = EntryId(i as u32);
            for (sym, action) in [(Sym(0), "s3:GetObject"), (Sym(1), "s3:PutObject")] {
                let profile = cache.profile(id, entry, sym, action).clone();
                assert_eq!(profile, entry.profile(action));
            }
        }
        assert_eq!(cache.len(), 6);
        // One GetObject profile for all three; PutObject: one for a and b, one for c.
        assert_eq!(cache.distinct(), 3);
        let c = &policy.entries()[2];
        let put = cache.profile(EntryId(2), c, Sym(1), "s3:PutObject");
        let ctx = RequestContext::default();
        assert!(
            c.judge(put, Some("arn:aws:s3:::other/k"), &ctx).verdict
                != Verdict::NotPermitted(Refusal::NoGrant)
        );
        assert_eq!(
            c.judge(put, Some("arn:aws:s3:::shared/k"), &ctx).verdict,
            Verdict::NotPermitted(Refusal::NoGrant)
        );
    }

    /// The permitted set lists grants in order (rules, tools, IAM allows) up to the limit,
    /// then says how many more there are.
    #[test]
    fn the_permitted_set_is_cut_at_its_limit() {
        let policy = crate::Policy::parse(
            "identities:\n  - match: x\n    allow:\n      - action: \"s3:Get*\"\n      - action: \"ec2:Describe*\"\n        resource: \"arn:aws:ec2:*:1:instance/*\"\n      - action: \"kms:Decrypt\"\n    tools:\n      - name: search\n",
            "p",
            None,
        )
        .unwrap();
        let entry = &policy.entries()[0];
        assert_eq!(
            entry.permitted_set(10),
            [
                "s3:Get*",
                "ec2:Describe* on arn:aws:ec2:*:1:instance/*",
                "kms:Decrypt",
                "tool search"
            ]
        );
        assert_eq!(
            entry.permitted_set(2),
            [
                "s3:Get*",
                "ec2:Describe* on arn:aws:ec2:*:1:instance/*",
                "… and 2 more"
            ]
        );
    }

    #[test]
    fn hosts_of_targets() {
        for (target, host) in [
            ("https://api.example.com/v1/pay?x=1", "api.example.com"),
            ("http://user:pw@Example.com:8443/", "Example.com"),
            ("example.org/path", "example.org"),
            ("example.org", "example.org"),
            ("http://[2001:db8::1]:80/x", "2001:db8::1"),
            ("host:22", "host"),
        ] {
            assert_eq!(host_of(target), host, "{target}");
        }
    }
}
