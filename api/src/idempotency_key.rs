//! The `Idempotency-Key` header of `POST /api/v1/chats` (ARCHITECTURE.md §9).
//!
//! A client that sent a create and got no answer (its timeout, a dropped connection, a 503
//! from a server whose database went away after the commit) cannot tell whether the chat
//! exists. With a key it sends the same request again and gets the chat its first try
//! made, or the chat is made now; never a second one. The store makes that exact
//! (`Store::create_chat`: a unique index per owner, so two tries at once make one chat).
//!
//! The key is the client's: 1 to [`MAX_KEY_CHARS`] visible ASCII characters (a UUID is
//! the usual choice), unique among its owner's chats for as long as the chat exists. The
//! request it came with is kept as a SHA-256 of its body's JSON ([`fingerprint`]), so a
//! key reused for a different request is refused (400 naming the header) instead of
//! answering with a chat the client did not ask for.

use agentq_core::domain::IdempotencyKey;
use axum::{
    extract::{FromRequest, Request},
    http::{HeaderMap, HeaderName, HeaderValue},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    ApiState,
    error::ApiError,
    extract::{json_bytes, parse_json},
};

/// The request header.
pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header of a create answered from an earlier try's chat: `true`.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The header's value on a replay.
pub const REPLAYED_TRUE: HeaderValue = HeaderValue::from_static("true");

/// Longest key.
pub const MAX_KEY_CHARS: usize = 255;

/// The field errors name.
const FIELD: &str = "Idempotency-Key";

/// A JSON body (as [`crate::extract::JsonBody`] reads it) and the request's key, if it sent
/// one, with the body's [`fingerprint`]. A key that is not 1 to [`MAX_KEY_CHARS`] visible
/// ASCII characters, or that is sent twice, is a 400 naming the header.
pub struct KeyedJsonBody<T> {
    /// The body.
    pub body: T,
    /// The key and the body's fingerprint; `None` without the header.
    pub key: Option<IdempotencyKey>,
}

impl<T: DeserializeOwned> FromRequest<ApiState> for KeyedJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let key = header_key(req.headers())?;
        let bytes = json_bytes(req, state).await?;
        let body = parse_json(&bytes)?;
        Ok(Self {
            body,
            key: key.map(|key| IdempotencyKey {
                key,
                fingerprint: fingerprint(&bytes),
            }),
        })
    }
}

/// The header's value, checked.
fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid(FIELD, "must be sent once"));
    }
    let key = value.as_bytes();
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::invalid(
            FIELD,
            format!("must be 1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID, say)"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(key).into_owned()))
}

/// The digest a key is kept with: SHA-256 of the body's JSON written canonically (no
/// spaces, every object's keys in order), so a retry matches whatever spacing or key order
/// its client writes, and whatever fields this server's version knows.
pub fn fingerprint(body: &[u8]) -> [u8; 32] {
    let mut canonical = Vec::with_capacity(body.len());
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        write_canonical(&value, &mut canonical);
    }
    Sha256::digest(canonical).into()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(fields) => {
            let mut fields: Vec<_> = fields.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (name, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(name.clone()), out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // A string, number, boolean or null as serde_json writes it (cannot fail).
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// The 400 of a key whose first request was a different one.
pub fn reused() -> ApiError {
    ApiError::invalid(
        FIELD,
        "was already used with a different request: a retry sends the same body, a new chat a new key",
    )
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn spacing_and_key_order_do_not_change_the_fingerprint_and_values_do() {
        let a =
            fingerprint(br#"{"message":"hi","labels":{"a":"1","b":"2"},"n":[1,{"y":1,"x":2}]}"#);
        let b = fingerprint(
            br#"{ "n": [1, {"x": 2, "y": 1}], "labels": {"b": "2", "a": "1"}, "message": "hi" }"#,
        );
        assert_eq!(a, b);
        let c =
            fingerprint(br#"{"message":"hi","labels":{"a":"1","b":"3"},"n":[1,{"y":1,"x":2}]}"#);
        assert_ne!(a, c);
        let d =
            fingerprint(br#"{"message":"hi","labels":{"a":"1","b":"2"},"n":[{"y":1,"x":2},1]}"#);
        assert_ne!(a, d, "the order of an array is the request's");
    }
}
