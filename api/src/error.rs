//! The one error type of the HTTP API and its JSON shape (DESIGN.md §6):
//! `{ "message": ..., "detail": ..., "validations": [{ "field", "detail" }] }`.
//!
//! Handlers return `Result<_, ApiError>` and use `?`; this module decides status codes and
//! keeps internals out of responses (they are logged instead).

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
    /// 429: the caller is over a limit; retry after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        /// One sentence for people.
        message: String,
        /// The limit's name (its setting), returned as `detail`.
        limit: String,
        /// Sent as `Retry-After`.
        retry_after_secs: u64,
    },
    /// 503: a dependency is down.
    #[error("{0}")]
    Unavailable(String),
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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Database(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut retry_after = None;
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
                retry_after = Some(retry_after_secs);
                let mut b = body(message, vec![]);
                b.detail = Some(format!("limit: {limit}"));
                (StatusCode::TOO_MANY_REQUESTS, b)
            }
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, body(m, vec![])),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    body("internal error; it has been logged".into(), vec![]),
                )
            }
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn body(message: String, validations: Vec<Validation>) -> ErrorBody {
    ErrorBody {
        message,
        detail: None,
        validations,
    }
}
