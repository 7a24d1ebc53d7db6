//! Glob patterns of the policy file, compiled with `globset`.
//!
//! The syntax is globset's: `*` (any run of characters, `/` and `:` included), `?` (one
//! character), `[abc]`, `[!abc]`, `{a,b}` and `\` to escape. Action globs match case-insensitively,
//! as IAM compares action names; resource globs match case-sensitively, as ARNs are compared.
//! A tool's `paths` are the one exception to "`*` crosses `/`": there `*` stays within one path
//! component and `**` crosses them, as in a shell.

use std::fmt;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use std::sync::Arc;

use crate::wildcard::{Wild, WildList};

/// How a glob compares text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// An action name (`s3:GetObject`, `tool:send_money`): case-insensitive.
    Action,
    /// A resource, identity id or tool target: case-sensitive.
    Exact,
    /// A host name: case-insensitive.
    Host,
    /// A file path: case-sensitive, `*` does not cross `/`, `**` does.
    Path,
}

/// Compiles one glob, or says why it is not one.
pub(crate) fn compile(text: &str, flavour: Flavour) -> Result<Glob, String> {
    if text.is_empty() {
        return Err("an empty pattern matches nothing; write `*` to match anything".into());
    }
    GlobBuilder::new(text)
        .case_insensitive(matches!(flavour, Flavour::Action | Flavour::Host))
        .literal_separator(flavour == Flavour::Path)
        .backslash_escape(true)
        .build()
        .map_err(|err| format!("`{text}` is not a valid glob: {}", err.kind()))
}

/// How a compiled glob is matched: globs whose only wildcard is `*` by the crate's small
/// wildcard matcher (no regular expression, no allocation), others by globset.
#[derive(Clone)]
enum Matcher {
    Simple { wild: Wild, ignore_case: bool },
    Glob(GlobMatcher),
}

/// Whether [`Wild`] matches `text` exactly as globset would for this flavour: only `*`
/// (paths keep globset, for its separator rules).
fn simple(text: &str, flavour: Flavour) -> bool {
    flavour != Flavour::Path && Wild::is_simple_glob(text)
}

fn ignores_case(flavour: Flavour) -> bool {
    matches!(flavour, Flavour::Action | Flavour::Host)
}

/// One compiled glob with its source text.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    matcher: Matcher,
}

impl Pattern {
    /// Compiles `text` as a glob of the given flavour.
    pub(crate) fn new(text: &str, flavour: Flavour) -> Result<Self, String> {
        let glob = compile(text, flavour)?;
        let matcher = if simple(text, flavour) {
            Matcher::Simple {
                wild: Wild::glob(text),
                ignore_case: ignores_case(flavour),
            }
        } else {
            Matcher::Glob(glob.compile_matcher())
        };
        Ok(Pattern {
            text: text.to_owned(),
            matcher,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `candidate` matches.
    pub fn is_match(&self, candidate: &str) -> bool {
        match &self.matcher {
            Matcher::Simple { wild, ignore_case } => wild.matches(candidate, *ignore_case),
            Matcher::Glob(glob) => glob.is_match(candidate),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

/// How a set is matched: its globs' wildcards in one buffer, scanned in order, when every glob
/// is simple; else one globset. Cheap to clone (an action profile keeps a copy of the resource
/// sets it needs, next to its other data).
#[derive(Clone)]
pub(crate) enum SetMatcher {
    Simple { wilds: WildList, ignore_case: bool },
    Glob(Arc<GlobSet>),
}

impl fmt::Debug for SetMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetMatcher::Simple { .. } => f.write_str("SetMatcher::Simple"),
            SetMatcher::Glob(_) => f.write_str("SetMatcher::Glob"),
        }
    }
}

/// Equal when they match alike for certain: the same simple globs, or the same compiled set.
impl PartialEq for SetMatcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                SetMatcher::Simple { wilds, ignore_case },
                SetMatcher::Simple {
                    wilds: other_wilds,
                    ignore_case: other_case,
                },
            ) => wilds == other_wilds && ignore_case == other_case,
            (SetMatcher::Glob(set), SetMatcher::Glob(other)) => Arc::ptr_eq(set, other),
            _ => false,
        }
    }
}

impl Eq for SetMatcher {}

impl std::hash::Hash for SetMatcher {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            SetMatcher::Simple { wilds, ignore_case } => {
                wilds.hash(state);
                ignore_case.hash(state);
            }
            SetMatcher::Glob(set) => Arc::as_ptr(set).hash(state),
        }
    }
}

impl SetMatcher {
    /// Whether any glob matches.
    pub(crate) fn is_match(&self, candidate: &str) -> bool {
        match self {
            SetMatcher::Simple { wilds, ignore_case } => {
                wilds.position(candidate, *ignore_case).is_some()
            }
            SetMatcher::Glob(set) => set.is_match(candidate),
        }
    }
}

/// Several globs of one flavour, matched together.
#[derive(Clone)]
pub struct PatternSet {
    texts: Vec<String>,
    matcher: SetMatcher,
}

impl PatternSet {
    /// Compiles every text as a glob of the given flavour; the error names the first bad one.
    pub(crate) fn new<S: AsRef<str>>(texts: &[S], flavour: Flavour) -> Result<Self, String> {
        let mut globs = Vec::with_capacity(texts.len());
        for text in texts {
            globs.push(compile(text.as_ref(), flavour)?);
        }
        let matcher = if texts.iter().all(|t| simple(t.as_ref(), flavour)) {
            SetMatcher::Simple {
                wilds: WildList::globs(texts),
                ignore_case: ignores_case(flavour),
            }
        } else {
            let mut builder = GlobSetBuilder::new();
            for glob in globs {
                builder.add(glob);
            }
            SetMatcher::Glob(Arc::new(
                builder
                    .build()
                    .map_err(|err| format!("the patterns cannot be combined: {err}"))?,
            ))
        };
        Ok(PatternSet {
            texts: texts.iter().map(|t| t.as_ref().to_owned()).collect(),
            matcher,
        })
    }

    /// The patterns as written, in order.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// How many patterns the set holds.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether the set holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Whether any pattern matches `candidate`.
    pub fn is_match(&self, candidate: &str) -> bool {
        !self.texts.is_empty() && self.matcher.is_match(candidate)
    }

    /// The index of the first pattern (in written order) that matches `candidate`.
    pub fn first_match(&self, candidate: &str) -> Option<usize> {
        match &self.matcher {
            _ if self.texts.is_empty() => None,
            SetMatcher::Simple { wilds, ignore_case } => wilds.position(candidate, *ignore_case),
            SetMatcher::Glob(set) => set.matches(candidate).into_iter().min(),
        }
    }

    /// The indices of every pattern that matches `candidate`, in written order.
    pub fn matches(&self, candidate: &str) -> Vec<usize> {
        match &self.matcher {
            _ if self.texts.is_empty() => Vec::new(),
            SetMatcher::Simple { wilds, ignore_case } => wilds.all(candidate, *ignore_case),
            SetMatcher::Glob(set) => {
                let mut found = set.matches(candidate);
                found.sort_unstable();
                found
            }
        }
    }

    /// The matcher, to keep beside other hot data.
    pub(crate) fn matcher(&self) -> &SetMatcher {
        &self.matcher
    }
}

impl fmt::Debug for PatternSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PatternSet").field(&self.texts).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_globs_ignore_case_and_cross_separators() {
        let set = PatternSet::new(&["ecr:*", "S3:get*", "k8s:get/*"], Flavour::Action).unwrap();
        assert_eq!(set.first_match("ecr:GetAuthorizationToken"), Some(0));
        assert_eq!(set.first_match("s3:GetObject"), Some(1));
        assert_eq!(set.first_match("k8s:get/secrets"), Some(2));
        assert_eq!(set.first_match("iam:ListRoles"), None);
        assert_eq!(set.matches("ECR:x"), vec![0]);
    }

    #[test]
    fn resource_globs_are_case_sensitive_and_star_crosses_slashes() {
        let p = Pattern::new("arn:aws:ecs:*:*:service/prod/*", Flavour::Exact).unwrap();
        assert!(p.is_match("arn:aws:ecs:eu-west-1:123:service/prod/web/v2"));
        assert!(!p.is_match("arn:aws:ecs:eu-west-1:123:service/PROD/web"));
    }

    #[test]
    fn paths_keep_components_apart() {
        let p = Pattern::new("/workspace/*.md", Flavour::Path).unwrap();
        assert!(p.is_match("/workspace/README.md"));
        assert!(!p.is_match("/workspace/docs/a.md"));
        assert!(Pattern::new("/workspace/**", Flavour::Path)
            .unwrap()
            .is_match("/workspace/docs/a.md"));
    }

    #[test]
    fn full_glob_syntax_goes_to_globset() {
        let set =
            PatternSet::new(&["s3:{Get,Put}Object", "ec2:Describe*"], Flavour::Action).unwrap();
        assert_eq!(set.matches("s3:putobject"), vec![0]);
        assert_eq!(set.matches("ec2:DescribeInstances"), vec![1]);
        assert!(Pattern::new("arn:aws:s3:::b/[a-c]*", Flavour::Exact)
            .unwrap()
            .is_match("arn:aws:s3:::b/beta"));
        assert!(!Pattern::new("arn:aws:s3:::b/[a-c]*", Flavour::Exact)
            .unwrap()
            .is_match("arn:aws:s3:::b/delta"));
    }

    #[test]
    fn bad_and_empty_globs_are_errors() {
        assert!(compile("a[b", Flavour::Action)
            .unwrap_err()
            .contains("not a valid glob"));
        assert!(compile("", Flavour::Exact).unwrap_err().contains("empty"));
        assert!(PatternSet::new(&["ok", "{unclosed"], Flavour::Exact).is_err());
    }
}
