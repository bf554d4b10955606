//! `POST /api/v1/chats/{chat_id}/interrupt`: stop the running turn within a second, keeping
//! what streamed (DESIGN.md §4.8).

use agentq_core::{events::ChatEvent, store::InterruptOutcome};
use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::chats::{chat_not_found, enqueue_turn};
use crate::{ApiState, auth::CurrentUser, error::ApiError, extract::ChatId};

/// 202: the turn is stopping (`interrupting`) or stopped (`interrupted`); 409 when no turn
/// runs.
pub async fn interrupt(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    ChatId(chat_id): ChatId,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = interrupt_chat(&state, user.id, chat_id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": status }))))
}

/// Interrupts the chat's turn; returns `interrupting` (a worker will stop it) or
/// `interrupted` (it was not on a worker and is stopped now).
pub(crate) async fn interrupt_chat(
    state: &ApiState,
    owner: Uuid,
    chat_id: Uuid,
) -> Result<&'static str, ApiError> {
    match state
        .store
        .request_interrupt(chat_id, owner)
        .await
        .map_err(chat_not_found)?
    {
        InterruptOutcome::Requested { .. } => Ok("interrupting"),
        InterruptOutcome::Stopped(outcome) => {
            if let Some(message) = &outcome.promoted {
                state.events.publish(
                    chat_id,
                    ChatEvent::Message {
                        message: Box::new(message.clone()),
                    },
                );
            }
            state.events.publish(
                chat_id,
                ChatEvent::Status {
                    status: outcome.status,
                    chat_id,
                },
            );
            if let Some(turn_id) = outcome.next_turn_id {
                enqueue_turn(state, turn_id).await;
            }
            Ok("interrupted")
        }
    }
}
