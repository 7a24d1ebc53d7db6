//! Unit tests of the store: round trips, idempotence, the chain and what verify catches,
//! retention.

use std::borrow::Cow;

use nhiwatch_model::{
    ActionClass, Decision, Event, Evidence, Finding, FindingKind, Identity, IdentityKind, Outcome,
    Severity, Source, Timestamp,
};
use redb::ReadableTable;
use serde_json::value::RawValue;

use crate::tables::{BATCHES, IDENTITY_NO};
use crate::*;

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;
/// 2026-03-02T00:00:00Z.
const T0: i64 = 1_772_409_600_000_000_000;

fn event(source: Source, id: &str, identity: &str, time: i64, action: &str) -> Event<'static> {
    let raw = format!(
        r#"{{"eventID":"{id}","eventName":"{action}","pad":"{}"}}"#,
        "r".repeat(150)
    );
    Event {
        id: id.to_owned().into(),
        time: Timestamp(time),
        time_inferred: false,
        source,
        identity: Identity {
            id: identity.to_owned().into(),
            kind: IdentityKind::Role,
            session: Some("s-1".into()),
            credential: None,
        },
        action: action.to_owned().into(),
        action_class: ActionClass::Read,
        resource: Some("arn:aws:s3:::bucket/key".into()),
        outcome: if action.ends_with("Denied") {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        error: None,
        src_ip: Some("10.1.2.3".into()),
        user_agent: Some("aws-cli/2".into()),
        bytes_out: None,
        records: None,
        raw: Cow::Owned(RawValue::from_string(raw).unwrap()),
    }
}

fn finding(identity: &str, kind: FindingKind, time: i64, risk: u8, first: &str) -> Finding {
    Finding {
        id: Finding::stable_id(identity, kind, first),
        time: Timestamp(time),
        identity: identity.to_owned(),
        kind,
        severity: Severity::High,
        risk,
        decision: Decision::StepUp,
        summary: format!("{kind} by {identity}"),
        evidence: Evidence {
            event_ids: vec![first.to_owned()],
            detail: serde_json::json!({"why": "test"}),
        },
        frameworks: vec!["OWASP-NHI-06".into()],
    }
}

/// Two batches of events for two identities, a finding and a risk point.
fn filled() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut batch = Batch::new();
    for i in 0..50 {
        batch.add_event(&event(
            Source::Cloudtrail,
            &format!("e{i}"),
            "role/a",
            T0 + i * HOUR,
            "s3:GetObject",
        ));
    }
    batch.add_event(&event(
        Source::Cloudtrail,
        "b0",
        "role/b",
        T0,
        "iam:ListRoles",
    ));
    store.append(&mut batch).unwrap();
    let f = finding("role/a", FindingKind::OutOfScope, T0 + 60 * HOUR, 75, "e60");
    for i in 50..100 {
        batch.add_event(&event(
            Source::Cloudtrail,
            &format!("e{i}"),
            "role/a",
            T0 + i * HOUR,
            if i % 10 == 0 {
                "s3:PutObjectDenied"
            } else {
                "s3:GetObject"
            },
        ));
    }
    batch.add_finding(&f).unwrap();
    batch.add_risk(&RiskPoint {
        identity: "role/a".into(),
        time: f.time,
        risk: 75,
        decision: Decision::StepUp,
        cause: f.id.clone(),
    });
    store.append(&mut batch).unwrap();
    (dir, store)
}

#[test]
fn events_come_back_by_identity_and_time_range() {
    let (_dir, store) = filled();
    let day1 = store
        .events("role/a", Timestamp(T0), Timestamp(T0 + DAY), true)
        .unwrap();
    assert_eq!(day1.len(), 24);
    assert_eq!(day1[0].id, "e0");
    assert_eq!(day1[23].id, "e23");
    assert!(day1[0].raw.get().contains(r#""eventID":"e0""#));
    assert_eq!(day1[0].resource.as_deref(), Some("arn:aws:s3:::bucket/key"));
    let lean = store
        .events("role/a", Timestamp(T0), Timestamp(T0 + 2 * HOUR), false)
        .unwrap();
    assert_eq!(lean.len(), 2);
    assert_eq!(lean[0].raw.get(), "null");
    assert!(store
        .events("role/nobody", Timestamp(T0), Timestamp(T0 + DAY), false)
        .unwrap()
        .is_empty());
    let by_id = store
        .find_events(
            "role/a",
            &["e9", "e7", "nope"],
            Timestamp(T0 + 9 * HOUR),
            2 * HOUR,
        )
        .unwrap();
    let ids: Vec<_> = by_id.iter().map(|e| e.id.as_ref()).collect();
    assert_eq!(ids, ["e7", "e9"]);
    assert!(by_id[0].raw.get().contains("e7"));
    let too_far = store
        .find_events("role/a", &["e7"], Timestamp(T0 + 9 * HOUR), HOUR)
        .unwrap();
    assert!(too_far.is_empty());
}

#[test]
fn summaries_actions_findings_and_risk_are_kept() {
    let (_dir, store) = filled();
    let identities = store.identities().unwrap();
    assert_eq!(identities.len(), 2);
    let a = &identities[0];
    assert_eq!(a.identity, "role/a");
    assert_eq!(a.events, 100);
    assert_eq!(a.findings, 1);
    assert_eq!(a.first_seen, Some(Timestamp(T0)));
    assert_eq!(a.last_seen, Some(Timestamp(T0 + 99 * HOUR)));
    assert_eq!(a.risk.map(|r| r.risk), Some(75));
    let actions = store.actions("role/a").unwrap();
    assert_eq!(actions[0].action, "s3:GetObject");
    assert_eq!(actions[0].events, 95);
    assert_eq!(actions[1].action, "s3:PutObjectDenied");
    assert_eq!((actions[1].events, actions[1].denied), (5, 5));
    assert_eq!(actions[1].first_seen, Timestamp(T0 + 50 * HOUR));

    let all = store.findings(&FindingQuery::default()).unwrap();
    assert_eq!(all.len(), 1);
    let query = |kinds: Vec<FindingKind>, min_risk: u8, since: i64| FindingQuery {
        kinds,
        min_risk,
        since: Some(Timestamp(since)),
        ..FindingQuery::default()
    };
    let find = |q: FindingQuery| store.findings(&q).unwrap().len();
    assert_eq!(find(query(vec![FindingKind::OutOfScope], 0, T0)), 1);
    assert_eq!(find(query(vec![FindingKind::NovelAction], 0, T0)), 0);
    assert_eq!(find(query(vec![], 80, T0)), 0);
    assert_eq!(find(query(vec![], 75, T0 + 61 * HOUR)), 0);
    let mine = FindingQuery {
        identity: Some("role/a".into()),
        ..FindingQuery::default()
    };
    assert_eq!(find(mine), 1);
    let risk = store
        .risk_history("role/a", Timestamp(i64::MIN), Timestamp(i64::MAX))
        .unwrap();
    assert_eq!(risk.len(), 1);
    assert_eq!(risk[0].cause, all[0].id);
}

#[test]
fn re_appending_the_same_items_adds_nothing() {
    let (_dir, store) = filled();
    let head = store.head().unwrap().unwrap();
    let mut batch = Batch::new();
    for i in 0..100 {
        batch.add_event(&event(
            Source::Cloudtrail,
            &format!("e{i}"),
            "role/a",
            T0 + i * HOUR,
            "s3:GetObject",
        ));
    }
    assert!(!batch.add_event(&event(Source::Cloudtrail, "e1", "role/a", T0, "x:Y")));
    let receipt = store.append(&mut batch).unwrap();
    assert_eq!(receipt.batch, None);
    assert_eq!(receipt.duplicates.events, 101);
    assert_eq!(
        receipt.events_held,
        vec![true; 100],
        "one flag per event taken"
    );
    assert_eq!(store.head().unwrap(), Some(head));
    assert_eq!(store.identity("role/a").unwrap().unwrap().events, 100);

    // An event without a time of its own is read at a different time each run; its key alone
    // finds it again.
    let mut undated = event(Source::Jsonl, "sha:00ff", "svc/x", T0, "app:Sync");
    undated.time_inferred = true;
    // A batch mixing a new event with one already held says which is which.
    batch.add_event(&undated);
    batch.add_event(&event(
        Source::Cloudtrail,
        "e7",
        "role/a",
        T0 + 7 * HOUR,
        "s3:GetObject",
    ));
    let receipt = store.append(&mut batch).unwrap();
    assert_eq!(receipt.stored.events, 1);
    assert_eq!(receipt.events_held, [false, true]);
    undated.time = Timestamp(T0 + DAY);
    batch.add_event(&undated);
    assert_eq!(store.append(&mut batch).unwrap().duplicates.events, 1);
}

#[test]
fn equal_ids_from_different_sources_are_different_events() {
    let (_dir, store) = filled();
    let mut batch = Batch::new();
    batch.add_event(&event(Source::K8sAudit, "e1", "sa/x", T0, "k8s:get/pods"));
    let receipt = store.append(&mut batch).unwrap();
    assert_eq!(receipt.stored.events, 1);
    let found = |identity| {
        store
            .find_events(identity, &["e1"], Timestamp(T0 + DAY), DAY)
            .unwrap()
    };
    assert_eq!(found("sa/x")[0].source, Source::K8sAudit);
    assert_eq!(found("role/a")[0].source, Source::Cloudtrail);
}

#[test]
fn profiles_keep_their_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut batch = Batch::new();
    for (time, data) in [(T0, b"v1".to_vec()), (T0 + DAY, b"v2".to_vec())] {
        batch.add_profile(&Profile {
            identity: "role/a".into(),
            time: Timestamp(time),
            version: 3,
            data,
        });
    }
    store.append(&mut batch).unwrap();
    let profile = store.profile("role/a").unwrap().unwrap();
    assert_eq!((profile.version, profile.data), (3, b"v2".to_vec()));
    assert_eq!(store.profile("role/b").unwrap(), None);
    assert!(
        store.identities().unwrap().is_empty(),
        "a profile alone does not make an identity seen"
    );
}

#[test]
fn a_fresh_chain_verifies_and_anchors_its_heads() {
    let (_dir, store) = filled();
    let first = store.batch(0).unwrap().unwrap();
    let report = store.verify(Some(first.hash)).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.batches, 2);
    assert_eq!(report.items.events, 101);
    assert_eq!(report.items.findings, 1);
    assert_eq!(report.anchor, Some(0));
    let report = store.verify(Some(Hash([7; 32]))).unwrap();
    let problem = report.problem.unwrap();
    assert_eq!(problem.batch, None);
    assert!(problem.what.contains("no batch has the expected head"));
}

/// Replaces one stored value through a raw redb handle, as someone with write access could.
fn alter_event(store: &Store, identity: &str, nth: usize, change: impl Fn(&mut Vec<u8>)) -> u64 {
    let crate::store::Handle::Writer(db) = &store.db else {
        panic!("writer expected")
    };
    let txn = db.begin_write().unwrap();
    let batch;
    {
        let no = txn
            .open_table(IDENTITY_NO)
            .unwrap()
            .get(identity)
            .unwrap()
            .unwrap()
            .value();
        let mut items = txn.open_table(Content::Events.items()).unwrap();
        let (key, mut value) = {
            let (k, v) = items
                .range((no, i64::MIN, [0; 16])..(no, i64::MAX, [0; 16]))
                .unwrap()
                .nth(nth)
                .unwrap()
                .unwrap();
            (k.value(), v.value().to_vec())
        };
        change(&mut value);
        items.insert(key, value.as_slice()).unwrap();
        let loc = txn.open_table(Content::Events.loc()).unwrap();
        batch = loc
            .range::<(u64, u32)>(..)
            .unwrap()
            .map(|entry| entry.unwrap())
            .find(|(_, at)| at.value() == key)
            .map(|(place, _)| place.value().0)
            .unwrap();
    }
    txn.commit().unwrap();
    batch
}

#[test]
fn an_altered_event_fails_verify_naming_its_batch() {
    let (_dir, store) = filled();
    // Event 61 of role/a is in batch 1; change one byte of its action.
    let batch = alter_event(&store, "role/a", 61, |value| {
        let at = value
            .windows(12)
            .position(|w| w == b"s3:GetObject")
            .unwrap();
        value[at + 3] = b'P';
    });
    assert_eq!(batch, 1);
    let problem = store.verify(None).unwrap().problem.unwrap();
    assert_eq!(problem.batch, Some(1), "{problem}");
    assert!(problem.what.contains("events were altered"), "{problem}");
    assert_eq!(
        problem.time_range,
        Some((Timestamp(T0 + 50 * HOUR), Timestamp(T0 + 99 * HOUR)))
    );
    // The writer refuses to append to a chain whose end does not verify.
    drop(store);
    let dir = _dir;
    match Store::open(dir.path(), Options::default()) {
        Err(StoreError::Broken(problem)) => assert_eq!(problem.batch, Some(1)),
        Err(err) => panic!("unexpected error {err}"),
        Ok(_) => panic!("a broken chain was opened for appending"),
    }
}

#[test]
fn an_unreadable_event_fails_verify_too() {
    let (_dir, store) = filled();
    alter_event(&store, "role/a", 3, |value| value.truncate(5));
    let problem = store.verify(None).unwrap().problem.unwrap();
    assert_eq!(problem.batch, Some(0));
    assert!(problem.what.contains("cannot be read"), "{problem}");
}

#[test]
fn a_removed_or_rewritten_batch_is_named() {
    let (_dir, store) = filled();
    let mut batch = Batch::new();
    batch.add_event(&event(Source::Otel, "x", "agent/1", T0, "tool:search"));
    store.append(&mut batch).unwrap();
    let crate::store::Handle::Writer(db) = &store.db else {
        panic!()
    };
    // Rewrite batch 1's header consistently (new committed_at, recomputed hash): batch 2 no
    // longer links to it.
    let txn = db.begin_write().unwrap();
    {
        let mut batches = txn.open_table(BATCHES).unwrap();
        let header = BatchHeader::decode(batches.get(1).unwrap().unwrap().value()).unwrap();
        let forged = BatchHeader::new(1, Timestamp(5), header.prev, header.sections);
        batches.insert(1, forged.encode().as_slice()).unwrap();
    }
    txn.commit().unwrap();
    let problem = store.verify(None).unwrap().problem.unwrap();
    assert_eq!(problem.batch, Some(1), "{problem}");
    assert!(problem.what.contains("altered or replaced"), "{problem}");

    let txn = db.begin_write().unwrap();
    txn.open_table(BATCHES).unwrap().remove(1).unwrap();
    txn.commit().unwrap();
    let problem = store.verify(None).unwrap().problem.unwrap();
    assert_eq!(problem.batch, Some(1), "{problem}");
    assert!(problem.what.starts_with("missing"), "{problem}");
}

#[test]
fn a_truncated_tail_is_missing_unless_the_head_was_rewritten_too() {
    let (_dir, store) = filled();
    let head = store.head().unwrap().unwrap();
    let crate::store::Handle::Writer(db) = &store.db else {
        panic!()
    };
    let txn = db.begin_write().unwrap();
    txn.open_table(BATCHES).unwrap().remove(1).unwrap();
    txn.commit().unwrap();
    let problem = store.verify(None).unwrap().problem.unwrap();
    assert_eq!(problem.batch, Some(1), "{problem}");

    // Rewrite the head too, and delete the items: only the anchored head catches it.
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(crate::tables::META).unwrap();
        let first = BatchHeader::decode(
            txn.open_table(BATCHES)
                .unwrap()
                .get(0)
                .unwrap()
                .unwrap()
                .value(),
        )
        .unwrap();
        meta.insert(
            crate::tables::HEAD_KEY,
            crate::tables::encode_head(0, &first.hash).as_slice(),
        )
        .unwrap();
        for content in Content::ALL {
            let mut loc = txn.open_table(content.loc()).unwrap();
            let mut items = txn.open_table(content.items()).unwrap();
            let doomed: Vec<_> = loc
                .range((1, 0)..(2, 0))
                .unwrap()
                .map(|entry| entry.unwrap().1.value())
                .collect();
            loc.retain(|(batch, _), _| batch != 1).unwrap();
            for key in doomed {
                items.remove(key).unwrap();
            }
        }
    }
    txn.commit().unwrap();
    assert!(store.verify(None).unwrap().ok());
    let report = store.verify(Some(head.hash)).unwrap();
    assert!(report.problem.unwrap().what.contains("expected head"));
}

#[test]
fn retention_prunes_old_batches_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        events: Some(2 * DAY),
        findings: Some(10 * DAY),
    };
    let store = Store::open(dir.path(), Options { retention }).unwrap();
    let mut batch = Batch::new();
    for day in 0..5 {
        for i in 0..20 {
            batch.add_event(&event(
                Source::Cloudtrail,
                &format!("d{day}-{i}"),
                "role/a",
                T0 + day * DAY + i * HOUR,
                "s3:GetObject",
            ));
        }
        batch
            .add_finding(&finding(
                "role/a",
                FindingKind::Enumeration,
                T0 + day * DAY,
                50,
                &format!("d{day}-0"),
            ))
            .unwrap();
        store.append(&mut batch).unwrap();
    }
    // The present is the newest event (day 4, 19:00); the cutoff two days before it.
    let now = Timestamp::now();
    let mut removed = 0;
    loop {
        let step = store.compact_step(now, 7).unwrap();
        removed += step.removed;
        if !step.more && step.removed == 0 {
            break;
        }
    }
    assert_eq!(removed, 40, "days 0 and 1 end before day 2, 19:00");
    let left = store
        .events("role/a", Timestamp(i64::MIN), Timestamp(i64::MAX), false)
        .unwrap();
    assert_eq!(left.len(), 60);
    assert_eq!(store.findings(&FindingQuery::default()).unwrap().len(), 5);
    let report = store.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.pruned.events, 40);
    assert_eq!(report.items.events, 60);

    // Expired events are not stored again; recent ones are duplicates.
    batch.add_event(&event(
        Source::Cloudtrail,
        "d0-0",
        "role/a",
        T0,
        "s3:GetObject",
    ));
    batch.add_event(&event(
        Source::Cloudtrail,
        "d4-0",
        "role/a",
        T0 + 4 * DAY,
        "s3:GetObject",
    ));
    let receipt = store.append(&mut batch).unwrap();
    assert_eq!((receipt.expired.events, receipt.duplicates.events), (1, 1));
    assert_eq!(receipt.batch, None);
}

#[test]
fn readers_share_the_store_with_a_writer() {
    let (dir, store) = filled();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.identities().unwrap().len(), 2);
    let mut batch = Batch::new();
    batch.add_event(&event(Source::Otel, "new", "agent/1", T0, "tool:search"));
    store.append(&mut batch).unwrap();
    assert_eq!(reader.identities().unwrap().len(), 3);
    assert!(reader.verify(None).unwrap().ok());
    batch.add_event(&event(Source::Otel, "new2", "agent/1", T0, "tool:search"));
    assert!(matches!(
        reader.append(&mut batch),
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(StoreError::Busy(_))
    ));
    assert!(matches!(
        Store::open_read_only(&dir.path().join("nothing")),
        Err(StoreError::Missing(_))
    ));
}

#[test]
fn reopening_keeps_everything() {
    let (dir, store) = filled();
    let head = store.head().unwrap();
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.head().unwrap(), head);
    assert_eq!(store.identities().unwrap().len(), 2);
}

#[test]
fn compaction_runs_beside_appends() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        events: Some(DAY),
        findings: None,
    };
    let store = Store::open(dir.path(), Options { retention }).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let removed = std::thread::scope(|scope| {
        let compactor = scope.spawn(|| {
            let mut removed = 0;
            loop {
                // Read before the step, so the last step sees every append.
                let finishing = done.load(std::sync::atomic::Ordering::Relaxed);
                let step = store.compact_step(Timestamp::now(), 50).unwrap();
                removed += step.removed;
                if !step.more && finishing {
                    return removed;
                }
            }
        });
        let mut batch = Batch::new();
        for hour in 0..96 {
            for i in 0..25 {
                batch.add_event(&event(
                    Source::Cloudtrail,
                    &format!("h{hour}-{i}"),
                    "role/a",
                    T0 + hour * HOUR + i,
                    "s3:GetObject",
                ));
            }
            store.append(&mut batch).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        compactor.join().unwrap()
    });
    // Hours 0..=70 end before the cutoff (hour 95 minus a day); some were expired on append
    // rather than removed, but together they are gone.
    let left = store
        .events("role/a", Timestamp(i64::MIN), Timestamp(i64::MAX), false)
        .unwrap();
    assert!(left.iter().all(|e| e.time.0 >= T0 + 71 * HOUR), "{removed}");
    assert_eq!(left.len(), 25 * 25);
    let report = store.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.pruned.events, removed);
}

#[test]
fn an_item_added_outside_the_chain_fails_verify() {
    let (_dir, store) = filled();
    let crate::store::Handle::Writer(db) = &store.db else {
        panic!()
    };
    let mut value = Vec::new();
    crate::codec::encode_event(
        &event(Source::Cloudtrail, "forged", "role/b", T0, "iam:CreateUser"),
        &mut crate::codec::Deflater::new(),
        &mut value,
    );
    let txn = db.begin_write().unwrap();
    txn.open_table(Content::Events.items())
        .unwrap()
        .insert((1, T0, [9; 16]), value.as_slice())
        .unwrap();
    txn.commit().unwrap();
    let problem = store.verify(None).unwrap().problem.unwrap();
    assert!(problem.what.contains("outside the chain"), "{problem}");
}
