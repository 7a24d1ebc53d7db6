//! Rule evaluation cost per event with 500 loaded rules.
//!
//! The rules: the ones shipped in `rules/`, the Panther rewrites in `tests/panther/`, and
//! generated Sigma rules in the shape SigmaHQ's cloud rules take (an `eventSource` and
//! `eventName`, a Kubernetes `verb` and resource, a GitHub `action`, each with one more field
//! condition), up to 500 in all.
//!
//! Two streams of events, decoded once beforehand (only evaluation is timed:
//! `Evaluator::process` on each event — index lookup, candidate rules, correlation and sequence
//! state; criterion reports events/s):
//!
//! - `fleet`: a simulated fleet's telemetry (`nhiwatch-sim`: CloudTrail, Kubernetes audit,
//!   GitHub audit and agent traces of 60 identities over 3 days, attacks included) — a typical
//!   stream, where most events match no rule;
//! - `panther`: the real CloudTrail records of the corpus and every CloudTrail, EKS audit and
//!   GitHub audit test event of the Panther corpus — an adversarial stream, each event written
//!   to exercise a rule.
//!
//! A second run adds five rules no key field can index (substring searches of `userAgent`
//! and a keyword), which must be tried on every CloudTrail event: the cost of the raw record
//! being parsed for every event.
//!
//! Run with `cargo bench -p nhiwatch-rules --bench rules`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_model::{Event, Sym};
use nhiwatch_rules::{Evaluator, Hit, Lens, Limits, LoadOptions, Origin, RuleSet, Subject};
use nhiwatch_sim::{simulate, SimConfig, TELEMETRY_DIR};

const RULES: usize = 500;

const VERBS: [&str; 12] = [
    "Create", "Delete", "Update", "Put", "Get", "List", "Describe", "Modify", "Attach", "Detach",
    "Start", "Stop",
];
const NOUNS: [&str; 28] = [
    "Bucket",
    "Policy",
    "Role",
    "User",
    "AccessKey",
    "Instances",
    "Snapshot",
    "Trail",
    "Detector",
    "Function",
    "Secret",
    "Parameter",
    "Cluster",
    "Table",
    "Queue",
    "Topic",
    "Stream",
    "Alias",
    "Grant",
    "Image",
    "Volume",
    "Vpc",
    "Subnet",
    "Route",
    "Object",
    "LoginProfile",
    "Key",
    "Group",
];
const SERVICES: [&str; 8] = [
    "iam",
    "s3",
    "ec2",
    "kms",
    "lambda",
    "rds",
    "sts",
    "cloudtrail",
];
const K8S_VERBS: [&str; 7] = [
    "create", "update", "patch", "delete", "get", "list", "watch",
];
const K8S_RESOURCES: [&str; 12] = [
    "pods",
    "secrets",
    "configmaps",
    "deployments",
    "daemonsets",
    "services",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "serviceaccounts",
    "cronjobs",
];
const GH_ACTIONS: [&str; 9] = [
    "repo",
    "org",
    "team",
    "hook",
    "protected_branch",
    "integration_installation",
    "public_key",
    "oauth_application",
    "workflows",
];
const GH_OPS: [&str; 6] = [
    "create",
    "destroy",
    "update",
    "add_member",
    "remove_member",
    "access",
];

/// A generated rule: its YAML document.
fn generated(i: usize) -> String {
    let head = format!(
        "title: generated {i}\nid: generated-{i}\nlevel: medium\ntags: [attack.t1078.004]\n"
    );
    let body = match i % 10 {
        // CloudTrail: 70 %.
        0..=6 => {
            let name = format!("{}{}", VERBS[i % VERBS.len()], NOUNS[(i / VERBS.len()) % NOUNS.len()]);
            let service = SERVICES[i % SERVICES.len()];
            format!(
                "logsource: {{product: aws, service: cloudtrail}}\ndetection:\n    selection:\n        eventSource: {service}.amazonaws.com\n        eventName: {name}\n        requestParameters.name|contains: suspicious-{i}\n    filter:\n        userIdentity.type: AWSService\n    condition: selection and not filter\n"
            )
        }
        // Kubernetes audit: 20 %.
        7 | 8 => format!(
            "logsource: {{product: kubernetes, service: audit}}\ndetection:\n    selection:\n        verb: {}\n        objectRef.resource: {}\n        objectRef.namespace|startswith: team-{i}\n    condition: selection\n",
            K8S_VERBS[i % K8S_VERBS.len()],
            K8S_RESOURCES[(i / K8S_VERBS.len()) % K8S_RESOURCES.len()]
        ),
        // GitHub audit: 10 %.
        _ => format!(
            "logsource: {{product: github, service: audit}}\ndetection:\n    selection:\n        action: {}.{}\n        repo|endswith: '/secret-{i}'\n    condition: selection\n",
            GH_ACTIONS[i % GH_ACTIONS.len()],
            GH_OPS[(i / GH_ACTIONS.len()) % GH_OPS.len()]
        ),
    };
    head + &body
}

/// Rules no key field indexes.
const UNINDEXED: &str = "
title: scanner user agent
id: u1
logsource: {product: aws, service: cloudtrail}
detection: {s: {userAgent|contains: [nmap, sqlmap, nikto]}, condition: s}
---
title: kali
id: u2
logsource: {product: aws, service: cloudtrail}
detection: {s: {userAgent|contains: kali}, condition: s}
---
title: pacu
id: u3
logsource: {product: aws, service: cloudtrail}
detection: {s: {userAgent|re: '(?i)pacu|cloudgoat'}, condition: s}
---
title: tor exit
id: u4
logsource: {product: aws, service: cloudtrail}
detection: {s: {sourceIPAddress|cidr: [185.220.100.0/22, 45.153.160.0/24]}, condition: s}
---
title: keyword
id: u5
logsource: {product: aws, service: cloudtrail}
detection: {keywords: [ctf-flag-], condition: keywords}
";

fn rule_set(extra: &str) -> Arc<RuleSet> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<(String, String)> = Vec::new();
    for dir in ["rules", "tests/panther"] {
        let mut files = Vec::new();
        collect(&root.join(dir), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a rule file");
            texts.push((file.display().to_string(), text));
        }
    }
    let loaded = RuleSet::compile(
        &texts
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        &LoadOptions::default(),
    )
    .expect("rules")
    .len();
    let generated: String = (0..RULES.saturating_sub(loaded))
        .map(|i| format!("---\n{}", generated(i)))
        .collect();
    texts.push(("generated.yml".into(), generated));
    texts.push(("unindexed.yml".into(), extra.to_owned()));
    let set = RuleSet::compile(
        &texts
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(set)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a directory") {
        let path = entry.expect("an entry").path();
        let name = path.to_string_lossy().to_string();
        if path.is_dir() {
            collect(&path, out);
        } else if name.ends_with(".yml") && !name.ends_with(".tests.yml") {
            out.push(path);
        }
    }
}

/// Decodes everything under `paths`, and the `log` of every line of `panther` files.
fn read(paths: &[std::path::PathBuf], panther: &[std::path::PathBuf]) -> Vec<Event<'static>> {
    let mut events = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut push = |event: Event<'_>| events.push(event.into_owned());
    let mut ignore = |_| {};
    let mut sinks = Sinks {
        event: &mut push,
        reject: &mut ignore,
    };
    for path in paths {
        reader.read_path(path, &mut sinks);
    }
    for file in panther {
        let text = std::fs::read_to_string(file).expect("the corpus");
        let logs: String = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["log"].to_string() + "\n")
            .collect();
        reader.read_bytes(&file.display().to_string(), logs.as_bytes(), &mut sinks);
    }
    reader.finish(&mut sinks);
    events
}

/// A simulated fleet's telemetry.
fn fleet() -> Vec<Event<'static>> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = SimConfig {
        identities: 60,
        days: 3,
        attack_after_days: 1,
        ..SimConfig::default()
    };
    simulate(&config, dir.path()).expect("the simulation");
    read(&[dir.path().join(TELEMETRY_DIR)], &[])
}

/// The corpus: real CloudTrail and Panther's rule test events.
fn panther() -> Vec<Event<'static>> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let tests = corpus.join("rule_tests");
    read(
        &[corpus.join("cloudtrail/ec2_proxy_s3_exfiltration.zip")],
        &[
            tests.join("panther_rule_tests.AWS.CloudTrail.jsonl"),
            tests.join("panther_rule_tests.Amazon.EKS.Audit.jsonl"),
            tests.join("panther_rule_tests.GitHub.Audit.jsonl"),
        ],
    )
}

fn bench(c: &mut Criterion) {
    let sets = [
        ("500_rules", rule_set("")),
        ("505_rules_5_unindexed", rule_set(UNINDEXED)),
    ];
    for (set_name, set) in &sets {
        eprintln!(
            "{set_name}: {} rules; index: {:?}",
            set.len(),
            set.index_summary()
        );
    }
    for (stream, events) in [("fleet", fleet()), ("panther", panther())] {
        let mut group = c.benchmark_group(format!("rules/{stream}"));
        group.throughput(Throughput::Elements(events.len() as u64));
        for (set_name, set) in &sets {
            let origin = Origin {
                identity: Sym(0),
                entry: None,
            };
            let mut eval = Evaluator::new(Arc::clone(set), Limits::default());
            let mut hits: Vec<Hit> = Vec::new();
            for event in &events {
                eval.process(&Subject::new(event, Lens::default()), origin, &mut hits);
            }
            eprintln!(
                "{stream}/{set_name}: {} events, {} hits in one pass",
                events.len(),
                hits.len()
            );
            group.bench_function(*set_name, |b| {
                b.iter(|| {
                    for event in &events {
                        eval.process(
                            &Subject::new(black_box(event), Lens::default()),
                            origin,
                            &mut hits,
                        );
                    }
                    hits.clear();
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
