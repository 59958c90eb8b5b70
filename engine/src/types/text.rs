//! Text from outside the engine — what a plugin logs, warns, fails with or outputs, what a
//! releaser or an approver writes — shown on a terminal or in a text file. Stored text keeps
//! what was written; every printer shows it through [`Escaped`] (or [`escape`]), so that such
//! text is always one line, visibly someone's, and never drives the terminal.
//!
//! Escaped, as Rust writes them: the C0 controls except tab (`\n`, `\r`, `\x1b`, …), DEL
//! (`\x7f`), the C1 controls (`\u{9b}`, …), the bidirectional controls (U+061C, U+200E, U+200F,
//! U+202A–U+202E, U+2066–U+2069: `\u{202e}`) and the line and paragraph separators U+2028 and
//! U+2029. Everything else, other languages and emoji included, is shown as written.
//!
//! The backslash itself is **not** escaped: a plugin can print the literal text `\x1b`, which
//! is harmless (it is not a control), and escaping stays idempotent — text that was escaped
//! once (a server's text log, say) can be escaped again by the CLI without doubling.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` is shown escaped: a C0 control other than tab, DEL, a C1 control, a
/// bidirectional control, or the line or paragraph separator.
pub fn is_escaped(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\n'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` as it is shown: borrowed (no allocation) when nothing in it needs escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    match text.find(is_escaped) {
        None => Cow::Borrowed(text),
        Some(_) => Cow::Owned(Escaped(text).to_string()),
    }
}

/// Shows its text escaped (see the module doc); `{:<16}` and the like pad what is shown.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            return f.pad(&escape(self.0));
        }
        write_escaped(f, self.0, is_escaped)
    }
}

/// Shows engine text made of several lines (an error with its diagnostics) with every line
/// escaped and the line breaks (`\n`) kept.
#[derive(Debug, Clone, Copy)]
pub struct Lines<'a>(pub &'a str);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, |c| c != '\n' && is_escaped(c))
    }
}

/// A JSON text made safe to print: the characters [`is_escaped`] names that JSON encoders
/// leave raw (DEL, the C1 and bidirectional controls, U+2028, U+2029) written as `\uXXXX`
/// escapes, so the JSON means the same and no such character reaches the terminal. Line
/// breaks between tokens (pretty printing) are kept; a JSON string holds none raw.
pub fn json(text: &str) -> Cow<'_, str> {
    let escaped = |c: char| c != '\n' && c != '\r' && is_escaped(c);
    if !text.contains(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped(c) {
            // Every escaped character is in the Basic Multilingual Plane: one UTF-16 unit.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `text` to `out`, each character `escaped` says so written as Rust writes it, the
/// runs between them as they are.
fn write_escaped(
    out: &mut impl fmt::Write,
    text: &str,
    escaped: impl Fn(char) -> bool,
) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(&escaped) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\0'..='\x1f' | '\x7f' => write!(out, "\\x{:02x}", u32::from(c))?,
            _ => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{Escaped, Lines, escape, is_escaped, json};

    /// Every character the module doc names.
    fn named() -> Vec<char> {
        let ranges = [
            (0x00, 0x08),
            (0x0a, 0x1f),
            (0x7f, 0x9f),
            (0x61c, 0x61c),
            (0x200e, 0x200f),
            (0x2028, 0x202e),
            (0x2066, 0x2069),
        ];
        ranges
            .iter()
            .flat_map(|&(a, b)| (a..=b).filter_map(char::from_u32))
            .collect()
    }

    #[test]
    fn exactly_the_named_characters_are_escaped() {
        let named = named();
        assert_eq!(named.len(), 9 + 22 + 33 + 1 + 2 + 7 + 4);
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(is_escaped(c), named.contains(&c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn every_named_character_is_shown_as_printable_ascii_on_one_line() {
        for c in named() {
            let text = format!("a{c}b");
            let shown = escape(&text);
            assert!(matches!(shown, Cow::Owned(_)), "U+{:04X}", u32::from(c));
            let inner = &shown[1..shown.len() - 1];
            assert!(inner.starts_with('\\'), "{shown}");
            assert!(
                inner.chars().all(|c| c.is_ascii_graphic()),
                "U+{:04X} shown as {shown:?}",
                u32::from(c)
            );
            assert_eq!(Escaped(&text).to_string(), shown);
        }
    }

    #[test]
    fn the_escapes_are_written_as_rust_writes_them() {
        assert_eq!(escape("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape("a\nb\rc\0"), "a\\nb\\rc\\x00");
        assert_eq!(escape("\x7f\u{9b}"), "\\x7f\\u{9b}");
        assert_eq!(escape("\u{202e}olleh\u{2069}"), "\\u{202e}olleh\\u{2069}");
        assert_eq!(
            escape("\u{61c}\u{2028}\u{2029}"),
            "\\u{61c}\\u{2028}\\u{2029}"
        );
    }

    #[test]
    fn plain_text_tabs_and_other_scripts_are_borrowed_as_written() {
        for text in [
            "",
            "deployed 3 files",
            "key=value\twith a tab",
            "héllo wörld — ✔ 日本語 שלום 🚀",
            "a literal \\x1b is not a control",
            "\u{a0}\u{ad}\u{200b}\u{feff}",
        ] {
            assert!(
                matches!(escape(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
            assert_eq!(Escaped(text).to_string(), text);
        }
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let hostile = "\x1b]0;title\x07\r\n[space-game-1] prod: ok\u{202e}\u{85}";
        let once = escape(hostile).into_owned();
        assert_eq!(escape(&once), once.as_str());
        assert!(!once.contains(is_escaped));
    }

    #[test]
    fn padding_applies_to_what_is_shown() {
        assert_eq!(format!("[{:<6}]", Escaped("a\nb")), "[a\\nb  ]");
        assert_eq!(format!("[{:>4}]", Escaped("ok")), "[  ok]");
    }

    #[test]
    fn lines_keep_their_breaks_and_escape_the_rest() {
        let text = "error: bad\x1b[31m\n  --> a.toml:1:2\r\n  = help: \u{202e}";
        assert_eq!(
            Lines(text).to_string(),
            "error: bad\\x1b[31m\n  --> a.toml:1:2\\r\n  = help: \\u{202e}"
        );
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_its_raw_controls() {
        let value = serde_json::json!({
            "what": "a\u{7f}\u{9b}31m\u{202e}\u{2028}b\x1b\n",
            "plain": "ok ✔",
        });
        for text in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let safe = json(&text);
            assert!(!safe.contains(|c| c != '\n' && is_escaped(c)), "{safe}");
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back, value);
        }
        let plain = serde_json::to_string_pretty(&serde_json::json!({"a": "b"})).unwrap();
        assert!(matches!(json(&plain), Cow::Borrowed(_)));
    }
}
