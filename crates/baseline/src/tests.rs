//! Learning, merging and persistence, end to end; merge laws as properties.

use std::borrow::Cow;

use nhiwatch_model::{ActionClass, Event, Identity, IdentityKind, Outcome, Source, Timestamp};
use proptest::prelude::*;
use serde_json::value::RawValue;

use crate::{Baseline, BaselineError, Feature, Learner, Profile, FORMAT_VERSION};

const SECOND: i64 = 1_000_000_000;
/// 2026-03-02T00:00:00Z, a Monday.
const MONDAY: i64 = 1_772_409_600 * SECOND;

/// A compact description of a test event.
#[derive(Clone, Debug)]
struct Spec {
    identity: u8,
    minute: u32,
    action: u8,
    resource: u8,
    ip: u8,
    bytes: u32,
    denied: bool,
}

fn event(spec: &Spec, raw: &RawValue) -> Event<'static> {
    const ACTIONS: [&str; 6] = [
        "s3:GetObject",
        "s3:ListObjects",
        "sts:GetCallerIdentity",
        "ecr:PutImage",
        "iam:ListRoles",
        "k8s:get/configmaps",
    ];
    Event {
        id: Cow::Owned(format!("e{}", spec.minute)),
        time: Timestamp(MONDAY + i64::from(spec.minute) * 60 * SECOND),
        time_inferred: false,
        source: Source::Cloudtrail,
        identity: Identity {
            id: Cow::Owned(format!("arn:aws:iam::1:role/worker-{}", spec.identity % 3)),
            kind: IdentityKind::Role,
            session: Some(Cow::Owned(format!("s{}", spec.minute / 120))),
            credential: None,
        },
        action: Cow::Borrowed(ACTIONS[usize::from(spec.action) % ACTIONS.len()]),
        action_class: ActionClass::Read,
        resource: Some(Cow::Owned(format!(
            "arn:aws:s3:::bucket-{}/daily/part-{}.parquet",
            spec.resource % 4,
            spec.minute
        ))),
        outcome: if spec.denied {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        error: None,
        src_ip: Some(Cow::Owned(format!("10.0.{}.9", spec.ip % 5))),
        user_agent: Some(Cow::Borrowed("Boto3/1.34.69 os/linux")),
        bytes_out: Some(u64::from(spec.bytes)),
        records: None,
        raw: Cow::Owned(raw.to_owned()),
    }
}

fn raw() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("JSON")
}

/// Learns `specs` (sorted by time, as one shard of a stream would be).
fn learn(specs: &[Spec]) -> Baseline {
    let raw = raw();
    let mut sorted = specs.to_vec();
    sorted.sort_by_key(|s| s.minute);
    let mut learner = Learner::new();
    for spec in &sorted {
        learner.observe(&event(spec, &raw));
    }
    learner.finish()
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<u8>(),
        0u32..(14 * 24 * 60),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        0u32..5_000_000,
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(identity, minute, action, resource, ip, bytes, denied)| Spec {
                identity,
                minute,
                action,
                resource,
                ip,
                bytes,
                denied,
            },
        )
}

/// The parts of a profile that merge exactly whatever the split (windows and sessions cut at
/// a shard boundary differ, so rates and transitions are compared separately).
fn exact_parts(profile: &Profile) -> impl PartialEq + std::fmt::Debug {
    (
        profile.first_seen,
        profile.last_seen,
        profile.events,
        profile.denied,
        profile.days.clone(),
        profile.actions.clone(),
        profile.containers.clone(),
        profile.shapes.clone(),
        profile.networks.clone(),
        profile.agents.clone(),
        profile.hours.clone(),
    )
}

fn merged(parts: &[&Baseline]) -> Baseline {
    let mut all = Baseline::new();
    for part in parts {
        all.merge(part);
    }
    all
}

fn assert_same(a: &Baseline, b: &Baseline) {
    assert_eq!(a.len(), b.len());
    for (id, profile) in a.iter() {
        let other = b.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(profile, other, "{id}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn merge_is_commutative_and_associative(
        a in proptest::collection::vec(spec(), 0..120),
        b in proptest::collection::vec(spec(), 0..120),
        c in proptest::collection::vec(spec(), 0..120),
    ) {
        let (a, b, c) = (learn(&a), learn(&b), learn(&c));
        assert_same(&merged(&[&a, &b]), &merged(&[&b, &a]));
        let mut ab = merged(&[&a, &b]);
        ab.merge(&c);
        let bc = merged(&[&b, &c]);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        assert_same(&ab, &a_bc);
    }

    #[test]
    fn merging_shards_gives_the_profile_of_the_union(
        events in proptest::collection::vec(spec(), 1..300),
        split in any::<prop::sample::Index>(),
    ) {
        // Split by identity-independent position: disjoint event sets.
        let at = split.index(events.len());
        let (left, right) = events.split_at(at);
        let whole = learn(&events);
        let shards = merged(&[&learn(left), &learn(right)]);
        prop_assert_eq!(whole.len(), shards.len());
        for (id, profile) in whole.iter() {
            let other = shards.get(id).expect("identity present");
            prop_assert_eq!(exact_parts(profile), exact_parts(other), "{}", id);
        }
    }

    #[test]
    fn persistence_round_trips(events in proptest::collection::vec(spec(), 0..200)) {
        let baseline = learn(&events);
        let bytes = baseline.to_bytes().expect("encodes");
        let back = Baseline::from_bytes(&bytes, "mem").expect("decodes");
        assert_same(&baseline, &back);
        prop_assert_eq!(back.to_bytes().expect("encodes"), bytes);
    }
}

#[test]
fn count_maps_past_capacity_keep_heavy_keys_whatever_the_merge_order() {
    use crate::sketch::CountMap;
    let shard = |offset: u64| {
        let mut map = CountMap::default();
        for key in 0..40u64 {
            map.add(1_000 + offset * 100 + key, 1, 16);
        }
        map.add(7, 500, 16);
        map
    };
    let (a, b, c) = (shard(0), shard(1), shard(2));
    let mut ab_c = a.clone();
    ab_c.merge(&b, 16);
    ab_c.merge(&c, 16);
    let mut a_bc = b.clone();
    a_bc.merge(&c, 16);
    a_bc.merge(&a, 16);
    for map in [&ab_c, &a_bc] {
        let count = u64::from(map.get(7).expect("the heavy key survives"));
        assert!((1_500..=1_500 + map.evicted()).contains(&count), "{count}");
    }
    assert_eq!(ab_c.len(), 16);
    assert_eq!(ab_c.total() + ab_c.evicted(), a_bc.total() + a_bc.evicted());
}

#[test]
fn a_learned_profile_knows_its_habits() {
    let specs: Vec<Spec> = (0..2_000u32)
        .map(|n| Spec {
            identity: 0,
            minute: n * 7,
            action: (n % 2) as u8,
            resource: 1,
            ip: 2,
            bytes: 1_000,
            denied: n % 50 == 0,
        })
        .collect();
    let baseline = learn(&specs);
    let profile = baseline
        .get("arn:aws:iam::1:role/worker-0")
        .expect("learned");
    assert!(profile.is_mature());
    assert_eq!(profile.events, 2_000);
    assert!((profile.denied_ratio() - 0.02).abs() < 1e-9);
    let get = crate::hash::key("s3:GetObject");
    assert!(profile.knows(Feature::Action, get));
    assert!(!profile.knows(Feature::Action, crate::hash::key("iam:ListRoles")));
    assert_eq!(baseline.action_name(get), Some("s3:GetObject"));
    assert!(profile.novelty_rate(Feature::Action) < 0.01);
    let (p, count, row) = profile.transition(get, crate::hash::key("s3:ListObjects"));
    assert!(p > 0.9, "{p} {count} {row}");
    // 2 events every 14 minutes: a 15-minute window holds 2 or 3.
    let median = profile.rate.quantile(0.5).expect("windows");
    assert!((2..=3).contains(&median), "{median}");
}

#[test]
fn memory_per_identity_stays_bounded_however_busy() {
    let raw = raw();
    let mut learner = Learner::new();
    // One identity doing everything: 20,000 events over many actions, resources and origins.
    for n in 0..20_000u32 {
        let mut e = event(
            &Spec {
                identity: 0,
                minute: n,
                action: 0,
                resource: 0,
                ip: 0,
                bytes: n,
                denied: false,
            },
            &raw,
        );
        e.action = Cow::Owned(format!("svc{}:Op{}", n % 300, n % 7));
        e.resource = Some(Cow::Owned(format!(
            "res-{}/x{}/y",
            n % 997,
            ["a", "b", "c"][n as usize % 3]
        )));
        e.src_ip = Some(Cow::Owned(format!("10.{}.{}.1", n % 250, n % 13)));
        e.user_agent = Some(Cow::Owned(format!("tool{}/1.0", n % 40)));
        learner.observe(&e);
    }
    let baseline = learner.finish();
    let bytes = baseline.profile_bytes();
    assert!(bytes <= 16 * 1024, "{bytes} bytes for the busiest identity");
}

#[test]
fn a_file_from_another_version_is_refused_clearly() {
    let mut bytes = learn(&[]).to_bytes().expect("encodes");
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Baseline::from_bytes(&bytes, "old.nhib").unwrap_err();
    assert!(matches!(err, BaselineError::Version { found, .. } if found == FORMAT_VERSION + 1));
    let text = err.to_string();
    assert!(
        text.contains("old.nhib") && text.contains("version 2") && text.contains("nhiwatch learn"),
        "{text}"
    );
}

#[test]
fn corrupted_or_foreign_files_are_refused_clearly() {
    let specs: Vec<Spec> = (0..50u32)
        .map(|n| Spec {
            identity: 1,
            minute: n,
            action: 1,
            resource: 1,
            ip: 1,
            bytes: 1,
            denied: false,
        })
        .collect();
    let bytes = learn(&specs).to_bytes().expect("encodes");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    let err = Baseline::from_bytes(&flipped, "b.nhib")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("b.nhib") && err.contains("corrupted") && err.contains("checksum"),
        "{err}"
    );
    let err = Baseline::from_bytes(&bytes[..bytes.len() - 10], "b.nhib")
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let err = Baseline::from_bytes(b"{\"not\": \"a baseline\"}", "x.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.json: not an nhiwatch baseline"), "{err}");
}

#[test]
fn save_and_load_through_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.nhib");
    let specs: Vec<Spec> = (0..500u32)
        .map(|n| Spec {
            identity: (n % 3) as u8,
            minute: n * 3,
            action: (n % 4) as u8,
            resource: (n % 2) as u8,
            ip: 0,
            bytes: n,
            denied: false,
        })
        .collect();
    let baseline = learn(&specs);
    let size = baseline.save(&path).expect("saves");
    assert_eq!(size, std::fs::metadata(&path).expect("written").len());
    let back = Baseline::load(&path).expect("loads");
    assert_same(&baseline, &back);
    let missing = Baseline::load(&dir.path().join("none.nhib"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("none.nhib"), "{missing}");
}

#[test]
fn peers_merge_members_of_a_group() {
    let raw = raw();
    let mut learner = Learner::new();
    for (n, id) in ["role/key-rotation-a", "role/key-rotation-b", "role/loner"]
        .iter()
        .enumerate()
    {
        let mut e = event(
            &Spec {
                identity: 0,
                minute: n as u32,
                action: n as u8,
                resource: 0,
                ip: 0,
                bytes: 0,
                denied: false,
            },
            &raw,
        );
        e.identity.id = Cow::Owned(format!("arn:aws:iam::1:{id}"));
        learner.observe(&e);
    }
    let peers = learner.finish().peers();
    assert_eq!(peers.len(), 1, "a group needs two members");
    let slot = peers.find("name:key-rotation").expect("group");
    let (_, profile, members) = peers.get(slot);
    assert_eq!((profile.events, members), (2, 2));
}

#[test]
fn an_atomic_write_replaces_the_file_and_leaves_nothing_beside_it() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("b.bin");
    crate::write_atomically(&path, b"first").expect("written");
    crate::write_atomically(&path, b"second").expect("replaced");
    assert_eq!(std::fs::read(&path).expect("read back"), b"second");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listed")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(names, ["b.bin"]);
    assert!(crate::write_atomically(&dir.path().join("no/such/folder/b.bin"), b"x").is_err());
    let err = Baseline::default()
        .save(&dir.path().join("none/b.bin"))
        .expect_err("no such folder");
    assert!(err.to_string().contains("none/b.bin"), "{err}");
}
