//! `/api/v1/admin/processes`: the live api, worker and scheduler processes, from the
//! process registry (ARCHITECTURE.md §6.1). Site owners only.

use agentq_core::queue::{self, ProcessEntry};
use axum::{Json, extract::State};
use serde::Serialize;

use crate::{
    ApiState,
    auth::SiteOwner,
    error::{ApiError, ErrorBody},
};

/// Body of `GET /api/v1/admin/processes`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProcessList {
    /// Every live process, by kind then id.
    pub processes: Vec<ProcessEntry>,
}

/// `GET /api/v1/admin/processes`: every process that beat within its last three beats,
/// with its host, pid, version, queues, concurrency and busy slots. A process that dies
/// leaves the list within three beats (`--process-beat-ms`), one that stops gracefully at
/// once.
#[utoipa::path(
    get,
    path = "/api/v1/admin/processes",
    tag = "admin",
    responses(
        (status = 200, description = "The live processes.", body = ProcessList),
        (status = 403, description = "Only site owners see processes.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn list_processes(
    State(state): State<ApiState>,
    _: SiteOwner,
) -> Result<Json<ProcessList>, ApiError> {
    let mut conn = state.redis_conn.clone();
    let processes = queue::live_processes(&mut conn, &state.prefix).await?;
    Ok(Json(ProcessList { processes }))
}
