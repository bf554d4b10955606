//! `GET /api/v1/chats/{chat_id}/children`: the subagent chats a chat's model spawned
//! (issue #12 item 6; ARCHITECTURE.md §7). Each child is a chat of its own: read its
//! messages, stream or interrupt it at `/api/v1/chats/{id}/...` like any other.

use agentq_core::store::ChildChat;
use axum::{Json, extract::State};
use serde::Serialize;

use crate::{
    ApiState,
    auth::OwnedChat,
    error::{ApiError, ErrorBody},
    extract::ChatId,
};

/// Body of `GET .../children`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChildChats {
    /// Oldest first; closed ones included (`closed`). At most the spawn cap of one chat.
    pub children: Vec<ChildChat>,
}

/// `GET /api/v1/chats/{chat_id}/children`: the chat's subagent chats.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/children",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 200, description = "The chat's subagents (none for a chat that spawned none, or a subagent).", body = ChildChats),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn list_children(
    State(state): State<ApiState>,
    OwnedChat { user, chat_id }: OwnedChat,
) -> Result<Json<ChildChats>, ApiError> {
    let children = state.store.list_child_chats(chat_id, user.id).await?;
    Ok(Json(ChildChats { children }))
}
