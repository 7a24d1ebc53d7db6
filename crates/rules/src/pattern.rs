//! Sigma strings and the string matchers compiled from them.
//!
//! A Sigma string value may hold the wildcards `*` (any run of characters) and `?` (one
//! character); a backslash escapes `*`, `?` and itself, and is a plain backslash before anything
//! else (Sigma specification, "Escape Character"). Value modifiers turn one string into one or
//! more ([`SigmaString`] operations), which are then compiled into a [`Pattern`]: an exact,
//! prefix, suffix or substring test where the wildcards allow it, a general wildcard match
//! otherwise, or a regular expression for `|re`.
//!
//! Matching is case-insensitive unless the rule says `|cased` (regular expressions are
//! case-sensitive unless they carry `|i`). Literals are lower-cased once at compile time; an
//! ASCII value is then compared byte by byte without allocating, and only a non-ASCII value is
//! lower-cased per comparison.

use std::borrow::Cow;

/// One piece of a Sigma string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Literal bytes (UTF-8 unless an encoding modifier made them otherwise).
    Lit(Vec<u8>),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// A Sigma string: literal pieces and wildcards, adjacent literals merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SigmaString(pub(crate) Vec<Tok>);

impl SigmaString {
    /// Parses a rule's string value: `*` and `?` are wildcards; `\*`, `\?` and `\\` are the
    /// characters themselves; any other backslash is a plain backslash.
    pub(crate) fn parse(text: &str) -> SigmaString {
        let mut out = SigmaString::default();
        let mut chars = text.chars().peekable();
        let mut buf = [0u8; 4];
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&next @ ('*' | '?' | '\\')) => {
                        chars.next();
                        out.push_lit(next.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => out.push_lit(b"\\"),
                },
                '*' => out.push_star(),
                '?' => out.0.push(Tok::One),
                c => out.push_lit(c.encode_utf8(&mut buf).as_bytes()),
            }
        }
        out
    }

    /// A string with no wildcards: every character is itself.
    pub(crate) fn literal(text: &[u8]) -> SigmaString {
        let mut out = SigmaString::default();
        out.push_lit(text);
        out
    }

    fn push_lit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Tok::Lit(last)) = self.0.last_mut() {
            last.extend_from_slice(bytes);
        } else {
            self.0.push(Tok::Lit(bytes.to_vec()));
        }
    }

    fn push_star(&mut self) {
        if self.0.last() != Some(&Tok::Star) {
            self.0.push(Tok::Star);
        }
    }

    /// The bytes of a wildcard-free string.
    pub(crate) fn plain_bytes(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for tok in &self.0 {
            match tok {
                Tok::Lit(bytes) => out.extend_from_slice(bytes),
                Tok::Star | Tok::One => return None,
            }
        }
        Some(out)
    }

    /// `*` before the string, unless it already begins with one (`endswith`, `contains`).
    pub(crate) fn star_before(mut self) -> SigmaString {
        if self.0.first() != Some(&Tok::Star) {
            self.0.insert(0, Tok::Star);
        }
        self
    }

    /// `*` after the string, unless it already ends with one (`startswith`, `contains`).
    pub(crate) fn star_after(mut self) -> SigmaString {
        self.push_star();
        self
    }

    /// Every string `windash` makes of this one: each `-` or `/` that starts a word (no word
    /// character before it, one after it) becomes each of `-`, `/`, `–`, `—` and `―`.
    pub(crate) fn windash(&self) -> Vec<SigmaString> {
        const DASHES: [&str; 5] = ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"];
        let mut variants = vec![SigmaString::default()];
        let mut previous_word = false;
        for (index, tok) in self.0.iter().enumerate() {
            let Tok::Lit(bytes) = tok else {
                for variant in &mut variants {
                    variant.0.push(tok.clone());
                }
                previous_word = false;
                continue;
            };
            let text = String::from_utf8_lossy(bytes);
            let chars: Vec<char> = text.chars().collect();
            for (i, &c) in chars.iter().enumerate() {
                let next_word = match chars.get(i + 1) {
                    Some(&n) => is_word(n),
                    // A literal's last character: look at the next token.
                    None => {
                        matches!(self.0.get(index + 1), Some(Tok::Lit(b)) if b.first().is_some_and(|&b| is_word(char::from(b))))
                    }
                };
                if (c == '-' || c == '/') && !previous_word && next_word {
                    variants = variants
                        .into_iter()
                        .flat_map(|v| {
                            DASHES.iter().map(move |dash| {
                                let mut v = v.clone();
                                v.push_lit(dash.as_bytes());
                                v
                            })
                        })
                        .collect();
                } else {
                    let mut buf = [0u8; 4];
                    let encoded = c.encode_utf8(&mut buf).as_bytes();
                    for variant in &mut variants {
                        variant.push_lit(encoded);
                    }
                }
                previous_word = is_word(c);
            }
        }
        variants
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The three strings `base64offset` makes: the value's base64 form at each of the three byte
/// offsets it can take inside a longer encoded text, cut to the characters that do not depend
/// on its neighbours (as pySigma does).
pub(crate) fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|shift| {
            let mut shifted = vec![b' '; shift];
            shifted.extend_from_slice(bytes);
            let encoded = base64(&shifted);
            let end = encoded.len() - END[(bytes.len() + shift) % 3];
            encoded.get(START[shift]..end).unwrap_or("").to_owned()
        })
        .collect()
}

/// A compiled string test.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    kind: Kind,
    /// Compare case-sensitively (`|cased`); literals are lower-cased otherwise.
    cased: bool,
}

#[derive(Clone, Debug)]
enum Kind {
    /// No wildcard.
    Exact(Box<str>),
    /// `text*`.
    Prefix(Box<str>),
    /// `*text`.
    Suffix(Box<str>),
    /// `*text*`.
    Contains(Box<str>),
    /// `*`: any string.
    Any,
    /// Anything else: segments between stars.
    Glob(Box<[Tok]>),
    /// `|re`.
    Regex(regex::Regex),
}

impl Pattern {
    /// Compiles a Sigma string; `None` when its bytes are not UTF-8 (an encoding modifier not
    /// followed by base64).
    pub(crate) fn new(string: SigmaString, cased: bool) -> Option<Pattern> {
        let mut toks = string.0;
        for tok in &mut toks {
            if let Tok::Lit(bytes) = tok {
                let text = std::str::from_utf8(bytes).ok()?;
                if !cased {
                    *bytes = text.to_lowercase().into_bytes();
                }
            }
        }
        let text = |bytes: &[u8]| -> Box<str> { String::from_utf8_lossy(bytes).into() };
        let kind = match toks.as_slice() {
            [] => Kind::Exact("".into()),
            [Tok::Lit(a)] => Kind::Exact(text(a)),
            [Tok::Star] => Kind::Any,
            [Tok::Lit(a), Tok::Star] => Kind::Prefix(text(a)),
            [Tok::Star, Tok::Lit(a)] => Kind::Suffix(text(a)),
            [Tok::Star, Tok::Lit(a), Tok::Star] => Kind::Contains(text(a)),
            _ => Kind::Glob(toks.into_boxed_slice()),
        };
        Some(Pattern { kind, cased })
    }

    /// A regular expression (`|re`), with its sub-modifier flags already in `source`.
    pub(crate) fn regex(regex: regex::Regex) -> Pattern {
        Pattern {
            kind: Kind::Regex(regex),
            cased: true,
        }
    }

    /// The exact text this pattern requires (lower-cased unless cased), for indexing.
    pub(crate) fn exact(&self) -> Option<&str> {
        match &self.kind {
            Kind::Exact(text) => Some(text),
            _ => None,
        }
    }

    /// The prefix this pattern requires (`text*`), lower-cased unless cased, for indexing.
    pub(crate) fn prefix(&self) -> Option<&str> {
        match &self.kind {
            Kind::Prefix(text) => Some(text),
            _ => None,
        }
    }

    /// Whether `hay` matches.
    pub(crate) fn is_match(&self, hay: &str) -> bool {
        if let Kind::Regex(regex) = &self.kind {
            return regex.is_match(hay);
        }
        if self.cased || hay.is_ascii() {
            self.match_bytes(hay.as_bytes(), !self.cased)
        } else {
            let lowered = hay.to_lowercase();
            self.match_bytes(lowered.as_bytes(), false)
        }
    }

    fn match_bytes(&self, hay: &[u8], fold: bool) -> bool {
        match &self.kind {
            Kind::Exact(text) => hay.len() == text.len() && eq_at(hay, 0, text.as_bytes(), fold),
            Kind::Prefix(text) => eq_at(hay, 0, text.as_bytes(), fold),
            Kind::Suffix(text) => hay
                .len()
                .checked_sub(text.len())
                .is_some_and(|at| eq_at(hay, at, text.as_bytes(), fold)),
            Kind::Contains(text) => find(hay, 0, text.as_bytes(), fold).is_some(),
            Kind::Any => true,
            Kind::Glob(toks) => glob(toks, hay, fold),
            Kind::Regex(_) => false,
        }
    }
}

/// Whether `needle` (lower-case when `fold`) sits in `hay` at `at`.
fn eq_at(hay: &[u8], at: usize, needle: &[u8], fold: bool) -> bool {
    let Some(window) = hay.get(at..at + needle.len()) else {
        return false;
    };
    if fold {
        window
            .iter()
            .zip(needle)
            .all(|(h, n)| h.to_ascii_lowercase() == *n)
    } else {
        window == needle
    }
}

/// The first position at or after `from` where `needle` sits in `hay`.
fn find(hay: &[u8], from: usize, needle: &[u8], fold: bool) -> Option<usize> {
    if needle.is_empty() {
        return (from <= hay.len()).then_some(from);
    }
    let last = hay.len().checked_sub(needle.len())?;
    let first = needle[0];
    (from..=last).find(|&at| {
        let h = hay[at];
        (if fold { h.to_ascii_lowercase() } else { h }) == first && eq_at(hay, at, needle, fold)
    })
}

/// Wildcard match of the whole of `hay`: segments between stars, the first anchored at the
/// start and the last at the end, the middle ones taken leftmost (which is enough: a star
/// absorbs whatever a later choice would have skipped).
fn glob(toks: &[Tok], hay: &[u8], fold: bool) -> bool {
    let segments: Vec<&[Tok]> = toks.split(|t| *t == Tok::Star).collect();
    let Some((first, rest)) = segments.split_first() else {
        return true;
    };
    let Some(mut pos) = segment_at(first, hay, 0, fold) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return pos == hay.len();
    };
    for segment in middle {
        match (pos..=hay.len())
            .filter(|&p| is_boundary(hay, p))
            .find_map(|p| segment_at(segment, hay, p, fold))
        {
            Some(end) => pos = end,
            None => return false,
        }
    }
    // The last segment must end at the end: try each start from the right.
    (pos..=hay.len())
        .rev()
        .filter(|&p| is_boundary(hay, p))
        .any(|p| segment_at(last, hay, p, fold) == Some(hay.len()))
}

/// Matches one star-free segment at `at`; the position after it.
fn segment_at(segment: &[Tok], hay: &[u8], mut at: usize, fold: bool) -> Option<usize> {
    for tok in segment {
        match tok {
            Tok::Lit(bytes) => {
                if !eq_at(hay, at, bytes, fold) {
                    return None;
                }
                at += bytes.len();
            }
            Tok::One => {
                let c = *hay.get(at)?;
                at += utf8_len(c);
                if at > hay.len() {
                    return None;
                }
            }
            Tok::Star => return None,
        }
    }
    Some(at)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_boundary(hay: &[u8], at: usize) -> bool {
    at >= hay.len() || (hay[at] as i8) >= -0x40
}

/// Lower-cases text for an index key: ASCII without allocating when already lower-case.
pub(crate) fn fold_key(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) || !text.is_ascii() {
        Cow::Owned(text.to_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, hay: &str) -> bool {
        Pattern::new(SigmaString::parse(pattern), false)
            .unwrap()
            .is_match(hay)
    }

    #[test]
    fn wildcards_and_case() {
        assert!(matches("StopLogging", "stoplogging"));
        assert!(matches("prog?.exe", "progA.exe"));
        assert!(!matches("prog?.exe", "progAB.exe"));
        assert!(matches("antivirus_V*.exe", "antivirus_V21.2.1.exe"));
        assert!(matches("*evil*", "An EVIL thing"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("a*b*c", "abcd"));
        assert!(matches("*", ""));
        assert!(matches("ÄRGER*", "ärger groß"));
        assert!(matches("?rger", "ärger"));
        assert!(!matches("", "x"));
        assert!(matches("", ""));
        let cased = Pattern::new(SigmaString::parse("Stop*"), true).unwrap();
        assert!(cased.is_match("StopLogging"));
        assert!(!cased.is_match("stoplogging"));
    }

    #[test]
    fn escapes_follow_the_specification() {
        // A plain backslash, single or doubled, is one backslash.
        assert!(matches(r"C:\Windows\x.exe", r"C:\Windows\x.exe"));
        assert!(matches(r"C:\\Windows", r"C:\Windows"));
        // An escaped wildcard is the character itself.
        assert!(matches(r"a\*b", "a*b"));
        assert!(!matches(r"a\*b", "aXb"));
        // A backslash before a wildcard, escaped, is a backslash and a wildcard.
        assert!(matches(r"a\\*", r"a\anything"));
        // Three backslashes: a backslash and a plain star.
        assert!(matches(r"a\\\*", r"a\*"));
        assert!(!matches(r"a\\\*", r"a\x"));
        // Four are two.
        assert!(matches(r"a\\\\b", r"a\\b"));
    }

    #[test]
    fn base64_and_offsets_match_pysigma() {
        assert_eq!(base64(b"cmd"), "Y21k");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        // pySigma's own test: base64offset of "foobar".
        assert_eq!(
            base64_offsets(b"foobar"),
            vec!["Zm9vYmFy", "Zvb2Jhc", "mb29iYX"]
        );
        // Each variant is found in a longer encoded text at its offset.
        for prefix in ["", "x", "xy"] {
            let text = base64(format!("{prefix}/bin/bash -c id").as_bytes());
            assert!(
                base64_offsets(b"/bin/bash")
                    .iter()
                    .any(|v| text.contains(v.as_str())),
                "{prefix}"
            );
        }
    }

    #[test]
    fn windash_permutes_word_initial_dashes() {
        let variants: Vec<String> = SigmaString::parse("-enc -x a-b")
            .windash()
            .iter()
            .map(|s| String::from_utf8(s.plain_bytes().unwrap()).unwrap())
            .collect();
        assert_eq!(variants.len(), 25);
        assert!(variants.contains(&"/enc /x a-b".to_owned()));
        assert!(variants.contains(&"\u{2013}enc -x a-b".to_owned()));
        assert!(variants.iter().all(|v| v.ends_with("a-b")));
    }

    #[test]
    fn simple_shapes_compile_to_fast_kinds() {
        let kind = |p: &str| {
            format!(
                "{:?}",
                Pattern::new(SigmaString::parse(p), false).unwrap().kind
            )
        };
        assert!(kind("abc").starts_with("Exact"));
        assert!(kind("abc*").starts_with("Prefix"));
        assert!(kind("*abc").starts_with("Suffix"));
        assert!(kind("*abc*").starts_with("Contains"));
        assert!(kind("a*c").starts_with("Glob"));
        assert_eq!(
            Pattern::new(SigmaString::parse("AbC"), false)
                .unwrap()
                .exact(),
            Some("abc")
        );
    }
}
