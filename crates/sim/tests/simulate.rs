//! The simulator's output: deterministic, realistic where it matters, labelled truthfully, and
//! readable by nhiwatch's own decoders without a single reject.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_sim::{simulate, Scenario, SimConfig};

fn small() -> SimConfig {
    SimConfig {
        seed: 11,
        identities: 14,
        days: 7,
        attacks: Scenario::ALL.to_vec(),
        incidents_per_scenario: 1,
        attack_after_days: 5,
        ..SimConfig::default()
    }
}

/// Every file under `dir`, relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

struct Decoded {
    /// (identity, action, resource, hour of week, src_ip) per event id
    events: HashMap<String, (String, String, String, u8, String)>,
    order: Vec<String>,
    rejects: Vec<String>,
}

fn decode(dir: &Path) -> Decoded {
    let mut decoded = Decoded {
        events: HashMap::new(),
        order: Vec::new(),
        rejects: Vec::new(),
    };
    let mut reader = Reader::new(ReadOptions::default(), None);
    for folder in ["cloudtrail", "k8s", "github", "agents"] {
        let mut sinks = Sinks {
            event: &mut |e| {
                decoded.order.push(e.id.to_string());
                decoded.events.insert(
                    e.id.to_string(),
                    (
                        e.identity.id.to_string(),
                        e.action.to_string(),
                        e.resource.as_deref().unwrap_or("").to_owned(),
                        e.time.hour_of_week(),
                        e.src_ip.as_deref().unwrap_or("").to_owned(),
                    ),
                );
            },
            reject: &mut |r| decoded.rejects.push(r.to_string()),
        };
        reader.read_path(
            &dir.join(nhiwatch_sim::TELEMETRY_DIR).join(folder),
            &mut sinks,
        );
        reader.finish(&mut sinks);
    }
    decoded
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let config = SimConfig {
        identities: 12,
        days: 3,
        attack_after_days: 1,
        ..small()
    };
    simulate(&config, a.path()).unwrap();
    simulate(&config, b.path()).unwrap();
    simulate(&SimConfig { seed: 12, ..config }, c.path()).unwrap();
    let (ta, tb, tc) = (tree(a.path()), tree(b.path()), tree(c.path()));
    assert!(ta.len() > 10, "{} files", ta.len());
    assert_eq!(ta, tb, "the same seed writes the same bytes");
    assert_ne!(ta, tc, "another seed writes other data");
}

#[test]
fn output_decodes_without_rejects_and_labels_point_at_real_malicious_events() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = simulate(&small(), dir.path()).unwrap();
    let decoded = decode(dir.path());
    assert!(
        decoded.rejects.is_empty(),
        "rejects: {:?}",
        &decoded.rejects[..decoded.rejects.len().min(5)]
    );
    assert_eq!(
        decoded.events.len() as u64,
        manifest.events,
        "every written event decodes, once"
    );

    let labels: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("labels.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(labels.len(), Scenario::ALL.len());
    let mut scenarios = BTreeSet::new();
    for label in &labels {
        scenarios.insert(label["scenario"].as_str().unwrap().to_owned());
        let identity = label["identity"].as_str().unwrap();
        let ids = label["event_ids"].as_array().unwrap();
        assert!(ids.len() >= 4, "{label}");
        for id in ids {
            let (who, ..) = decoded
                .events
                .get(id.as_str().unwrap())
                .unwrap_or_else(|| panic!("label id {id} is not in the data"));
            assert_eq!(who, identity, "a label's events are its identity's");
        }
    }
    assert_eq!(scenarios.len(), Scenario::ALL.len());
    // The malicious events are a small part of the whole.
    assert!(
        manifest.benign_events * 20 > manifest.events * 19,
        "{manifest:?}"
    );
}

#[test]
fn behaviour_repeats_with_variation_skews_to_hours_and_drifts() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        attacks: Vec::new(),
        ..small()
    };
    simulate(&config, dir.path()).unwrap();
    let decoded = decode(dir.path());
    // Per identity: sequences of actions repeat (few distinct actions, many events) but not
    // identically (the distinct per-session sequences are more than one).
    let mut per_identity: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in &decoded.order {
        let (who, action, _, _, _) = &decoded.events[id];
        per_identity.entry(who).or_default().push(action);
    }
    assert_eq!(per_identity.len(), config.identities);
    // Rare automations (a weekly key rotation) act too seldom in a week to show repetition;
    // they must stay the exception.
    let busy = per_identity.values().filter(|a| a.len() >= 20).count();
    assert!(busy * 4 >= per_identity.len() * 3, "{busy} busy identities");
    for (who, actions) in per_identity.iter().filter(|(_, a)| a.len() >= 20) {
        let distinct: BTreeSet<_> = actions.iter().collect();
        assert!(
            actions.len() >= 10 * distinct.len().min(4),
            "{who} acts too little to repeat: {}",
            actions.len()
        );
        let windows: BTreeSet<_> = actions.windows(3).collect();
        assert!(windows.len() > 1, "{who} never varies");
    }
    // Hour-of-week skew: controllers list and watch around the clock, but pipelines, agents and
    // integrations keep office hours: many identities are busier per hour in weekday business
    // hours (Mon-Fri 09-18) than at night (00-06).
    let mut hours_of: BTreeMap<&str, [u64; 168]> = BTreeMap::new();
    for id in &decoded.order {
        let (who, _, _, hour, _) = &decoded.events[id];
        hours_of.entry(who).or_insert([0; 168])[*hour as usize] += 1;
    }
    let skewed = hours_of
        .values()
        .filter(|hours| {
            let business: u64 = (0..5)
                .flat_map(|d| (9..18).map(move |h| d * 24 + h))
                .map(|h| hours[h])
                .sum();
            let night: u64 = (0..7)
                .flat_map(|d| (0..6).map(move |h| d * 24 + h))
                .map(|h| hours[h])
                .sum();
            business as f64 / 45.0 > 2.0 * night as f64 / 42.0
        })
        .count();
    assert!(
        skewed * 3 >= hours_of.len(),
        "{skewed} of {} identities keep office hours",
        hours_of.len()
    );
    // Benign drift is present: some identity's action first appears after its first days.
    let first_seen_late = per_identity.values().any(|actions| {
        let early: BTreeSet<_> = actions[..actions.len() / 3].iter().collect();
        actions[actions.len() * 2 / 3..]
            .iter()
            .any(|a| !early.contains(a))
    });
    assert!(first_seen_late, "no identity drifts");
}

#[test]
fn an_attack_period_without_workdays_still_places_every_incident() {
    // Days 4-5 are the holiday Friday and a Saturday: no workday to move office-hours attacks
    // to. (This once looped forever.)
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        identities: 8,
        days: 6,
        attack_after_days: 4,
        ..SimConfig::default()
    };
    let manifest = simulate(&config, dir.path()).unwrap();
    assert!(manifest.incidents > 0);
}
