//! `/api/v1/organizations/{organization_id}/...` (issue #15, item 6; ARCHITECTURE.md §11.2):
//! an organization's admins, and site owners, manage its members and their roles and read
//! what its chats cost. Every handler takes an [`OrganizationAdmin`]: 404 for an
//! organization the caller is not in, 403 naming the role for a member who is not its
//! admin. Nothing here reaches another organization or a site role.
//!
//! `/api/v1/users/me/organizations` lets anyone see their own memberships.

use agentq_core::{
    StoreError,
    domain::{Membership, OrganizationRole},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::usage::{UsageQuery, UsageReportBody, usage_report};
use crate::{
    ApiState,
    auth::{CurrentUser, OrganizationAdmin},
    error::{ApiError, ErrorBody},
    extract::{JsonBody, QueryParams},
};

/// An organization's members, or a user's memberships.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MembershipList {
    /// Memberships with their roles.
    pub memberships: Vec<Membership>,
}

/// `GET /api/v1/users/me/organizations`: the caller's organizations and roles.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/organizations",
    tag = "users",
    responses((status = 200, description = "The caller's memberships, by organization name.", body = MembershipList))
)]
pub async fn my_organizations(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<MembershipList>, ApiError> {
    Ok(Json(MembershipList {
        memberships: state.store.user_memberships(user.id).await?,
    }))
}

/// `GET /api/v1/organizations/{organization_id}/members`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organization_id}/members",
    tag = "organizations",
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    responses(
        (status = 200, description = "The members and their roles, by email.", body = MembershipList),
        (status = 400, description = "`organization_id` is not a UUID.", body = ErrorBody),
        (status = 403, description = "The caller is a member without `organization-admin` (and not a site owner), or the token lacks `admin`.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not in it.", body = ErrorBody),
    )
)]
pub async fn list_members(
    State(state): State<ApiState>,
    admin: OrganizationAdmin,
) -> Result<Json<MembershipList>, ApiError> {
    Ok(Json(MembershipList {
        memberships: state
            .store
            .organization_members(admin.organization_id)
            .await?,
    }))
}

/// Roles as sent, checked: each is `organization-admin` or `agents-access` (400 naming
/// `roles[i]` otherwise), duplicates dropped.
fn checked_roles(roles: Option<Vec<String>>) -> Result<Vec<OrganizationRole>, ApiError> {
    let roles = roles.ok_or_else(|| ApiError::invalid("roles", "is required (`[]` for none)"))?;
    let mut checked = Vec::new();
    for (i, name) in roles.iter().enumerate() {
        let role = OrganizationRole::from_name(name).ok_or_else(|| {
            ApiError::invalid(
                format!("roles[{i}]"),
                "must be `organization-admin` or `agents-access` (site roles are set by site owners under /api/v1/admin/users)",
            )
        })?;
        if !checked.contains(&role) {
            checked.push(role);
        }
    }
    Ok(checked)
}

/// Body of `POST /api/v1/organizations/{organization_id}/members`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The user to add, by email (case-insensitive); the account must exist.
    #[schema(required = true, nullable = false, max_length = 320)]
    pub email: Option<String>,
    /// Their roles: `organization-admin`, `agents-access`, both or none (`[]`).
    #[schema(required = true, nullable = false, value_type = Vec<OrganizationRole>)]
    pub roles: Option<Vec<String>>,
}

/// `POST /api/v1/organizations/{organization_id}/members` -> 201: adds an existing user.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{organization_id}/members",
    tag = "organizations",
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    request_body = AddMemberRequest,
    responses(
        (status = 201, description = "The new membership.", body = Membership),
        (status = 400, description = "`email` names no user or holds a control character, or a role is unknown; `validations` names the field.", body = ErrorBody),
        (status = 403, description = "Not the organization's admin (nor a site owner).", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not in it.", body = ErrorBody),
        (status = 409, description = "The user is a member already (set their roles with PUT).", body = ErrorBody),
    )
)]
pub async fn add_member(
    State(state): State<ApiState>,
    admin: OrganizationAdmin,
    JsonBody(body): JsonBody<AddMemberRequest>,
) -> Result<(StatusCode, Json<Membership>), ApiError> {
    let email = body
        .email
        .ok_or_else(|| ApiError::invalid("email", "is required"))?;
    let roles = checked_roles(body.roles)?;
    let user = state
        .store
        .find_user_by_email(crate::error::trimmed("email", &email)?)
        .await?
        .ok_or_else(|| ApiError::invalid("email", "names no user; a site owner creates users"))?;
    if state
        .store
        .membership(admin.organization_id, user)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(
            "the user is a member already; set their roles with PUT .../members/{user_id}".into(),
        ));
    }
    let membership = state
        .store
        .set_member_roles(admin.organization_id, user, &roles)
        .await?;
    Ok((StatusCode::CREATED, Json(membership)))
}

/// Body of `PUT /api/v1/organizations/{organization_id}/members/{user_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesRequest {
    /// The member's roles from now on, replacing the old ones: `organization-admin`,
    /// `agents-access`, both or none (`[]`).
    #[schema(required = true, nullable = false, value_type = Vec<OrganizationRole>)]
    pub roles: Option<Vec<String>>,
}

fn member_path(org: Uuid, raw_user: &str) -> Result<(Uuid, Uuid), ApiError> {
    let user = raw_user
        .parse()
        .map_err(|_| ApiError::invalid("user_id", "must be a UUID"))?;
    Ok((org, user))
}

/// `PUT /api/v1/organizations/{organization_id}/members/{user_id}`: sets a member's roles
/// (adding the user when not a member yet). Losing `agents-access` stops the user's work
/// in the organization's chats from their next request on.
#[utoipa::path(
    put,
    path = "/api/v1/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    params(
        ("organization_id" = Uuid, Path, description = "The organization's id."),
        ("user_id" = Uuid, Path, description = "The member's user id."),
    ),
    request_body = SetRolesRequest,
    responses(
        (status = 200, description = "The membership with its new roles.", body = Membership),
        (status = 400, description = "A role is unknown, or `user_id` names no user.", body = ErrorBody),
        (status = 403, description = "Not the organization's admin (nor a site owner).", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not in it.", body = ErrorBody),
    )
)]
pub async fn set_member_roles(
    State(state): State<ApiState>,
    admin: OrganizationAdmin,
    Path((_, user)): Path<(String, String)>,
    JsonBody(body): JsonBody<SetRolesRequest>,
) -> Result<Json<Membership>, ApiError> {
    let (org, user) = member_path(admin.organization_id, &user)?;
    let roles = checked_roles(body.roles)?;
    let membership = state
        .store
        .set_member_roles(org, user, &roles)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound("organization not found".into()),
            other => other.into(),
        })?;
    Ok(Json(membership))
}

/// `DELETE /api/v1/organizations/{organization_id}/members/{user_id}` -> 204. The user's
/// chats there stay theirs to read, but they start no more work in them.
#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    params(
        ("organization_id" = Uuid, Path, description = "The organization's id."),
        ("user_id" = Uuid, Path, description = "The member's user id."),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`user_id` is not a UUID.", body = ErrorBody),
        (status = 403, description = "Not the organization's admin (nor a site owner).", body = ErrorBody),
        (status = 404, description = "No such organization, the caller is not in it, or the user is not a member.", body = ErrorBody),
    )
)]
pub async fn remove_member(
    State(state): State<ApiState>,
    admin: OrganizationAdmin,
    Path((_, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (org, user) = member_path(admin.organization_id, &user)?;
    if state.store.remove_member(org, user).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("member not found".into()))
    }
}

/// `GET /api/v1/organizations/{organization_id}/usage`: what the organization's chats cost
/// over a range of UTC days, by user, model and chat (the report of `/api/v1/admin/usage`,
/// limited to this organization).
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{organization_id}/usage",
    tag = "organizations",
    params(("organization_id" = Uuid, Path, description = "The organization's id."), UsageQuery),
    responses(
        (status = 200, description = "Costs of the organization's chats by user, model and chat, most expensive first.", body = UsageReportBody),
        (status = 400, description = "A bad `from`, `to` or `limit`, named.", body = ErrorBody),
        (status = 403, description = "Not the organization's admin (nor a site owner).", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not in it.", body = ErrorBody),
    )
)]
pub async fn organization_usage(
    State(state): State<ApiState>,
    admin: OrganizationAdmin,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<UsageReportBody>, ApiError> {
    Ok(Json(
        usage_report(&state, query, Some(admin.organization_id)).await?,
    ))
}
