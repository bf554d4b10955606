//! Debug runs of a chat (`/api/v1/chats/{chat_id}/debug/...`): what each turn sent to its
//! provider and what came back, for the chat's owner only.

use agentq_core::store::{DebugRun, DebugStep};
use axum::{Json, extract::State};
use serde::Serialize;
use serde_json::{Value, json};

use super::chats::chat_not_found;
use crate::{
    ApiState,
    auth::CurrentUser,
    error::ApiError,
    extract::{ChatAndRunIds, ChatId},
};

/// How many runs the list and the export hold at most.
const NEWEST_RUNS: i64 = 100;

/// A run with its steps.
#[derive(Debug, Serialize)]
pub struct RunWithSteps {
    /// The run.
    #[serde(flatten)]
    pub run: DebugRun,
    /// Its provider attempts, oldest first.
    pub steps: Vec<DebugStep>,
}

/// `GET .../debug/runs`: the 100 newest runs, newest first, without steps.
pub async fn list_runs(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    ChatId(chat_id): ChatId,
) -> Result<Json<Value>, ApiError> {
    state
        .store
        .get_chat(chat_id, user.id)
        .await
        .map_err(chat_not_found)?;
    let runs = state.store.list_debug_runs(chat_id, NEWEST_RUNS).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// `GET .../debug/runs/{run_id}`: one run with its steps.
pub async fn get_run(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    ChatAndRunIds(chat_id, run_id): ChatAndRunIds,
) -> Result<Json<RunWithSteps>, ApiError> {
    state
        .store
        .get_chat(chat_id, user.id)
        .await
        .map_err(chat_not_found)?;
    let (run, steps) = state
        .store
        .get_debug_run(chat_id, run_id)
        .await
        .map_err(|e| match e {
            agentq_core::StoreError::NotFound => ApiError::NotFound("debug run not found".into()),
            other => other.into(),
        })?;
    Ok(Json(RunWithSteps { run, steps }))
}

/// `GET .../debug/export`: the 100 newest runs with their steps, in one versioned document.
pub async fn export(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    ChatId(chat_id): ChatId,
) -> Result<Json<Value>, ApiError> {
    state
        .store
        .get_chat(chat_id, user.id)
        .await
        .map_err(chat_not_found)?;
    let runs = state.store.list_debug_runs(chat_id, NEWEST_RUNS).await?;
    let mut full = Vec::with_capacity(runs.len());
    for run in runs {
        let (run, steps) = state.store.get_debug_run(chat_id, run.id).await?;
        full.push(RunWithSteps { run, steps });
    }
    Ok(Json(json!({
        "version": 1,
        "scope": "chat",
        "exported_at": chrono::Utc::now(),
        "chat_id": chat_id,
        "run_count": full.len(),
        "limited_to_most_recent": NEWEST_RUNS,
        "runs": full,
    })))
}

/// Body of `PUT /api/v1/users/me/preferences`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Record debug runs of my chats (also needs the site switch).
    pub debug_logging_enabled: Option<bool>,
}

/// `PUT /api/v1/users/me/preferences`.
pub async fn put_preferences(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    crate::extract::JsonBody(body): crate::extract::JsonBody<Preferences>,
) -> Result<Json<Value>, ApiError> {
    let enabled = body
        .debug_logging_enabled
        .ok_or_else(|| ApiError::invalid("debug_logging_enabled", "is required"))?;
    state.store.set_user_debug_logging(user.id, enabled).await?;
    Ok(Json(json!({ "debug_logging_enabled": enabled })))
}
