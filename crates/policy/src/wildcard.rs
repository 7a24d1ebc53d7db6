//! The one small wildcard matcher of this crate: literal bytes, `*` (any run of characters) and
//! `?` (one character). IAM's wildcards are exactly these; the policy file's globs that use no
//! other syntax (nearly all of them: `ecr:*`, `arn:aws:ecs:*:*:service/prod/*`) are matched
//! with it too, instead of a regular-expression engine per rule, which keeps the per-event
//! check at tens of nanoseconds and a policy of thousands of rules in a few megabytes.
//! Matching never allocates.

/// Stands for `*` in an encoded pattern: a byte that never occurs in UTF-8.
const STAR: u8 = 0xFF;
/// Stands for `?` (one character).
const ONE: u8 = 0xFE;
/// Separates the patterns of a [`WildList`].
const NEXT: u8 = 0xFD;

/// A compiled wildcard pattern: its bytes, with `*` and `?` encoded as bytes that never occur in
/// UTF-8, in one allocation (the per-event check then touches one cache line or two).
///
/// Matching is linear: the literal before the first `*` must match at the start, the literal
/// after the last `*` at the end, and each literal segment between is found at its leftmost
/// occurrence (leftmost is always right for `*`-separated segments of fixed width), with
/// `memchr`'s substring search when it has no `?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wild(Box<[u8]>);

/// Several patterns, separated by [`NEXT`], kept inline when short (most resource globs are):
/// then checking them costs no pointer chase beyond the structure that holds them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WildList(Bytes);

/// Bytes stored inline up to [`INLINE`], on the heap beyond.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Bytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

/// Inline capacity of [`Bytes`]: the enum then fills one 64-byte cache line.
const INLINE: usize = 62;

impl Bytes {
    fn new(bytes: Vec<u8>) -> Bytes {
        if bytes.len() <= INLINE {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(&bytes);
            Bytes::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Bytes::Heap(bytes.into_boxed_slice())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Bytes::Heap(bytes) => bytes,
        }
    }
}

/// Appends the encoding of `text` to `out`. With `variables` (IAM policy language
/// 2012-10-17), `${...}` is a policy variable: `${*}`, `${?}` and `${$}` are the literal
/// characters, any other variable matches as `*`. Returns whether a variable that cannot be
/// resolved was seen.
fn encode(text: &str, variables: bool, out: &mut Vec<u8>) -> bool {
    let bytes = text.as_bytes();
    let mut unresolved = false;
    let mut i = 0;
    while i < bytes.len() {
        if variables && bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            if let Some(close) = bytes[i + 2..].iter().position(|&b| b == b'}') {
                match &bytes[i + 2..i + 2 + close] {
                    literal @ (b"*" | b"?" | b"$") => out.extend_from_slice(literal),
                    _ => {
                        out.push(STAR);
                        unresolved = true;
                    }
                }
                i += close + 3;
                continue;
            }
        }
        out.push(match bytes[i] {
            b'*' => STAR,
            b'?' => ONE,
            b => b,
        });
        i += 1;
    }
    unresolved
}

impl Wild {
    /// Compiles `text` (see [`encode`] for `variables`); returns whether an unresolved policy
    /// variable was seen.
    pub(crate) fn new(text: &str, variables: bool) -> (Wild, bool) {
        let mut out = Vec::with_capacity(text.len());
        let unresolved = encode(text, variables, &mut out);
        (Wild(out.into_boxed_slice()), unresolved)
    }

    /// Compiles a glob that uses only `*` (see [`Wild::is_simple_glob`]).
    pub(crate) fn glob(text: &str) -> Wild {
        Wild::new(text, false).0
    }

    /// Whether a glob uses no syntax beyond `*`, so that [`Wild`] matches it exactly as globset
    /// would with `*` crossing separators. (`?` and `**` are left to globset: its `?` matches
    /// one byte of a non-ASCII character where IAM's matches the character, and its `**/` may
    /// match nothing at all.)
    pub(crate) fn is_simple_glob(text: &str) -> bool {
        !text.contains(['?', '[', ']', '{', '}', '\\']) && !text.contains("**")
    }

    /// The text the pattern stands for when it has no wildcard.
    pub(crate) fn literal(&self) -> Option<&str> {
        if self.0.iter().any(|&b| b == STAR || b == ONE) {
            return None;
        }
        std::str::from_utf8(&self.0).ok()
    }

    /// Whether the pattern is only stars (matches everything).
    pub(crate) fn is_any(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|&b| b == STAR)
    }

    /// Whether `text` matches; `ignore_case` compares ASCII letters without case.
    pub(crate) fn matches(&self, text: &str, ignore_case: bool) -> bool {
        matches_encoded(&self.0, text.as_bytes(), ignore_case)
    }
}

impl WildList {
    /// Compiles globs that use only `*`.
    pub(crate) fn globs<S: AsRef<str>>(texts: &[S]) -> WildList {
        let mut out = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if i > 0 {
                out.push(NEXT);
            }
            encode(text.as_ref(), false, &mut out);
        }
        WildList(Bytes::new(out))
    }

    /// The patterns, in order.
    fn patterns(&self) -> impl Iterator<Item = &[u8]> {
        self.0.as_slice().split(|&b| b == NEXT)
    }

    /// The index of the first pattern that matches.
    pub(crate) fn position(&self, text: &str, ignore_case: bool) -> Option<usize> {
        self.patterns()
            .position(|p| matches_encoded(p, text.as_bytes(), ignore_case))
    }

    /// The indices of every pattern that matches.
    pub(crate) fn all(&self, text: &str, ignore_case: bool) -> Vec<usize> {
        self.patterns()
            .enumerate()
            .filter(|(_, p)| matches_encoded(p, text.as_bytes(), ignore_case))
            .map(|(i, _)| i)
            .collect()
    }
}

fn matches_encoded(pattern: &[u8], text: &[u8], ignore_case: bool) -> bool {
    let (Some(first_star), Some(last_star)) = (
        memchr::memchr(STAR, pattern),
        memchr::memrchr(STAR, pattern),
    ) else {
        return match_at(pattern, text, 0, ignore_case) == Some(text.len());
    };
    let head = &pattern[..first_star];
    let tail = &pattern[last_star + 1..];
    let Some(from) = match_at(head, text, 0, ignore_case) else {
        return false;
    };
    let Some(until) = match_suffix(tail, text, from, ignore_case) else {
        return false;
    };
    let mut from = from;
    let middle = &pattern[first_star + 1..last_star.max(first_star + 1)];
    for segment in middle.split(|&b| b == STAR).filter(|s| !s.is_empty()) {
        match find(segment, &text[..until], from, ignore_case) {
            Some(end) => from = end,
            None => return false,
        }
    }
    from <= until
}

/// Where `segment` ends when it matches `text` at `at`.
fn match_at(segment: &[u8], text: &[u8], at: usize, ignore_case: bool) -> Option<usize> {
    let mut t = at;
    for &p in segment {
        let &c = text.get(t)?;
        if p == ONE {
            t += utf8_width(c);
        } else if p == c || (ignore_case && p.eq_ignore_ascii_case(&c)) {
            t += 1;
        } else {
            return None;
        }
    }
    (t <= text.len()).then_some(t)
}

/// Where `segment` starts when it matches the end of `text`, starting no earlier than `from`.
fn match_suffix(segment: &[u8], text: &[u8], from: usize, ignore_case: bool) -> Option<usize> {
    if !segment.contains(&ONE) {
        let start = text.len().checked_sub(segment.len())?;
        return (start >= from && match_at(segment, text, start, ignore_case).is_some())
            .then_some(start);
    }
    // With `?` the segment's width in bytes varies: try the character starts from the right.
    (from..=text.len())
        .rev()
        .filter(|&start| start == text.len() || !is_continuation(text[start]))
        .find(|&start| match_at(segment, text, start, ignore_case) == Some(text.len()))
}

/// Texts up to this long are searched without a substring searcher (see [`find`]).
const SHORT_HAYSTACK: usize = 256;

/// Where the leftmost match of `segment` in `text` at or after `from` ends.
fn find(segment: &[u8], text: &[u8], from: usize, ignore_case: bool) -> Option<usize> {
    if from > text.len() {
        return None;
    }
    if !ignore_case && !segment.contains(&ONE) {
        let haystack = &text[from..];
        if haystack.len() > SHORT_HAYSTACK {
            return memchr::memmem::find(haystack, segment).map(|i| from + i + segment.len());
        }
        // Resource names are short: finding the first byte and comparing the rest costs less
        // than building a substring searcher for each call.
        let (&first, _) = segment.split_first()?;
        let last_start = haystack.len().checked_sub(segment.len())?;
        let mut start = 0;
        while let Some(offset) = memchr::memchr(first, &haystack[start..=last_start]) {
            let at = start + offset;
            if haystack[at..].starts_with(segment) {
                return Some(from + at + segment.len());
            }
            start = at + 1;
            if start > last_start {
                break;
            }
        }
        return None;
    }
    (from..=text.len())
        .filter(|&start| start == text.len() || !is_continuation(text[start]))
        .find_map(|start| match_at(segment, text, start, ignore_case))
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("s3:Get*", "s3:GetObject", true, true),
            ("s3:Get*", "s3:PutObject", true, false),
            ("iam:*AccessKey*", "iam:ListAccessKeys", true, true),
            ("S3:getobject", "s3:GetObject", true, true),
            ("S3:getobject", "s3:GetObject", false, false),
            ("ec2:Describe?nstances", "ec2:DescribeInstances", true, true),
            ("bucket-?", "bucket-1", false, true),
            ("bucket-?", "bucket-10", false, false),
            ("a*b*c", "aXXbYYc", false, true),
            ("a*b*c", "aXXbYY", false, false),
            ("*", "", false, true),
            ("?", "é", false, true),
            ("", "", false, true),
            ("", "x", false, false),
            ("a*", "a", false, true),
            ("*a", "ba", false, true),
            ("*a*", "bab", false, true),
            ("a*a", "a", false, false),
            ("a?*?a", "abba", false, true),
            ("a?*?a", "aba", false, false),
            ("**x", "yx", false, true),
            ("*?é", "aé", false, true),
            (
                "arn:aws:svc1:*:*:thing/payroll/*",
                "arn:aws:svc1:eu-west-1:1:thing/payroll/x",
                false,
                true,
            ),
            (
                "arn:aws:svc1:*:*:thing/payroll/*",
                "arn:aws:svc2:eu-west-1:1:thing/payroll/x",
                false,
                false,
            ),
        ];
        for (pattern, text, ci, expected) in cases {
            assert_eq!(
                Wild::glob(pattern).matches(text, ci),
                expected,
                "{pattern} vs {text}"
            );
        }
    }

    /// IAM's definition, character by character: `*` any run, `?` one character.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some(('?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    proptest! {
        /// With `?` too (IAM patterns), the segment algorithm agrees with the definition.
        #[test]
        fn agrees_with_the_definition(pattern in "[ab*?é]{0,8}", text in "[abé]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(Wild::glob(&pattern).matches(&text, false), reference(&p, &t), "{} vs {}", pattern, text);
        }

        /// Past the short-text search too.
        #[test]
        fn agrees_with_the_definition_on_long_texts(
            pattern in "[ab]{0,3}\\*[ab]{1,4}\\*[ab]{0,3}",
            text in "[ab]{250,300}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(Wild::glob(&pattern).matches(&text, false), reference(&p, &t), "{} vs {}", pattern, text);
        }

        /// On the globs it takes over, the wildcard matcher agrees with globset exactly.
        #[test]
        fn agrees_with_globset(
            pattern in "[ab:/*?é]{0,8}",
            text in "[ab:/ABé]{0,10}",
            ignore_case in any::<bool>(),
        ) {
            prop_assume!(!pattern.is_empty() && Wild::is_simple_glob(&pattern));
            let glob = globset::GlobBuilder::new(&pattern)
                .case_insensitive(ignore_case)
                .literal_separator(false)
                .build();
            // globset refuses a few `**` placements; those patterns never reach Wild.
            if let Ok(glob) = glob {
                prop_assert_eq!(
                    Wild::glob(&pattern).matches(&text, ignore_case),
                    glob.compile_matcher().is_match(&text),
                    "{} vs {}", pattern, text
                );
            }
        }
    }
}
