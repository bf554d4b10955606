//! What short text people read in lists and emails may hold.
//!
//! Titles, label keys and label values must not hold control characters at all: a newline or
//! an escape sequence there forges lines in an email, a terminal or a log, and bidirectional
//! overrides make a title read differently from what it is. [`forbidden_char`] finds the
//! first such character so the API can refuse it by name.
//!
//! (U+0000, which PostgreSQL cannot store, is replaced on every write by `store::pg_text`;
//! this module is about what a title may show, not what the database accepts.)

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
