//! What PostgreSQL text can hold: everything but U+0000.
//!
//! `text` and `jsonb` refuse the NUL character (`invalid byte sequence` /
//! `unsupported Unicode escape sequence`), yet a model can stream it, a tool can return it
//! and a client can post it. A value that cannot be saved is worse than a value with one
//! character replaced: the write fails, the job retries, and before this module a turn whose
//! answer held a NUL was re-run against its paid provider without end. So every value that
//! a client, a model or a tool controls passes through here on its way into the database,
//! and U+0000 becomes U+FFFD (the replacement character), in strings and object keys alike.
//! Everything else is kept byte for byte.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;

/// `text` without U+0000; borrows when there was none (the common case costs a scan).
pub fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `value` as JSON PostgreSQL accepts: serialized, then every string and key scrubbed.
pub fn pg_json<T: Serialize + ?Sized>(value: &T) -> Json<Value> {
    let mut value = serde_json::to_value(value).unwrap_or(Value::Null);
    scrub(&mut value);
    Json(value)
}

/// Replaces U+0000 in every string and object key of `value`, in place.
pub fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = pg_text(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    scrub(&mut item);
                    map.insert(pg_text(&key).into_owned(), item);
                }
            } else {
                map.values_mut().for_each(scrub);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_becomes_the_replacement_character_in_strings_and_keys() {
        let mut v = json!({"a\u{0}b": ["x\u{0}", {"k": "\u{0}\u{0}"}], "n": 1, "t": true});
        scrub(&mut v);
        assert_eq!(
            v,
            json!({"a\u{FFFD}b": ["x\u{FFFD}", {"k": "\u{FFFD}\u{FFFD}"}], "n": 1, "t": true})
        );
    }

    #[test]
    fn clean_text_is_borrowed_and_a_literal_backslash_u_stays() {
        assert!(matches!(pg_text("plain"), Cow::Borrowed(_)));
        // The six characters `\u0000` are not a NUL and must survive untouched.
        let literal = json!({"code": "\\u0000"});
        assert_eq!(pg_json(&literal).0, literal);
    }
}
