//! Bearer-token authentication: `Authorization: Bearer aq_...`, checked against the
//! SHA-256 digest stored in `api_tokens` (the secret itself is never stored or logged).
//!
//! Two checks, at two depths. Every request: the token is neither revoked nor expired (401)
//! and its user is active (403). Every request that starts work (a turn, tool results, a
//! stream, an interrupt): [`require_work_access`] re-checks that the caller still holds
//! `agents-access` in the chat's organization, so removing the role stops a user at once
//! rather than when the token expires.

use agentq_core::{
    auth::hash_token,
    domain::{AuthenticatedUser, UserStatus},
    store::ChatAccess,
};
use axum::{extract::FromRequestParts, http::request::Parts};
use uuid::Uuid;

use crate::{ApiState, error::ApiError};

/// The authenticated caller; add it to a handler's arguments to require a token.
pub struct CurrentUser(pub AuthenticatedUser);

impl FromRequestParts<ApiState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
            })?;
        let value = header.to_str().map_err(|_| {
            ApiError::Unauthorized("the Authorization header is not valid text".into())
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let user = state
            .store
            .authenticate(&hash_token(token))
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized("the API token is invalid or expired, or was revoked".into())
            })?;
        match user.status {
            UserStatus::Active => Ok(CurrentUser(user)),
            UserStatus::Suspended => Err(ApiError::Forbidden(
                "your account is suspended: an active account is required".into(),
            )),
            UserStatus::Deleted => Err(ApiError::Forbidden(
                "your account is deleted: an active account is required".into(),
            )),
        }
    }
}

/// Refuses to start work in `chat_id` unless `user` owns it and still holds `agents-access`
/// in its organization: 404 for a chat that is not theirs, 403 naming the missing role.
pub async fn require_work_access(
    state: &ApiState,
    user: &AuthenticatedUser,
    chat_id: Uuid,
) -> Result<(), ApiError> {
    match state.store.chat_work_access(chat_id, user.id).await? {
        ChatAccess::Allowed => Ok(()),
        ChatAccess::NotFound => Err(ApiError::NotFound("chat not found".into())),
        ChatAccess::MissingAgentsAccess { organization_id } => Err(ApiError::Forbidden(format!(
            "you no longer have the `agents-access` role in this chat's organization \
             ({organization_id}); an organization admin can grant it again"
        ))),
    }
}

/// A caller who owns the site; add it to a handler's arguments (instead of
/// [`CurrentUser`]) to make the route site owners' only: 403 for anyone else, checked
/// before the body is read.
pub struct SiteOwner(pub AuthenticatedUser);

impl FromRequestParts<ApiState> for SiteOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.is_site_owner() {
            Ok(SiteOwner(user))
        } else {
            Err(ApiError::Forbidden(
                "only site owners may change the site's settings, queues, providers and models"
                    .into(),
            ))
        }
    }
}
