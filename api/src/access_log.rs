//! One access-log line per request, at the default level (ARCHITECTURE.md §12).
//!
//! Fields, never inside the message, so a log pipeline filters on them:
//!
//! | field | what |
//! | --- | --- |
//! | `method` | `GET`, `POST`, ... |
//! | `route` | the matched route template (`/api/v1/chats/{chat_id}`): one value per endpoint, no ids |
//! | `path` | instead of `route` when no route matched (cut at 256 bytes) |
//! | `status` | the response status |
//! | `latency_ms` | until the response head: an event stream's line is written when it opens |
//! | `request_id` | the `x-request-id` the client sent or the API made (echoed in the response) |
//! | `user.id` | the caller, once a token was accepted (absent for 401s and open routes) |
//!
//! The line is written outside the `request` span, so it carries only its own fields. The
//! caller's id reaches it through a [`Caller`] slot in the request's extensions, which the
//! auth extractor fills ([`crate::auth::CurrentUser`]); the same extractor records `user.id`
//! on the `request` span for every other line of the request.
//!
//! Probes and scrapes (`/healthz`, `/readyz`, `/metrics`) are logged at `debug`: an
//! orchestrator probing every few seconds and a scraper every 15 s would otherwise be most
//! of an idle API's log. The target is `agentq::access`, so `--log info,agentq::access=warn`
//! turns the lines off.

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    http::request::Parts,
    middleware::Next,
    response::Response,
};
use uuid::Uuid;

/// Routes whose lines go to `debug`: probes and the metrics scrape.
const QUIET_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Longest unmatched path written to the log.
const MAX_LOGGED_PATH: usize = 256;

/// Where the auth extractor leaves the caller's id for the request's access-log line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller(Arc<OnceLock<Uuid>>);

impl Caller {
    /// Records that the request was made by `user_id` (the first call wins).
    pub(crate) fn authenticated(parts: &Parts, user_id: Uuid) {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            let _ = caller.0.set(user_id);
        }
    }
}

/// The middleware: runs the request, then writes its line.
pub(crate) async fn access_log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let path = route
        .is_none()
        .then(|| cut(request.uri().path(), MAX_LOGGED_PATH).to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let caller = Caller::default();
    request.extensions_mut().insert(caller.clone());

    let response = next.run(request).await;

    let latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    let status = response.status().as_u16();
    let user = caller.0.get().copied().map(tracing::field::display);
    let quiet = route
        .as_deref()
        .is_some_and(|route| QUIET_ROUTES.contains(&route));
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                target: "agentq::access",
                method = %method,
                route = route.as_deref(),
                path = path.as_deref(),
                status,
                latency_ms,
                request_id = request_id.as_deref(),
                user.id = user,
                "request"
            )
        };
    }
    if quiet {
        line!(debug);
    } else {
        line!(info);
    }
    response
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
