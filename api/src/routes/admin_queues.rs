//! `/api/v1/admin/queues`: queue state for operators, and the dead letters: list, retry,
//! drop (one or all). Site owners only.

use agentq_core::queue::{self, DeadLetter, QueueName, QueueStats};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::{
    IntoParams,
    openapi::{
        Required,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{ObjectBuilder, Type},
    },
};

use super::chats::page_limit;
use crate::{
    ApiState,
    auth::SiteOwner,
    error::{ApiError, ErrorBody},
    extract::QueryParams,
};

/// Documents the `{queue}` path segment; its allowed values come from [`QueueName::ALL`],
/// so a new queue shows up in the document without anyone editing it.
struct QueuePath;

impl IntoParams for QueuePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let names = QueueName::ALL.map(QueueName::as_str);
        vec![
            ParameterBuilder::new()
                .name("queue")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The queue."))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(names)),
                ))
                .build(),
        ]
    }
}

fn queue_named(name: &str) -> Result<QueueName, ApiError> {
    QueueName::parse(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no queue named `{name}` (queues: turns, tools, mail)"
        ))
    })
}

fn redis_down(e: redis::RedisError) -> ApiError {
    e.into()
}

/// Body of `GET /api/v1/admin/queues`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueList {
    /// Every queue.
    pub queues: Vec<QueueStats>,
}

/// `GET /api/v1/admin/queues`: length, pending, oldest pending age, delayed, dead letters,
/// the group's consumer names (with idle time, and whether a live process has the name)
/// and the live processes consuming it (from the process registry) of every queue.
#[utoipa::path(
    get,
    path = "/api/v1/admin/queues",
    tag = "admin",
    responses(
        (status = 200, description = "The state of every queue.", body = QueueList),
        (status = 403, description = "Only site owners see queues.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn list_queues(
    State(state): State<ApiState>,
    _: SiteOwner,
) -> Result<Json<QueueList>, ApiError> {
    let mut conn = state.redis_conn.clone();
    let queues = queue::queue_stats(&mut conn, &state.prefix)
        .await
        .map_err(redis_down)?;
    Ok(Json(QueueList { queues }))
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The last id of the previous page.
    #[param(nullable = false, pattern = "^[0-9]{1,19}-[0-9]{1,19}$")]
    pub after: Option<String>,
}

/// A page of dead letters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    /// Oldest first, each with its last error.
    pub dead_letters: Vec<DeadLetter>,
    /// Cursor (`after`) for the next page, null on the last one.
    pub next_after: Option<String>,
}

/// Body of the retry endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Retried {
    /// Dead letters put back on the queue.
    pub retried: usize,
}

/// Body of `DELETE .../dead-letters`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dropped {
    /// Dead letters dropped.
    pub dropped: usize,
}

/// `GET /api/v1/admin/queues/{queue}/dead-letters`: oldest first, with the last error.
#[utoipa::path(
    get,
    path = "/api/v1/admin/queues/{queue}/dead-letters",
    tag = "admin",
    params(QueuePath, DeadLetterQuery),
    responses(
        (status = 200, description = "A page of dead letters, oldest first.", body = DeadLetterPage),
        (status = 400, description = "A query parameter is invalid.", body = ErrorBody),
        (status = 403, description = "Only site owners see dead letters.", body = ErrorBody),
        (status = 404, description = "No such queue.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn list_dead_letters(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<DeadLetterQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let queue_name = queue_named(&name)?;
    let limit = page_limit(query.limit, 100, 1000)?;
    stream_entry_id("after", query.after.as_deref())?;
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
    Ok(Json(DeadLetterPage {
        dead_letters: letters,
        next_after: next,
    }))
}

/// `POST /api/v1/admin/queues/{queue}/dead-letters/retry`: every dead letter back on the queue.
#[utoipa::path(
    post,
    path = "/api/v1/admin/queues/{queue}/dead-letters/retry",
    tag = "admin",
    params(QueuePath),
    responses(
        (status = 200, description = "Every dead letter is back on the queue.", body = Retried),
        (status = 403, description = "Only site owners retry dead letters.", body = ErrorBody),
        (status = 404, description = "No such queue.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn retry_all(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(name): Path<String>,
) -> Result<Json<Retried>, ApiError> {
    let mut conn = state.redis_conn.clone();
    let n = queue::retry_dead_letters(&mut conn, &state.prefix, queue_named(&name)?, &[])
        .await
        .map_err(redis_down)?;
    Ok(Json(Retried { retried: n }))
}

/// `DELETE /api/v1/admin/queues/{queue}/dead-letters`: drops every dead letter.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/queues/{queue}/dead-letters",
    tag = "admin",
    params(QueuePath),
    responses(
        (status = 200, description = "Every dead letter is dropped.", body = Dropped),
        (status = 403, description = "Only site owners drop dead letters.", body = ErrorBody),
        (status = 404, description = "No such queue.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn drop_all(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(name): Path<String>,
) -> Result<Json<Dropped>, ApiError> {
    let mut conn = state.redis_conn.clone();
    let n = queue::drop_dead_letters(&mut conn, &state.prefix, queue_named(&name)?, &[])
        .await
        .map_err(redis_down)?;
    Ok(Json(Dropped { dropped: n }))
}

/// `POST /api/v1/admin/queues/{queue}/dead-letters/{id}/retry`.
#[utoipa::path(
    post,
    path = "/api/v1/admin/queues/{queue}/dead-letters/{id}/retry",
    tag = "admin",
    params(QueuePath, ("id" = String, Path, description = "The dead letter's id.", example = "1732500000000-0", pattern = "^[0-9]{1,19}-[0-9]{1,19}$")),
    responses(
        (status = 200, description = "The dead letter is back on the queue.", body = Retried),
        (status = 400, description = "`id` is not a stream entry id.", body = ErrorBody),
        (status = 403, description = "Only site owners retry dead letters.", body = ErrorBody),
        (status = 404, description = "No such queue, or no such dead letter in it.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn retry_one(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Retried>, ApiError> {
    stream_entry_id("id", Some(&id))?;
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
    Ok(Json(Retried { retried: n }))
}

/// `DELETE /api/v1/admin/queues/{queue}/dead-letters/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/queues/{queue}/dead-letters/{id}",
    tag = "admin",
    params(QueuePath, ("id" = String, Path, description = "The dead letter's id.", example = "1732500000000-0", pattern = "^[0-9]{1,19}-[0-9]{1,19}$")),
    responses(
        (status = 204, description = "The dead letter is dropped."),
        (status = 400, description = "`id` is not a stream entry id.", body = ErrorBody),
        (status = 403, description = "Only site owners drop dead letters.", body = ErrorBody),
        (status = 404, description = "No such queue, or no such dead letter in it.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn drop_one(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    stream_entry_id("id", Some(&id))?;
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

/// A 400 naming `field` unless `id` (when given) is a stream entry id (`<ms>-<seq>`).
fn stream_entry_id(field: &str, id: Option<&str>) -> Result<(), ApiError> {
    match id {
        Some(id) if agentq_core::events::history::StreamId::parse(id).is_none() => Err(
            ApiError::invalid(field, "must be a stream entry id (like 1732500000000-0)"),
        ),
        _ => Ok(()),
    }
}
