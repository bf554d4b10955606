//! Usage (issue #15, item 4): `GET /api/v1/users/me/usage`, where the caller stands against
//! their spend limit in the current period, and `GET /api/v1/admin/usage`, what assistant
//! messages cost over a range of UTC days, by user, model and chat (site owners). The
//! limits themselves are set under `/api/v1/admin/spend-limits` (`admin::spend_limits`).

use agentq_core::store::{UsageReport, UsageStatus};
use axum::{Json, extract::State};
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ApiState,
    auth::{CurrentUser, SiteOwner},
    error::{ApiError, ErrorBody},
    extract::QueryParams,
};

/// Longest range of the admin report, in days.
const MAX_RANGE_DAYS: i64 = 366;

/// `GET /api/v1/users/me/usage`: the caller's period, spend, limit and where it comes from.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/usage",
    tag = "users",
    responses((status = 200, description = "The caller's spend in the current period.", body = UsageStatus))
)]
pub async fn get_my_usage(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<UsageStatus>, ApiError> {
    Ok(Json(state.store.usage_status(user.id).await?))
}

/// Query of `GET /api/v1/admin/usage`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// First UTC day counted, `YYYY-MM-DD` (default: the first of the current month).
    #[param(nullable = false, format = Date)]
    pub from: Option<String>,
    /// Last UTC day counted, inclusive, `YYYY-MM-DD` (default: today); at most 366 days
    /// after `from`.
    #[param(nullable = false, format = Date)]
    pub to: Option<String>,
    /// Most chats in `by_chat`, 1..=1000 (default 100), the most expensive.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The report with the range it covers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReportBody {
    /// First day counted.
    pub from: NaiveDate,
    /// Last day counted (inclusive).
    pub to: NaiveDate,
    /// The costs.
    #[serde(flatten)]
    pub report: UsageReport,
}

fn parse_day(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, format!("must be a date as YYYY-MM-DD, not `{raw}`")))
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// `GET /api/v1/admin/usage` (site owners): costs from `from` to `to` (UTC days,
/// inclusive), by user, model and chat.
#[utoipa::path(
    get,
    path = "/api/v1/admin/usage",
    tag = "admin",
    params(UsageQuery),
    responses(
        (status = 200, description = "Costs by user, model and chat, most expensive first.", body = UsageReportBody),
        (status = 400, description = "A bad `from`, `to` or `limit`, named.", body = ErrorBody),
        (status = 403, description = "Only site owners read it.", body = ErrorBody),
    )
)]
pub async fn get_usage_report(
    State(state): State<ApiState>,
    _: SiteOwner,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<UsageReportBody>, ApiError> {
    Ok(Json(usage_report(&state, query, None).await?))
}

/// The report `query` asks for, of every chat or (with `organization`) of one
/// organization's chats; shared by the site's and an organization's usage routes.
pub(crate) async fn usage_report(
    state: &ApiState,
    query: UsageQuery,
    organization: Option<uuid::Uuid>,
) -> Result<UsageReportBody, ApiError> {
    let today = Utc::now().date_naive();
    let from = match query.from.as_deref() {
        Some(raw) => parse_day("from", raw)?,
        None => today.with_day(1).expect("the first of a month exists"),
    };
    let to = match query.to.as_deref() {
        Some(raw) => parse_day("to", raw)?,
        None => today,
    };
    if to < from {
        return Err(ApiError::invalid(
            "to",
            format!("is before `from` ({from})"),
        ));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(ApiError::invalid(
            "to",
            format!("is more than {MAX_RANGE_DAYS} days after `from` ({from})"),
        ));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1..=1000"));
    }
    let end = to
        .checked_add_days(Days::new(1))
        .ok_or_else(|| ApiError::invalid("to", "is out of range"))?;
    let report = state
        .store
        .usage_report(start_of(from), start_of(end), limit, organization)
        .await?;
    Ok(UsageReportBody { from, to, report })
}
