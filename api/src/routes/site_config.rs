//! `/api/v1/admin/config`: site-wide settings. Anyone signed in may read them (clients show
//! how long archived chats are kept); only site owners change them.

use agentq_core::store::{SiteConfig, SiteConfigChanges};
use axum::{Json, extract::State};
use serde::Deserialize;

use super::admin::require_site_owner;
use crate::{ApiState, auth::CurrentUser, error::ApiError, extract::JsonBody};

/// `GET /api/v1/admin/config`.
pub async fn get_config(
    State(state): State<ApiState>,
    CurrentUser(_): CurrentUser,
) -> Result<Json<SiteConfig>, ApiError> {
    Ok(Json(state.store.site_config().await?))
}

/// Body of `PUT /api/v1/admin/config`; absent fields keep their value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    auto_archive_days: Option<i32>,
    auto_archive_limit: Option<i32>,
    chat_retention_days: Option<i32>,
    debug_retention_days: Option<i32>,
    debug_logging_enabled: Option<bool>,
}

fn in_range(
    field: &str,
    value: Option<i32>,
    min: i32,
    max: i32,
    meaning: &str,
) -> Result<Option<i32>, ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(ApiError::invalid(
            field,
            format!("must be between {min} and {max}{meaning}"),
        )),
        other => Ok(other),
    }
}

/// `PUT /api/v1/admin/config` (site owners): 400 naming any out-of-range field.
pub async fn put_config(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<ConfigBody>,
) -> Result<Json<SiteConfig>, ApiError> {
    require_site_owner(&user)?;
    let changes = SiteConfigChanges {
        auto_archive_days: in_range(
            "auto_archive_days",
            body.auto_archive_days,
            0,
            3650,
            " (0 turns auto-archive off)",
        )?,
        auto_archive_limit: in_range(
            "auto_archive_limit",
            body.auto_archive_limit,
            1,
            100_000,
            "",
        )?,
        chat_retention_days: in_range(
            "chat_retention_days",
            body.chat_retention_days,
            0,
            3650,
            " (0 keeps archived chats forever)",
        )?,
        debug_retention_days: in_range(
            "debug_retention_days",
            body.debug_retention_days,
            0,
            3650,
            " (0 turns the purge off)",
        )?,
        debug_logging_enabled: body.debug_logging_enabled,
    };
    Ok(Json(state.store.update_site_config(&changes).await?))
}
