//! Output helpers shared by subcommands: terminal-safe text and fixed-width tables.

use std::fmt::Write;

/// Replaces control characters (ANSI escapes among them) with `\u{..}` escapes, so that text
/// taken from telemetry cannot move the cursor, recolour or rewrite a person's terminal.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Fits `text` into `width` characters, sanitised, cutting with `…` when it is longer.
pub fn cell(text: &str, width: usize) -> String {
    let clean = sanitize(text);
    let count = clean.chars().count();
    if count <= width {
        format!("{clean:<width$}")
    } else {
        let mut cut: String = clean.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\u{1b}[31mred\n"), "a\\u{1b}[31mred\\u{a}");
        assert_eq!(sanitize("plain ünïcode"), "plain ünïcode");
        assert_eq!(sanitize("\u{202e}evil"), "\\u{202e}evil");
    }

    #[test]
    fn cells_are_cut_to_width() {
        assert_eq!(cell("abc", 5), "abc  ");
        assert_eq!(cell("abcdef", 4), "abc…");
    }
}
