//! Models by context in the API (issue #13 item 4; the order is on
//! `agentq_core::store::model_contexts`): `/api/v1/admin/model-contexts` (site owners) sets
//! the model of each context, `/api/v1/users/me/model-overrides` a user's own model for
//! their root chats, and `/api/v1/chats/{chat_id}/model` tells which model answers a chat
//! and why. A chat names its model on create, by PATCH, or by a message
//! (`model_config_id`); each of those is checked by [`enabled_model`].

use agentq_core::store::{EffectiveModel, ModelContexts, UserModelOverrides};
use axum::{Json, extract::State};
use uuid::Uuid;

use crate::{
    ApiState,
    auth::{CurrentUser, OwnedChat, SiteOwner},
    error::{ApiError, ErrorBody},
    extract::{ChatId, JsonBody},
};

/// A 400 naming `field` unless `id` names a model that can answer: it exists, it is
/// enabled, and so is its provider.
pub(crate) async fn enabled_model(state: &ApiState, field: &str, id: Uuid) -> Result<(), ApiError> {
    match state.store.model_availability(id).await? {
        None => Err(ApiError::invalid(field, format!("names no model ({id})"))),
        Some(m) if !m.enabled => Err(ApiError::invalid(
            field,
            format!("names the model {}, which is disabled", m.name),
        )),
        Some(m) if !m.provider_enabled => Err(ApiError::invalid(
            field,
            format!(
                "names the model {}, whose provider is disabled, so it is unavailable",
                m.name
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// `GET /api/v1/admin/model-contexts` (site owners): the model of each context.
#[utoipa::path(
    get,
    path = "/api/v1/admin/model-contexts",
    tag = "admin",
    responses(
        (status = 200, description = "Each context's model id, or null when the next step of the resolution order decides (README \"Models by context\").", body = ModelContexts),
        (status = 403, description = "Only site owners read it.", body = ErrorBody),
    )
)]
pub async fn get_model_contexts(
    State(state): State<ApiState>,
    _owner: SiteOwner,
) -> Result<Json<ModelContexts>, ApiError> {
    Ok(Json(state.store.model_contexts().await?))
}

/// `PUT /api/v1/admin/model-contexts` (site owners): replaces every context's model (an
/// absent or null context falls through to the next step of the order); applies from the
/// next step of every chat.
#[utoipa::path(
    put,
    path = "/api/v1/admin/model-contexts",
    tag = "admin",
    request_body = ModelContexts,
    responses(
        (status = 200, description = "The contexts as stored.", body = ModelContexts),
        (status = 400, description = "A model id names no model, a disabled one, or one whose provider is disabled; `validations` names the context.", body = ErrorBody),
        (status = 403, description = "Only site owners change it.", body = ErrorBody),
    )
)]
pub async fn put_model_contexts(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    JsonBody(body): JsonBody<ModelContexts>,
) -> Result<Json<ModelContexts>, ApiError> {
    for (field, id) in body.named() {
        if let Some(id) = id {
            enabled_model(&state, field, id).await?;
        }
    }
    Ok(Json(state.store.set_model_contexts(&body).await?))
}

/// `GET /api/v1/users/me/model-overrides`: the caller's own model choices.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/model-overrides",
    tag = "users",
    responses((status = 200, description = "`root`: the model of the caller's root chats that name none, or null.", body = UserModelOverrides))
)]
pub async fn get_model_overrides(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<UserModelOverrides>, ApiError> {
    Ok(Json(state.store.user_model_overrides(user.id).await?))
}

/// `PUT /api/v1/users/me/model-overrides`: replaces the caller's own model choices; applies
/// from the next step of each of the caller's root chats that names no model.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/model-overrides",
    tag = "users",
    request_body = UserModelOverrides,
    responses(
        (status = 200, description = "The choices as stored.", body = UserModelOverrides),
        (status = 400, description = "`root` names no model, a disabled one, or one whose provider is disabled.", body = ErrorBody),
    )
)]
pub async fn put_model_overrides(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<UserModelOverrides>,
) -> Result<Json<UserModelOverrides>, ApiError> {
    if let Some(id) = body.root {
        enabled_model(&state, "root", id).await?;
    }
    Ok(Json(
        state.store.set_user_model_overrides(user.id, &body).await?,
    ))
}

/// `GET /api/v1/chats/{chat_id}/model`: the model that answers the chat's next step and
/// which step of the resolution order chose it.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/model",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 200, description = "`model_id` (null: the worker's flag-configured provider) and `source`: `chat`, `user`, `site_context`, `site_default` or `worker_flags`.", body = EffectiveModel),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn get_chat_model(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
) -> Result<Json<EffectiveModel>, ApiError> {
    Ok(Json(state.store.effective_model(chat_id).await?))
}
