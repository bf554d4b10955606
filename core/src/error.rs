//! Errors shared across processes.
//!
//! [`StoreError`] is what the store returns; the API maps it to status codes in one place.
//! [`ChatError`] is the structured, user-facing form of an upstream failure (ARCHITECTURE.md §7):
//! it is stored on the chat as `last_error`, returned by the API and sent as an `error` event.

use serde::{Deserialize, Serialize};

/// Failures of `core::store` calls.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or the caller may not see it).
    #[error("not found")]
    NotFound,
    /// A request conflicts with current state (e.g. the chat's queue is full).
    #[error("{0}")]
    Conflict(String),
    /// A unique value is already taken (a provider's name, a model's name).
    #[error("`{field}` is already taken")]
    Duplicate {
        /// The request field holding the value.
        field: &'static str,
    },
    /// A reference names no row (a model's `provider_id`).
    #[error("`{field}` names nothing that exists")]
    UnknownReference {
        /// The request field holding the reference.
        field: &'static str,
    },
    /// A CHECK constraint refused a combination of values (a provider's key policy).
    #[error("`{field}` {detail}")]
    Invalid {
        /// The request field to blame.
        field: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
    /// A value the row needs is absent (a provider's key, for a kind that cannot call
    /// without one).
    #[error("`{field}` is required")]
    Required {
        /// The request field that must be given.
        field: &'static str,
    },
    /// The database failed.
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    /// Constraint violations the store knows become [`StoreError::Duplicate`] or
    /// [`StoreError::UnknownReference`] (see `store/constraints.rs`); the rest stay
    /// database errors.
    fn from(e: sqlx::Error) -> Self {
        crate::store::classify_constraint(e)
    }
}

impl StoreError {
    /// Whether the same write would fail again however often it is retried: PostgreSQL
    /// refused the data itself (SQLSTATE class 22, data exception: a character `text`
    /// cannot hold, a number out of range) or a size limit (class 54, program limit
    /// exceeded: a `jsonb` too large). A caller that would otherwise retry should give up
    /// and say so; retrying costs another provider call and changes nothing.
    pub fn is_unsavable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("54")),
            StoreError::Database(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
    }
}

/// What went wrong upstream, coarse enough for a client to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChatErrorKind {
    /// Anything not classified below.
    Generic,
    /// The provider is overloaded (HTTP 529, 503).
    Overloaded,
    /// The provider is rate limiting (HTTP 429).
    RateLimit,
    /// The request timed out.
    Timeout,
    /// No first byte arrived in time.
    StartupTimeout,
    /// A started stream went silent.
    StreamSilenceTimeout,
    /// The provider rejected the credentials.
    Auth,
    /// agentq is misconfigured for this request.
    Config,
    /// No API key is configured for the provider.
    MissingKey,
    /// The provider is disabled.
    ProviderDisabled,
    /// The provider refused the content.
    ContentFilter,
    /// The conversation exceeds the model's context.
    ContextLength,
    /// The user hit a usage limit.
    UsageLimit,
    /// The worker running the turn disappeared too often.
    WorkerLost,
}

/// A structured upstream failure, safe to show to the chat's owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatError {
    /// One sentence naming the provider and what happened.
    pub message: String,
    /// Machine-readable class.
    pub kind: ChatErrorKind,
    /// Provider name, when one was involved.
    pub provider: Option<String>,
    /// Whether retrying the same request may succeed.
    pub retryable: bool,
    /// HTTP status from the provider, when there was one.
    pub status_code: Option<u16>,
    /// Provider-supplied detail (already free of secrets).
    pub detail: Option<String>,
    /// How long the provider asked us to wait (`Retry-After`); not part of the JSON.
    #[serde(skip)]
    pub retry_after: Option<std::time::Duration>,
}

impl ChatError {
    /// An error of `kind` with a user-facing `message`; refine with the builder methods.
    pub fn new(kind: ChatErrorKind, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind,
            provider: None,
            retryable: false,
            status_code: None,
            detail: None,
            retry_after: None,
        }
    }

    /// Names the provider involved.
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Marks the error as worth retrying (or not).
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Adds provider detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status_code = Some(status);
        self
    }
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChatError {}
