//! `/api/v1/users/me/notification-preferences`: which emails a user wants. Today there is
//! one, the archive digest (ARCHITECTURE.md §10), on by default.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};

use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody},
    extract::JsonBody,
};

/// A user's email preferences.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationPreferences {
    /// Receive the digest of chats auto-archived for inactivity.
    pub archive_digest: bool,
}

/// Body of `PUT /api/v1/users/me/notification-preferences`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// Receive the digest of chats auto-archived for inactivity.
    #[schema(required = true, nullable = false)]
    archive_digest: Option<bool>,
}

/// `GET /api/v1/users/me/notification-preferences`.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/notification-preferences",
    operation_id = "get_notification_preferences",
    tag = "users",
    responses(
        (status = 200, description = "Which emails the caller gets.", body = NotificationPreferences),
    )
)]
pub async fn get_preferences(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<NotificationPreferences>, ApiError> {
    Ok(Json(NotificationPreferences {
        archive_digest: state.store.archive_digest_enabled(user.id).await?,
    }))
}

/// `PUT /api/v1/users/me/notification-preferences`: takes effect from the next
/// maintenance tick.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/notification-preferences",
    operation_id = "put_notification_preferences",
    tag = "users",
    request_body = PreferencesBody,
    responses(
        (status = 200, description = "The preferences as stored.", body = NotificationPreferences),
        (status = 400, description = "`archive_digest` is missing or not a boolean, or an unknown field was sent.", body = ErrorBody),
    )
)]
pub async fn put_preferences(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<PreferencesBody>,
) -> Result<Json<NotificationPreferences>, ApiError> {
    let archive_digest = body
        .archive_digest
        .ok_or_else(|| ApiError::invalid("archive_digest", "is required (true or false)"))?;
    state
        .store
        .set_archive_digest(user.id, archive_digest)
        .await?;
    Ok(Json(NotificationPreferences { archive_digest }))
}
