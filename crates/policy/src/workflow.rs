//! Approved workflows: a regular expression over action globs, compiled to an automaton over
//! events' actions that is advanced one event at a time with a constant, 8-byte state.
//!
//! ## Syntax
//!
//! ```text
//! workflow := alternative ('|' alternative)*
//! alternative := item+                      (items separated by white space)
//! item     := GLOB quantifier? | '(' workflow ')' group-quantifier?
//! quantifier := '+' | '?'                   (one or more, optional)
//! group-quantifier := '+' | '?' | '*'
//! ```
//!
//! A GLOB is an action glob (`ecr:*`, `ecs:Describe*`, `sts:GetCallerIdentity`), matched
//! case-insensitively. A `*` inside a step is always the glob wildcard, so zero-or-more is written
//! on a group, `(ecr:*)*`; a `+` or `?` at the end of a step is a quantifier, so
//! `ecs:RegisterTaskDefinition?` is an optional step (write a trailing one-character wildcard as
//! `[!:]` or in a group if ever needed). At most [`MAX_STEPS`] steps.
//!
//! ## Automaton
//!
//! The expression becomes a Glushkov automaton: one state per step occurrence ("position"), no
//! epsilon moves, so a set of current positions fits in a `u64`. Each distinct glob is a class of
//! actions; an event's action is first mapped to the set of positions whose glob it matches (a
//! `u64`, computed once per action and cached by the caller), and a move is then a handful of bit
//! operations: `next = follow(current) & positions(action)`. Nothing is ever re-run over history.
//!
//! A session may run the workflow several times in a row: from an accepting state (a run just
//! completed) the first steps are allowed again, so the language per session is `(workflow)+`.

use std::fmt;

use crate::pattern::{Flavour, PatternSet};

/// Most step occurrences a workflow may have (one bit each in the state).
pub const MAX_STEPS: usize = 64;

/// A workflow's syntax tree.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    /// One step: a glob, by index into the workflow's distinct globs.
    Step(usize),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Plus(Box<Node>),
    Star(Box<Node>),
    Opt(Box<Node>),
}

/// The outcome of one event for a workflow run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// The action is an allowed next step. `new_run` when it begins a run (from idle or from a
    /// completed run).
    Advance {
        /// Whether this step starts a run.
        new_run: bool,
    },
    /// The action matches no step of the workflow.
    Foreign,
    /// The action is a step of the workflow, but not one allowed here. `expected` are the
    /// positions that were allowed.
    OutOfOrder {
        /// The positions that would have been accepted.
        expected: u64,
    },
    /// A run was under way and not complete, and the action starts the workflow again.
    Restart {
        /// The positions that would have continued the run.
        expected: u64,
    },
}

/// A compiled workflow.
#[derive(Clone)]
pub struct Workflow {
    text: String,
    globs: PatternSet,
    /// For each distinct glob, the positions where it occurs.
    glob_positions: Vec<u64>,
    /// For each position, its glob index.
    position_glob: Vec<usize>,
    /// Positions that may come first.
    first: u64,
    /// Positions at which a run is complete.
    last: u64,
    /// For each position, the positions that may follow it.
    follow: Vec<u64>,
    /// Whether the empty run is complete.
    nullable: bool,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Workflow").field(&self.text).finish()
    }
}

/// Glushkov sets of a subexpression.
struct Sets {
    nullable: bool,
    first: u64,
    last: u64,
}

impl Workflow {
    /// Parses and compiles a workflow expression.
    pub fn parse(text: &str) -> Result<Workflow, String> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err("the workflow has no step".into());
        }
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            globs: Vec::new(),
            positions: Vec::new(),
        };
        let tree = parser.alternatives()?;
        if let Some(token) = tokens.get(parser.at) {
            return Err(format!("unexpected `{}` in the workflow", token.text()));
        }
        let globs = PatternSet::new(&parser.globs, Flavour::Action)?;
        let mut glob_positions = vec![0u64; parser.globs.len()];
        for (position, &glob) in parser.positions.iter().enumerate() {
            glob_positions[glob] |= 1 << position;
        }
        let mut follow = vec![0u64; parser.positions.len()];
        let sets = glushkov(&tree, &mut follow);
        Ok(Workflow {
            text: text.trim().to_owned(),
            globs,
            glob_positions,
            position_glob: parser.positions,
            first: sets.first,
            last: sets.last,
            follow,
            nullable: sets.nullable,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many step occurrences (automaton positions) it has.
    pub fn steps(&self) -> usize {
        self.position_glob.len()
    }

    /// The distinct step globs, in order of first appearance.
    pub fn globs(&self) -> &[String] {
        self.globs.texts()
    }

    /// The positions whose step glob matches `action`: the action's class. Callers compute it
    /// once per distinct action and cache it; 0 means the action is foreign to the workflow.
    pub fn classify(&self, action: &str) -> u64 {
        self.globs
            .matches(action)
            .into_iter()
            .fold(0, |mask, glob| mask | self.glob_positions[glob])
    }

    /// The positions that may come after the current state (0 = before any step).
    fn successors(&self, state: u64) -> u64 {
        let mut next = 0;
        let mut rest = state;
        while rest != 0 {
            let position = rest.trailing_zeros() as usize;
            next |= self.follow.get(position).copied().unwrap_or(0);
            rest &= rest - 1;
        }
        next
    }

    /// Whether `state` is a completed run (0 = idle counts as complete).
    pub fn is_complete(&self, state: u64) -> bool {
        if state == 0 {
            return true;
        }
        state & self.last != 0
    }

    /// Advances `state` (0 = idle, before any step) by one event whose action has class
    /// `action` ([`Workflow::classify`]). After a deviation the state re-synchronises on the
    /// positions the action matches, so one wrong step is reported once, not for every step
    /// after it.
    pub fn advance(&self, state: &mut u64, action: u64) -> Move {
        if action == 0 {
            return Move::Foreign;
        }
        let idle = *state == 0;
        let complete = self.is_complete(*state);
        let continuing = if idle {
            0
        } else {
            self.successors(*state) & action
        };
        let fresh = if complete { self.first & action } else { 0 };
        if continuing | fresh != 0 {
            *state = continuing | fresh;
            return Move::Advance {
                new_run: continuing == 0,
            };
        }
        let expected = if idle {
            self.first
        } else {
            self.successors(*state) | if complete { self.first } else { 0 }
        };
        let restart = !complete && self.first & action != 0;
        *state = if restart { self.first & action } else { action };
        if restart {
            Move::Restart { expected }
        } else {
            Move::OutOfOrder { expected }
        }
    }

    /// The distinct globs of the given positions, for explanations.
    pub fn describe(&self, positions: u64) -> Vec<&str> {
        let mut globs: Vec<usize> = Vec::new();
        let mut rest = positions;
        while rest != 0 {
            let position = rest.trailing_zeros() as usize;
            if let Some(&glob) = self.position_glob.get(position) {
                if !globs.contains(&glob) {
                    globs.push(glob);
                }
            }
            rest &= rest - 1;
        }
        globs.sort_unstable();
        globs
            .into_iter()
            .filter_map(|glob| self.globs.texts().get(glob).map(String::as_str))
            .collect()
    }

    /// Whether the empty sequence is a complete run.
    pub fn nullable(&self) -> bool {
        self.nullable
    }
}

/// Computes nullable/first/last of `node` and adds its follow pairs.
fn glushkov(node: &Node, follow: &mut [u64]) -> Sets {
    match node {
        Node::Step(position) => Sets {
            nullable: false,
            first: 1 << position,
            last: 1 << position,
        },
        Node::Seq(items) => {
            let mut acc = Sets {
                nullable: true,
                first: 0,
                last: 0,
            };
            for item in items {
                let next = glushkov(item, follow);
                link(follow, acc.last, next.first);
                acc = Sets {
                    first: acc.first | if acc.nullable { next.first } else { 0 },
                    last: next.last | if next.nullable { acc.last } else { 0 },
                    nullable: acc.nullable && next.nullable,
                };
            }
            acc
        }
        Node::Alt(items) => {
            let mut acc = Sets {
                nullable: false,
                first: 0,
                last: 0,
            };
            for item in items {
                let next = glushkov(item, follow);
                acc.nullable |= next.nullable;
                acc.first |= next.first;
                acc.last |= next.last;
            }
            acc
        }
        Node::Plus(inner) | Node::Star(inner) => {
            let sets = glushkov(inner, follow);
            link(follow, sets.last, sets.first);
            Sets {
                nullable: sets.nullable || matches!(node, Node::Star(_)),
                ..sets
            }
        }
        Node::Opt(inner) => Sets {
            nullable: true,
            ..glushkov(inner, follow)
        },
    }
}

fn link(follow: &mut [u64], from: u64, to: u64) {
    let mut rest = from;
    while rest != 0 {
        let position = rest.trailing_zeros() as usize;
        if let Some(slot) = follow.get_mut(position) {
            *slot |= to;
        }
        rest &= rest - 1;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close(Option<char>),
    Bar,
    Glob(String, Option<char>),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Open => "(".into(),
            Token::Close(q) => format!("){}", q.map(String::from).unwrap_or_default()),
            Token::Bar => "|".into(),
            Token::Glob(glob, q) => format!("{glob}{}", q.map(String::from).unwrap_or_default()),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(Token::Open),
            '|' => tokens.push(Token::Bar),
            ')' => {
                let quantifier = chars.next_if(|q| matches!(q, '+' | '?' | '*'));
                tokens.push(Token::Close(quantifier));
            }
            _ => {
                let mut glob = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '(' | ')' | '|') {
                        break;
                    }
                    glob.push(next);
                    chars.next();
                }
                let quantifier = match glob.chars().last() {
                    Some(q @ ('+' | '?')) => {
                        glob.pop();
                        Some(q)
                    }
                    _ => None,
                };
                if glob.is_empty() || glob.ends_with(['+', '?']) && quantifier.is_some() {
                    return Err(format!(
                        "`{}` is not a step: a step is an action glob with at most one `+` or `?` after it",
                        Token::Glob(glob, quantifier).text()
                    ));
                }
                tokens.push(Token::Glob(glob, quantifier));
            }
        }
    }
    Ok(tokens)
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    globs: Vec<String>,
    /// Glob index of each position.
    positions: Vec<usize>,
}

impl Parser<'_> {
    fn alternatives(&mut self) -> Result<Node, String> {
        let mut options = vec![self.sequence()?];
        while self.tokens.get(self.at) == Some(&Token::Bar) {
            self.at += 1;
            options.push(self.sequence()?);
        }
        Ok(if options.len() == 1 {
            options.remove(0)
        } else {
            Node::Alt(options)
        })
    }

    fn sequence(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(token) = self.tokens.get(self.at) {
            match token {
                Token::Bar | Token::Close(_) => break,
                Token::Open => {
                    self.at += 1;
                    let inner = self.alternatives()?;
                    match self.tokens.get(self.at) {
                        Some(Token::Close(quantifier)) => {
                            self.at += 1;
                            items.push(quantify(inner, *quantifier));
                        }
                        _ => return Err("a `(` in the workflow is never closed".into()),
                    }
                }
                Token::Glob(glob, quantifier) => {
                    self.at += 1;
                    let position = self.positions.len();
                    if position >= MAX_STEPS {
                        return Err(format!("a workflow has at most {MAX_STEPS} steps"));
                    }
                    let index = match self.globs.iter().position(|g| g == glob) {
                        Some(index) => index,
                        None => {
                            self.globs.push(glob.clone());
                            self.globs.len() - 1
                        }
                    };
                    self.positions.push(index);
                    items.push(quantify(Node::Step(position), *quantifier));
                }
            }
        }
        match items.len() {
            0 => Err("an empty group or alternative in the workflow".into()),
            1 => Ok(items.remove(0)),
            _ => Ok(Node::Seq(items)),
        }
    }
}

fn quantify(node: Node, quantifier: Option<char>) -> Node {
    match quantifier {
        Some('+') => Node::Plus(Box::new(node)),
        Some('?') => Node::Opt(Box::new(node)),
        Some('*') => Node::Star(Box::new(node)),
        _ => node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: &str =
        "sts:GetCallerIdentity ecr:GetAuthorizationToken ecr:*+ ecs:UpdateService ecs:Describe*";

    fn run(workflow: &Workflow, actions: &[&str]) -> Vec<Move> {
        let mut state = 0;
        actions
            .iter()
            .map(|a| workflow.advance(&mut state, workflow.classify(a)))
            .collect()
    }

    const GO: Move = Move::Advance { new_run: false };
    const NEW: Move = Move::Advance { new_run: true };

    #[test]
    fn the_design_workflow_accepts_its_runs() {
        let w = Workflow::parse(DEPLOY).unwrap();
        assert_eq!(w.steps(), 5);
        assert_eq!(
            w.globs(),
            [
                "sts:GetCallerIdentity",
                "ecr:GetAuthorizationToken",
                "ecr:*",
                "ecs:UpdateService",
                "ecs:Describe*"
            ]
        );
        let moves = run(
            &w,
            &[
                "sts:GetCallerIdentity",
                "ecr:GetAuthorizationToken",
                "ecr:BatchGetImage",
                "ecr:PutImage",
                "ecs:UpdateService",
                "ecs:DescribeServices",
                // A second run in the same session.
                "sts:GetCallerIdentity",
            ],
        );
        assert_eq!(moves, [NEW, GO, GO, GO, GO, GO, NEW]);
    }

    #[test]
    fn deviations_are_told_apart() {
        let w = Workflow::parse(DEPLOY).unwrap();
        let moves = run(
            &w,
            &[
                "sts:GetCallerIdentity",
                "iam:ListRoles",
                "ecs:UpdateService",
                "ecs:DescribeServices",
            ],
        );
        assert_eq!(moves[0], NEW);
        assert_eq!(moves[1], Move::Foreign);
        // UpdateService before the ECR login: out of order, expected the login step.
        match moves[2] {
            Move::OutOfOrder { expected } => {
                assert_eq!(w.describe(expected), ["ecr:GetAuthorizationToken"])
            }
            other => panic!("{other:?}"),
        }
        // After the deviation the run re-synchronises: no cascade.
        assert_eq!(moves[3], GO);

        let moves = run(
            &w,
            &[
                "sts:GetCallerIdentity",
                "ecr:GetAuthorizationToken",
                "sts:GetCallerIdentity",
            ],
        );
        match moves[2] {
            Move::Restart { expected } => assert_eq!(w.describe(expected), ["ecr:*"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn groups_alternatives_and_quantifiers() {
        let w = Workflow::parse("a:Start (b:One | c:Two)+ (d:*)* e:End?").unwrap();
        assert_eq!(
            run(&w, &["a:Start", "c:Two", "b:One", "d:x", "d:y", "e:End"]),
            [NEW, GO, GO, GO, GO, GO]
        );
        assert_eq!(run(&w, &["a:Start", "b:One", "a:Start"]), [NEW, GO, NEW]);
        assert!(matches!(
            run(&w, &["a:Start", "e:End"])[1],
            Move::OutOfOrder { .. }
        ));
        // Optional trailing step written with `?` after the glob, as the simulator's policy does.
        let w = Workflow::parse("ecs:RegisterTaskDefinition? ecs:UpdateService+ ecs:Describe*+")
            .unwrap();
        assert_eq!(
            run(&w, &["ecs:UpdateService", "ecs:DescribeServices"]),
            [NEW, GO]
        );
        assert_eq!(w.steps(), 3);
        assert!(!w.nullable());
    }

    #[test]
    fn steps_match_case_insensitively() {
        let w = Workflow::parse("S3:getobject").unwrap();
        assert_ne!(w.classify("s3:GetObject"), 0);
    }

    #[test]
    fn syntax_errors() {
        for (text, expected) in [
            ("", "no step"),
            ("a:b (c:d", "never closed"),
            ("a:b )", "unexpected `)`"),
            ("a:b | | c:d", "empty"),
            ("()", "empty"),
            ("a:[b", "not a valid glob"),
            ("a:b++", "not a step"),
        ] {
            let message = Workflow::parse(text).unwrap_err();
            assert!(message.contains(expected), "{text}: {message}");
        }
        let long = vec!["a:b"; MAX_STEPS + 1].join(" ");
        assert!(Workflow::parse(&long).unwrap_err().contains("at most 64"));
    }
}
