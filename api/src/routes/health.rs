//! Liveness and readiness probes for load balancers and orchestrators, and the Prometheus
//! scrape endpoint. None of them needs a token: orchestrators and scrapers carry none, so
//! they tell anyone who asks only up or down; which dependency failed, and why, goes to
//! the log (it names hosts and ports).

use std::time::Duration;

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
    /// `ok`: PostgreSQL and Redis answered.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// How long `/readyz` waits for each dependency: a probe must answer before the prober
/// gives up, or a hung pool reads as a hung process.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

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

/// `GET /readyz`: 200 `{"status":"ok"}` when PostgreSQL and Redis answer, else 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "PostgreSQL and Redis answer.", body = Readiness),
        (status = 503, description = "PostgreSQL or Redis does not answer (which one is logged, not returned).", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<ApiState>) -> Result<Json<Readiness>, ApiError> {
    let postgres = async {
        match tokio::time::timeout(READINESS_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {READINESS_TIMEOUT:?}")),
        }
    };
    let redis = async {
        let mut conn = state.redis_conn.clone();
        let ping = agentq_core::redis_conn::ping(&mut conn);
        match tokio::time::timeout(READINESS_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {READINESS_TIMEOUT:?}")),
        }
    };
    let (postgres, redis) = tokio::join!(postgres, redis);
    if let Err(error) = &postgres {
        tracing::warn!(%error, "not ready: PostgreSQL does not answer");
    }
    if let Err(error) = &redis {
        tracing::warn!(%error, "not ready: Redis does not answer");
    }
    if postgres.is_err() || redis.is_err() {
        return Err(ApiError::Unavailable("not ready".into()));
    }
    Ok(Json(Readiness { status: "ok" }))
}
