//! The one error type of the HTTP API and its JSON shape (ARCHITECTURE.md §11):
//! `{ "message": ..., "detail": ..., "validations": [{ "field", "detail" }] }`.
//!
//! Handlers return `Result<_, ApiError>` and use `?`; this module decides status codes and
//! keeps internals out of responses (they are logged instead). It is also the one place
//! that tells a dependency outage from a bug: PostgreSQL or Redis not answering (pool
//! timeouts, refused or dropped connections) is a 503 the client may retry, never a 500.

use agentq_core::StoreError;
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"field": "message", "detail": "must not be empty"}))]
pub struct Validation {
    /// Dotted path of the field (`message`, `content[0].text`), or a query/path parameter.
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "message": "invalid request: `message` must not be empty",
    "validations": [{"field": "message", "detail": "must not be empty"}]
}))]
pub struct ErrorBody {
    /// One sentence for people.
    pub message: String,
    /// More context, when useful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level problems, for 400s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<Validation>,
    /// For 429s: the limit that was hit, named as its site-config field
    /// (`messages_per_minute`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "messages_per_minute")]
    pub limit: Option<String>,
    /// For 429s and 503s that say when to come back: the `Retry-After` header's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{message}")]
    BadRequest {
        /// Summary.
        message: String,
        /// Field problems.
        validations: Vec<Validation>,
    },
    /// 401: no or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource (or not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// 413: body larger than the limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// 415: not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the caller is over a rate limit; `Retry-After` says when to come back.
    #[error("{message}")]
    TooManyRequests {
        /// One sentence naming the limit.
        message: String,
        /// The limit's name (its site-config field).
        limit: String,
        /// Whole seconds to wait, at least 1.
        retry_after_secs: u64,
    },
    /// 503: a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: this process is busy (too many requests at once, or one took
    /// too long); another try, here or on another replica, may succeed.
    #[error("{message}")]
    Overloaded {
        /// One sentence for people.
        message: String,
        /// Whole seconds to wait, at least 1.
        retry_after_secs: u64,
    },
    /// 500: a bug or an unexpected failure; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 about one field.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        let detail = detail.into();
        ApiError::BadRequest {
            message: format!("invalid request: `{field}` {detail}"),
            validations: vec![Validation { field, detail }],
        }
    }
}

/// A 400 naming `field` when `text` holds a control character (U+0000 included): the one
/// check of every name, title and label a client sets.
pub fn refuse_control_chars(field: &str, text: &str) -> Result<(), ApiError> {
    match agentq_core::text::forbidden_char(text) {
        Some(c) => Err(ApiError::invalid(
            field,
            format!(
                "must not contain {} (a control character)",
                agentq_core::text::describe_char(c)
            ),
        )),
        None => Ok(()),
    }
}

/// `text` without its leading and trailing whitespace, after a 400 naming `field` when any of
/// it (the trimmed edges included) is a control character: a name sent as `"\tops"` is
/// refused, as the document's pattern says, rather than stored as `ops`.
pub fn trimmed<'a>(field: &str, text: &'a str) -> Result<&'a str, ApiError> {
    refuse_control_chars(field, text)?;
    Ok(text.trim())
}

/// [`trimmed`], after refusing `text` longer than `max_chars` as sent: the API document's
/// `maxLength` counts the value as sent, so a value that fits only once its spaces are
/// trimmed is refused too (a 400 naming `field`), as the document says.
pub fn trimmed_within<'a>(
    field: &str,
    text: &'a str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    if text.chars().count() > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max_chars} characters, spaces included"),
        ));
    }
    trimmed(field, text)
}

impl From<StoreError> for ApiError {
    /// The one mapping of store errors (ARCHITECTURE.md §11): a taken value or a reference
    /// to nothing is a 400 naming the field (the store has already turned the database's
    /// constraint into that field), a missing row a 404, a state conflict a 409.
    /// Handlers that know what was missing say so with [`ApiError::not_found`].
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Duplicate { field } => ApiError::invalid(field, "is already taken"),
            StoreError::UnknownReference { field } => {
                ApiError::invalid(field, "names nothing that exists")
            }
            StoreError::Invalid { field, detail } => ApiError::invalid(field, detail),
            StoreError::Required { field } => ApiError::invalid(
                field,
                "is required for this provider's kind (only openai-compat and bedrock providers, and providers whose users bring their own keys, may have none)",
            ),
            StoreError::Database(e) => e.into(),
        }
    }
}

/// Turns [`StoreError::NotFound`] into a 404 naming what was not found; every other store
/// error maps as [`From<StoreError>`] says.
pub trait OrNotFound<T> {
    /// `what` is one noun phrase: `"provider"` gives "provider not found".
    fn or_not_found(self, what: &str) -> Result<T, ApiError>;
}

impl<T> OrNotFound<T> for Result<T, StoreError> {
    fn or_not_found(self, what: &str) -> Result<T, ApiError> {
        self.map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound(format!("{what} not found")),
            other => other.into(),
        })
    }
}

impl From<sqlx::Error> for ApiError {
    /// Connection trouble is a 503 (logged with its cause, which names hosts); text that
    /// PostgreSQL cannot store (U+0000) a 400, as a net under the checks each field has
    /// (logged, since one was missed); anything else is a bug or a broken invariant, a 500.
    fn from(e: sqlx::Error) -> Self {
        if postgres_unreachable(&e) {
            tracing::warn!(error = %e, "PostgreSQL is not reachable");
            ApiError::Unavailable("the database is not reachable; try again shortly".into())
        } else if unstorable_text(&e) {
            tracing::warn!(error = %e, "a request's text reached PostgreSQL unchecked");
            ApiError::BadRequest {
                message: "invalid request: it holds a character PostgreSQL cannot store (U+0000)"
                    .into(),
                validations: vec![],
            }
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

/// Whether `e` means PostgreSQL cannot be reached or is going away, rather than that a
/// query is wrong.
fn postgres_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), 53300 too_many_connections, 57P01-57P03 admin or
        // crash shutdown and "cannot connect now" (starting up or in recovery).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "53300" | "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Whether PostgreSQL refused a value's text: 22021 character_not_in_repertoire (U+0000 in
/// `text`), 22P05 untranslatable_character (`\u0000` in `jsonb`).
fn unstorable_text(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| matches!(&*c, "22021" | "22P05")))
}

impl From<redis::RedisError> for ApiError {
    /// Redis not answering is a 503 (logged with its cause); a command Redis refused is a
    /// 500.
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            tracing::warn!(error = %e, "Redis is not reachable");
            ApiError::Unavailable("Redis is not reachable; try again shortly".into())
        } else {
            ApiError::Internal(format!("Redis: {e}"))
        }
    }
}

impl From<agentq_core::rate_limit::RateLimited> for ApiError {
    fn from(e: agentq_core::rate_limit::RateLimited) -> Self {
        ApiError::TooManyRequests {
            message: e.to_string(),
            limit: e.limit.name().to_owned(),
            retry_after_secs: e.retry_after_secs(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest {
                message,
                validations,
            } => (StatusCode::BAD_REQUEST, body(message, validations)),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, body(m, vec![])),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, body(m, vec![])),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, body(m, vec![])),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, body(m, vec![])),
            e @ ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, body(e.to_string(), vec![]))
            }
            ApiError::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, body(m, vec![]))
            }
            ApiError::TooManyRequests {
                message,
                limit,
                retry_after_secs,
            } => {
                let mut b = body(message, vec![]);
                b.limit = Some(limit);
                b.retry_after_secs = Some(retry_after_secs);
                (StatusCode::TOO_MANY_REQUESTS, b)
            }
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, body(m, vec![])),
            ApiError::Overloaded {
                message,
                retry_after_secs,
            } => {
                let mut b = body(message, vec![]);
                b.retry_after_secs = Some(retry_after_secs);
                (StatusCode::SERVICE_UNAVAILABLE, b)
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    body("internal error; it has been logged".into(), vec![]),
                )
            }
        };
        let retry_after = body.retry_after_secs;
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Longest `message` or validation `detail` an error body carries (bytes, cut at a
/// character boundary): a message may quote what the client sent, which can be a megabyte.
pub const MAX_ERROR_TEXT_BYTES: usize = 1024;

fn body(message: String, validations: Vec<Validation>) -> ErrorBody {
    ErrorBody {
        message: shortened(message),
        detail: None,
        validations: validations
            .into_iter()
            .map(|v| Validation {
                field: shortened(v.field),
                detail: shortened(v.detail),
            })
            .collect(),
        limit: None,
        retry_after_secs: None,
    }
}

/// `text` cut to [`MAX_ERROR_TEXT_BYTES`], marked with `…` when cut.
fn shortened(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT_BYTES {
        text.truncate(text.floor_char_boundary(MAX_ERROR_TEXT_BYTES));
        text.push('…');
    }
    text
}
