//! `/api/v1/admin/config`: site-wide settings. Anyone signed in may read them (clients show
//! how long archived chats are kept); only site owners change them.

use agentq_core::store::{SiteConfig, SiteConfigChanges};
use axum::{Json, extract::State};
use serde::Deserialize;

use super::admin::require_site_owner;
use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody},
    extract::JsonBody,
};

/// `GET /api/v1/admin/config`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/config",
    tag = "admin",
    responses((status = 200, description = "The site's settings.", body = SiteConfig))
)]
pub async fn get_config(
    State(state): State<ApiState>,
    CurrentUser(_): CurrentUser,
) -> Result<Json<SiteConfig>, ApiError> {
    Ok(Json(state.store.site_config().await?))
}

/// Body of `PUT /api/v1/admin/config`; absent fields keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// Days of inactivity before a root chat is auto-archived; 0 turns auto-archive off.
    #[schema(minimum = 0, maximum = 3650)]
    auto_archive_days: Option<i32>,
    /// Most root chats archived per tick.
    #[schema(minimum = 1, maximum = 100_000)]
    auto_archive_limit: Option<i32>,
    /// Days an archived chat is kept before deletion; 0 keeps archived chats forever.
    #[schema(minimum = 0, maximum = 3650)]
    chat_retention_days: Option<i32>,
    /// Days debug runs are kept; 0 turns the purge off.
    #[schema(minimum = 0, maximum = 3650)]
    debug_retention_days: Option<i32>,
    /// Site switch for debug runs (each owner also switches their own).
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
#[utoipa::path(
    put,
    path = "/api/v1/admin/config",
    tag = "admin",
    request_body = ConfigBody,
    responses(
        (status = 200, description = "The settings after the change.", body = SiteConfig),
        (status = 400, description = "A field is out of range; `validations` names it.", body = ErrorBody),
        (status = 403, description = "Only site owners change settings.", body = ErrorBody),
    )
)]
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
