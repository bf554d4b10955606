//! `/api/v1/users/me/notification-preferences`: which emails a user wants. Today there is
//! one, the archive digest (DESIGN.md §5), on by default.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};

use crate::{ApiState, auth::CurrentUser, error::ApiError, extract::JsonBody};

/// A user's email preferences.
#[derive(Debug, Serialize)]
pub struct NotificationPreferences {
    /// Receive the digest of chats auto-archived for inactivity.
    pub archive_digest: bool,
}

/// Body of `PUT /api/v1/users/me/notification-preferences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// See [`NotificationPreferences`]; required.
    archive_digest: Option<bool>,
}

/// `GET /api/v1/users/me/notification-preferences`.
pub async fn get_preferences(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<NotificationPreferences>, ApiError> {
    Ok(Json(NotificationPreferences {
        archive_digest: state.store.archive_digest_enabled(user.id).await?,
    }))
}

/// `PUT /api/v1/users/me/notification-preferences`.
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
