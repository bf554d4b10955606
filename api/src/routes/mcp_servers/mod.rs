//! MCP servers (issue #12, item 3; ARCHITECTURE.md §11): site owners manage them at
//! `/api/v1/admin/mcp-servers`; any user lists the enabled ones, without secrets or URLs,
//! at `/api/v1/mcp-servers` to choose some for a chat (`mcp_server_ids` on chat create and
//! per message, checked by [`chosen_mcp_servers`]).
//!
//! Secrets are sealed before they reach the store and never come back out: a server shows
//! `has_api_key`, `has_custom_headers` and `has_client_secret`. A taken slug is a 409,
//! mapped in [`slug_conflict`] from the store's `Duplicate { field: "slug" }`.

pub(crate) mod changes;
pub(crate) mod oauth;

use agentq_core::{
    StoreError,
    store::{McpAuthType, McpServerListing, McpServerView},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Serialize;
use uuid::Uuid;

pub use changes::McpServerBody;
pub(crate) use changes::check_url;

use crate::{
    ApiState,
    auth::{CurrentUser, SiteOwner},
    error::{ApiError, ErrorBody},
    extract::JsonBody,
};

/// Most servers one chat may choose.
pub const MAX_CHOSEN_SERVERS: usize = 64;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid("id", "must be a UUID"))
}

/// Store errors of a write: a taken slug is a 409, a missing server a 404.
fn slug_conflict(e: agentq_core::StoreError) -> ApiError {
    match e {
        agentq_core::StoreError::Duplicate { field: "slug" } => {
            ApiError::Conflict("an MCP server with this slug exists; slugs are unique".into())
        }
        agentq_core::StoreError::NotFound => ApiError::NotFound("MCP server not found".into()),
        other => other.into(),
    }
}

/// The ids a chat of `organization` chose, checked: each names an enabled server that is
/// site-wide or the organization's (else a 400 naming `mcp_server_ids`), duplicates
/// dropped, order kept.
pub(crate) async fn chosen_mcp_servers(
    state: &ApiState,
    ids: Vec<Uuid>,
    organization: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    // Bounded before anything looks at the ids: the body may hold thousands.
    if ids.len() > MAX_CHOSEN_SERVERS {
        return Err(ApiError::invalid(
            "mcp_server_ids",
            format!("may name at most {MAX_CHOSEN_SERVERS} servers"),
        ));
    }
    let mut unique: Vec<Uuid> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    if unique.len() > MAX_CHOSEN_SERVERS {
        return Err(ApiError::invalid(
            "mcp_server_ids",
            format!("may name at most {MAX_CHOSEN_SERVERS} servers"),
        ));
    }
    let unusable = state
        .store
        .unusable_mcp_server_ids(&unique, organization)
        .await?;
    match unusable.first() {
        None => {}
        Some((id, None)) => {
            return Err(ApiError::invalid(
                "mcp_server_ids",
                format!("`{id}` names no enabled MCP server"),
            ));
        }
        Some((id, Some(_))) => {
            return Err(ApiError::invalid(
                "mcp_server_ids",
                format!(
                    "`{id}` is an MCP server of another organization; a chat may use only \
                     site-wide servers and those of its own organization ({organization})"
                ),
            ));
        }
    }
    Ok(unique)
}

/// Body of `GET /api/v1/admin/mcp-servers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct McpServerAdminList {
    /// Every server, by slug, without secrets.
    pub mcp_servers: Vec<McpServerView>,
}

/// Body of `GET /api/v1/mcp-servers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct McpServerList {
    /// The enabled servers, by slug.
    pub mcp_servers: Vec<McpServerListing>,
}

/// `GET /api/v1/mcp-servers`: the servers a chat may choose.
#[utoipa::path(
    get,
    path = "/api/v1/mcp-servers",
    tag = "mcp-servers",
    responses((status = 200, description = "The enabled servers the caller may choose (site-wide ones and those of the caller's organizations), by slug; no URLs, no secrets; `oauth2` servers say whether the caller is `connected`.", body = McpServerList))
)]
pub async fn list_enabled(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<McpServerList>, ApiError> {
    let servers = state.store.list_mcp_servers_for_user(user.id).await?;
    let connected = state.store.connected_mcp_server_ids(user.id).await?;
    Ok(Json(McpServerList {
        mcp_servers: servers
            .iter()
            .map(|s| {
                let mut listing = s.listing();
                if s.auth_type == McpAuthType::Oauth2 {
                    listing.connected = Some(connected.contains(&s.id));
                }
                listing
            })
            .collect(),
    }))
}

/// `GET /api/v1/admin/mcp-servers`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/mcp-servers",
    tag = "admin",
    responses(
        (status = 200, description = "Every server; secrets show only as `has_api_key`, `has_custom_headers`, `has_client_secret`.", body = McpServerAdminList),
        (status = 403, description = "Only site owners manage MCP servers.", body = ErrorBody),
    )
)]
pub async fn list_servers(
    State(state): State<ApiState>,
    _owner: SiteOwner,
) -> Result<Json<McpServerAdminList>, ApiError> {
    let servers = state.store.list_mcp_servers(false).await?;
    Ok(Json(McpServerAdminList {
        mcp_servers: servers.iter().map(|s| s.view()).collect(),
    }))
}

/// `POST /api/v1/admin/mcp-servers` -> 201.
#[utoipa::path(
    post,
    path = "/api/v1/admin/mcp-servers",
    tag = "admin",
    request_body = McpServerBody,
    responses(
        (status = 201, description = "The server.", body = McpServerView),
        (status = 400, description = "A field is invalid or missing; `validations` names it.", body = ErrorBody),
        (status = 403, description = "Only site owners manage MCP servers.", body = ErrorBody),
        (status = 409, description = "The slug is taken.", body = ErrorBody),
    )
)]
pub async fn create_server(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    JsonBody(body): JsonBody<McpServerBody>,
) -> Result<(StatusCode, Json<McpServerView>), ApiError> {
    let write = body.into_new(state.secrets.as_ref())?;
    let server = state
        .store
        .create_mcp_server(&write)
        .await
        .map_err(slug_conflict)?;
    Ok((StatusCode::CREATED, Json(server.view())))
}

/// `GET /api/v1/admin/mcp-servers/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/mcp-servers/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "The server's id.")),
    responses(
        (status = 200, description = "The server, without secrets.", body = McpServerView),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners manage MCP servers.", body = ErrorBody),
        (status = 404, description = "No such server.", body = ErrorBody),
    )
)]
pub async fn get_server(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    Path(id): Path<String>,
) -> Result<Json<McpServerView>, ApiError> {
    let id = parse_id(&id)?;
    let server = state
        .store
        .get_mcp_server(id)
        .await
        .map_err(slug_conflict)?;
    Ok(Json(server.view()))
}

/// Rounds of read-merge-write a PATCH gets before a 409 (`update_server`).
const MAX_MERGE_ATTEMPTS: u32 = 8;

/// `PATCH /api/v1/admin/mcp-servers/{id}`: absent fields keep their value; a new
/// `auth_type` removes the old credentials and needs its own.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/mcp-servers/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "The server's id.")),
    request_body = McpServerBody,
    responses(
        (status = 200, description = "The server after the change.", body = McpServerView),
        (status = 400, description = "A field or the id is invalid; `validations` names it.", body = ErrorBody),
        (status = 403, description = "Only site owners manage MCP servers.", body = ErrorBody),
        (status = 404, description = "No such server.", body = ErrorBody),
        (status = 409, description = "The slug is taken, or the server kept changing under concurrent requests; send the change again.", body = ErrorBody),
    )
)]
pub async fn update_server(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<McpServerBody>,
) -> Result<Json<McpServerView>, ApiError> {
    let id = parse_id(&id)?;
    // Read, merge, write if unchanged since the read: a concurrent PATCH in between makes
    // the write fail, and the change is merged again into the newer row (never over it).
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = state
            .store
            .get_mcp_server(id)
            .await
            .map_err(slug_conflict)?;
        let write = body
            .clone()
            .merge_into(current.to_write(), state.secrets.as_ref(), false)?;
        match state
            .store
            .update_mcp_server(id, current.updated_at, &write)
            .await
        {
            Ok(server) => return Ok(Json(server.view())),
            // Each conflict means another change landed; a handful of rounds settles any
            // realistic burst of admin edits, and past them the caller gets the 409.
            Err(StoreError::Conflict(_)) if attempts < MAX_MERGE_ATTEMPTS => continue,
            Err(e) => return Err(slug_conflict(e)),
        }
    }
}

/// `DELETE /api/v1/admin/mcp-servers/{id}` -> 204.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/mcp-servers/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "The server's id.")),
    responses(
        (status = 204, description = "The server is deleted; chats that chose it stop getting it."),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners manage MCP servers.", body = ErrorBody),
        (status = 404, description = "No such server.", body = ErrorBody),
    )
)]
pub async fn delete_server(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state
        .store
        .delete_mcp_server(id)
        .await
        .map_err(slug_conflict)?;
    Ok(StatusCode::NO_CONTENT)
}
