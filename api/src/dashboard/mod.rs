//! The operator dashboard at `/admin` (ARCHITECTURE.md §11.1): what Sidekiq Web or the River
//! UI give their operators, for agentq. Server-rendered HTML (maud) over the same
//! `core::store` and `core::queue` reads as the admin API, so every page works without
//! JavaScript; a few lines of vendored JS (`assets/dashboard.js`) refresh a page's `<main>`
//! in place every two seconds where scripts run. Nothing is fetched from the network.
//!
//! One file per page ([`overview`], [`dead_letters`], [`scheduler`], [`attention`]), the
//! sign-in and CSRF rules in [`session`], the page shell in [`layout`], the jobs/s history
//! in [`throughput`] and cron expressions in words in [`cron_words`].
//!
//! These are HTML pages, not API operations: they are served from their own router (plain
//! `.route()`), merged beside the API's, and `tests/openapi.rs` lists `/admin` as a
//! documented exception. Only site owners sign in (see [`session::AdminSession`]).

pub mod attention;
pub mod cron_words;
pub mod dead_letters;
pub mod layout;
pub mod overview;
pub mod scheduler;
pub mod session;
pub mod throughput;

use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use crate::ApiState;

/// What the dashboard keeps in the API process.
#[derive(Default)]
pub struct Dashboard {
    /// The session-signing key, read from Redis on first use.
    pub(crate) session_key: tokio::sync::OnceCell<Vec<u8>>,
    /// Recent queue counters, for the jobs/s chart.
    pub throughput: throughput::Throughput,
}

/// The dashboard's routes, all under `/admin`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/admin", get(overview::page))
        .route(
            "/admin/login",
            get(session::login_page).post(session::login),
        )
        .route("/admin/logout", post(session::logout))
        .route("/admin/dead-letters", get(dead_letters::page))
        .route(
            "/admin/dead-letters/{queue}/retry",
            post(dead_letters::retry_all),
        )
        .route(
            "/admin/dead-letters/{queue}/drop",
            post(dead_letters::drop_all),
        )
        .route(
            "/admin/dead-letters/{queue}/{id}/retry",
            post(dead_letters::retry_one),
        )
        .route(
            "/admin/dead-letters/{queue}/{id}/drop",
            post(dead_letters::drop_one),
        )
        .route("/admin/scheduler", get(scheduler::page))
        .route("/admin/attention", get(attention::page))
        .route(
            "/admin/chats/{chat_id}/debug-export",
            get(attention::debug_export),
        )
        .route("/admin/assets/dashboard.css", get(stylesheet))
        .route("/admin/assets/dashboard.js", get(script))
        .layer(axum::middleware::map_response(harden))
}

/// Pages may load only our own assets and post only to us, and are never framed.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/dashboard.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/dashboard.js"),
    )
}

/// What a dashboard page can fail with, rendered as a small HTML page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// 403: not a site owner, or a form without this session's CSRF token.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such queue or dead letter.
    #[error("{0}")]
    NotFound(String),
    /// 503: PostgreSQL or Redis is not answering.
    #[error("{0}")]
    Unavailable(String),
}

impl From<agentq_core::StoreError> for PageError {
    fn from(e: agentq_core::StoreError) -> Self {
        tracing::warn!(error = %e, "dashboard: database read failed");
        PageError::Unavailable(
            "the database is not answering; this page retries when reloaded".into(),
        )
    }
}

impl From<redis::RedisError> for PageError {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "dashboard: Redis read failed");
        PageError::Unavailable("Redis is not answering; this page retries when reloaded".into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match self {
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = self.to_string();
        (
            status,
            layout::bare(
                status.canonical_reason().unwrap_or("Error"),
                maud::html! {
                    div.login {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        p.problem role="alert" { (message) }
                        p { a href="/admin" { "Back to the dashboard" } " · " a href="/admin/login" { "Sign in" } }
                    }
                },
            ),
        )
            .into_response()
    }
}
