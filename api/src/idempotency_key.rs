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
//! request it came with is kept as a SHA-256 of its body as parsed ([`fingerprint`]), so
//! a key reused for a different request is refused (400 naming the header) instead of
//! answering with a chat the client did not ask for.

use axum::{
    extract::FromRequestParts,
    http::{HeaderName, HeaderValue, request::Parts},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

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

/// The request's key, if it sent one; a key that is not 1 to [`MAX_KEY_CHARS`] visible
/// ASCII characters is a 400 naming the header.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(Self(None));
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
        Ok(Self(Some(String::from_utf8_lossy(key).into_owned())))
    }
}

/// The digest a key is kept with: SHA-256 of the request body as parsed, so neither the
/// spacing of the JSON nor the order of the request's own fields matters (the order within
/// a tool's `input_schema` does: a retry sends the same body).
pub fn fingerprint(request: &impl Serialize) -> [u8; 32] {
    let body = serde_json::to_vec(request).unwrap_or_default();
    Sha256::digest(body).into()
}

/// The 400 of a key whose first request was a different one.
pub fn reused() -> ApiError {
    ApiError::invalid(
        FIELD,
        "was already used with a different request: a retry sends the same body, a new chat a new key",
    )
}
