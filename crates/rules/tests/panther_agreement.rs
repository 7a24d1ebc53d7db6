//! Agreement with Panther's own rule tests (`../shared/corpus/rule_tests`).
//!
//! `tests/panther/<RuleId>.yml` rewrites Panther rules whose logic is a pure field match (AWS
//! CloudTrail, EKS audit, GitHub audit) as Sigma. Each is evaluated on the raw test events of
//! its Panther rule and its verdict compared with the test's `expected_result`. Every
//! disagreement must be listed in `EXPLAINED` with the reason; the test fails on any other, and
//! on an explained one that no longer happens.
//!
//! Panther's Kubernetes rules also run on AKS (`Azure.MonitorActivity`, the audit event nested
//! as a JSON string) and GKE (`GCP.AuditLog`) records, and their tests in the EKS file include
//! such records. nhiwatch's `k8s_audit` source is the Kubernetes audit event itself, so only
//! test events in the file's own format (`p_log_type` absent or equal to the file's) count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nhiwatch_model::Source;
use nhiwatch_rules::{LoadOptions, RuleSet, Subject};

/// (rule id, test name): why the Sigma rewrite and Panther disagree.
const EXPLAINED: &[(&str, &str, &str)] = &[
    (
        "AWS.IPSet.Modified",
        "CreateIPSet Event",
        "the test event spells its keys in lower case (`eventname`, `eventsource`), which Panther's \
         CloudTrail schema normalises; Sigma field names are case-sensitive, so `eventName` is absent",
    ),
    (
        "AWS.IPSet.Modified",
        "UpdateIPSet",
        "the test event spells its keys in lower case (`eventname`, `eventsource`), which Panther's \
         CloudTrail schema normalises; Sigma field names are case-sensitive, so `eventName` is absent",
    ),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/rule_tests")
}

struct Case {
    rule_id: String,
    test_name: String,
    expected: bool,
    source: Source,
    log: String,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (file, log_type, source) in [
        (
            "panther_rule_tests.AWS.CloudTrail.jsonl",
            "AWS.CloudTrail",
            Source::Cloudtrail,
        ),
        (
            "panther_rule_tests.Amazon.EKS.Audit.jsonl",
            "Amazon.EKS.Audit",
            Source::K8sAudit,
        ),
        (
            "panther_rule_tests.GitHub.Audit.jsonl",
            "GitHub.Audit",
            Source::GithubAudit,
        ),
    ] {
        let path = corpus().join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            if value["log"]["p_log_type"]
                .as_str()
                .is_some_and(|t| t != log_type)
            {
                continue;
            }
            out.push(Case {
                rule_id: value["rule_id"].as_str().expect("rule_id").to_owned(),
                test_name: value["test_name"].as_str().expect("test_name").to_owned(),
                expected: value["expected_result"].as_bool().expect("expected_result"),
                source,
                log: value["log"].to_string(),
            });
        }
    }
    out
}

#[test]
fn sigma_rewrites_agree_with_panther_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/panther");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/panther")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let cases = cases();
    let mut per_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for file in &files {
        let rule_id = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a file name")
            .to_owned();
        let set = RuleSet::load(&[file], &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.len(), 1, "{rule_id}: one rule per file");
        let mine: Vec<&Case> = cases.iter().filter(|c| c.rule_id == rule_id).collect();
        assert!(
            !mine.is_empty(),
            "{rule_id}: no Panther tests in the corpus"
        );
        let tally = per_rule.entry(rule_id.clone()).or_default();
        for case in mine {
            let fired = !set
                .matching(&Subject::raw(case.source, &case.log))
                .is_empty();
            tally.1 += 1;
            if fired == case.expected {
                tally.0 += 1;
            } else {
                disagreements.push((rule_id.clone(), case.test_name.clone(), case.expected));
            }
        }
    }
    let (agree, total) = per_rule
        .values()
        .fold((0, 0), |(a, t), (x, y)| (a + x, t + y));
    println!(
        "Panther agreement: {agree}/{total} test events ({:.1}%) over {} rules",
        100.0 * agree as f64 / total as f64,
        per_rule.len()
    );
    for (rule, (a, t)) in &per_rule {
        println!("  {rule:<55} {a}/{t}");
    }
    assert!(per_rule.len() >= 30, "{} rules rewritten", per_rule.len());
    let unexplained: Vec<_> = disagreements
        .iter()
        .filter(|(r, t, _)| !EXPLAINED.iter().any(|(er, et, _)| er == r && et == t))
        .collect();
    assert!(
        unexplained.is_empty(),
        "unexplained disagreements (rule, test, Panther's expectation): {unexplained:#?}"
    );
    let stale: Vec<_> = EXPLAINED
        .iter()
        .filter(|(er, et, _)| !disagreements.iter().any(|(r, t, _)| er == r && et == t))
        .collect();
    assert!(
        stale.is_empty(),
        "explained disagreements that no longer happen: {stale:#?}"
    );
    for (rule, test, why) in EXPLAINED {
        println!("  disagreement {rule} / {test}: {why}");
    }
}
