//! Debug runs of a chat (`/api/v1/chats/{chat_id}/debug/...`): what each turn sent to its
//! provider and what came back, for the chat's owner only.

use agentq_core::store::{DebugRun, DebugStep};
use axum::{
    Json,
    body::Body,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    ApiState,
    auth::{CurrentUser, OwnedChat},
    error::{ApiError, ErrorBody, OrNotFound},
    extract::{ChatAndRunIds, ChatId},
};

/// How many runs the list and the export hold at most.
const NEWEST_RUNS: i64 = 100;

/// A run with its steps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunWithSteps {
    /// The run.
    #[serde(flatten)]
    pub run: DebugRun,
    /// Its provider attempts, oldest first.
    pub steps: Vec<DebugStep>,
}

/// Body of `GET .../debug/runs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DebugRunList {
    /// The newest runs (at most 100), newest first, without steps.
    pub runs: Vec<DebugRun>,
}

/// `GET .../debug/runs`: the 100 newest runs, newest first, without steps.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/debug/runs",
    tag = "debug",
    params(ChatId),
    responses(
        (status = 200, description = "The 100 newest runs, newest first, without steps.", body = DebugRunList),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn list_runs(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
) -> Result<Json<DebugRunList>, ApiError> {
    let runs = state.store.list_debug_runs(chat_id, NEWEST_RUNS).await?;
    Ok(Json(DebugRunList { runs }))
}

/// `GET .../debug/runs/{run_id}`: one run with its steps.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/debug/runs/{run_id}",
    tag = "debug",
    params(ChatAndRunIds),
    responses(
        (status = 200, description = "The run with its provider attempts, oldest first.", body = RunWithSteps),
        (status = 400, description = "`chat_id` or `run_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat (or not the caller's), or no such run in it.", body = ErrorBody),
    )
)]
pub async fn get_run(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
    ChatAndRunIds(_, run_id): ChatAndRunIds,
) -> Result<Json<RunWithSteps>, ApiError> {
    let (run, steps) = state
        .store
        .get_debug_run(chat_id, run_id)
        .await
        .or_not_found("debug run")?;
    Ok(Json(RunWithSteps { run, steps }))
}

/// Body of `GET .../debug/export`: versioned, so saved exports stay readable.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DebugExport {
    /// Format version (1).
    pub version: u32,
    /// `chat`: the export covers one chat.
    pub scope: &'static str,
    /// When the export was made.
    pub exported_at: DateTime<Utc>,
    /// The chat.
    pub chat_id: Uuid,
    /// How many runs `runs` holds.
    pub run_count: usize,
    /// The cap on `runs`: older runs are left out.
    pub limited_to_most_recent: i64,
    /// The runs with their steps, newest first.
    pub runs: Vec<RunWithSteps>,
}

/// `GET .../debug/export`: the 100 newest runs with their steps, in one versioned document,
/// streamed run by run.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/debug/export",
    tag = "debug",
    params(ChatId),
    responses(
        (status = 200, description = "The 100 newest runs with their steps.", body = DebugExport),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn export(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
) -> Result<Response, ApiError> {
    export_document(&state, chat_id).await
}

/// The export document of `chat_id`, streamed; the caller has checked access (the owner
/// here, a site owner on the dashboard).
pub(crate) async fn export_document(state: &ApiState, chat_id: Uuid) -> Result<Response, ApiError> {
    let runs = state.store.list_debug_runs(chat_id, NEWEST_RUNS).await?;
    // The document streams one run at a time, so an export of long runs never sits whole
    // in memory. Its shape is exactly `DebugExport`: the head's fields, then `runs`.
    let head = DebugExport {
        version: 1,
        scope: "chat",
        exported_at: Utc::now(),
        chat_id,
        run_count: runs.len(),
        limited_to_most_recent: NEWEST_RUNS,
        runs: Vec::new(),
    };
    let mut opening = serde_json::to_vec(&head).map_err(|e| ApiError::Internal(e.to_string()))?;
    let empty_runs: &[u8] = b"\"runs\":[]}";
    opening.truncate(opening.len() - empty_runs.len());
    opening.extend_from_slice(b"\"runs\":[");
    let store = state.store.clone();
    let body = futures::stream::iter(runs.into_iter().enumerate())
        .then(move |(i, run)| {
            let store = store.clone();
            async move {
                let (run, steps) = store
                    .get_debug_run(chat_id, run.id)
                    .await
                    .map_err(std::io::Error::other)?;
                let mut chunk = if i == 0 { Vec::new() } else { vec![b','] };
                serde_json::to_writer(&mut chunk, &RunWithSteps { run, steps })?;
                Ok::<_, std::io::Error>(Bytes::from(chunk))
            }
        })
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]}"))
        }));
    let body = futures::stream::once(async { Ok(Bytes::from(opening)) }).chain(body);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Body of `PUT /api/v1/users/me/preferences`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Record debug runs of my chats (also needs the site switch).
    #[schema(required = true, nullable = false)]
    pub debug_logging_enabled: Option<bool>,
}

/// The caller's preferences as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoredPreferences {
    /// Whether debug runs of the caller's chats are recorded (when the site allows it).
    pub debug_logging_enabled: bool,
}

/// `PUT /api/v1/users/me/preferences`.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/preferences",
    tag = "users",
    request_body = Preferences,
    responses(
        (status = 200, description = "The preferences as stored.", body = StoredPreferences),
        (status = 400, description = "`debug_logging_enabled` is missing or not a boolean.", body = ErrorBody),
    )
)]
pub async fn put_preferences(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    crate::extract::JsonBody(body): crate::extract::JsonBody<Preferences>,
) -> Result<Json<StoredPreferences>, ApiError> {
    let enabled = body
        .debug_logging_enabled
        .ok_or_else(|| ApiError::invalid("debug_logging_enabled", "is required"))?;
    state.store.set_user_debug_logging(user.id, enabled).await?;
    Ok(Json(StoredPreferences {
        debug_logging_enabled: enabled,
    }))
}
