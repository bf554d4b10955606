//! What one process takes on at once, and for how long (issue #10, item 9).
//!
//! Every request except the probes (`/healthz`, `/readyz`, `/metrics`, which must answer
//! while the process sheds load, or orchestrators restart it and operators cannot see why)
//! passes [`limit_requests`]:
//!
//! - **load shedding**: at most `max_concurrent_requests` are worked on at once; one more is
//!   answered at once with a 503, a JSON body and `Retry-After: 1`, instead of queueing
//!   behind the others until every caller times out. A load balancer retries it on another
//!   replica.
//! - **request timeout**: a request whose response has not started after
//!   `request_timeout_secs` is dropped (its database work is cancelled) and answered with a
//!   503. The clock stops when the handler returns its response, so an event stream is
//!   bounded while it authorizes and opens, then streams for as long as it lives, and holds
//!   no slot while it does.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The shared budget of one process.
#[derive(Clone)]
pub(crate) struct RequestLimits {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    timeout: Duration,
}

impl RequestLimits {
    /// At most `max_in_flight` requests at once (at least 1), each within `timeout`.
    pub(crate) fn new(max_in_flight: usize, timeout: Duration) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            timeout,
        }
    }
}

/// Probes answer even while the process sheds load.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The middleware: shed past the concurrency limit, 503 past the timeout.
pub(crate) async fn limit_requests(
    State(limits): State<RequestLimits>,
    request: Request,
    next: Next,
) -> Response {
    if is_probe(request.uri().path()) {
        return next.run(request).await;
    }
    let Ok(_slot) = limits.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("agentq_http_requests_shed_total", "reason" => "overloaded").increment(1);
        return ApiError::Overloaded {
            message: format!(
                "the server is busy ({} requests in progress); try again shortly",
                limits.max_in_flight
            ),
            retry_after_secs: 1,
        }
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("agentq_http_requests_shed_total", "reason" => "timeout")
                .increment(1);
            tracing::warn!(timeout = ?limits.timeout, "request timed out");
            ApiError::Overloaded {
                message: format!(
                    "the request did not finish within {} s; try again shortly",
                    limits.timeout.as_secs_f64()
                ),
                retry_after_secs: 1,
            }
            .into_response()
        }
    }
}
