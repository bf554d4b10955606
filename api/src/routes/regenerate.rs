//! `POST /api/v1/chats/{chat_id}/regenerate`: run the last turn of an idle chat again. Its
//! answer (assistant and tool messages, and anything after them) is superseded: kept, with
//! `superseded_at`, but gone from what the model sees; the user message stays and a new
//! turn answers it (ARCHITECTURE.md §4.1).

use agentq_core::{outcome::ChatOutcome, rate_limit::Limit};
use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use uuid::Uuid;

use super::chats::announce;
use crate::{
    ApiState,
    auth::{OwnedChat, WorkChat},
    error::{ApiError, ErrorBody, OrNotFound},
    extract::ChatId,
};

/// Body of the 202.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegenerateResponse {
    /// The first superseded message: it and every later one are gone from the
    /// conversation; absent when the last turn had written no answer.
    pub superseded_from_message_id: Option<Uuid>,
    /// How many messages were superseded.
    pub superseded_messages: u64,
}

/// 202: the last turn's answer is superseded and a new turn is queued.
#[utoipa::path(
    post,
    path = "/api/v1/chats/{chat_id}/regenerate",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 202, description = "The last answer is superseded and a new turn is queued.", body = RegenerateResponse),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 403, description = "The caller no longer has `agents-access` in the chat's organization.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (status = 409, description = "A turn is unfinished or messages are queued, the subagent chat was closed, or the caller's spend limit is reached.", body = ErrorBody),
        (status = 429, description = "Over `messages_per_minute`; `Retry-After` says when to try again.", body = ErrorBody),
    )
)]
pub async fn regenerate(
    State(state): State<ApiState>,
    WorkChat(OwnedChat { user, chat_id }): WorkChat,
) -> Result<(StatusCode, Json<RegenerateResponse>), ApiError> {
    // It starts a turn, as a sent message does.
    state.rate_limiter.check(Limit::Messages, user.id).await?;
    let rewrite = state
        .store
        .regenerate(chat_id, user.id)
        .await
        .or_not_found("chat")?;
    let response = RegenerateResponse {
        superseded_from_message_id: rewrite.superseded_from,
        superseded_messages: rewrite.superseded,
    };
    announce(&state, ChatOutcome::Rewritten(rewrite)).await;
    Ok((StatusCode::ACCEPTED, Json(response)))
}
