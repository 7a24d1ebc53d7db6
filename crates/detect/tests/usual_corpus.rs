//! The usual lens on real attack telemetry (../shared/corpus) mixed into a benign history:
//! OTRF's EC2-proxy S3 exfiltration (stolen BankingWAFRole credentials used for ListBuckets,
//! ListObjects and GetObject from a proxy), with its timestamps moved after a week of benign
//! history and its principal rewritten to a simulated reporting role. Every technique of the set
//! (T1078.004 valid cloud accounts, T1530 data from cloud storage) must be caught, against the
//! baseline alone: no policy.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;

use nhiwatch_baseline::Learner;
use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_detect::detectors::UsualConfig;
use nhiwatch_detect::{Engine, EngineConfig};
use nhiwatch_model::{
    ActionClass, Event, Finding, Identity, IdentityKind, Outcome, Source, Timestamp,
};
use serde_json::value::RawValue;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");
const VICTIM: &str = "arn:aws:iam::111122223333:role/tableau-readonly-reports";
const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;
/// 2026-03-02T00:00:00Z, a Monday: the benign history's first day.
const START: i64 = 1_772_409_600 * SECOND;

fn otrf_events() -> Vec<Event<'static>> {
    let path = format!("{CORPUS}/cloudtrail/ec2_proxy_s3_exfiltration.zip");
    let mut events = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut sinks = Sinks {
        event: &mut |event: Event<'_>| events.push(event.into_owned()),
        reject: &mut |reject| panic!("rejected: {reject:?}"),
    };
    reader.read_path(Path::new(&path), &mut sinks);
    reader.finish(&mut sinks);
    events
}

/// A week of the reporting role: every 10 minutes around the clock it lists today's prefix of
/// its export bucket and reads a part, from its usual address with its usual client.
fn history(raw: &RawValue) -> Vec<Event<'static>> {
    let mut events = Vec::new();
    for day in 0..7 {
        for slot in 0..144i64 {
            let time = START + day * DAY + slot * 600 * SECOND;
            for (n, (action, class, resource, bytes)) in [
                ("s3:ListObjects", ActionClass::List, "arn:aws:s3:::acme-reports-exports".to_owned(), None),
                (
                    "s3:GetObject",
                    ActionClass::Read,
                    format!("arn:aws:s3:::acme-reports-exports/daily/2026-03-0{}/part-{slot:04}.parquet", day + 2),
                    Some(2_000_000),
                ),
            ]
            .into_iter()
            .enumerate()
            {
                events.push(Event {
                    id: Cow::Owned(format!("h-{day}-{slot}-{n}")),
                    time: Timestamp(time + n as i64 * 2 * SECOND),
                    time_inferred: false,
                    source: Source::Cloudtrail,
                    identity: Identity {
                        id: Cow::Borrowed(VICTIM),
                        kind: IdentityKind::Role,
                        session: Some(Cow::Owned(format!("botocore-session-{day}{slot}"))),
                        credential: None,
                    },
                    action: Cow::Borrowed(action),
                    action_class: class,
                    resource: Some(Cow::Owned(resource)),
                    outcome: Outcome::Success,
                    error: None,
                    src_ip: Some(Cow::Borrowed("52.39.110.218")),
                    user_agent: Some(Cow::Borrowed(
                        "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210 lang/python#3.11.8",
                    )),
                    bytes_out: bytes,
                    records: None,
                    raw: Cow::Owned(raw.to_owned()),
                });
            }
        }
    }
    events
}

#[test]
fn otrf_exfiltration_mixed_into_a_benign_history_is_caught_technique_by_technique() {
    let raw: Box<RawValue> = RawValue::from_string("{}".to_owned()).expect("JSON");
    let mut learner = Learner::new();
    for event in history(&raw) {
        learner.observe(&event);
    }
    let baseline = learner.finish();

    // The corpus, moved to day 8 at 10:00 and, for the stolen role, to the victim's name.
    let corpus = otrf_events();
    let first = corpus.iter().map(|e| e.time.0).min().expect("events");
    let offset = START + 7 * DAY + 10 * 3_600 * SECOND - first;
    let mut attack = BTreeSet::new();
    let mut techniques_in_set = BTreeSet::new();
    let mut mixed: Vec<Event<'static>> = corpus
        .into_iter()
        .map(|mut event| {
            event.time = Timestamp(event.time.0 + offset);
            if event.identity.id.contains("BankingWAFRole") {
                event.identity.id = Cow::Borrowed(VICTIM);
                attack.insert(event.id.to_string());
                techniques_in_set.insert(if event.operation() == "GetObject" {
                    "T1530"
                } else {
                    "T1078.004"
                });
            }
            event
        })
        .collect();
    assert!(
        attack.len() >= 10,
        "the stolen role's events are in the corpus"
    );
    // The victim keeps working as usual that day.
    let mut normal = history(&raw);
    normal.retain(|e| e.time.0 < START + DAY);
    for e in &mut normal {
        e.time = Timestamp(e.time.0 + 7 * DAY);
        e.id = Cow::Owned(format!("n-{}", e.id));
    }
    mixed.extend(normal);
    mixed.sort_by_key(|e| e.time);

    let mut engine = Engine::with_baseline(
        None,
        EngineConfig::default(),
        baseline,
        UsualConfig::default(),
    );
    let mut findings: Vec<Finding> = Vec::new();
    for event in &mixed {
        engine.process(event, &mut |f| findings.push(f));
    }
    engine.finish(&mut |f| findings.push(f));

    let touching: Vec<&Finding> = findings
        .iter()
        .filter(|f| {
            f.identity == VICTIM && f.evidence.event_ids.iter().any(|id| attack.contains(id))
        })
        .collect();
    let false_findings: Vec<&Finding> = findings
        .iter()
        .filter(|f| {
            f.identity == VICTIM && !f.evidence.event_ids.iter().any(|id| attack.contains(id))
        })
        .collect();
    assert!(
        false_findings.is_empty(),
        "the victim's usual work raises nothing: {false_findings:#?}"
    );
    let kinds: BTreeSet<&str> = touching.iter().map(|f| f.kind.as_str()).collect();
    for kind in ["new_origin", "novel_action", "novel_resource"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    let tags: BTreeSet<&str> = touching
        .iter()
        .flat_map(|f| f.frameworks.iter().map(String::as_str))
        .collect();
    for technique in &techniques_in_set {
        assert!(
            tags.contains(format!("MITRE-ATTACK:{technique}").as_str()),
            "{technique} caught: {tags:?}"
        );
    }
    // Every malicious action is in some finding's evidence.
    let covered: BTreeSet<&str> = touching
        .iter()
        .flat_map(|f| f.evidence.event_ids.iter().map(String::as_str))
        .filter(|id| attack.contains(*id))
        .collect();
    let actions: BTreeSet<&str> = mixed
        .iter()
        .filter(|e| covered.contains(e.id.as_ref()))
        .map(|e| e.action.as_ref())
        .collect();
    for action in ["s3:ListBuckets", "s3:ListObjects", "s3:GetObject"] {
        assert!(
            actions.contains(action),
            "{action} in evidence: {actions:?}"
        );
    }
}
