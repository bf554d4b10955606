//! `POST /api/v1/chats/{chat_id}/tool-results`: the client's results for the calls of its
//! own (dynamic) tools; they resume the turn (ARCHITECTURE.md §4.3).

use agentq_core::{
    outcome::ChatOutcome,
    store::{ToolResultInput, ToolResultsError},
};
use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::chats::announce;
use crate::{
    ApiState,
    auth::{OwnedChat, WorkChat},
    error::{ApiError, ErrorBody},
    extract::{ChatId, JsonBody},
};

/// Body: every waiting call's result, at once.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolResultsRequest {
    /// One per waiting call.
    pub results: Vec<ToolResult>,
}

/// One result.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolResult {
    /// The `tool_call_id` from the `action_required` event.
    pub tool_call_id: Uuid,
    /// The tool's output (any JSON).
    pub output: Value,
    /// Whether the tool failed.
    #[serde(default)]
    pub is_error: bool,
}

/// What became of submitted results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolResultsStatus {
    /// Stored; builtin calls of the same step still run, and the last to finish resumes.
    Accepted,
    /// Stored, and the turn is queued again.
    Resumed,
}

/// Body of the 202.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolResultsResponse {
    /// What became of the results.
    pub status: ToolResultsStatus,
}

/// 202 with `{"status": "resumed"}` (or `"accepted"` while builtin calls of the same step
/// still run); 400 naming unknown, duplicate or missing ids; 409 when nothing waits.
#[utoipa::path(
    post,
    path = "/api/v1/chats/{chat_id}/tool-results",
    tag = "chats",
    params(ChatId),
    request_body = ToolResultsRequest,
    responses(
        (status = 202, description = "The results are stored.", body = ToolResultsResponse),
        (status = 400, description = "Unknown, duplicate or missing `tool_call_id`s, or another invalid field.", body = ErrorBody),
        (status = 403, description = "The caller no longer has `agents-access` in the chat's organization.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (status = 409, description = "The chat is not waiting for tool results.", body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<ApiState>,
    WorkChat(OwnedChat { user, chat_id }): WorkChat,
    JsonBody(body): JsonBody<ToolResultsRequest>,
) -> Result<(StatusCode, Json<ToolResultsResponse>), ApiError> {
    if body.results.is_empty() {
        return Err(ApiError::invalid(
            "results",
            "must hold one result per waiting tool call",
        ));
    }
    let inputs: Vec<ToolResultInput> = body
        .results
        .into_iter()
        .map(|r| ToolResultInput {
            tool_call_id: r.tool_call_id,
            output: r.output,
            is_error: r.is_error,
        })
        .collect();
    let fan_in = state
        .store
        .submit_tool_results(chat_id, user.id, &inputs)
        .await
        .map_err(|e| match e {
            ToolResultsError::NotFound => ApiError::NotFound("chat not found".into()),
            ToolResultsError::NotWaiting => {
                ApiError::Conflict("the chat is not waiting for tool results".into())
            }
            ToolResultsError::Unknown(ids) => ApiError::invalid(
                "results",
                format!("unknown tool_call_id(s): {}", list(&ids)),
            ),
            ToolResultsError::Duplicate(ids) => ApiError::invalid(
                "results",
                format!("duplicate tool_call_id(s): {}", list(&ids)),
            ),
            ToolResultsError::Missing(ids) => ApiError::invalid(
                "results",
                format!("missing results for tool_call_id(s): {}", list(&ids)),
            ),
            ToolResultsError::Store(e) => e.into(),
        })?;
    let Some(fan_in) = fan_in else {
        // Builtin calls of the same step still run; the last one to finish resumes the turn.
        announce(&state, ChatOutcome::ToolResultsAccepted { chat_id }).await;
        return Ok((
            StatusCode::ACCEPTED,
            Json(ToolResultsResponse {
                status: ToolResultsStatus::Accepted,
            }),
        ));
    };
    announce(&state, ChatOutcome::FannedIn(fan_in)).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(ToolResultsResponse {
            status: ToolResultsStatus::Resumed,
        }),
    ))
}

/// Body of `GET .../tool-calls`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitingToolCalls {
    /// The calls waiting for the client's results, in call order: what
    /// `POST .../tool-results` must answer, all at once.
    pub tool_calls: Vec<agentq_core::events::ActionToolCall>,
}

/// `GET /api/v1/chats/{chat_id}/tool-calls`: the calls of the chat's turn that wait for the
/// client, whole. The `action_required` event carries them too, but an event is bounded in
/// size, so a step with many calls or large arguments is read here.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/tool-calls",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 200, description = "The waiting calls (none when the chat waits for no results).", body = WaitingToolCalls),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn waiting(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
) -> Result<Json<WaitingToolCalls>, ApiError> {
    let calls = state.store.waiting_tool_calls(chat_id).await?;
    Ok(Json(WaitingToolCalls {
        tool_calls: calls
            .into_iter()
            .map(|c| agentq_core::events::ActionToolCall {
                tool_call_id: c.id,
                tool_name: c.name,
                args: c.arguments,
            })
            .collect(),
    }))
}

fn list(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
