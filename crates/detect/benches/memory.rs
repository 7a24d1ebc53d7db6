//! Memory at the scale of DESIGN.md's bar: 100,000 identities in at most 2 GiB, and per-identity
//! state at most 16 KiB on average.
//!
//! Not a timing benchmark: it builds the state a long-running detector holds and prints what it
//! measured. 100,000 roles (the count can be changed with `NHIWATCH_BENCH_IDENTITIES`), each with
//! its own habits (a dozen actions out of sixty, its buckets and object keys, two networks, a
//! user agent), learn five days of history (120 events each), then every lens and the risk
//! scorer judge a sixth day (12 events each, a few of them unusual) with a policy of one
//! wildcard entry. Events are made one at a time, so that the process's resident memory is the
//! state and not the input.
//!
//! `cargo bench -p nhiwatch-detect --bench memory`

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use nhiwatch_baseline::Learner;
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{ActionClass, Event, Identity, IdentityKind, Outcome, Source, Timestamp};
use nhiwatch_policy::Policy;
use serde_json::value::RawValue;

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;
/// 2026-03-02T00:00:00Z, a Monday.
const START: i64 = 1_772_409_600 * SECOND;
const LEARN_DAYS: i64 = 5;
const EVENTS_PER_DAY: i64 = 24;
const JUDGED_EVENTS: i64 = 12;

const ACTIONS: [(&str, ActionClass); 12] = [
    ("s3:GetObject", ActionClass::Read),
    ("s3:PutObject", ActionClass::Write),
    ("s3:ListBucket", ActionClass::List),
    ("dynamodb:Query", ActionClass::Read),
    ("dynamodb:PutItem", ActionClass::Write),
    ("sqs:ReceiveMessage", ActionClass::Read),
    ("sqs:DeleteMessage", ActionClass::Delete),
    ("kms:Decrypt", ActionClass::Read),
    ("logs:PutLogEvents", ActionClass::Write),
    ("ecr:BatchGetImage", ActionClass::Read),
    ("sts:GetCallerIdentity", ActionClass::Read),
    ("ec2:DescribeInstances", ActionClass::List),
];

const POLICY: &str = r#"
identities:
  - match: "arn:aws:iam::*:role/svc-*"
    kind: role
    allow:
      - action: "s3:*"
      - action: "dynamodb:*"
      - action: "sqs:*"
      - action: "kms:Decrypt"
      - action: "logs:PutLogEvents"
      - action: "ecr:BatchGetImage"
      - action: "sts:GetCallerIdentity"
      - action: "ec2:Describe*"
"#;

/// A small deterministic generator (SplitMix64), so that runs are comparable.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        nhiwatch_baseline::hash::mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The `n`-th event of identity `who` at `time`: one of its habitual actions on one of its
/// resources, from one of its networks; `unusual` picks an action and bucket outside them.
fn event(who: u64, n: u64, time: i64, unusual: bool, draw: &mut Draw) -> Event<'static> {
    let habit = who * 7;
    let pick = if unusual {
        (habit + 5 + draw.below(7)) % ACTIONS.len() as u64
    } else {
        (habit + draw.below(5)) % ACTIONS.len() as u64
    };
    let (action, class) = ACTIONS[pick as usize];
    let bucket = if unusual { who + 1 } else { who } % 5_000;
    let raw = RawValue::from_string("{}".to_owned()).expect("valid JSON");
    Event {
        id: Cow::Owned(format!("{who:x}-{n:x}-{time:x}")),
        time: Timestamp(time),
        time_inferred: false,
        source: Source::Cloudtrail,
        identity: Identity {
            id: Cow::Owned(format!(
                "arn:aws:iam::{:012}:role/svc-{who}",
                100_000_000_000 + who % 50
            )),
            kind: IdentityKind::Role,
            session: Some(Cow::Owned(format!("run-{}", time / HOUR))),
            credential: None,
        },
        action: Cow::Borrowed(action),
        action_class: class,
        resource: Some(Cow::Owned(format!(
            "arn:aws:s3:::bucket-{bucket}/data/{}/part-{:04}.parquet",
            time / DAY,
            draw.below(50)
        ))),
        outcome: Outcome::Success,
        error: None,
        src_ip: Some(Cow::Owned(format!(
            "10.{}.{}.{}",
            who % 200,
            draw.below(2),
            draw.below(250)
        ))),
        user_agent: Some(Cow::Borrowed(
            "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210 lang/python#3.11.8",
        )),
        bytes_out: Some(1_000 + draw.below(50_000)),
        records: None,
        raw: Cow::Owned(raw),
    }
}

/// A figure of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`); 0 where there is none.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    // `cargo bench` passes `--bench`; a filter naming another benchmark skips this one.
    if std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with('-') && arg != "memory")
    {
        return;
    }
    let identities: u64 = std::env::var("NHIWATCH_BENCH_IDENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut draw = Draw(7);
    let rss_start = status_kib("VmRSS");

    let started = Instant::now();
    let mut learner = Learner::new();
    let mut learned = 0u64;
    for day in 0..LEARN_DAYS {
        for slot in 0..EVENTS_PER_DAY {
            let time = START + day * DAY + 6 * HOUR + slot * 30 * 60 * SECOND;
            for who in 0..identities {
                let jitter = draw.below(60) as i64 * SECOND;
                learner.observe(&event(who, learned, time + jitter, false, &mut draw));
                learned += 1;
            }
        }
    }
    let baseline = learner.finish();
    let rss_learned = status_kib("VmRSS");
    println!(
        "memory: learned {learned} events into {} identities in {:.1} s; {:.0} bytes per profile on average; resident {:.0} MiB (from {:.0} MiB)",
        baseline.len(),
        started.elapsed().as_secs_f64(),
        baseline.profile_bytes() as f64 / baseline.len().max(1) as f64,
        mib(rss_learned),
        mib(rss_start),
    );

    let started = Instant::now();
    let policy = Arc::new(
        Policy::parse(POLICY, "memory-bench policy", None).expect("the bench policy loads"),
    );
    let mut engine = Engine::with_baseline(
        Some(policy),
        EngineConfig::default(),
        baseline,
        UsualConfig::default(),
    );
    let mut findings = 0u64;
    let mut judged = 0u64;
    for slot in 0..JUDGED_EVENTS {
        let time = START + LEARN_DAYS * DAY + 8 * HOUR + slot * 40 * 60 * SECOND;
        for who in 0..identities {
            // One identity in fifty strays from its habits once.
            let unusual = who % 50 == 0 && slot == JUDGED_EVENTS / 2;
            let event = event(who, judged, time, unusual, &mut draw);
            engine.process(&event, &mut |_| findings += 1);
            judged += 1;
        }
    }
    let stats = engine.stats();
    let state = engine.state_bytes();
    let profiles = engine.baseline().map_or(0, |b| b.profile_bytes());
    let rss = status_kib("VmRSS");
    let peak = status_kib("VmHWM");
    engine.finish(&mut |_| findings += 1);
    let per_identity = (state + profiles) as f64 / stats.identities.max(1) as f64;
    println!(
        "memory: judged {judged} events of {} identities in {:.1} s, {findings} findings; per identity: {:.0} bytes of detector state + {:.0} bytes of profile = {:.1} KiB (bar 16 KiB); resident {:.0} MiB, peak {:.0} MiB (bar 2048 MiB for 100,000 identities)",
        stats.identities,
        started.elapsed().as_secs_f64(),
        state as f64 / stats.identities.max(1) as f64,
        profiles as f64 / stats.identities.max(1) as f64,
        per_identity / 1024.0,
        mib(rss),
        mib(peak),
    );
}
