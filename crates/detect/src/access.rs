//! The access report: per identity, what its entitlements grant that it never used (candidates
//! to remove), what it used that they do not grant, and a least-privilege IAM policy generated
//! from what it actually did — the idea of IAM Access Analyzer's policy generation, from any
//! source nhiwatch reads.
//!
//! Memory is bounded per identity and action: at most [`MAX_RESOURCES`] distinct resources are
//! remembered per action; beyond that the action's resource is reported as `*`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nhiwatch_model::{Event, Interner, Outcome, Sym};
use nhiwatch_policy::{EntryId, Policy, ProfileCache, RequestContext, Verdict};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::Value;

/// Distinct resources remembered per identity and action.
pub const MAX_RESOURCES: usize = 32;

/// Distinct resources one generated statement lists before they are generalised.
const MAX_STATEMENT_RESOURCES: usize = 10;

#[derive(Debug, Default)]
struct ActionUse {
    events: u64,
    succeeded: u64,
    denied: u64,
    errored: u64,
    /// Events judged not permitted, and the first reason.
    refused: u64,
    reason: Option<String>,
    resources: BTreeSet<String>,
    /// Some event had no resource, a non-ARN one, or more than fit.
    any_resource: bool,
}

#[derive(Debug, Default)]
struct Usage {
    entry: Option<EntryId>,
    events: u64,
    actions: FxHashMap<Sym, ActionUse>,
}

/// Accumulates usage while events stream by.
pub struct AccessReport {
    policy: Arc<Policy>,
    identities: Interner,
    actions: Interner,
    usage: Vec<Usage>,
    profiles: ProfileCache,
}

/// One action as used.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UsedAction {
    /// The action.
    pub action: String,
    /// Events.
    pub events: u64,
    /// Of which carried out.
    pub succeeded: u64,
    /// Of which refused by the provider.
    pub denied: u64,
    /// Of which failed otherwise.
    pub errored: u64,
    /// Whether the policy permits it (`null` when the entry does not judge it).
    pub permitted: Option<bool>,
    /// Why not, when it is not permitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Up to a few resources it was used on.
    pub resources: Vec<String>,
}

/// A grant no event used.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UnusedGrant {
    /// Where it is granted (`allow[0]`, `IAM file.json Sid "X"`).
    pub source: String,
    /// The action pattern granted.
    pub pattern: String,
}

/// The report for one identity.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityAccess {
    /// The identity.
    pub identity: String,
    /// Its policy entry's `match` glob, when one matched.
    pub entry: Option<String>,
    /// Events seen.
    pub events: u64,
    /// Every action used, most frequent first.
    pub used: Vec<UsedAction>,
    /// Grants no event used: candidates to remove.
    pub permitted_unused: Vec<UnusedGrant>,
    /// Actions used that the policy does not permit.
    pub used_not_permitted: Vec<UsedAction>,
    /// An IAM policy granting exactly what was carried out.
    pub least_privilege: IamPolicy,
}

/// A generated IAM policy document, serialised in the order IAM documents are written.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IamPolicy {
    /// Always `2012-10-17`.
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// One statement per service and resource set.
    #[serde(rename = "Statement")]
    pub statement: Vec<IamStatement>,
}

/// One generated `Allow` statement.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IamStatement {
    /// `S3`, `Ecr1`, ...
    #[serde(rename = "Sid")]
    pub sid: String,
    /// Always `Allow`.
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    /// The actions, sorted.
    #[serde(rename = "Action")]
    pub action: Vec<String>,
    /// The resources: one ARN or pattern, a list, or `*`.
    #[serde(rename = "Resource")]
    pub resource: Value,
}

impl AccessReport {
    /// An empty report against `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        AccessReport {
            policy,
            identities: Interner::new(),
            actions: Interner::new(),
            usage: Vec::new(),
            profiles: ProfileCache::new(),
        }
    }

    /// Counts one event.
    pub fn observe(&mut self, event: &Event<'_>) {
        let identity = match self.identities.get(&event.identity.id) {
            Some(sym) => sym,
            None => {
                let sym = self.identities.intern(&event.identity.id);
                self.usage.push(Usage {
                    entry: self.policy.entry_for(&event.identity.id),
                    ..Usage::default()
                });
                sym
            }
        };
        let action = self.actions.intern(&event.action);
        let Some(usage) = self.usage.get_mut(identity.0 as usize) else {
            return;
        };
        usage.events += 1;
        let entry = usage
            .entry
            .and_then(|id| Some((id, self.policy.entry(id)?)));
        let judgement = entry.map(|(id, entry)| {
            let profile = self.profiles.profile(id, entry, action, &event.action);
            let ctx = RequestContext {
                source_ip: event.src_ip.as_deref(),
            };
            (entry, entry.judge(profile, event.resource.as_deref(), &ctx))
        });
        let used = usage.actions.entry(action).or_default();
        used.events += 1;
        match event.outcome {
            Outcome::Success => used.succeeded += 1,
            Outcome::Denied => used.denied += 1,
            Outcome::Error => used.errored += 1,
        }
        if let Some((entry, judgement)) = judgement {
            if let Verdict::NotPermitted(refusal) = judgement.verdict {
                used.refused += 1;
                if used.reason.is_none() {
                    used.reason = Some(entry.describe_refusal(refusal));
                }
            }
        }
        match event.resource.as_deref() {
            Some(resource) if resource.starts_with("arn:") => {
                if used.resources.len() < MAX_RESOURCES {
                    used.resources.insert(resource.to_owned());
                } else if !used.resources.contains(resource) {
                    used.any_resource = true;
                }
            }
            _ => used.any_resource = true,
        }
    }

    /// The report, one entry per identity in id order.
    pub fn finish(&self) -> Vec<IdentityAccess> {
        let mut report: Vec<IdentityAccess> = self
            .usage
            .iter()
            .enumerate()
            .map(|(index, usage)| self.identity_report(Sym(index as u32), usage))
            .collect();
        report.sort_by(|a, b| a.identity.cmp(&b.identity));
        report
    }

    fn identity_report(&self, identity: Sym, usage: &Usage) -> IdentityAccess {
        let entry = usage.entry.and_then(|id| self.policy.entry(id));
        let judged = entry.is_some_and(|e| e.has_entitlements());
        let mut used: Vec<UsedAction> = usage
            .actions
            .iter()
            .map(|(&action, u)| UsedAction {
                action: self.actions.resolve(action).to_owned(),
                events: u.events,
                succeeded: u.succeeded,
                denied: u.denied,
                errored: u.errored,
                permitted: (judged || u.refused > 0).then_some(u.refused == 0),
                reason: u.reason.clone(),
                resources: u.resources.iter().take(5).cloned().collect(),
            })
            .collect();
        used.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then_with(|| a.action.cmp(&b.action))
        });
        let used_not_permitted = used
            .iter()
            .filter(|u| u.permitted == Some(false))
            .cloned()
            .collect();
        let permitted_unused = entry
            .map(|entry| {
                entry
                    .grant_patterns()
                    .into_iter()
                    .filter(|grant| !used.iter().any(|u| grant.covers(entry, &u.action)))
                    .map(|grant| UnusedGrant {
                        source: grant.source,
                        pattern: grant.pattern,
                    })
                    .collect()
            })
            .unwrap_or_default();
        IdentityAccess {
            identity: self.identities.resolve(identity).to_owned(),
            entry: entry.map(|e| e.pattern().to_owned()),
            events: usage.events,
            least_privilege: self.least_privilege(usage),
            used,
            permitted_unused,
            used_not_permitted,
        }
    }

    /// One statement per service and resource set, from the actions carried out.
    fn least_privilege(&self, usage: &Usage) -> IamPolicy {
        // service → resource list → actions
        let mut grouped: BTreeMap<String, BTreeMap<Vec<String>, BTreeSet<String>>> =
            BTreeMap::new();
        for (&action, u) in &usage.actions {
            if u.succeeded == 0 {
                continue;
            }
            let action = self.actions.resolve(action);
            let service = action.split_once(':').map_or(action, |(s, _)| s).to_owned();
            let resources = if u.any_resource || u.resources.is_empty() {
                vec!["*".to_owned()]
            } else {
                generalise(&u.resources)
            };
            grouped
                .entry(service)
                .or_default()
                .entry(resources)
                .or_default()
                .insert(action.to_owned());
        }
        let mut statements = Vec::new();
        for (service, sets) in grouped {
            let name = sid_name(&service);
            let several = sets.len() > 1;
            for (n, (resources, actions)) in sets.into_iter().enumerate() {
                let sid = if several {
                    format!("{name}{}", n + 1)
                } else {
                    name.clone()
                };
                let resource = match resources.as_slice() {
                    [one] => Value::from(one.as_str()),
                    many => Value::from(many.to_vec()),
                };
                statements.push(IamStatement {
                    sid,
                    effect: "Allow",
                    action: actions.into_iter().collect(),
                    resource,
                });
            }
        }
        IamPolicy {
            version: "2012-10-17",
            statement: statements,
        }
    }
}

/// A statement id from a service name: alphanumeric, capitalised (`waf-regional` → `WafRegional`).
fn sid_name(service: &str) -> String {
    let mut name = String::new();
    let mut upper = true;
    for c in service.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                name.push(c.to_ascii_uppercase());
            } else {
                name.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if name.is_empty() {
        name.push_str("Used");
    }
    name
}

/// The resources to grant: as used when few, else each generalised to its parent path
/// (`arn:aws:s3:::bucket/a/b.csv` → `arn:aws:s3:::bucket/a/*`), else `*`.
fn generalise(resources: &BTreeSet<String>) -> Vec<String> {
    if resources.len() <= MAX_STATEMENT_RESOURCES {
        return resources.iter().cloned().collect();
    }
    let parents: BTreeSet<String> = resources
        .iter()
        .map(|r| match r.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/*"),
            None => r.clone(),
        })
        .collect();
    if parents.len() <= MAX_STATEMENT_RESOURCES {
        parents.into_iter().collect()
    } else {
        vec!["*".to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{event, EventExt};
    use serde_json::json;

    const POLICY: &str = r#"
identities:
  - match: "arn:aws:iam::*:role/ci"
    allow:
      - action: "ecr:*"
      - action: "ecs:UpdateService"
      - action: "logs:*"
    deny:
      - action: "iam:*"
"#;

    #[test]
    fn unused_grants_unpermitted_use_and_a_least_privilege_policy() {
        let policy = Arc::new(Policy::parse(POLICY, "p.yaml", None).unwrap());
        let mut report = AccessReport::new(policy);
        let ci = "arn:aws:iam::1:role/ci";
        let events = [
            event("1", 0, ci, "ecr:GetAuthorizationToken"),
            event("2", 1, ci, "ecr:BatchGetImage").on("arn:aws:ecr:eu-west-1:1:repository/web"),
            event("3", 2, ci, "ecs:UpdateService").on("arn:aws:ecs:eu-west-1:1:service/prod/web"),
            event("4", 3, ci, "s3:GetObject").on("arn:aws:s3:::data/a"),
            event("5", 4, ci, "iam:PassRole").denied("AccessDenied"),
            event("6", 5, "stranger", "s3:ListBuckets"),
        ];
        for e in &events {
            report.observe(e);
        }
        let out = report.finish();
        assert_eq!(out.len(), 2);
        let r = &out[0];
        assert_eq!(r.identity, ci);
        assert_eq!(r.entry.as_deref(), Some("arn:aws:iam::*:role/ci"));
        assert_eq!(r.events, 5);
        assert_eq!(
            r.permitted_unused,
            [UnusedGrant {
                source: "allow[2]".into(),
                pattern: "logs:*".into()
            }]
        );
        let refused: Vec<(&str, Option<&str>)> = r
            .used_not_permitted
            .iter()
            .map(|u| (u.action.as_str(), u.reason.as_deref()))
            .collect();
        assert_eq!(
            refused,
            [
                ("iam:PassRole", Some("denied by deny[0] iam:*")),
                (
                    "s3:GetObject",
                    Some("no allow rule, tool entry or IAM Allow statement grants it")
                )
            ]
        );
        assert_eq!(
            serde_json::to_value(&r.least_privilege).unwrap(),
            json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "Ecr1", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
                {"Sid": "Ecr2", "Effect": "Allow", "Action": ["ecr:BatchGetImage"], "Resource": "arn:aws:ecr:eu-west-1:1:repository/web"},
                {"Sid": "Ecs", "Effect": "Allow", "Action": ["ecs:UpdateService"], "Resource": "arn:aws:ecs:eu-west-1:1:service/prod/web"},
                {"Sid": "S3", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::data/a"},
            ]})
        );
        // The generated policy is itself a valid IAM document that permits what was done.
        let text = serde_json::to_string(&r.least_privilege).unwrap();
        assert!(
            text.starts_with(
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ecr1","Effect":"Allow","Action""#
            ),
            "{text}"
        );
        let generated = nhiwatch_policy::iam::parse(&text, "generated").unwrap();
        let iam = nhiwatch_policy::iam::IamPolicies::new(generated);
        let ctx = RequestContext::default();
        assert_eq!(
            iam.evaluate(
                "ecs:UpdateService",
                Some("arn:aws:ecs:eu-west-1:1:service/prod/web"),
                &ctx
            )
            .decision,
            nhiwatch_policy::IamDecision::Allow
        );
        assert_eq!(
            iam.evaluate("iam:PassRole", None, &ctx).decision,
            nhiwatch_policy::IamDecision::ImplicitDeny
        );
        // An undeclared identity: used actions, nothing judged.
        assert_eq!(out[1].entry, None);
        assert_eq!(out[1].used[0].permitted, None);
        assert!(out[1].used_not_permitted.is_empty());
    }

    #[test]
    fn many_resources_are_generalised() {
        let many: BTreeSet<String> = (0..20)
            .map(|i| format!("arn:aws:s3:::bucket/logs/{i}.gz"))
            .collect();
        assert_eq!(generalise(&many), ["arn:aws:s3:::bucket/logs/*"]);
        let scattered: BTreeSet<String> = (0..20).map(|i| format!("arn:aws:s3:::b{i}/k")).collect();
        assert_eq!(generalise(&scattered), ["*"]);
        assert_eq!(sid_name("waf-regional"), "WafRegional");
        assert_eq!(sid_name("--"), "Used");
    }
}
