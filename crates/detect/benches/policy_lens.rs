//! Cost of the permitted and expected lenses per event: 1,000 identities, each with a policy
//! entry of 50 rules (45 allow rules, a third of them resource-constrained, and 5 deny rules),
//! a workflow, approved hours and sensitive items. The events are already decoded (the decode
//! benchmark measures parsing); most are permitted and in order, a few are out of scope,
//! denied, sensitive or off the workflow, as in real traffic.
//!
//! `cargo bench -p nhiwatch-detect --bench policy_lens` prints the time per pass of 200,000
//! events and the events per second (time per event = 1 / throughput), in two arrival orders,
//! and the per-identity state. The policy lens's cost per event is the time of the
//! `policy_lens_*` case minus the `engine_overhead_*` case of the same order (an engine with no
//! policy and no detectors: interning and stream bookkeeping); `all_lenses_round_robin` adds the
//! usual lens learning every identity from scratch.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhiwatch_detect::{detectors, Engine, EngineConfig};
use nhiwatch_model::{ActionClass, Event, Identity, IdentityKind, Outcome, Source, Timestamp};
use nhiwatch_policy::Policy;
use serde_json::value::RawValue;

const IDENTITIES: usize = 1_000;
const ALLOW_RULES: usize = 45;
const DENY_RULES: usize = 5;
const EVENTS: usize = 200_000;
const SERVICES: usize = 15;

fn identity(i: usize) -> String {
    format!("arn:aws:iam::123456789012:role/service-{i:04}")
}

fn policy() -> Policy {
    let mut yaml = String::from("identities:\n");
    for i in 0..IDENTITIES {
        let _ = writeln!(
            yaml,
            "  - match: \"{}\"\n    kind: role\n    allow:",
            identity(i)
        );
        yaml.push_str("      - action: \"sts:GetCallerIdentity\"\n");
        for r in 1..ALLOW_RULES {
            let service = r % SERVICES;
            match r / SERVICES {
                0 => {
                    let _ = writeln!(yaml, "      - action: \"svc{service}:Get*\"");
                }
                1 => {
                    let _ = writeln!(yaml, "      - action: \"svc{service}:List*\"");
                }
                _ => {
                    let _ = writeln!(
                        yaml,
                        "      - action: \"svc{service}:Put*\"\n        resource: \"arn:aws:svc{service}:*:123456789012:thing/team-{}/*\"",
                        i % 50
                    );
                }
            }
        }
        yaml.push_str("    deny:\n");
        for d in 0..DENY_RULES {
            let _ = writeln!(
                yaml,
                "      - action: \"iam:{}*\"",
                ["Create", "Attach", "Put", "Delete", "Update"][d]
            );
        }
        yaml.push_str("    workflow:\n      steps: \"sts:GetCallerIdentity (svc*:Get* | svc*:List*)+ svc*:Put*+\"\n      window: 30m\n");
        yaml.push_str("    hours: \"Mon-Fri 05:00-21:00 UTC, Sat 08:00-12:00 UTC\"\n");
        yaml.push_str("    sensitive: [\"secretsmanager:GetSecretValue\", \"svc0:GetSecret*\", {resource: \"arn:aws:svc1:*:*:thing/payroll/*\"}]\n");
        yaml.push_str("    decision: {high: block, medium: review}\n");
    }
    Policy::parse(&yaml, "bench-policy.yaml", None).expect("the bench policy loads")
}

/// One event to generate, before its strings are laid out.
struct Spec {
    identity: usize,
    session: String,
    action: String,
    class: ActionClass,
    resource: Option<String>,
    denied: bool,
    time: Timestamp,
}

/// A deterministic mix: per identity session, runs of the workflow (GetCallerIdentity, a few
/// reads and lists, a few writes on the identity's team's things, each identity acting every
/// 20 s so a run fits its 30-minute window), with 1 in 1,000 events out of scope and 1 in 1,000
/// refused by the provider. Events arrive round-robin over the identities.
fn specs() -> Vec<Spec> {
    let start = Timestamp::parse_rfc3339("2024-01-01T08:00:00Z").expect("time");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..EVENTS)
        .map(|n| {
            let i = n % IDENTITIES;
            let step = n / IDENTITIES;
            let roll = next();
            let service = (roll >> 8) as usize % SERVICES;
            let thing = || {
                format!(
                    "arn:aws:svc{service}:eu-west-1:123456789012:thing/team-{}/obj-{}",
                    i % 50,
                    roll % 1000
                )
            };
            let (action, class, resource) = match step % 8 {
                0 => ("sts:GetCallerIdentity".to_owned(), ActionClass::Auth, None),
                1..=4 => (
                    format!(
                        "svc{service}:{}Thing",
                        if roll % 2 == 0 { "Get" } else { "List" }
                    ),
                    ActionClass::Read,
                    Some(thing()),
                ),
                _ => (
                    format!("svc{service}:PutThing"),
                    ActionClass::Write,
                    Some(thing()),
                ),
            };
            let (action, class) = if roll % 1_000 == 7 {
                ("s3:GetObject".to_owned(), ActionClass::Read)
            } else {
                (action, class)
            };
            Spec {
                identity: i,
                session: format!("run-{}", step / 8),
                action,
                class,
                resource,
                denied: roll % 1_000 == 3,
                time: Timestamp(start.0 + (n as i64) * 20_000_000),
            }
        })
        .collect()
}

/// The events' strings, laid out one event after another in arrival order, as a decoder's input
/// buffer holds them; the events borrow from it.
fn layout(specs: &[&Spec]) -> (String, Vec<[std::ops::Range<usize>; 5]>) {
    let mut text = String::new();
    let mut ranges = Vec::with_capacity(specs.len());
    let push = |text: &mut String, part: &str| {
        let start = text.len();
        text.push_str(part);
        start..text.len()
    };
    for (n, spec) in specs.iter().enumerate() {
        ranges.push([
            push(&mut text, &format!("ev-{n:08}")),
            push(&mut text, &identity(spec.identity)),
            push(&mut text, &spec.session),
            push(&mut text, &spec.action),
            push(&mut text, spec.resource.as_deref().unwrap_or("")),
        ]);
    }
    (text, ranges)
}

fn events<'a>(
    text: &'a str,
    ranges: &[[std::ops::Range<usize>; 5]],
    specs: &[&Spec],
    raw: &'a RawValue,
) -> Vec<Event<'a>> {
    specs
        .iter()
        .zip(ranges)
        .map(|(spec, [id, identity, session, action, resource])| Event {
            id: Cow::Borrowed(&text[id.clone()]),
            time: spec.time,
            time_inferred: false,
            source: Source::Cloudtrail,
            identity: Identity {
                id: Cow::Borrowed(&text[identity.clone()]),
                kind: IdentityKind::Role,
                session: Some(Cow::Borrowed(&text[session.clone()])),
                credential: None,
            },
            action: Cow::Borrowed(&text[action.clone()]),
            action_class: spec.class,
            resource: spec
                .resource
                .as_ref()
                .map(|_| Cow::Borrowed(&text[resource.clone()])),
            outcome: if spec.denied {
                Outcome::Denied
            } else {
                Outcome::Success
            },
            error: spec.denied.then_some(Cow::Borrowed("AccessDenied")),
            src_ip: Some(Cow::Borrowed("10.0.0.1")),
            user_agent: None,
            bytes_out: None,
            records: None,
            raw: Cow::Borrowed(raw),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policy = Arc::new(policy());
    let raw: Box<RawValue> = RawValue::from_string("{}".to_owned()).expect("JSON");
    let specs = specs();
    let round_robin: Vec<&Spec> = specs.iter().collect();
    // The same events with each session's run of 8 calls arriving together (as CloudTrail
    // delivers a role session's calls), runs of different identities interleaved: same size and
    // mix, with the locality real traffic has. Round-robin, where each event comes from a
    // different identity than the last, is the worst case for caches.
    let mut bursts: Vec<&Spec> = specs.iter().collect();
    bursts.sort_by_key(|s| {
        (
            s.time.0 / (8 * IDENTITIES as i64 * 20_000_000),
            s.identity,
            s.time,
        )
    });
    let (rr_text, rr_ranges) = layout(&round_robin);
    let rr_events = events(&rr_text, &rr_ranges, &round_robin, &raw);
    let (burst_text, burst_ranges) = layout(&bursts);
    let burst_events = events(&burst_text, &burst_ranges, &bursts, &raw);

    // One pass first, to report what a run finds and the per-identity state it keeps.
    let mut engine = Engine::new(Some(policy.clone()), EngineConfig::default());
    let mut findings = 0usize;
    for event in &rr_events {
        engine.process(event, &mut |_| findings += 1);
    }
    engine.finish(&mut |_| findings += 1);
    let stats = engine.stats();
    eprintln!(
        "policy_lens: {} events, {} identities ({} declared), {} findings, {} action profiles cached ({} distinct), {} bytes of per-identity state on average",
        stats.events,
        stats.identities,
        stats.declared,
        findings,
        stats.profiles,
        stats.distinct_profiles,
        engine.state_bytes() / stats.identities.max(1)
    );

    // The policy lens alone (the engine's entitlement judgement and the policy-bound
    // detectors) against the engine with nothing to do (interning, stream bookkeeping): the
    // difference is the policy lens's cost per event. The whole engine (every lens, the usual
    // one learning from scratch) is measured too, for scale.
    let policy_lens = || {
        Engine::with_detectors(
            Some(policy.clone()),
            EngineConfig::default(),
            detectors::policy_lenses(&policy, &EngineConfig::default()),
        )
    };
    let bare = || Engine::with_detectors(None, EngineConfig::default(), Vec::new());
    let all_lenses = || Engine::new(Some(policy.clone()), EngineConfig::default());
    type Build<'b> = &'b dyn Fn() -> Engine;
    let cases: [(&str, &Vec<Event<'_>>, Build<'_>); 5] = [
        ("policy_lens_round_robin", &rr_events, &policy_lens),
        ("policy_lens_session_bursts", &burst_events, &policy_lens),
        ("engine_overhead_round_robin", &rr_events, &bare),
        ("engine_overhead_session_bursts", &burst_events, &bare),
        ("all_lenses_round_robin", &rr_events, &all_lenses),
    ];
    let mut group = c.benchmark_group("policy_lens");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    for (name, events, build) in cases {
        group.bench_function(name, |b| {
            let mut engine = build();
            b.iter(|| {
                let mut emitted = 0usize;
                for event in events.iter() {
                    engine.process(event, &mut |_| emitted += 1);
                }
                emitted
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
