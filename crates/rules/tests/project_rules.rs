//! The rules shipped with nhiwatch (`crates/rules/rules`), each against the example events kept
//! next to it, through the same decode-and-detect path as `nhiwatch detect`.

use std::path::Path;

use nhiwatch_rules::{run_tests, LoadOptions, RuleSet};

fn rules_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

#[test]
fn every_shipped_rule_passes_its_examples() {
    let report =
        run_tests(&[rules_dir()], &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let failures: Vec<String> = report
        .cases
        .iter()
        .filter(|c| !c.passed())
        .map(|c| {
            format!(
                "{}: `{}` expected {} got {} (fired: {:?}; notes: {:?})",
                c.file, c.name, c.expect, c.fired, c.rules_fired, c.notes
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        report.untested.is_empty(),
        "rules without examples: {:?}",
        report.untested
    );
    assert!(report.cases.len() >= 30, "{} cases", report.cases.len());
    // Every example decodes: the rules are tested on what the decoders really produce.
    let undecoded: Vec<_> = report
        .cases
        .iter()
        .filter(|c| !c.notes.is_empty())
        .map(|c| (&c.name, &c.notes))
        .collect();
    assert!(undecoded.is_empty(), "{undecoded:?}");
    // Both outcomes are exercised for every file.
    for file in report.cases.iter().map(|c| &c.file) {
        let cases: Vec<_> = report.cases.iter().filter(|c| &c.file == file).collect();
        assert!(
            cases.iter().any(|c| c.expect) && cases.iter().any(|c| !c.expect),
            "{file} needs positive and negative examples"
        );
    }
}

#[test]
fn shipped_rules_cover_each_source_and_kind() {
    let set =
        RuleSet::load(&[rules_dir()], &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.skipped().is_empty(), "{:?}", set.skipped());
    let kinds: Vec<&str> = set.rules().iter().map(|r| r.kind.as_str()).collect();
    for kind in ["sigma", "sigma_correlation", "native", "native_sequence"] {
        assert!(kinds.contains(&kind), "no {kind} rule");
    }
    for rule in set.rules().iter().filter(|r| r.generate) {
        assert!(
            !rule.title.is_empty() && !rule.tags.is_empty(),
            "{} lacks a title or tags",
            rule.id
        );
    }
}

/// The native rule examples of the README compile.
#[test]
fn readme_examples_compile() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with("nhiwatch:"))
        .collect();
    assert!(blocks.len() >= 3, "{} examples", blocks.len());
    for block in blocks {
        let set = RuleSet::compile(&[("README.md", block)], &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(set.len(), 1);
    }
}
