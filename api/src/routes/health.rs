//! Liveness and readiness probes for load balancers and orchestrators, and the Prometheus
//! scrape endpoint. None of them needs a token: orchestrators and scrapers carry none.

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ApiState, error::ApiError, error::ErrorBody};

/// Body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: answering at all is the signal.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Body of `GET /readyz` when the process can serve.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `ok`: PostgreSQL answered.
    #[schema(example = "ok")]
    pub postgres: &'static str,
    /// `ok`: Redis answered.
    #[schema(example = "ok")]
    pub redis: &'static str,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process is up.", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /metrics`: Prometheus exposition (queue gauges read from Redis at scrape time).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    security(()),
    responses((
        status = 200,
        description = "Prometheus text exposition: queue depth, job and turn latency, \
                       provider errors by kind, emails, open SSE streams.",
        content_type = "text/plain; version=0.0.4",
        body = String
    ))
)]
pub async fn metrics(
    State(state): State<ApiState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let mut conn = state.redis_conn.clone();
    let body = agentq_core::metrics::render(&state.metrics, &mut conn, &state.prefix).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

/// `GET /readyz`: PostgreSQL and Redis answer; 503 naming the one that does not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "PostgreSQL and Redis answer.", body = Readiness),
        (status = 503, description = "PostgreSQL or Redis does not answer; the message names which.", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<ApiState>) -> Result<Json<Readiness>, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("PostgreSQL is not reachable: {e}")))?;
    let mut conn = state.redis_conn.clone();
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(|e| ApiError::Unavailable(format!("Redis is not reachable: {e}")))?;
    Ok(Json(Readiness {
        status: "ready",
        postgres: "ok",
        redis: "ok",
    }))
}
