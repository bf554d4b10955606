//! `/api/v1/admin/organizations` (issue #15, item 1; ARCHITECTURE.md §11.2): site owners
//! list, create, rename and delete organizations. Deleting one that still has members,
//! chats or MCP servers, or that new users are granted access to, is a 409 saying which.
//! Members are managed under `/api/v1/organizations/{organization_id}/members`
//! (`routes/organizations.rs`), by site owners and the organization's admins alike.

use agentq_core::{StoreError, domain::OrganizationSummary};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

use super::parse_id;
use crate::{
    ApiState,
    auth::SiteOwner,
    error::{ApiError, ErrorBody, OrNotFound, refuse_control_chars},
    extract::JsonBody,
};

const MAX_NAME_CHARS: usize = 200;

/// Every organization.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrganizationList {
    /// By name, with head counts.
    pub organizations: Vec<OrganizationSummary>,
}

/// Body of `POST` and `PATCH /api/v1/admin/organizations...`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationBody {
    /// Unique name, 1-200 characters, no control characters.
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069][^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    pub name: Option<String>,
}

fn checked_name(name: Option<String>) -> Result<String, ApiError> {
    let name = name.ok_or_else(|| ApiError::invalid("name", "is required"))?;
    let name = crate::error::trimmed_within("name", &name, MAX_NAME_CHARS)?;
    if name.is_empty() {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1-{MAX_NAME_CHARS} characters"),
        ));
    }
    refuse_control_chars("name", name)?;
    Ok(name.to_owned())
}

/// A taken name is a 409 (the names are how people tell organizations apart).
fn name_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Duplicate { field: "name" } => {
            ApiError::Conflict("an organization with this name exists".into())
        }
        StoreError::NotFound => ApiError::NotFound("organization not found".into()),
        other => other.into(),
    }
}

/// `GET /api/v1/admin/organizations` (site owners).
#[utoipa::path(
    get,
    path = "/api/v1/admin/organizations",
    tag = "admin",
    responses(
        (status = 200, description = "Every organization, by name.", body = OrganizationList),
        (status = 403, description = "Only site owners list organizations.", body = ErrorBody),
    )
)]
pub async fn list_organizations(
    State(state): State<ApiState>,
    _: SiteOwner,
) -> Result<Json<OrganizationList>, ApiError> {
    Ok(Json(OrganizationList {
        organizations: state.store.list_organizations().await?,
    }))
}

/// `POST /api/v1/admin/organizations` (site owners) -> 201.
#[utoipa::path(
    post,
    path = "/api/v1/admin/organizations",
    tag = "admin",
    request_body = OrganizationBody,
    responses(
        (status = 201, description = "The organization, empty.", body = OrganizationSummary),
        (status = 400, description = "`name` is invalid.", body = ErrorBody),
        (status = 403, description = "Only site owners create organizations.", body = ErrorBody),
        (status = 409, description = "The name is taken.", body = ErrorBody),
    )
)]
pub async fn create_organization(
    State(state): State<ApiState>,
    _: SiteOwner,
    JsonBody(body): JsonBody<OrganizationBody>,
) -> Result<(StatusCode, Json<OrganizationSummary>), ApiError> {
    let name = checked_name(body.name)?;
    let org = state
        .store
        .create_organization(&name)
        .await
        .map_err(name_taken)?;
    Ok((StatusCode::CREATED, Json(org)))
}

/// `PATCH /api/v1/admin/organizations/{organization_id}` (site owners): rename.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/organizations/{organization_id}",
    tag = "admin",
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    request_body = OrganizationBody,
    responses(
        (status = 200, description = "The organization, renamed.", body = OrganizationSummary),
        (status = 400, description = "`name` or `organization_id` is invalid.", body = ErrorBody),
        (status = 403, description = "Only site owners rename organizations.", body = ErrorBody),
        (status = 404, description = "No such organization.", body = ErrorBody),
        (status = 409, description = "The name is taken.", body = ErrorBody),
    )
)]
pub async fn rename_organization(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<OrganizationBody>,
) -> Result<Json<OrganizationSummary>, ApiError> {
    let id = parse_id(&id, "organization_id")?;
    let name = checked_name(body.name)?;
    let org = state
        .store
        .rename_organization(id, &name)
        .await
        .map_err(name_taken)?;
    Ok(Json(org))
}

/// `DELETE /api/v1/admin/organizations/{organization_id}` (site owners) -> 204, only when
/// it is empty.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/organizations/{organization_id}",
    tag = "admin",
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "`organization_id` is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners delete organizations.", body = ErrorBody),
        (status = 404, description = "No such organization.", body = ErrorBody),
        (status = 409, description = "It still has members, chats or MCP servers, or new users are granted access to it; the message says which.", body = ErrorBody),
    )
)]
pub async fn delete_organization(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "organization_id")?;
    state
        .store
        .delete_organization(id)
        .await
        .or_not_found("organization")?;
    Ok(StatusCode::NO_CONTENT)
}
