//! Workflow conformance, as properties over random workflows:
//! - every sequence generated from a workflow (several runs in a row) advances without a
//!   deviation;
//! - inserting a foreign step anywhere is reported as foreign, at that very step;
//! - dropping a mandatory step from a single-path workflow is reported as a deviation.

use nhiwatch_policy::{Move, Workflow};
use proptest::prelude::*;

/// A workflow expression, kept as a tree so sequences can be generated from it.
#[derive(Clone, Debug)]
enum Expr {
    Step(&'static str),
    Seq(Vec<Expr>),
    Alt(Vec<Expr>),
    Plus(Box<Expr>),
    Opt(Box<Expr>),
    Star(Box<Expr>),
}

/// Step globs: wildcards at the end and in the middle, overlapping classes (`b:*` and
/// `b:Describe*`), and case differences, all in services the foreign step never uses.
const GLOBS: [&str; 7] = [
    "sts:GetCallerIdentity",
    "ecr:*",
    "ecr:GetAuthorizationToken",
    "ecs:Describe*",
    "ecs:UpdateService",
    "s3:Get?bject",
    "LAMBDA:invoke*",
];

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop::sample::select(&GLOBS[..]).prop_map(Expr::Step);
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Expr::Seq),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Alt),
            inner.clone().prop_map(|e| Expr::Plus(Box::new(e))),
            inner.clone().prop_map(|e| Expr::Opt(Box::new(e))),
            inner.prop_map(|e| Expr::Star(Box::new(e))),
        ]
    })
}

/// Renders the tree in workflow syntax: quantifiers on single steps where the syntax allows
/// (`+`, `?`), on groups otherwise.
fn render(expr: &Expr) -> String {
    let group = |e: &Expr, q: &str| match e {
        Expr::Step(glob) if q != "*" => format!("{glob}{q}"),
        other => format!("({}){q}", render(other)),
    };
    match expr {
        Expr::Step(glob) => (*glob).to_owned(),
        Expr::Seq(items) => items
            .iter()
            .map(|item| match item {
                Expr::Alt(_) => format!("({})", render(item)),
                _ => render(item),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Expr::Alt(items) => items
            .iter()
            .map(|item| format!("({})", render(item)))
            .collect::<Vec<_>>()
            .join(" | "),
        Expr::Plus(inner) => group(inner, "+"),
        Expr::Opt(inner) => group(inner, "?"),
        Expr::Star(inner) => group(inner, "*"),
    }
}

/// A concrete action matching `glob`: each `*` becomes a few letters, each `?` one letter.
fn instantiate(glob: &str, choices: &mut impl Iterator<Item = u8>) -> String {
    let mut out = String::new();
    for c in glob.chars() {
        match c {
            '*' => {
                let n = choices.next().unwrap_or(0) % 4;
                for _ in 0..n {
                    out.push((b'a' + choices.next().unwrap_or(0) % 26) as char);
                }
            }
            '?' => out.push((b'A' + choices.next().unwrap_or(0) % 26) as char),
            c => out.push(c),
        }
    }
    out
}

/// Walks the tree once, driven by `choices`, appending one word of its language.
fn generate(expr: &Expr, choices: &mut impl Iterator<Item = u8>, out: &mut Vec<String>) {
    match expr {
        Expr::Step(glob) => out.push(instantiate(glob, choices)),
        Expr::Seq(items) => items.iter().for_each(|item| generate(item, choices, out)),
        Expr::Alt(items) => {
            let pick = usize::from(choices.next().unwrap_or(0)) % items.len();
            generate(&items[pick], choices, out);
        }
        Expr::Plus(inner) => {
            for _ in 0..=choices.next().unwrap_or(0) % 3 {
                generate(inner, choices, out);
            }
        }
        Expr::Star(inner) => {
            for _ in 0..choices.next().unwrap_or(0) % 3 {
                generate(inner, choices, out);
            }
        }
        Expr::Opt(inner) => {
            if choices.next().unwrap_or(0) % 2 == 1 {
                generate(inner, choices, out);
            }
        }
    }
}

fn moves(workflow: &Workflow, actions: &[String]) -> Vec<Move> {
    let mut state = 0u64;
    actions
        .iter()
        .map(|action| workflow.advance(&mut state, workflow.classify(action)))
        .collect()
}

/// Whether a tree has a single path: no choice anywhere, so every step is mandatory.
fn single_path(expr: &Expr) -> bool {
    match expr {
        Expr::Step(_) => true,
        Expr::Seq(items) => items.iter().all(single_path),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_sequences_never_deviate(
        tree in expr(),
        runs in 1usize..4,
        choices in prop::collection::vec(any::<u8>(), 64..256),
    ) {
        let text = render(&tree);
        let workflow = Workflow::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let mut choices = choices.into_iter().cycle();
        let mut actions = Vec::new();
        for _ in 0..runs {
            generate(&tree, &mut choices, &mut actions);
        }
        for (i, m) in moves(&workflow, &actions).into_iter().enumerate() {
            prop_assert!(
                matches!(m, Move::Advance { .. }),
                "{text}: step {i} `{}` of {actions:?} gave {m:?}", actions[i]
            );
        }
    }

    #[test]
    fn a_foreign_step_always_deviates(
        tree in expr(),
        choices in prop::collection::vec(any::<u8>(), 64..256),
        at in any::<prop::sample::Index>(),
        service in "[a-z]{1,8}",
        operation in "[A-Za-z]{1,12}",
    ) {
        let text = render(&tree);
        let workflow = Workflow::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let mut choices = choices.into_iter().cycle();
        let mut actions = Vec::new();
        generate(&tree, &mut choices, &mut actions);
        // `x-` keeps the foreign service apart from every step glob's service.
        let foreign = format!("x-{service}:{operation}");
        let index = at.index(actions.len() + 1);
        actions.insert(index, foreign.clone());
        let got = moves(&workflow, &actions);
        prop_assert_eq!(got[index], Move::Foreign, "{}: {:?}", text, actions);
        // The other steps still conform: a foreign step does not derail the run.
        for (i, m) in got.iter().enumerate().filter(|(i, _)| *i != index) {
            prop_assert!(matches!(m, Move::Advance { .. }), "{}: step {} gave {:?}", text, i, m);
        }
    }

    #[test]
    fn skipping_a_mandatory_step_deviates(
        steps in prop::collection::vec(prop::sample::select(&GLOBS[..]), 2..8),
        skip in any::<prop::sample::Index>(),
        choices in prop::collection::vec(any::<u8>(), 64..128),
    ) {
        let tree = Expr::Seq(steps.iter().map(|g| Expr::Step(g)).collect());
        prop_assume!(single_path(&tree));
        let workflow = Workflow::parse(&render(&tree)).unwrap();
        let mut choices = choices.into_iter().cycle();
        let mut actions = Vec::new();
        generate(&tree, &mut choices, &mut actions);
        let skip = skip.index(actions.len() - 1) + 1;
        let skipped = actions.remove(skip);
        let got = moves(&workflow, &actions);
        // Unless the next action also fits the skipped step's place (overlapping globs, or the
        // same glob twice), a deviation is reported where the skipped step was due.
        let fits = |action: &str| {
            let mut probe = 0u64;
            actions[..skip].iter().all(|a| matches!(workflow.advance(&mut probe, workflow.classify(a)), Move::Advance { .. }))
                && matches!(workflow.advance(&mut probe, workflow.classify(action)), Move::Advance { .. })
        };
        if skip < actions.len() && !fits(&actions[skip]) {
            prop_assert!(
                matches!(got[skip], Move::OutOfOrder { .. } | Move::Restart { .. }),
                "skipped {} at {}: {:?} -> {:?}", skipped, skip, actions, got
            );
        }
    }
}
