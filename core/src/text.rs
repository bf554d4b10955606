//! What user and model text may hold before it is stored or shown.
//!
//! PostgreSQL refuses U+0000 in `text` and in `jsonb` strings: a request or an answer holding
//! one would fail at save time, every time. [`scrub_nul`] and [`scrub_nul_str`] replace it with
//! U+FFFD (the replacement character) before anything is written, so it is never an error.
//!
//! Short labels people read in lists and emails (titles, label keys and values) must not hold
//! control characters at all: a newline or an escape sequence there forges lines in an email,
//! a terminal or a log, and bidirectional overrides make a title read differently from what
//! it is. [`forbidden_char`] finds the first such character so the API can refuse it by name.

use std::borrow::Cow;

/// What U+0000 becomes.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// `text` with every U+0000 replaced by U+FFFD; borrowed when there is none (the usual case).
pub fn scrub_nul_str(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Replaces U+0000 in place in `text`.
pub fn scrub_nul_string(text: &mut String) {
    if let Cow::Owned(clean) = scrub_nul_str(text) {
        *text = clean;
    }
}

/// Replaces U+0000 in every string of a JSON value, object keys included.
pub fn scrub_nul(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => scrub_nul_string(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    scrub_nul(&mut v);
                    map.insert(scrub_nul_str(&k).into_owned(), v);
                }
            } else {
                map.values_mut().for_each(scrub_nul);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The first character of `text` that a title or a label may not hold: a control character
/// (C0, DEL, C1: newlines, tabs, escapes, U+0000), a line or paragraph separator, or a
/// bidirectional embedding, override or isolate.
pub fn forbidden_char(text: &str) -> Option<char> {
    text.chars().find(|&c| is_forbidden(c))
}

/// Whether a title or a label may not hold `c` (see [`forbidden_char`]).
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// How [`forbidden_char`]'s finding is named in a 400: `U+000A`.
pub fn describe_char(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_becomes_the_replacement_character_everywhere() {
        assert_eq!(scrub_nul_str("a\0b"), "a\u{FFFD}b");
        assert!(matches!(scrub_nul_str("clean"), Cow::Borrowed(_)));
        let mut v = serde_json::json!({"k\u{0}": ["x\u{0}", {"y": "\u{0}"}], "n": 1});
        scrub_nul(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"k\u{FFFD}": ["x\u{FFFD}", {"y": "\u{FFFD}"}], "n": 1})
        );
    }

    #[test]
    fn titles_may_not_hold_control_or_bidi_characters() {
        assert_eq!(forbidden_char("Fix the build"), None);
        assert_eq!(forbidden_char("naïve — 日本語 🚀"), None);
        assert_eq!(forbidden_char("a\nb"), Some('\n'));
        assert_eq!(forbidden_char("a\tb"), Some('\t'));
        assert_eq!(forbidden_char("\u{1b}[31mred"), Some('\u{1b}'));
        assert_eq!(forbidden_char("\u{0}"), Some('\0'));
        assert_eq!(forbidden_char("\u{85}"), Some('\u{85}'));
        assert_eq!(forbidden_char("abc\u{202E}cba"), Some('\u{202E}'));
        assert_eq!(describe_char('\n'), "U+000A");
    }
}
