//! `/api/v1/admin/spend-limits` (issue #15, item 4; the rules are on
//! `agentq_core::store::spend_limits`): site owners set the period every limit counts over
//! and the site default, and override it per user and per organization (agentq's groups).
//! Limits are micro-dollars, like the costs they bound.

use agentq_core::{
    domain::SpendPeriod,
    store::{SpendLimitOverride, SpendLimits},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;

use super::{parse_id, present};
use crate::{
    ApiState,
    auth::SiteOwner,
    error::{ApiError, ErrorBody, OrNotFound},
    extract::JsonBody,
};

/// Largest limit: a million dollars per period.
const MAX_LIMIT_MICROS: i64 = 1_000_000 * 1_000_000;

/// Body of `PUT /api/v1/admin/spend-limits`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendDefaultBody {
    /// `day`, `week` or `month` (absent: unchanged).
    #[schema(pattern = "^(day|week|month)$")]
    period: Option<String>,
    /// The default per user and period, micro-dollars; `null` removes it (absent:
    /// unchanged).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    default_limit_micros: Option<Option<i64>>,
}

/// Body of the per-user and per-organization `PUT`s.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendOverrideBody {
    /// The limit per period, micro-dollars (0 refuses every new turn).
    #[schema(
        required = true,
        nullable = false,
        minimum = 0,
        maximum = 1_000_000_000_000_i64
    )]
    limit_micros: Option<i64>,
}

fn check_limit(field: &str, limit: Option<i64>) -> Result<Option<i64>, ApiError> {
    match limit {
        Some(l) if !(0..=MAX_LIMIT_MICROS).contains(&l) => Err(ApiError::invalid(
            field,
            format!("must be 0..={MAX_LIMIT_MICROS} micro-dollars"),
        )),
        other => Ok(other),
    }
}

fn parse_period(raw: &str) -> Result<SpendPeriod, ApiError> {
    match raw {
        "day" => Ok(SpendPeriod::Day),
        "week" => Ok(SpendPeriod::Week),
        "month" => Ok(SpendPeriod::Month),
        other => Err(ApiError::invalid(
            "period",
            format!("must be `day`, `week` or `month`, not `{other}`"),
        )),
    }
}

/// `GET /api/v1/admin/spend-limits` (site owners): the period, default and overrides.
#[utoipa::path(
    get,
    path = "/api/v1/admin/spend-limits",
    tag = "admin",
    responses(
        (status = 200, description = "Every spend limit.", body = SpendLimits),
        (status = 403, description = "Only site owners read them.", body = ErrorBody),
    )
)]
pub async fn get_spend_limits(
    State(state): State<ApiState>,
    _: SiteOwner,
) -> Result<Json<SpendLimits>, ApiError> {
    Ok(Json(state.store.spend_limits().await?))
}

/// `PUT /api/v1/admin/spend-limits` (site owners): the period and the site default.
#[utoipa::path(
    put,
    path = "/api/v1/admin/spend-limits",
    tag = "admin",
    request_body = SpendDefaultBody,
    responses(
        (status = 200, description = "Every spend limit, as stored.", body = SpendLimits),
        (status = 400, description = "A bad `period` or `default_limit_micros`.", body = ErrorBody),
        (status = 403, description = "Only site owners set them.", body = ErrorBody),
    )
)]
pub async fn put_spend_limits(
    State(state): State<ApiState>,
    _: SiteOwner,
    JsonBody(body): JsonBody<SpendDefaultBody>,
) -> Result<Json<SpendLimits>, ApiError> {
    let period = body.period.as_deref().map(parse_period).transpose()?;
    let default = body
        .default_limit_micros
        .map(|l| check_limit("default_limit_micros", l))
        .transpose()?;
    let current = state.store.spend_limits().await?;
    state
        .store
        .set_spend_default(
            period.unwrap_or(current.period),
            default.unwrap_or(current.default_limit_micros),
        )
        .await?;
    Ok(Json(state.store.spend_limits().await?))
}

fn override_limit(body: SpendOverrideBody) -> Result<i64, ApiError> {
    check_limit("limit_micros", body.limit_micros)?
        .ok_or_else(|| ApiError::invalid("limit_micros", "is required"))
}

/// `PUT /api/v1/admin/spend-limits/users/{user_id}` (site owners): the user's own limit,
/// which beats their organizations' and the default.
#[utoipa::path(
    put,
    path = "/api/v1/admin/spend-limits/users/{user_id}",
    tag = "admin",
    params(("user_id" = Uuid, Path, description = "The user's id.")),
    request_body = SpendOverrideBody,
    responses(
        (status = 200, description = "The override.", body = SpendLimitOverride),
        (status = 400, description = "A bad id or `limit_micros`.", body = ErrorBody),
        (status = 403, description = "Only site owners set it.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    )
)]
pub async fn put_user_spend_limit(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SpendOverrideBody>,
) -> Result<Json<SpendLimitOverride>, ApiError> {
    let id = parse_id(&id, "user_id")?;
    let limit = override_limit(body)?;
    Ok(Json(
        state
            .store
            .set_user_spend_limit(id, limit)
            .await
            .or_not_found("user")?,
    ))
}

/// `DELETE /api/v1/admin/spend-limits/users/{user_id}` (site owners).
#[utoipa::path(
    delete,
    path = "/api/v1/admin/spend-limits/users/{user_id}",
    tag = "admin",
    params(("user_id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 204, description = "The override is gone; the user's organizations or the default decide."),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners remove it.", body = ErrorBody),
        (status = 404, description = "The user has no override.", body = ErrorBody),
    )
)]
pub async fn delete_user_spend_limit(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "user_id")?;
    state
        .store
        .delete_user_spend_limit(id)
        .await
        .or_not_found("spend limit of the user")?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/admin/spend-limits/organizations/{organization_id}` (site owners): the
/// limit of the organization's members; a member of several gets the smallest.
#[utoipa::path(
    put,
    path = "/api/v1/admin/spend-limits/organizations/{organization_id}",
    tag = "admin",
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    request_body = SpendOverrideBody,
    responses(
        (status = 200, description = "The override.", body = SpendLimitOverride),
        (status = 400, description = "A bad id or `limit_micros`.", body = ErrorBody),
        (status = 403, description = "Only site owners set it.", body = ErrorBody),
        (status = 404, description = "No such organization.", body = ErrorBody),
    )
)]
pub async fn put_organization_spend_limit(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SpendOverrideBody>,
) -> Result<Json<SpendLimitOverride>, ApiError> {
    let id = parse_id(&id, "organization_id")?;
    let limit = override_limit(body)?;
    Ok(Json(
        state
            .store
            .set_organization_spend_limit(id, limit)
            .await
            .or_not_found("organization")?,
    ))
}

/// `DELETE /api/v1/admin/spend-limits/organizations/{organization_id}` (site owners).
#[utoipa::path(
    delete,
    path = "/api/v1/admin/spend-limits/organizations/{organization_id}",
    tag = "admin",
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    responses(
        (status = 204, description = "The override is gone."),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners remove it.", body = ErrorBody),
        (status = 404, description = "The organization has no override.", body = ErrorBody),
    )
)]
pub async fn delete_organization_spend_limit(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "organization_id")?;
    state
        .store
        .delete_organization_spend_limit(id)
        .await
        .or_not_found("spend limit of the organization")?;
    Ok(StatusCode::NO_CONTENT)
}
