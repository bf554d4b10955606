//! Liveness and readiness probes for load balancers and orchestrators.

use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::{ApiState, error::ApiError};

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: Prometheus exposition (queue gauges read from Redis at scrape time).
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
pub async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(
        json!({ "status": "ready", "postgres": "ok", "redis": "ok" }),
    ))
}
