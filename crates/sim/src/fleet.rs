//! The simulated fleet: who the identities are, how each archetype behaves day to day, and the
//! policy that approves that behaviour.
//!
//! Habits are drawn per identity (how often a pipeline deploys, how often an integration polls,
//! which repositories a bot works on) and then repeated with variation: business-hour skew for
//! people-driven automation, fixed schedules for jobs, steady loops for controllers. Benign drift
//! is built in and labelled nowhere: a pipeline that gains a deploy step on its drift day, a bot
//! and an agent that start on a new repository, an integration that hits throttling and retries,
//! a backup job re-run once by hand in the afternoon, and a holiday when people-driven work stops.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::act::{Act, Answer, What, DAY, HOUR, MIN, SEC};
use crate::{io_error, SimConfig, SimError};

/// The kinds of non-human identity the fleet has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Archetype {
    /// A CI/CD role that builds and deploys a service when commits land.
    Deployer,
    /// A read-only analytics or monitoring integration that polls data.
    Reader,
    /// A privileged scheduled job: nightly backups or key rotation.
    Automation,
    /// A Kubernetes controller's service account.
    Controller,
    /// A GitHub App or bot.
    GithubApp,
    /// An AI coding agent.
    CodingAgent,
}

/// Fills the fleet in this proportion once each archetype has one member.
const MIX: [Archetype; 10] = [
    Archetype::Reader,
    Archetype::Deployer,
    Archetype::Controller,
    Archetype::Reader,
    Archetype::CodingAgent,
    Archetype::Deployer,
    Archetype::Controller,
    Archetype::Automation,
    Archetype::GithubApp,
    Archetype::Reader,
];

const TEAMS: [&str; 12] = [
    "payments",
    "checkout",
    "search",
    "identity",
    "ledger",
    "catalog",
    "notifications",
    "analytics",
    "billing",
    "risk",
    "inventory",
    "shipping",
];
const SERVICES: [&str; 6] = ["api", "worker", "web", "gateway", "scheduler", "indexer"];
const VENDORS: [&str; 6] = [
    "datadog",
    "looker",
    "snowflake",
    "tableau",
    "segment",
    "fivetran",
];
const CONTROLLERS: [&str; 4] = ["operator", "autoscaler", "cert-sync", "config-reloader"];
const APPS: [&str; 5] = [
    "dependabot",
    "renovate",
    "release-please",
    "codecov",
    "mergify",
];
const ACCOUNTS: [&str; 3] = ["111122223333", "444455556666", "777788889999"];

/// One identity and its habits.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub archetype: Archetype,
    /// Role name, service-account name, bot login or agent id.
    pub name: String,
    pub team: &'static str,
    pub account: &'static str,
    /// Usual source IP.
    pub ip: String,
    /// Usual user agent.
    pub user_agent: String,
    /// Repositories (GitHub apps, agents) or buckets (readers) it works on.
    pub targets: Vec<String>,
    /// How busy it is: deploys a day, minutes between polls, cycles a day, sessions a day.
    pub pace: u32,
    /// Day on which its benign drift begins.
    pub drift_day: u32,
    /// For automations: true for backups, false for key rotation.
    pub backups: bool,
    /// Access key id prefix material.
    pub key: String,
}

impl Actor {
    /// The identity id nhiwatch derives from this actor's records.
    pub fn identity_id(&self) -> String {
        match self.archetype {
            Archetype::Deployer | Archetype::Reader | Archetype::Automation => {
                format!("arn:aws:iam::{}:role/{}", self.account, self.name)
            }
            Archetype::Controller => format!("system:serviceaccount:{}:{}", self.team, self.name),
            Archetype::GithubApp | Archetype::CodingAgent => self.name.clone(),
        }
    }

    /// The identity kind in DESIGN.md terms.
    pub fn kind(&self) -> &'static str {
        match self.archetype {
            Archetype::Deployer | Archetype::Reader | Archetype::Automation => "role",
            Archetype::Controller => "service_account",
            Archetype::GithubApp => "bot",
            Archetype::CodingAgent => "agent",
        }
    }
}

/// The fleet and the simulation's calendar.
pub(crate) struct Fleet {
    pub actors: Vec<Actor>,
    pub seed: u64,
    pub start_day: i64,
    /// A weekday on which people-driven work mostly stops.
    pub holiday: Option<u32>,
}

/// A deterministic random stream for one purpose.
pub(crate) fn stream(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    let mut mixed = seed ^ 0x9E37_79B9_7F4A_7C15;
    for &part in parts {
        mixed = (mixed ^ part)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .rotate_left(31);
    }
    ChaCha8Rng::seed_from_u64(mixed)
}

impl Fleet {
    pub fn new(config: &SimConfig) -> Fleet {
        let mut rng = stream(config.seed, &[0]);
        let mut seen = BTreeMap::<String, u32>::new();
        let mut actors = Vec::with_capacity(config.identities);
        for index in 0..config.identities {
            let archetype = match index {
                0 => Archetype::Deployer,
                1 => Archetype::Reader,
                2 => Archetype::Automation,
                3 => Archetype::Controller,
                4 => Archetype::GithubApp,
                5 => Archetype::CodingAgent,
                _ => MIX[index % MIX.len()],
            };
            let team = TEAMS[rng.random_range(0..TEAMS.len())];
            let (base, pace) = match archetype {
                Archetype::Deployer => (
                    format!(
                        "deploy-{team}-{}",
                        SERVICES[rng.random_range(0..SERVICES.len())]
                    ),
                    rng.random_range(2..7),
                ),
                Archetype::Reader => (
                    format!(
                        "{}-readonly-{team}",
                        VENDORS[rng.random_range(0..VENDORS.len())]
                    ),
                    rng.random_range(5..16),
                ),
                Archetype::Automation => (
                    if index % 2 == 0 {
                        format!("backup-nightly-{team}")
                    } else {
                        format!("key-rotation-{team}")
                    },
                    1,
                ),
                Archetype::Controller => (
                    format!(
                        "{team}-{}",
                        CONTROLLERS[rng.random_range(0..CONTROLLERS.len())]
                    ),
                    rng.random_range(300..720),
                ),
                Archetype::GithubApp => (
                    format!("{}-{team}[bot]", APPS[rng.random_range(0..APPS.len())]),
                    rng.random_range(4..12),
                ),
                Archetype::CodingAgent => (format!("coding-agent-{team}"), rng.random_range(3..8)),
            };
            let count = seen.entry(base.clone()).or_default();
            *count += 1;
            let name = if *count == 1 {
                base
            } else if let Some(bot) = base.strip_suffix("[bot]") {
                format!("{bot}-{count}[bot]")
            } else {
                format!("{base}-{count}")
            };
            let targets = match archetype {
                Archetype::Reader => vec![
                    format!("acme-{team}-exports"),
                    format!("acme-{team}-events"),
                ],
                Archetype::GithubApp | Archetype::CodingAgent => {
                    let n = rng.random_range(2..5);
                    (0..n)
                        .map(|i| format!("acme/{team}-{}", SERVICES[(i + index) % SERVICES.len()]))
                        .collect()
                }
                _ => Vec::new(),
            };
            let ip = match archetype {
                Archetype::Deployer => format!(
                    "20.{}.{}.{}",
                    rng.random_range(30..60),
                    rng.random_range(0..255),
                    rng.random_range(1..255)
                ),
                Archetype::Reader => format!(
                    "52.{}.{}.{}",
                    rng.random_range(0..40),
                    rng.random_range(0..255),
                    rng.random_range(1..255)
                ),
                Archetype::Automation => format!(
                    "3.{}.{}.{}",
                    rng.random_range(80..240),
                    rng.random_range(0..255),
                    rng.random_range(1..255)
                ),
                Archetype::Controller => format!(
                    "10.{}.{}.{}",
                    rng.random_range(0..8),
                    rng.random_range(0..255),
                    rng.random_range(1..255)
                ),
                Archetype::GithubApp => format!(
                    "140.82.{}.{}",
                    rng.random_range(112..127),
                    rng.random_range(1..255)
                ),
                Archetype::CodingAgent => format!(
                    "10.20.{}.{}",
                    rng.random_range(0..255),
                    rng.random_range(1..255)
                ),
            };
            let user_agent = match archetype {
                Archetype::Deployer => "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-azure exe/x86_64.ubuntu.22 prompt/off".to_owned(),
                Archetype::Reader => "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210 md/arch#x86_64 lang/python#3.11.8".to_owned(),
                Archetype::Automation => "Boto3/1.34.42 md/Botocore#1.34.42 ua/2.0 os/linux#5.10.209 md/arch#x86_64 lang/python#3.12.2 exec-env/AWS_Lambda_python3.12".to_owned(),
                Archetype::Controller => format!("{}/v1.4.2 (linux/amd64) kubernetes/4f1c2b", CONTROLLERS[index % CONTROLLERS.len()]),
                Archetype::GithubApp => "GitHub-Hookshot/8c3b5a1".to_owned(),
                Archetype::CodingAgent => "openai-agents-python/0.2.4".to_owned(),
            };
            let drift_day = (config.days * 6 / 10).max(1);
            actors.push(Actor {
                archetype,
                name,
                team,
                account: ACCOUNTS[index % ACCOUNTS.len()],
                ip,
                user_agent,
                targets,
                pace,
                drift_day,
                backups: index % 2 == 0,
                key: format!("{:016X}", rng.random::<u64>()),
            });
        }
        let holiday =
            (0..config.days).find(|&d| d >= 3 && weekday(config.start_day + i64::from(d)) == 4);
        Fleet {
            actors,
            seed: config.seed,
            start_day: config.start_day,
            holiday,
        }
    }

    /// Identities per kind.
    pub fn kinds(&self) -> BTreeMap<String, u64> {
        let mut kinds = BTreeMap::new();
        for actor in &self.actors {
            *kinds.entry(actor.kind().to_owned()).or_default() += 1;
        }
        kinds
    }

    /// How many IAM policy documents the fleet has.
    pub fn iam_documents(&self) -> usize {
        self.actors
            .iter()
            .filter(|a| {
                matches!(
                    a.archetype,
                    Archetype::Deployer | Archetype::Reader | Archetype::Automation
                )
            })
            .count()
    }

    /// Start of day `day`, in nanoseconds since the epoch.
    pub fn day_start(&self, day: u32) -> i64 {
        (self.start_day + i64::from(day)) * DAY
    }

    /// Every benign act of day `day`, unsorted.
    pub fn day(&self, day: u32) -> Vec<Act> {
        let mut acts = Vec::new();
        for (index, actor) in self.actors.iter().enumerate() {
            let mut rng = stream(self.seed, &[1, index as u64, u64::from(day)]);
            let ctx = DayCtx {
                index,
                actor,
                day,
                start: self.day_start(day),
                weekday: weekday(self.start_day + i64::from(day)),
                holiday: self.holiday == Some(day),
            };
            match actor.archetype {
                Archetype::Deployer => deployer_day(&ctx, &mut rng, &mut acts),
                Archetype::Reader => reader_day(&ctx, &mut rng, &mut acts),
                Archetype::Automation => automation_day(&ctx, &mut rng, &mut acts),
                Archetype::Controller => controller_day(&ctx, &mut rng, &mut acts),
                Archetype::GithubApp => github_day(&ctx, &mut rng, &mut acts),
                Archetype::CodingAgent => agent_day(&ctx, &mut rng, &mut acts),
            }
        }
        acts
    }
}

/// 0 = Monday.
pub(crate) fn weekday(days_since_epoch: i64) -> i64 {
    (days_since_epoch + 3).rem_euclid(7)
}

struct DayCtx<'a> {
    index: usize,
    actor: &'a Actor,
    day: u32,
    start: i64,
    weekday: i64,
    holiday: bool,
}

impl DayCtx<'_> {
    fn workday(&self) -> bool {
        self.weekday < 5 && !self.holiday
    }

    fn session(&self, n: u32) -> u32 {
        self.day * 1000 + n
    }
}

/// A time of day skewed to business hours: mostly 09:00-18:00, a tail into the evening.
pub(crate) fn business_time(rng: &mut ChaCha8Rng, start: i64) -> i64 {
    let hour = if rng.random_bool(0.9) {
        rng.random_range(9..18)
    } else {
        rng.random_range(7..21)
    };
    start + hour * HOUR + rng.random_range(0..HOUR)
}

/// Repeats `op` after a throttling error, as SDKs do.
fn with_retry(
    acts: &mut Vec<Act>,
    rng: &mut ChaCha8Rng,
    act: Act,
    code: &'static str,
    chance: f64,
) {
    if rng.random_bool(chance) {
        let mut failed = act.clone().answer(Answer::Failed(code));
        failed.time -= rng.random_range(SEC..4 * SEC);
        acts.push(failed);
    }
    acts.push(act);
}

fn deployer_day(ctx: &DayCtx<'_>, rng: &mut ChaCha8Rng, acts: &mut Vec<Act>) {
    if !ctx.workday() {
        return;
    }
    let deploys = rng.random_range(ctx.actor.pace / 2..=ctx.actor.pace + 1);
    let repo = ctx.actor.name.trim_start_matches("deploy-").to_owned();
    for n in 0..deploys {
        let session = ctx.session(n);
        let mut t = business_time(rng, ctx.start);
        let mut step = |rng: &mut ChaCha8Rng, op: Act, acts: &mut Vec<Act>| {
            t += rng.random_range(SEC..12 * SEC);
            let mut op = op;
            op.time = t;
            with_retry(acts, rng, op, "ThrottlingException", 0.03);
        };
        let i = ctx.index;
        step(
            rng,
            Act::aws(0, i, session, "sts", "GetCallerIdentity"),
            acts,
        );
        step(
            rng,
            Act::aws(0, i, session, "ecr", "GetAuthorizationToken"),
            acts,
        );
        for _ in 0..rng.random_range(2..6) {
            step(
                rng,
                Act::aws(0, i, session, "ecr", "BatchCheckLayerAvailability")
                    .param("repositoryName", &repo),
                acts,
            );
        }
        for _ in 0..rng.random_range(0..3) {
            step(
                rng,
                Act::aws(0, i, session, "ecr", "InitiateLayerUpload")
                    .param("repositoryName", &repo),
                acts,
            );
            step(
                rng,
                Act::aws(0, i, session, "ecr", "CompleteLayerUpload")
                    .param("repositoryName", &repo),
                acts,
            );
        }
        step(
            rng,
            Act::aws(0, i, session, "ecr", "PutImage").param("repositoryName", &repo),
            acts,
        );
        if ctx.day >= ctx.actor.drift_day && ctx.index.is_multiple_of(2) {
            // Benign drift: the pipeline starts registering a task definition per deploy.
            step(
                rng,
                Act::aws(0, i, session, "ecs", "RegisterTaskDefinition").param("family", &repo),
                acts,
            );
        }
        step(
            rng,
            Act::aws(0, i, session, "ecs", "UpdateService")
                .param("cluster", "prod")
                .param("service", &repo),
            acts,
        );
        for _ in 0..rng.random_range(2..7) {
            step(
                rng,
                Act::aws(0, i, session, "ecs", "DescribeServices")
                    .param("cluster", "prod")
                    .param("services", &repo),
                acts,
            );
        }
    }
}

fn reader_day(ctx: &DayCtx<'_>, rng: &mut ChaCha8Rng, acts: &mut Vec<Act>) {
    let every = i64::from(ctx.actor.pace) * MIN;
    let mut t = ctx.start + rng.random_range(0..every);
    // Benign drift: one day of throttling, answered by retries.
    let throttled = ctx.day == ctx.actor.drift_day;
    let date = date_text(ctx.start);
    while t < ctx.start + DAY {
        let session = ctx.session((((t - ctx.start) / HOUR) as u32) + 1);
        let bucket = &ctx.actor.targets[rng.random_range(0..ctx.actor.targets.len())];
        acts.push(
            Act::aws(t, ctx.index, session, "s3", "ListObjects")
                .param("bucketName", bucket.as_str())
                .param("prefix", format!("daily/{date}/")),
        );
        for part in 0..rng.random_range(1..4) {
            let get = Act::aws(
                t + (part + 1) * 2 * SEC,
                ctx.index,
                session,
                "s3",
                "GetObject",
            )
            .param("bucketName", bucket.as_str())
            .param("key", format!("daily/{date}/part-{part:04}.parquet"))
            .bytes(rng.random_range(200_000..4_000_000));
            with_retry(
                acts,
                rng,
                get,
                "SlowDown",
                if throttled { 0.4 } else { 0.005 },
            );
        }
        if rng.random_bool(0.3) {
            acts.push(
                Act::aws(t + 10 * SEC, ctx.index, session, "dynamodb", "Query")
                    .param("tableName", format!("{}-orders", ctx.actor.team)),
            );
        }
        t += every + rng.random_range(-30..30) * SEC;
    }
}

fn automation_day(ctx: &DayCtx<'_>, rng: &mut ChaCha8Rng, acts: &mut Vec<Act>) {
    let i = ctx.index;
    let team = ctx.actor.team;
    if ctx.actor.backups {
        let mut runs = vec![ctx.start + 2 * HOUR + rng.random_range(0..10 * MIN)];
        if ctx.day == ctx.actor.drift_day {
            // Benign drift: a one-off manual re-run in the afternoon after maintenance.
            runs.push(ctx.start + 14 * HOUR + rng.random_range(0..HOUR));
        }
        for (n, mut t) in runs.into_iter().enumerate() {
            let session = ctx.session(n as u32);
            let mut push = |act: Act, acts: &mut Vec<Act>, rng: &mut ChaCha8Rng| {
                t += rng.random_range(2 * SEC..30 * SEC);
                let mut act = act;
                act.time = t;
                acts.push(act);
            };
            push(
                Act::aws(0, i, session, "rds", "DescribeDBInstances"),
                acts,
                rng,
            );
            for db in 0..rng.random_range(1..4) {
                let db_id = format!("{team}-db-{db}");
                push(
                    Act::aws(0, i, session, "rds", "CreateDBSnapshot")
                        .param("dBInstanceIdentifier", &db_id)
                        .param(
                            "dBSnapshotIdentifier",
                            format!("{db_id}-{}", date_text(ctx.start)),
                        ),
                    acts,
                    rng,
                );
            }
            for _ in 0..rng.random_range(2..5) {
                push(
                    Act::aws(0, i, session, "rds", "DescribeDBSnapshots"),
                    acts,
                    rng,
                );
            }
            push(
                Act::aws(0, i, session, "rds", "DeleteDBSnapshot")
                    .param("dBSnapshotIdentifier", format!("{team}-db-0-old")),
                acts,
                rng,
            );
            push(
                Act::aws(0, i, session, "s3", "PutObject")
                    .param("bucketName", format!("acme-{team}-backups"))
                    .param("key", format!("manifests/{}.json", date_text(ctx.start))),
                acts,
                rng,
            );
        }
    } else if ctx.weekday == 6 {
        // Weekly key rotation for the team's service user, Sundays at 03:00.
        let mut t = ctx.start + 3 * HOUR + rng.random_range(0..5 * MIN);
        let user = format!("svc-{team}-legacy");
        let session = ctx.session(0);
        for (service, op) in [
            ("iam", "ListAccessKeys"),
            ("iam", "CreateAccessKey"),
            ("secretsmanager", "PutSecretValue"),
            ("iam", "UpdateAccessKey"),
            ("iam", "DeleteAccessKey"),
        ] {
            t += rng.random_range(SEC..20 * SEC);
            let act = Act::aws(t, i, session, service, op);
            acts.push(if service == "iam" {
                act.param("userName", &user)
            } else {
                act.param("secretId", format!("{team}/legacy-access-key"))
            });
        }
    }
}

fn controller_day(ctx: &DayCtx<'_>, rng: &mut ChaCha8Rng, acts: &mut Vec<Act>) {
    let every = DAY / i64::from(ctx.actor.pace);
    let mut t = ctx.start + rng.random_range(0..every);
    let ns = ctx.actor.team.to_owned();
    let mut n = 0;
    while t < ctx.start + DAY {
        let session = ctx.session(0);
        let k8s = |t: i64, verb: &'static str, resource: &'static str, name: Option<String>| Act {
            time: t,
            actor: ctx.index,
            session,
            what: What::K8s {
                verb,
                resource,
                sub: None,
                namespace: ns.clone(),
                name,
            },
            answer: Answer::Ok,
            origin: None,
            incident: None,
        };
        acts.push(k8s(t, "list", "pods", None));
        acts.push(k8s(
            t + 150_000_000,
            "get",
            "configmaps",
            Some(format!("{}-config", ctx.actor.name)),
        ));
        if n % 3 == 0 {
            acts.push(k8s(
                t + 300_000_000,
                "update",
                "leases",
                Some(format!("{}-leader", ctx.actor.name)),
            ));
        }
        if rng.random_bool(0.2) {
            acts.push(k8s(t + 500_000_000, "list", "endpoints", None));
        }
        n += 1;
        t += every + rng.random_range(-5..5) * SEC;
    }
}

fn github_day(ctx: &DayCtx<'_>, rng: &mut ChaCha8Rng, acts: &mut Vec<Act>) {
    let runs = if ctx.workday() {
        rng.random_range(ctx.actor.pace / 2..=ctx.actor.pace)
    } else {
        rng.random_range(0..2)
    };
    let mut repos = ctx.actor.targets.clone();
    if ctx.day >= ctx.actor.drift_day {
        // Benign drift: a new repository joins the bot's work.
        repos.push(format!("acme/{}-platform-v2", ctx.actor.team));
    }
    for n in 0..runs {
        let repo = repos[rng.random_range(0..repos.len())].clone();
        let mut t = business_time(rng, ctx.start);
        let session = ctx.session(n);
        let mut push = |action: &'static str, acts: &mut Vec<Act>, rng: &mut ChaCha8Rng| {
            t += rng.random_range(5 * SEC..120 * SEC);
            acts.push(Act {
                time: t,
                actor: ctx.index,
                session,
                what: What::Github {
                    action,
                    repo: repo.clone(),
                },
                answer: Answer::Ok,
                origin: None,
                incident: None,
            });
        };
        push("git.clone", acts, rng);
        push("pull_request.create", acts, rng);
        push("workflows.created_workflow_run", acts, rng);
        if rng.random_bool(0.4) {
            push("pull_request.merge", acts, rng);
        }
    }
}

fn agent_day(ctx: &DayCtx<'_>, rng: &mut ChaCha8Rng, acts: &mut Vec<Act>) {
    if !ctx.workday() {
        return;
    }
    let mut repos = ctx.actor.targets.clone();
    if ctx.day >= ctx.actor.drift_day {
        repos.push(format!("acme/{}-platform-v2", ctx.actor.team));
    }
    let sessions = rng.random_range(ctx.actor.pace / 2..=ctx.actor.pace);
    for n in 0..sessions {
        let repo = repos[rng.random_range(0..repos.len())].clone();
        let session = ctx.session(n);
        let mut t = business_time(rng, ctx.start);
        for call in agent_session(rng, &repo, ctx.actor.team) {
            t += rng.random_range(3 * SEC..40 * SEC);
            acts.push(Act {
                time: t,
                actor: ctx.index,
                session,
                what: call,
                answer: Answer::Ok,
                origin: None,
                incident: None,
            });
        }
    }
}

/// A coding agent's session on a task: search, read, edit-test cycles, then a pull request or
/// a ticket.
pub(crate) fn agent_session(rng: &mut ChaCha8Rng, repo: &str, team: &str) -> Vec<What> {
    let tool = |tool: &'static str, args: Vec<(&'static str, String)>| What::Tool { tool, args };
    let module = SERVICES[rng.random_range(0..SERVICES.len())];
    let mut calls = vec![tool(
        "search",
        vec![
            ("repo", repo.to_owned()),
            ("query", format!("{team} {module} handler")),
        ],
    )];
    for _ in 0..rng.random_range(2..7) {
        let file = format!(
            "src/{module}/{}.py",
            ["handler", "models", "client", "config", "utils"][rng.random_range(0..5)]
        );
        calls.push(tool(
            "read_file",
            vec![("repo", repo.to_owned()), ("path", file)],
        ));
    }
    for _ in 0..rng.random_range(1..3) {
        calls.push(tool(
            "run_tests",
            vec![
                ("repo", repo.to_owned()),
                ("target", format!("tests/{module}")),
            ],
        ));
    }
    if rng.random_bool(0.7) {
        calls.push(tool(
            "create_pull_request",
            vec![
                ("repo", repo.to_owned()),
                ("title", format!("Fix {module} edge case")),
            ],
        ));
    } else {
        calls.push(tool(
            "open_ticket",
            vec![
                ("project", team.to_uppercase()),
                ("title", format!("Flaky {module} tests")),
            ],
        ));
    }
    calls
}

/// `YYYY-MM-DD` of a day-start timestamp.
pub(crate) fn date_text(start: i64) -> String {
    let text = nhiwatch_model::Timestamp(start).to_string();
    text[..10].to_owned()
}

/// Writes `policy.yaml` and the IAM documents under `iam/`.
pub(crate) fn write_policy(out: &Path, fleet: &Fleet) -> Result<(), SimError> {
    let iam_dir = out.join("iam");
    fs::create_dir_all(&iam_dir).map_err(io_error(&iam_dir))?;
    let mut yaml = String::from(
        "# Approved use of the simulated fleet (nhiwatch policy file, DESIGN.md format).\nidentities:\n",
    );
    for actor in &fleet.actors {
        let id = actor.identity_id();
        let owner = format!("{}-team", actor.team);
        let _ = writeln!(
            yaml,
            "  - match: \"{id}\"\n    kind: {}\n    owner: {owner}",
            actor.kind()
        );
        // An autonomous agent has no one at hand to step up mid-run: a high finding stops it.
        let decision = if actor.archetype == Archetype::CodingAgent {
            "    decision:\n      critical: block\n      high: block\n      medium: step_up\n"
        } else {
            "    decision:\n      critical: block\n      high: step_up\n      medium: review\n"
        };
        match actor.archetype {
            Archetype::Deployer | Archetype::Reader | Archetype::Automation => {
                let file = format!("iam/{}-{}.json", actor.name, actor.account);
                let doc = iam_document(actor);
                let path = out.join(&file);
                fs::write(&path, doc).map_err(io_error(&path))?;
                let _ = writeln!(yaml, "    iam_policy: {file}");
                match actor.archetype {
                    Archetype::Deployer => {
                        yaml.push_str("    workflow:\n      steps: \"sts:GetCallerIdentity ecr:GetAuthorizationToken ecr:*+ ecs:RegisterTaskDefinition? ecs:UpdateService+ ecs:Describe*+\"\n      window: 30m\n");
                        yaml.push_str("    hours: \"Mon-Fri 06:00-22:00 UTC\"\n");
                        yaml.push_str("    sensitive: [\"iam:*\", \"secretsmanager:GetSecretValue\", \"cloudtrail:*\"]\n");
                    }
                    Archetype::Reader => {
                        yaml.push_str("    sensitive: [\"secretsmanager:GetSecretValue\", \"iam:*\", \"kms:Decrypt\"]\n");
                    }
                    _ => {
                        yaml.push_str("    sensitive: [\"ec2:ModifySnapshotAttribute\", \"cloudtrail:*\", \"guardduty:*\", \"iam:AttachUserPolicy\", \"iam:PutUserPolicy\"]\n");
                    }
                }
            }
            Archetype::Controller => {
                let ns = actor.team;
                let _ = writeln!(
                    yaml,
                    "    allow:\n      - action: \"k8s:list/pods\"\n        resource: \"k8s:{ns}/*\"\n      - action: \"k8s:list/endpoints\"\n        resource: \"k8s:{ns}/*\"\n      - action: \"k8s:get/configmaps\"\n        resource: \"k8s:{ns}/*\"\n      - action: \"k8s:update/leases\"\n        resource: \"k8s:{ns}/*\""
                );
                yaml.push_str("    sensitive: [\"k8s:get/secrets\", \"k8s:list/secrets\", \"k8s:create/pods/exec\", \"k8s:create/clusterrolebindings\"]\n");
            }
            Archetype::GithubApp => {
                yaml.push_str("    allow:\n      - action: \"github:git.clone\"\n      - action: \"github:pull_request.*\"\n      - action: \"github:workflows.*\"\n");
                yaml.push_str("    deny:\n      - action: \"github:repo.destroy\"\n      - action: \"github:org.*\"\n");
            }
            Archetype::CodingAgent => {
                // A tool scope (not `allow`): it governs the agent's tool calls, not its model calls.
                yaml.push_str("    tools:\n      - name: search\n      - name: read_file\n        paths: [\"src/**\", \"tests/**\", \"docs/**\"]\n      - name: run_tests\n      - name: create_pull_request\n      - name: open_ticket\n");
                yaml.push_str("    hours: \"Mon-Fri 06:00-22:00 UTC\"\n");
                yaml.push_str("    sensitive: [\"tool:get_secret\", \"tool:send_email\", \"tool:http_request\", \"tool:send_money\"]\n");
            }
        }
        yaml.push_str(decision);
    }
    let path = out.join("policy.yaml");
    fs::write(&path, yaml).map_err(io_error(&path))
}

/// The identity policy of an AWS role, in IAM policy grammar.
fn iam_document(actor: &Actor) -> String {
    let account = actor.account;
    let team = actor.team;
    let statements = match actor.archetype {
        Archetype::Deployer => format!(
            r#"{{"Sid":"Deploy","Effect":"Allow","Action":["ecr:*","ecs:UpdateService","ecs:Describe*","ecs:RegisterTaskDefinition","sts:GetCallerIdentity"],"Resource":"*"}},
    {{"Sid":"PassTaskRole","Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::{account}:role/ecs-task-{team}"}},
    {{"Sid":"NoIam","Effect":"Deny","NotAction":["iam:PassRole"],"Resource":"arn:aws:iam::*:*"}}"#
        ),
        Archetype::Reader => {
            let buckets: Vec<String> = actor
                .targets
                .iter()
                .flat_map(|b| {
                    [
                        format!("\"arn:aws:s3:::{b}\""),
                        format!("\"arn:aws:s3:::{b}/*\""),
                    ]
                })
                .collect();
            format!(
                r#"{{"Sid":"ReadExports","Effect":"Allow","Action":["s3:Get*","s3:List*"],"Resource":[{}]}},
    {{"Sid":"ReadOrders","Effect":"Allow","Action":["dynamodb:Query","dynamodb:GetItem","dynamodb:Scan"],"Resource":"arn:aws:dynamodb:*:{account}:table/{team}-orders"}}"#,
                buckets.join(",")
            )
        }
        _ if actor.backups => format!(
            r#"{{"Sid":"Snapshots","Effect":"Allow","Action":["rds:Describe*","rds:CreateDBSnapshot","rds:DeleteDBSnapshot"],"Resource":"*"}},
    {{"Sid":"Manifests","Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::acme-{team}-backups/*"}}"#
        ),
        _ => format!(
            r#"{{"Sid":"RotateOwnKey","Effect":"Allow","Action":["iam:ListAccessKeys","iam:CreateAccessKey","iam:UpdateAccessKey","iam:DeleteAccessKey"],"Resource":"arn:aws:iam::{account}:user/svc-{team}-legacy"}},
    {{"Sid":"StoreKey","Effect":"Allow","Action":"secretsmanager:PutSecretValue","Resource":"arn:aws:secretsmanager:*:{account}:secret:{team}/legacy-access-key*"}}"#
        ),
    };
    format!("{{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {statements}\n  ]\n}}\n")
}
