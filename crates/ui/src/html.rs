//! Making telemetry safe for HTML: every string that came from telemetry, a policy file or a
//! request reaches a page through [`esc`] (or [`esc_block`]), and every link through [`href`].
//!
//! Escaping covers element content and quoted attribute values alike (`& < > " '`). Control
//! characters (ANSI escapes among them), zero-width characters and bidirectional overrides are
//! shown as visible `\u{..}` escapes, as the command line shows them: an identity named
//! `\u{1b}[31m<script>` reads as exactly that, and cannot reorder or hide the text around it.

use std::fmt::{self, Display, Write};

/// Text escaped for HTML, written through `Display`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Esc<'a> {
    text: &'a str,
    keep_lines: bool,
}

/// `text` escaped for one line of HTML content or a quoted attribute value.
pub(crate) fn esc(text: &str) -> Esc<'_> {
    Esc {
        text,
        keep_lines: false,
    }
}

/// `text` escaped for a `<pre>` block: as [`esc`], but line feeds and tabs are kept.
pub(crate) fn esc_block(text: &str) -> Esc<'_> {
    Esc {
        text,
        keep_lines: true,
    }
}

/// Whether `c` must be shown as a visible escape rather than as itself.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut safe_from = 0;
        for (at, c) in self.text.char_indices() {
            let replacement: Option<&str> = match c {
                '&' => Some("&amp;"),
                '<' => Some("&lt;"),
                '>' => Some("&gt;"),
                '"' => Some("&quot;"),
                '\'' => Some("&#39;"),
                '\n' | '\t' if self.keep_lines => None,
                c if hidden(c) => Some(""),
                _ => None,
            };
            let Some(replacement) = replacement else {
                continue;
            };
            f.write_str(&self.text[safe_from..at])?;
            if replacement.is_empty() {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            } else {
                f.write_str(replacement)?;
            }
            safe_from = at + c.len_utf8();
        }
        f.write_str(&self.text[safe_from..])
    }
}

/// A query-string value, percent-encoded: everything but unreserved ASCII.
struct Pct<'a>(&'a str);

impl Display for Pct<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                f.write_char(char::from(byte))?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

/// A link to `path` (a constant of this crate) with query parameters, ready for a quoted
/// `href` attribute: values percent-encoded, separators written `&amp;`. Empty values are left
/// out, so that a link keeps only the filters that are set.
pub(crate) fn href(path: &'static str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(path.len() + 32);
    out.push_str(path);
    let mut first = true;
    for (name, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(if first { "?" } else { "&amp;" });
        first = false;
        let _ = write!(out, "{}={}", Pct(name), Pct(value));
    }
    out
}

/// A time as `YYYY-MM-DD HH:MM:SS` (UTC), for table cells.
pub(crate) fn short_time(time: nhiwatch_model::Timestamp) -> String {
    let text = time.to_string();
    match (text.get(..10), text.get(11..19)) {
        (Some(day), Some(clock)) => format!("{day} {clock}"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#).to_string(),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("plain ünïcode ✓").to_string(), "plain ünïcode ✓");
        assert_eq!(esc("").to_string(), "");
    }

    #[test]
    fn control_and_bidi_characters_become_visible_escapes() {
        assert_eq!(
            esc("a\u{1b}[31mred\u{7}\n").to_string(),
            "a\\u{1b}[31mred\\u{7}\\u{a}"
        );
        assert_eq!(
            esc("\u{202e}evil\u{200b}").to_string(),
            "\\u{202e}evil\\u{200b}"
        );
        assert_eq!(esc("\u{9b}31m").to_string(), "\\u{9b}31m");
        assert_eq!(
            esc_block("{\n\t\"a\": \"<b>\"\n}").to_string(),
            "{\n\t&quot;a&quot;: &quot;&lt;b&gt;&quot;\n}"
        );
        assert_eq!(esc_block("x\u{1b}y\r").to_string(), "x\\u{1b}y\\u{d}");
    }

    #[test]
    fn links_encode_values_and_escape_separators() {
        assert_eq!(
            href(
                "/ui/identity",
                &[("id", "arn:aws:iam::1:role/a b&c\"<"), ("from", "")]
            ),
            "/ui/identity?id=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b%26c%22%3C"
        );
        assert_eq!(
            href("/ui/finding", &[("id", "f-1"), ("identity", "ü")]),
            "/ui/finding?id=f-1&amp;identity=%C3%BC"
        );
        assert_eq!(href("/ui/", &[]), "/ui/");
    }

    #[test]
    fn times_are_shortened_for_cells() {
        let time = nhiwatch_model::Timestamp::parse_rfc3339("2026-03-02T10:11:12.5Z").unwrap();
        assert_eq!(short_time(time), "2026-03-02 10:11:12");
    }
}
