//! `/api/v1/admin/queues`: queue state for operators, and the dead letters: list, retry,
//! drop (one or all). Site owners only.

use agentq_core::queue::{self, QueueName};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{admin::require_site_owner, chats::page_limit};
use crate::{ApiState, auth::CurrentUser, error::ApiError, extract::QueryParams};

fn queue_named(name: &str) -> Result<QueueName, ApiError> {
    QueueName::parse(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no queue named `{name}` (queues: turns, tools, mail)"
        ))
    })
}

fn redis_down(e: redis::RedisError) -> ApiError {
    ApiError::Unavailable(format!("Redis: {e}"))
}

/// `GET /api/v1/admin/queues`: length, pending, oldest pending age, delayed, dead letters
/// and consumers (with idle time) of every queue.
pub async fn list_queues(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    require_site_owner(&user)?;
    let mut conn = state.redis_conn.clone();
    let queues = queue::queue_stats(&mut conn, &state.prefix)
        .await
        .map_err(redis_down)?;
    Ok(Json(json!({ "queues": queues })))
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize)]
pub struct DeadLetterQuery {
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub after: Option<String>,
}

/// `GET /api/v1/admin/queues/{queue}/dead-letters`: oldest first, with the last error.
pub async fn list_dead_letters(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<DeadLetterQuery>,
) -> Result<Json<Value>, ApiError> {
    require_site_owner(&user)?;
    let queue_name = queue_named(&name)?;
    let limit = page_limit(query.limit, 100, 1000)?;
    let mut conn = state.redis_conn.clone();
    let letters = queue::dead_letters(
        &mut conn,
        &state.prefix,
        queue_name,
        query.after.as_deref(),
        limit as usize + 1,
    )
    .await
    .map_err(redis_down)?;
    let more = letters.len() as i64 > limit;
    let letters: Vec<_> = letters.into_iter().take(limit as usize).collect();
    let next = if more {
        letters.last().map(|l| l.id.clone())
    } else {
        None
    };
    Ok(Json(json!({ "dead_letters": letters, "next_after": next })))
}

/// `POST /api/v1/admin/queues/{queue}/dead-letters/retry`: every dead letter back on the queue.
pub async fn retry_all(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_site_owner(&user)?;
    let mut conn = state.redis_conn.clone();
    let n = queue::retry_dead_letters(&mut conn, &state.prefix, queue_named(&name)?, &[])
        .await
        .map_err(redis_down)?;
    Ok(Json(json!({ "retried": n })))
}

/// `DELETE /api/v1/admin/queues/{queue}/dead-letters`: drops every dead letter.
pub async fn drop_all(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_site_owner(&user)?;
    let mut conn = state.redis_conn.clone();
    let n = queue::drop_dead_letters(&mut conn, &state.prefix, queue_named(&name)?, &[])
        .await
        .map_err(redis_down)?;
    Ok(Json(json!({ "dropped": n })))
}

/// `POST /api/v1/admin/queues/{queue}/dead-letters/{id}/retry`.
pub async fn retry_one(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    require_site_owner(&user)?;
    let mut conn = state.redis_conn.clone();
    let n = queue::retry_dead_letters(
        &mut conn,
        &state.prefix,
        queue_named(&name)?,
        std::slice::from_ref(&id),
    )
    .await
    .map_err(redis_down)?;
    if n == 0 {
        return Err(ApiError::NotFound(format!(
            "no dead letter `{id}` in queue `{name}`"
        )));
    }
    Ok(Json(json!({ "retried": n })))
}

/// `DELETE /api/v1/admin/queues/{queue}/dead-letters/{id}`.
pub async fn drop_one(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require_site_owner(&user)?;
    let mut conn = state.redis_conn.clone();
    let n = queue::drop_dead_letters(
        &mut conn,
        &state.prefix,
        queue_named(&name)?,
        std::slice::from_ref(&id),
    )
    .await
    .map_err(|e| match e.kind() {
        redis::ErrorKind::Server(_) => ApiError::invalid("id", "is not a stream entry id"),
        _ => redis_down(e),
    })?;
    if n == 0 {
        return Err(ApiError::NotFound(format!(
            "no dead letter `{id}` in queue `{name}`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}
