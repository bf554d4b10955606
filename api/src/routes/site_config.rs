//! `/api/v1/admin/config`: site-wide settings. Anyone signed in may read them (clients show
//! how long archived chats are kept and what the rate limits are); only site owners change
//! them. A change applies at once on the replica that took it and within
//! `--site-config-cache-secs` on the others.

use agentq_core::store::{SiteConfig, SiteConfigChanges};
use axum::{Json, extract::State};
use serde::Deserialize;

use crate::{
    ApiState,
    auth::{CurrentUser, SiteOwner},
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
    /// Chats one user may create per minute; 0 turns the limit off.
    #[schema(minimum = 0, maximum = 100_000)]
    chats_per_minute: Option<i32>,
    /// Chats one user may create back to back (never more than `chats_per_minute`).
    #[schema(minimum = 1, maximum = 10_000)]
    chats_burst: Option<i32>,
    /// Messages one user may send per minute; 0 turns the limit off.
    #[schema(minimum = 0, maximum = 100_000)]
    messages_per_minute: Option<i32>,
    /// Messages one user may send back to back (never more than `messages_per_minute`).
    #[schema(minimum = 1, maximum = 10_000)]
    messages_burst: Option<i32>,
    /// Event streams one user may open per minute; 0 turns the limit off.
    #[schema(minimum = 0, maximum = 100_000)]
    stream_connects_per_minute: Option<i32>,
    /// Event streams one user may open back to back (never more than
    /// `stream_connects_per_minute`).
    #[schema(minimum = 1, maximum = 10_000)]
    stream_connects_burst: Option<i32>,
    /// An organization id: new users join it with `agents-access`; `null` turns the grant
    /// off; absent: unchanged.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<uuid::Uuid>)]
    auto_grant_agents_access_organization_id: Option<Option<uuid::Uuid>>,
}

/// Range of the `*_per_minute` limits; 0 turns one off.
const PER_MINUTE_MAX: i32 = 100_000;
/// Range of the `*_burst` settings.
const BURST_MAX: i32 = 10_000;

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
        (status = 400, description = "A field is out of range, or `auto_grant_agents_access_organization_id` names no organization; `validations` names it.", body = ErrorBody),
        (status = 403, description = "Only site owners change settings.", body = ErrorBody),
    )
)]
pub async fn put_config(
    State(state): State<ApiState>,
    _: SiteOwner,
    JsonBody(body): JsonBody<ConfigBody>,
) -> Result<Json<SiteConfig>, ApiError> {
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
        chats_per_minute: per_minute("chats_per_minute", body.chats_per_minute)?,
        chats_burst: burst("chats_burst", body.chats_burst)?,
        messages_per_minute: per_minute("messages_per_minute", body.messages_per_minute)?,
        messages_burst: burst("messages_burst", body.messages_burst)?,
        stream_connects_per_minute: per_minute(
            "stream_connects_per_minute",
            body.stream_connects_per_minute,
        )?,
        stream_connects_burst: burst("stream_connects_burst", body.stream_connects_burst)?,
        auto_grant_agents_access_organization_id: body.auto_grant_agents_access_organization_id,
    };
    let config = state.store.update_site_config(&changes).await?;
    // The limits apply to this replica's next request, not after its cache expires.
    state.rate_limiter.settings().set(config.clone());
    Ok(Json(config))
}

fn per_minute(field: &str, value: Option<i32>) -> Result<Option<i32>, ApiError> {
    in_range(field, value, 0, PER_MINUTE_MAX, " (0 turns the limit off)")
}

fn burst(field: &str, value: Option<i32>) -> Result<Option<i32>, ApiError> {
    in_range(field, value, 1, BURST_MAX, "")
}
