//! `POST /api/v1/chats/{chat_id}/interrupt`: stop the running turn within a second, keeping
//! what streamed (ARCHITECTURE.md §7).

use agentq_core::{outcome::ChatOutcome, store::InterruptOutcome};
use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use uuid::Uuid;

use super::chats::announce;
use crate::{
    ApiState,
    auth::OwnedChat,
    error::{ApiError, ErrorBody, OrNotFound},
    extract::ChatId,
};

/// Where an interrupt left the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterruptStatus {
    /// A worker runs the turn and stops it within a second.
    Interrupting,
    /// The turn was not on a worker and is stopped now.
    Interrupted,
}

/// Body of the 202.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InterruptResponse {
    /// Where the turn stands.
    pub status: InterruptStatus,
}

/// 202: the turn is stopping (`interrupting`) or stopped (`interrupted`); 409 when no turn
/// runs.
#[utoipa::path(
    post,
    path = "/api/v1/chats/{chat_id}/interrupt",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 202, description = "The turn is stopping or stopped; what streamed is kept.", body = InterruptResponse),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (status = 409, description = "No turn runs.", body = ErrorBody),
    )
)]
pub async fn interrupt(
    State(state): State<ApiState>,
    // An owned chat, not a `WorkChat`: stopping work (and its cost) is always the owner's
    // to do, whatever roles they lost.
    OwnedChat { user, chat_id }: OwnedChat,
) -> Result<(StatusCode, Json<InterruptResponse>), ApiError> {
    let status = interrupt_chat(&state, user.id, chat_id).await?;
    Ok((StatusCode::ACCEPTED, Json(InterruptResponse { status })))
}

/// Interrupts the chat's turn; returns `interrupting` (a worker will stop it) or
/// `interrupted` (it was not on a worker and is stopped now).
pub(crate) async fn interrupt_chat(
    state: &ApiState,
    owner: Uuid,
    chat_id: Uuid,
) -> Result<InterruptStatus, ApiError> {
    match state
        .store
        .request_interrupt(chat_id, owner)
        .await
        .or_not_found("chat")?
    {
        InterruptOutcome::Requested { .. } => Ok(InterruptStatus::Interrupting),
        InterruptOutcome::Stopped(outcome) => {
            announce(
                state,
                ChatOutcome::TurnFinished {
                    chat_id,
                    error: None,
                    outcome,
                },
            )
            .await;
            Ok(InterruptStatus::Interrupted)
        }
    }
}
