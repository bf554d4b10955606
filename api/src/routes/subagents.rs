//! Subagents in the API (issue #12 item 6; ARCHITECTURE.md §7):
//! `GET /api/v1/chats/{chat_id}/children`, the subagent chats a chat's model spawned (each
//! a chat of its own: read its messages, stream or interrupt it at `/api/v1/chats/{id}/...`
//! like any other), and `/api/v1/admin/subagent-models`, the model each subagent type runs
//! on (site owners).

use agentq_core::store::{ChildChat, SubagentModels};
use axum::{Json, extract::State};
use serde::Serialize;

use crate::{
    ApiState,
    auth::{OwnedChat, SiteOwner},
    error::{ApiError, ErrorBody},
    extract::{ChatId, JsonBody},
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

/// `GET /api/v1/admin/subagent-models` (site owners): the model each subagent type runs on.
#[utoipa::path(
    get,
    path = "/api/v1/admin/subagent-models",
    tag = "admin",
    responses(
        (status = 200, description = "`general` and `explore`: a model id, or null for the parent's model.", body = SubagentModels),
        (status = 403, description = "Only site owners read it.", body = ErrorBody),
    )
)]
pub async fn get_subagent_models(
    State(state): State<ApiState>,
    _owner: SiteOwner,
) -> Result<Json<SubagentModels>, ApiError> {
    Ok(Json(state.store.subagent_models().await?))
}

/// `PUT /api/v1/admin/subagent-models` (site owners): replaces both choices (an absent or
/// null type runs on its parent's model); applies to subagents spawned from now on.
#[utoipa::path(
    put,
    path = "/api/v1/admin/subagent-models",
    tag = "admin",
    request_body = SubagentModels,
    responses(
        (status = 200, description = "The choices as stored.", body = SubagentModels),
        (status = 400, description = "A model id names no model or a disabled one; `validations` names `general` or `explore`.", body = ErrorBody),
        (status = 403, description = "Only site owners change it.", body = ErrorBody),
    )
)]
pub async fn put_subagent_models(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    JsonBody(body): JsonBody<SubagentModels>,
) -> Result<Json<SubagentModels>, ApiError> {
    for (field, id) in [("general", body.general), ("explore", body.explore)] {
        if let Some(id) = id {
            super::model_contexts::enabled_model(&state, field, id).await?;
        }
    }
    Ok(Json(state.store.set_subagent_models(&body).await?))
}
