//! A small pull reader for one JSON record: it validates the whole text as JSON (RFC 8259, the
//! same grammar serde_json accepts) in one pass and hands out the values the caller asks for,
//! borrowed from the text when they have no escapes.
//!
//! The CloudTrail and Kubernetes audit decoders read a dozen fields out of records of a kilobyte
//! or more and skip the rest (request parameters, request and response objects, annotations).
//! serde's derived deserializers spend most of their time on that skipping and on moving field
//! structs about; this reader skips with a few instructions per token and finds the ends of
//! strings through bit masks computed for 64 bytes at a time, which is what lets decoding keep
//! up with the reader (see `benches/decode.rs`).

use std::borrow::Cow;

use nhiwatch_model::Text;

use crate::DecodeError;

/// Containers nested deeper than this are refused, so that a hostile record cannot exhaust the
/// stack: serde_json refuses them in the values it deserializes (and skips deeper ones without
/// recursing); this reader recurses as it skips, so it refuses them anywhere.
const MAX_DEPTH: u32 = 128;

/// A JSON value where a string is expected: absent (missing or `null`), a string, a boolean, a
/// number (its text), or a container (named for error messages).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) enum Field<'a> {
    #[default]
    Absent,
    Text(Text<'a>),
    Bool(bool),
    Number(&'a str),
    Container(&'static str),
}

impl<'a> Field<'a> {
    /// The string, `None` when absent, an error naming `name` when of another type.
    #[inline]
    pub(crate) fn text(
        self,
        name: &'static str,
    ) -> std::result::Result<Option<Text<'a>>, DecodeError> {
        match self {
            Field::Text(text) => Ok(Some(text)),
            other => other.as_str(name).map(|_| None),
        }
    }

    /// Like [`Field::text`], with an empty string taken as absent.
    #[inline]
    pub(crate) fn nonempty(
        self,
        name: &'static str,
    ) -> std::result::Result<Option<Text<'a>>, DecodeError> {
        Ok(self.text(name)?.filter(|text| !text.is_empty()))
    }

    /// Like [`Field::text`], without giving the string up.
    #[inline]
    pub(crate) fn as_str(
        &self,
        name: &'static str,
    ) -> std::result::Result<Option<&str>, DecodeError> {
        match self {
            Field::Absent => Ok(None),
            Field::Text(text) => Ok(Some(text)),
            other => Err(DecodeError::field(
                name,
                format!("expected a string, found {}", other.found()),
            )),
        }
    }

    /// What the value is, in words: "a string", "a number", "an array", ... ("null" when absent).
    pub(crate) fn found(&self) -> &'static str {
        match self {
            Field::Absent => "null",
            Field::Text(_) => "a string",
            Field::Bool(_) => "a boolean",
            Field::Number(_) => "a number",
            Field::Container(found) => found,
        }
    }

    /// The string when it is one and not empty: for values that are only hints.
    pub(crate) fn into_text(self) -> Option<Text<'a>> {
        match self {
            Field::Text(text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }

    /// `true` or `"true"`; anything else is false.
    pub(crate) fn flag(&self) -> bool {
        match self {
            Field::Bool(flag) => *flag,
            Field::Text(text) => text.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// A non-negative count, from a number (CloudTrail writes `500.0`) or a numeric string.
    pub(crate) fn count(&self) -> Option<u64> {
        let value: f64 = match self {
            // The grammar was checked, so Rust's float syntax (a superset) accepts a number.
            Field::Number(number) => number.parse().ok()?,
            Field::Text(text) => text.trim().parse().ok()?,
            _ => return None,
        };
        // `as` saturates at u64::MAX; NaN and negative values are not counts.
        (value.is_finite() && value >= 0.0).then_some(value as u64)
    }
}

/// What a value turned out to be when an object was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An object, whose members were handed to the caller.
    Object,
    /// `null`.
    Null,
    /// Something else, skipped: "a string", "an array", ...
    Other(&'static str),
}

/// Where and why a text is not JSON. Small and `Copy`, so that the hot paths pass results in
/// registers; it becomes a [`DecodeError`] at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Error {
    /// Byte offset.
    at: usize,
    what: &'static str,
}

impl From<Error> for DecodeError {
    fn from(err: Error) -> Self {
        DecodeError::new(format!(
            "invalid JSON at column {}: {}",
            err.at + 1,
            err.what
        ))
    }
}

/// A reader result.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Reads one JSON text.
pub(crate) struct Json<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
    /// Which 64-byte block of the text `marks` describes (`usize::MAX`: none yet).
    block: usize,
    /// The bytes of that block that end a run of plain string text, one bit per byte. Strings
    /// are scanned through these masks, so each block is classified once however many strings
    /// it holds.
    marks: Marks,
}

/// Bit `k` set for byte `k` of a 64-byte block.
#[derive(Clone, Copy, Default)]
struct Marks {
    /// Quotes.
    quotes: u64,
    /// Backslashes and control characters.
    others: u64,
}

impl<'a> Json<'a> {
    /// A reader at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Json {
            text,
            pos: 0,
            depth: 0,
            block: usize::MAX,
            marks: Marks::default(),
        }
    }

    /// Checks that nothing but whitespace follows the value just read.
    pub(crate) fn finish(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters after the JSON value")),
        }
    }

    /// Reads an object, calling `member` with each key; `member` must read the value (with any
    /// method of this reader, [`Json::skip`] when it has no use for it). A value that is not an
    /// object is skipped and its shape returned.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &str) -> Result<()>,
    ) -> Result<Shape> {
        match self.peek() {
            Some(b'{') => {}
            Some(b'n') => return self.literal(b"null").map(|()| Shape::Null),
            _ => return self.skip_other(),
        }
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.leave();
            return Ok(Shape::Object);
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key in quotes"));
            }
            match self.string_end()? {
                (end, false) => {
                    let key = self.text.get(self.pos + 1..end).unwrap_or_default();
                    self.pos = end + 1;
                    self.colon()?;
                    member(self, key)?;
                }
                (end, true) => {
                    let key = self.unescape(end)?;
                    self.pos = end + 1;
                    self.colon()?;
                    member(self, &key)?;
                }
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.leave();
                    return Ok(Shape::Object);
                }
                _ => return Err(self.error("expected `,` or `}` in an object")),
            }
        }
    }

    /// Reads an array, calling `element` for each element, which must read it. A value that is
    /// not an array is skipped.
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        if self.peek() != Some(b'[') {
            return self.skip();
        }
        self.enter()?;
        if self.peek() == Some(b']') {
            self.leave();
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.leave();
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `]` in an array")),
            }
        }
    }

    /// Reads a value where a string is expected (containers are skipped).
    pub(crate) fn field(&mut self) -> Result<Field<'a>> {
        Ok(match self.peek() {
            Some(b'"') => Field::Text(self.string()?),
            Some(b'n') => {
                self.literal(b"null")?;
                Field::Absent
            }
            Some(b't') => {
                self.literal(b"true")?;
                Field::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Field::Bool(false)
            }
            Some(b'-' | b'0'..=b'9') => Field::Number(self.number()?),
            Some(b'[') => {
                self.skip()?;
                Field::Container("an array")
            }
            Some(b'{') => {
                self.skip()?;
                Field::Container("an object")
            }
            _ => return Err(self.error("expected a JSON value")),
        })
    }

    /// Whether the next value is an array (which [`Json::array`] would open).
    pub(crate) fn at_array(&mut self) -> bool {
        self.peek() == Some(b'[')
    }

    /// Reads any value and returns its text, for reading again later.
    pub(crate) fn raw(&mut self) -> Result<&'a str> {
        let start = self.position();
        self.skip()?;
        Ok(self.since(start))
    }

    /// Where the next value starts.
    pub(crate) fn position(&mut self) -> usize {
        self.peek();
        self.pos
    }

    /// The text read since `start` (a [`Json::position`]).
    pub(crate) fn since(&self, start: usize) -> &'a str {
        self.text.get(start..self.pos).unwrap_or_default()
    }

    /// The text from the next value to the end.
    pub(crate) fn rest(&mut self) -> &'a str {
        self.peek();
        self.text.get(self.pos..).unwrap_or_default()
    }

    /// Steps over the next `len` bytes, which the caller knows to be one whole value: the same
    /// bytes as a value this reader's grammar accepted before at the same depth.
    pub(crate) fn step_over(&mut self, len: usize) {
        self.pos += len;
    }

    /// Reads any value without keeping it (validating it all the same).
    pub(crate) fn skip(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'"') => {
                let (end, _) = self.string_end()?;
                self.pos = end + 1;
                Ok(())
            }
            Some(b'{') => self.object(|json, _| json.skip()).map(drop),
            Some(b'[') => self.array(Json::skip),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("the record ends where a value was expected")),
        }
    }

    /// Skips a value that is neither an object nor null, naming its shape.
    fn skip_other(&mut self) -> Result<Shape> {
        let shape = found(self.rest());
        self.skip()?;
        Ok(Shape::Other(shape))
    }

    /// Steps over the opening bracket of an object or array.
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested more than 128 deep"));
        }
        self.pos += 1;
        Ok(())
    }

    /// Steps over the closing bracket of an object or array.
    fn leave(&mut self) {
        self.pos += 1;
        self.depth -= 1;
    }

    fn colon(&mut self) -> Result<()> {
        if self.peek() != Some(b':') {
            return Err(self.error("expected `:` after a key"));
        }
        self.pos += 1;
        Ok(())
    }

    /// The next byte that is not whitespace, which the reader is left at.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        let end = self.pos + word.len();
        if self.text.as_bytes().get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    /// Reads a number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) and returns its text.
    fn number(&mut self) -> Result<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(bytes, i),
            _ => {
                return Err(Error {
                    at: i,
                    what: "invalid number",
                })
            }
        }
        if bytes.get(i) == Some(&b'.') {
            let end = digits(bytes, i + 1);
            if end == i + 1 {
                return Err(Error {
                    at: end,
                    what: "invalid number: no digit after `.`",
                });
            }
            i = end;
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(bytes, i);
            if end == i {
                return Err(Error {
                    at: end,
                    what: "invalid number: no digit in the exponent",
                });
            }
            i = end;
        }
        self.pos = i;
        Ok(self.text.get(start..i).unwrap_or_default())
    }

    /// Reads a string, borrowed when it has no escapes.
    #[inline]
    fn string(&mut self) -> Result<Text<'a>> {
        let (end, escaped) = self.string_end()?;
        let text = if escaped {
            Cow::Owned(self.unescape(end)?)
        } else {
            Cow::Borrowed(self.text.get(self.pos + 1..end).unwrap_or_default())
        };
        self.pos = end + 1;
        Ok(text)
    }

    /// The string from the opening quote at the reader's position to the closing one at `end`,
    /// escapes decoded. Rare in CloudTrail (a quote in a user agent, an escaped slash), so
    /// serde_json does it, surrogate pairs included.
    #[cold]
    fn unescape(&self, end: usize) -> Result<String> {
        let quoted = self.text.get(self.pos..=end).unwrap_or("\"\"");
        serde_json::from_str(quoted).map_err(|_| Error {
            at: self.pos,
            what: "a string's \\u escapes are not valid UTF-16 (an unpaired surrogate)",
        })
    }

    /// With the reader at a string's opening quote: the position of its closing quote, and
    /// whether it has escapes (each checked).
    #[inline]
    fn string_end(&mut self) -> Result<(usize, bool)> {
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            let block = i / 64;
            if block != self.block {
                self.classify(block)?;
            }
            let shift = i % 64;
            // `trailing_zeros` of an empty mask is 64: nothing in the rest of this block.
            let quote = (self.marks.quotes >> shift).trailing_zeros() as usize;
            let other = (self.marks.others >> shift).trailing_zeros() as usize;
            if quote < other {
                return Ok((i + quote, escaped));
            }
            if other < 64 {
                i = self.escape(i + other)?;
                escaped = true;
            } else {
                i = (block + 1) * 64;
            }
        }
    }

    /// Classifies the bytes of a 64-byte block; an error when the text ends before it.
    #[inline(never)]
    fn classify(&mut self, block: usize) -> Result<()> {
        let bytes = self.text.as_bytes();
        let start = block * 64;
        let rest = match bytes.get(start..) {
            Some(rest) if !rest.is_empty() => rest,
            _ => {
                return Err(Error {
                    at: bytes.len(),
                    what: "the record ends inside a string",
                })
            }
        };
        self.marks = match (rest.first_chunk::<64>(), bytes.last_chunk::<64>()) {
            (Some(chunk), _) => block_marks(chunk),
            (None, Some(last)) => {
                // The short block that ends the text: classify the text's last 64 bytes and
                // shift out those before this block (the bits shifted in, past the end, are 0).
                let before = start - (bytes.len() - 64);
                let marks = block_marks(last);
                Marks {
                    quotes: marks.quotes >> before,
                    others: marks.others >> before,
                }
            }
            (None, None) => short_text_marks(rest),
        };
        self.block = block;
        Ok(())
    }

    /// Checks the escape or control character at `i` inside a string and returns the position
    /// after it.
    #[cold]
    fn escape(&self, i: usize) -> Result<usize> {
        let bytes = self.text.as_bytes();
        if bytes.get(i) != Some(&b'\\') {
            return Err(Error {
                at: i,
                what: "control character in a string (it must be escaped)",
            });
        }
        match bytes.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u')
                if bytes
                    .get(i + 2..i + 6)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
            {
                Ok(i + 6)
            }
            Some(b'u') => Err(Error {
                at: i,
                what: "invalid \\u escape in a string",
            }),
            _ => Err(Error {
                at: i,
                what: "invalid escape in a string",
            }),
        }
    }

    fn error(&self, what: &'static str) -> Error {
        Error { at: self.pos, what }
    }
}

/// What the JSON value that `value` starts with is, in words ("a string", "null", ...): its
/// first byte tells.
pub(crate) fn found(value: &str) -> &'static str {
    match value.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// The index after the ASCII digits starting at `i`.
fn digits(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The marks of a text shorter than 64 bytes, padded with spaces (which are plain).
#[cold]
fn short_text_marks(bytes: &[u8]) -> Marks {
    let mut padded = [b' '; 64];
    if let Some(head) = padded.get_mut(..bytes.len()) {
        head.copy_from_slice(bytes);
    }
    block_marks(&padded)
}

/// The marks of a 64-byte block, sixteen bytes at a time with SSE2 (which every x86-64
/// processor has).
#[cfg(target_arch = "x86_64")]
fn block_marks(block: &[u8; 64]) -> Marks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut marks = Marks::default();
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86-64 baseline, so these instructions exist on every
        // processor this code is built for; the load reads the 16 bytes of `chunk` and has no
        // alignment requirement.
        let (quotes, others) = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // A byte is below 0x20 exactly when max(byte, 0x1f) == 0x1f (unsigned).
            let below_space = _mm_set1_epi8(0x1f);
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, below_space), below_space);
            (
                _mm_movemask_epi8(quote),
                _mm_movemask_epi8(_mm_or_si128(backslash, control)),
            )
        };
        // `movemask` fills the low 16 bits only.
        marks.quotes |= u64::from(quotes as u16) << (16 * k);
        marks.others |= u64::from(others as u16) << (16 * k);
    }
    marks
}

/// The marks of a 64-byte block, byte by byte.
#[cfg(not(target_arch = "x86_64"))]
fn block_marks(block: &[u8; 64]) -> Marks {
    let mut marks = Marks::default();
    for (k, &b) in block.iter().enumerate() {
        marks.quotes |= u64::from(b == b'"') << k;
        marks.others |= u64::from(b == b'\\' || b < 0x20) << k;
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid(text: &str) -> bool {
        let mut json = Json::new(text);
        json.skip().and_then(|()| json.finish()).is_ok()
    }

    #[test]
    fn accepts_what_json_allows() {
        for text in [
            r#"{"a":[1,-0.5e+3,true,false,null,{"b":"c\"\\\/\b\f\n\r\t\u00e9"}],"d":{}}"#,
            " [ ] ",
            "0",
            r#""\ud83d\ude00""#,
            "-12.5E-7",
        ] {
            assert!(valid(text), "{text}");
        }
    }

    #[test]
    fn refuses_what_json_does_not() {
        for text in [
            "",
            "{",
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            "[1,]",
            "01",
            "1.",
            "1e",
            "-",
            "tru",
            "nul",
            r#""\x""#,
            r#""\u12g4""#,
            "\"a\u{1}b\"",
            "\"open",
            "{} {}",
            "{'a':1}",
            &"[".repeat(200),
        ] {
            assert!(!valid(text), "{text:?}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut json = Json::new(r#"["plain","a\"b"]"#);
        let mut seen = Vec::new();
        json.array(|json| {
            seen.push(json.field()?);
            Ok(())
        })
        .unwrap();
        assert!(matches!(&seen[0], Field::Text(Cow::Borrowed("plain"))));
        assert_eq!(seen[1], Field::Text(Cow::Owned("a\"b".into())));
    }

    #[test]
    fn strings_end_where_they_end_across_blocks() {
        for pad in 0..70 {
            for len in [0, 1, 15, 16, 17, 62, 63, 64, 65, 127, 128, 130] {
                let body = "x".repeat(len);
                let text = format!("{}[\"{body}\",\"{body}\\\"q\"]", " ".repeat(pad));
                let mut json = Json::new(&text);
                let mut seen = Vec::new();
                json.array(|json| {
                    seen.push(json.field()?);
                    Ok(())
                })
                .unwrap();
                json.finish().unwrap();
                let quoted = format!("{body}\"q");
                assert_eq!(
                    seen,
                    [
                        Field::Text(body.as_str().into()),
                        Field::Text(quoted.into())
                    ]
                );
                assert!(!valid(&text[..text.len() - 3]), "unterminated: {text}");
                let control = text.replacen(&body, &format!("{body}\u{1}"), 1);
                assert!(!valid(&control), "a raw control character: {control:?}");
            }
        }
    }

    #[test]
    fn fields_name_wrong_types() {
        let field = |text| Json::new(text).field().unwrap();
        assert_eq!(
            field("[1]").text("x").unwrap_err().to_string(),
            "field `x`: expected a string, found an array"
        );
        assert_eq!(
            field("7").text("x").unwrap_err().to_string(),
            "field `x`: expected a string, found a number"
        );
        assert_eq!(field("null").text("x").unwrap(), None);
        assert_eq!(
            field("2.50e1"),
            Field::Number("2.50e1"),
            "numbers keep their text"
        );
        let found: Vec<_> = ["null", "\"s\"", "true", "-1", "[]", "{}"]
            .map(|text| field(text).found())
            .into();
        assert_eq!(
            found,
            [
                "null",
                "a string",
                "a boolean",
                "a number",
                "an array",
                "an object"
            ]
        );
        assert!(field("true").flag() && field(r#""True""#).flag() && !field("1").flag());
        assert_eq!(field("500.0").count(), Some(500));
        assert_eq!(field(r#"" 42 ""#).count(), Some(42));
        assert_eq!(field("-1").count(), None);
    }

    #[test]
    fn arrays_are_told_before_they_are_read() {
        let mut json = Json::new(r#" [1] {"a":[]}"#);
        assert!(json.at_array());
        json.skip().unwrap();
        assert!(!json.at_array());
    }

    #[test]
    fn objects_report_their_shape() {
        let shape = |text| Json::new(text).object(|json, _| json.skip()).unwrap();
        assert_eq!(shape(r#"{"a":1}"#), Shape::Object);
        assert_eq!(shape("null"), Shape::Null);
        assert_eq!(shape(r#""{\"a\":1}""#), Shape::Other("a string"));
        assert_eq!(shape("[{}]"), Shape::Other("an array"));
    }

    #[test]
    fn errors_give_the_column() {
        let mut json = Json::new(r#"{"a":1 "b":2}"#);
        let err = DecodeError::from(json.skip().unwrap_err());
        assert_eq!(
            err.to_string(),
            "invalid JSON at column 8: expected `,` or `}` in an object"
        );
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "\\PC{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever serde_json accepts, this reader accepts, and the other way round, including
        /// after a random edit of a valid text.
        #[test]
        fn agrees_with_serde_json(value in json_value(), at in any::<prop::sample::Index>(), edit in 0u8..4, byte in any::<char>()) {
            let mut text = serde_json::to_string(&value).unwrap();
            if !text.is_empty() {
                let mut i = at.index(text.len());
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                match edit {
                    0 => { text.remove(i); }
                    1 => text.insert(i, byte),
                    2 => text.insert(i, ['"', '\\', ',', ':', '{', '}', '[', ']', '-', '.', 'e', '0'][i % 12]),
                    _ => {}
                }
            }
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            prop_assert_eq!(valid(&text), theirs, "{:?}", text);
        }
    }
}
