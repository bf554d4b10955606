//! `/api/v1/admin/users` (issue #15, item 1; ARCHITECTURE.md §11.2): site owners list,
//! read and create users, change a user's site role and suspend or reactivate them.
//! Memberships are managed per organization (`/api/v1/organizations/{organization_id}/members`,
//! which site owners may use for every organization). A user created here joins the
//! auto-grant organization like any other new user (`Store::create_user`).

use agentq_core::{
    StoreError,
    domain::{Membership, SiteRole, UserStatus, UserSummary},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::parse_id;
use crate::{
    ApiState,
    auth::SiteOwner,
    error::{ApiError, ErrorBody, OrNotFound, refuse_control_chars},
    extract::{JsonBody, QueryParams},
};

const MAX_EMAIL_CHARS: usize = 320;
const MAX_NAME_CHARS: usize = 200;

/// A user with their memberships.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserDetail {
    /// The user.
    #[serde(flatten)]
    pub user: UserSummary,
    /// Their organizations and roles there, by organization name.
    pub memberships: Vec<Membership>,
}

/// Query of `GET /api/v1/admin/users`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The last user id of the previous page (`next_after_id`).
    pub after_id: Option<Uuid>,
}

/// A page of users.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserList {
    /// Users in creation order.
    pub users: Vec<UserSummary>,
    /// Cursor for the next page, absent on the last one.
    pub next_after_id: Option<Uuid>,
}

/// `GET /api/v1/admin/users` (site owners).
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    params(ListUsersQuery),
    responses(
        (status = 200, description = "A page of users, in creation order.", body = UserList),
        (status = 400, description = "`limit` or `after_id` is invalid.", body = ErrorBody),
        (status = 403, description = "Only site owners list users.", body = ErrorBody),
    )
)]
pub async fn list_users(
    State(state): State<ApiState>,
    _: SiteOwner,
    QueryParams(query): QueryParams<ListUsersQuery>,
) -> Result<Json<UserList>, ApiError> {
    let limit = crate::routes::chats::page_limit(query.limit, 100, 500)?;
    let users = state.store.list_users(limit, query.after_id).await?;
    let next_after_id = if users.len() as i64 == limit {
        users.last().map(|u| u.id)
    } else {
        None
    };
    Ok(Json(UserList {
        users,
        next_after_id,
    }))
}

/// Body of `POST /api/v1/admin/users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Email, unique (case-insensitive), at most 320 characters.
    #[schema(
        required = true,
        nullable = false,
        max_length = 320,
        pattern = "^[^\\S\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*[^\\s@\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]+@[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]+[^\\S\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    pub email: Option<String>,
    /// Display name, at most 200 characters.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    pub name: Option<String>,
    /// `owner` or `member` (default).
    #[serde(default)]
    pub site_role: Option<SiteRole>,
}

async fn detail(state: &ApiState, id: Uuid) -> Result<UserDetail, ApiError> {
    let user = state.store.get_user(id).await.or_not_found("user")?;
    let memberships = state.store.user_memberships(id).await?;
    Ok(UserDetail { user, memberships })
}

/// `POST /api/v1/admin/users` (site owners) -> 201. The user has no token yet: an operator
/// mints one with `agentq admin tokens create`, or the user signs in through the site's
/// login.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "admin",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "The user, with the memberships the auto-grant setting gave them.", body = UserDetail),
        (status = 400, description = "`email`, `name` or `site_role` is invalid.", body = ErrorBody),
        (status = 403, description = "Only site owners create users.", body = ErrorBody),
        (status = 409, description = "A user with this email exists.", body = ErrorBody),
    )
)]
pub async fn create_user(
    State(state): State<ApiState>,
    _: SiteOwner,
    JsonBody(body): JsonBody<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserDetail>), ApiError> {
    let email = body
        .email
        .ok_or_else(|| ApiError::invalid("email", "is required"))?;
    // The limit counts what was sent, as the document's `maxLength` does, not what is left
    // once trimmed.
    let sent_chars = email.chars().count();
    let email = crate::error::trimmed("email", &email)?;
    let at = email.find('@');
    if sent_chars > MAX_EMAIL_CHARS
        || !at.is_some_and(|i| i > 0 && i + 1 < email.len())
        || email.chars().any(char::is_whitespace)
    {
        return Err(ApiError::invalid(
            "email",
            format!("must be an email address (`name@host`, at most {MAX_EMAIL_CHARS} characters)"),
        ));
    }
    refuse_control_chars("email", email)?;
    let name = body.name.unwrap_or_default();
    let name = crate::error::trimmed_within("name", &name, MAX_NAME_CHARS)?;
    refuse_control_chars("name", name)?;
    let owner = body.site_role == Some(SiteRole::Owner);
    let id = state
        .store
        .create_named_user(email, name, owner)
        .await?
        .ok_or_else(|| ApiError::Conflict("a user with this email exists".into()))?;
    Ok((StatusCode::CREATED, Json(detail(&state, id).await?)))
}

/// `GET /api/v1/admin/users/{user_id}` (site owners).
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{user_id}",
    tag = "admin",
    params(("user_id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "The user and their memberships.", body = UserDetail),
        (status = 400, description = "`user_id` is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners read users.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    )
)]
pub async fn get_user(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
) -> Result<Json<UserDetail>, ApiError> {
    let id = parse_id(&id, "user_id")?;
    Ok(Json(detail(&state, id).await?))
}

/// Body of `PATCH /api/v1/admin/users/{user_id}`: at least one field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateUserRequest {
    /// `owner` or `member`; the last active owner cannot be demoted (409).
    #[serde(default, deserialize_with = "super::not_null")]
    #[schema(nullable = false)]
    pub site_role: Option<SiteRole>,
    /// `active` reactivates, `suspended` refuses every request of the user (their tokens
    /// get 403) until reactivated, `deleted` refuses them for good; the last active owner
    /// cannot be suspended (409).
    #[serde(default, deserialize_with = "super::not_null")]
    #[schema(nullable = false)]
    pub status: Option<UserStatus>,
}

/// `PATCH /api/v1/admin/users/{user_id}` (site owners): set the site role, suspend or
/// reactivate. Applies from the user's next request.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{user_id}",
    tag = "admin",
    params(("user_id" = Uuid, Path, description = "The user's id.")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The user as changed.", body = UserDetail),
        (status = 400, description = "No field, or a field is invalid.", body = ErrorBody),
        (status = 403, description = "Only site owners change users.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        (status = 409, description = "The change would leave the site without an active owner.", body = ErrorBody),
    )
)]
pub async fn update_user(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateUserRequest>,
) -> Result<Json<UserDetail>, ApiError> {
    let id = parse_id(&id, "user_id")?;
    if body.site_role.is_none() && body.status.is_none() {
        return Err(ApiError::invalid(
            "site_role",
            "send `site_role`, `status` or both",
        ));
    }
    let user = state.store.get_user(id).await.or_not_found("user")?;
    if let Some(role) = body.site_role {
        state
            .store
            .set_site_role(id, role)
            .await
            .or_not_found("user")?;
    }
    if let Some(status) = body.status {
        if status != UserStatus::Active
            && user.site_role == SiteRole::Owner.as_str()
            && state.store.other_active_site_owners(id).await? == 0
            && body.site_role != Some(SiteRole::Member)
        {
            return Err(StoreError::Conflict(
                "this is the last active site owner; make someone else an owner first".into(),
            )
            .into());
        }
        state.store.set_user_status(id, status).await?;
    }
    Ok(Json(detail(&state, id).await?))
}
