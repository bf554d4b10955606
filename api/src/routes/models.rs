//! `GET /api/v1/models`: the models a user can pick (issue #15 item 3). Every enabled
//! model of an enabled provider is listed; one whose provider has no key for the caller
//! (the key policy on `agentq_core::domain::KeyPolicy`) is listed with `available: false`
//! and the reason a turn on it would fail with `missing_key`. The worker decides with the
//! same rule at every step, so the listing and the turn agree.

use agentq_core::domain::{KeySource, KeyUnavailable};
use axum::{Json, extract::State};
use serde::Serialize;
use uuid::Uuid;

use crate::{ApiState, auth::CurrentUser, error::ApiError};

/// One model as a user sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserModel {
    /// Id (what chats name as `model_config_id`).
    pub id: Uuid,
    /// Name sent to the provider.
    pub name: String,
    /// Name shown to people.
    pub display_name: String,
    /// Context window in tokens.
    pub context_limit: Option<i32>,
    /// The model chats use when they name none.
    pub is_default: bool,
    /// Its provider.
    pub provider_id: Uuid,
    /// Its provider's name.
    pub provider_name: String,
    /// Whether the caller's turns on it have a key.
    pub available: bool,
    /// Whose key the caller's turns would use (`user` or `central`); null when unavailable.
    pub key_source: Option<KeySource>,
    /// Why it is unavailable: `user_key_required` or `no_central_key`.
    pub unavailable_code: Option<KeyUnavailable>,
    /// The same, as the sentence a turn on it would fail with.
    pub unavailable_reason: Option<String>,
}

/// Body of `GET /api/v1/models`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserModelList {
    /// Enabled models of enabled providers, by provider and name.
    pub models: Vec<UserModel>,
}

/// `GET /api/v1/models`.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses((status = 200, description = "Every enabled model, each saying whether the caller has a key for it and why not.", body = UserModelList))
)]
pub async fn list_my_models(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<UserModelList>, ApiError> {
    let models = state
        .store
        .models_for_user(user.id)
        .await?
        .into_iter()
        .map(|m| {
            let choice = m.key_policy().choose(
                m.has_user_key,
                m.has_central_key,
                m.provider_kind.needs_api_key(),
            );
            UserModel {
                available: choice.is_ok(),
                key_source: choice.ok(),
                unavailable_code: choice.err(),
                unavailable_reason: choice.err().map(|why| why.message(&m.provider_name)),
                id: m.id,
                name: m.name,
                display_name: m.display_name,
                context_limit: m.context_limit,
                is_default: m.is_default,
                provider_id: m.provider_id,
                provider_name: m.provider_name,
            }
        })
        .collect();
    Ok(Json(UserModelList { models }))
}
