//! Bearer-token authentication: `Authorization: Bearer aq_...`, checked against the
//! SHA-256 digest stored in `api_tokens` (the secret itself is never stored or logged).
//!
//! Three checks, at two depths. Every request: the token is neither revoked nor expired
//! (401), its user is active (403), and the token's scopes allow what the route does (403
//! naming the missing scope; see [`required_scope`]). Every request that starts work (a turn, tool results, a
//! stream): the [`WorkChat`] extractor re-checks that the caller still holds
//! `agents-access` in the chat's organization, so removing the role stops a user at once
//! rather than when the token expires. Handlers name what they need as an argument
//! ([`CurrentUser`], [`OwnedChat`], [`WorkChat`], [`SiteOwner`], [`OrganizationAdmin`])
//! instead of calling a check by hand, so no route can forget one. ARCHITECTURE.md §11.2
//! is the whole access model.

use agentq_core::{
    auth::hash_token,
    domain::{AuthenticatedUser, OrganizationRole, TokenScope, UserStatus},
    store::ChatAccess,
};
use std::collections::HashMap;

use axum::{
    extract::{FromRequestParts, MatchedPath, Path},
    http::{Method, request::Parts},
};
use uuid::Uuid;

use crate::{ApiState, access_log::Caller, error::ApiError};

/// The authenticated caller; add it to a handler's arguments to require a token.
pub struct CurrentUser(pub AuthenticatedUser);

impl FromRequestParts<ApiState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
            })?;
        let value = header.to_str().map_err(|_| {
            ApiError::Unauthorized("the Authorization header is not valid text".into())
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let user = authenticate(state, &hash_token(token)).await?;
        // Known from here on, even if the account turns out not to be active: the access
        // log line names the caller, and so does every other line of the request.
        Caller::authenticated(parts, user.id);
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        match user.status {
            UserStatus::Active => {}
            UserStatus::Suspended => {
                return Err(ApiError::Forbidden(
                    "your account is suspended: an active account is required".into(),
                ));
            }
            UserStatus::Deleted => {
                return Err(ApiError::Forbidden(
                    "your account is deleted: an active account is required".into(),
                ));
            }
        }
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.path().to_owned());
        let needed = required_scope(&parts.method, &route);
        if !user.token_allows(needed) {
            let held = user.token_scopes.as_deref().unwrap_or_default().join(", ");
            return Err(ApiError::Forbidden(format!(
                "this token lacks the `{needed}` scope that {} {route} needs (it has: {held}); \
                 use a token with that scope, or one made without scopes",
                parts.method
            )));
        }
        Ok(CurrentUser(user))
    }
}

/// The user behind a token's digest: from this process's cache (§11.3), or read and kept.
async fn authenticate(state: &ApiState, digest: &str) -> Result<AuthenticatedUser, ApiError> {
    if let Some(user) = state.access.user(digest) {
        return Ok(user);
    }
    let start = state.access.read_start();
    let user = state.store.authenticate(digest).await?.ok_or_else(|| {
        ApiError::Unauthorized("the API token is invalid or expired, or was revoked".into())
    })?;
    state.access.keep_user(start, digest, &user);
    Ok(user)
}

/// Routes that create something new in a chat: they need `chat:create` (any other `POST`
/// changes what exists and needs `chat:update`).
const CREATING_ROUTES: &[&str] = &["/api/v1/chats", "/api/v1/chats/{chat_id}/messages"];

/// The one scope a token needs for `method` on the route `route` (its template, as
/// registered: `/api/v1/chats/{chat_id}`), decided here for every authenticated route so
/// none can forget it:
///
/// - site administration (`/api/v1/admin/...`) and organization administration
///   (`/api/v1/organizations/...`): `admin` (and the role, which the route's extractor
///   checks: the scope never stands in for it);
/// - `GET` (reading a chat, a stream, one's own settings): `chat:read`;
/// - `POST` to [`CREATING_ROUTES`] (a chat, a message): `chat:create`;
/// - `DELETE`: `chat:delete`;
/// - any other change (`PATCH`, `PUT`, other `POST`s: edit, regenerate, interrupt, tool
///   results, one's own settings and tokens): `chat:update`.
///
/// `tests/authorization_matrix.rs` calls every route of the document with a `chat:read`
/// token, so a route this rule places wrongly shows up there.
pub fn required_scope(method: &Method, route: &str) -> TokenScope {
    if route.starts_with("/api/v1/admin/") || route.starts_with("/api/v1/organizations") {
        TokenScope::Admin
    } else if method == Method::GET || method == Method::HEAD {
        TokenScope::ChatRead
    } else if method == Method::DELETE {
        TokenScope::ChatDelete
    } else if method == Method::POST && CREATING_ROUTES.contains(&route) {
        TokenScope::ChatCreate
    } else {
        TokenScope::ChatUpdate
    }
}

/// A chat the caller owns, from the `{chat_id}` path segment: 404 for a chat that does not
/// exist or is someone else's (the two look the same). Reading a chat, changing its title
/// and interrupting it need only this: stopping work (and its cost) is always the owner's
/// to do, role or not. Routes that start work take a [`WorkChat`] instead.
pub struct OwnedChat {
    /// The caller.
    pub user: AuthenticatedUser,
    /// The chat's id.
    pub chat_id: Uuid,
}

impl FromRequestParts<ApiState> for OwnedChat {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let (user, chat_id, access) = chat_access(parts, state).await?;
        match access {
            ChatAccess::NotFound => Err(chat_not_found()),
            ChatAccess::Allowed | ChatAccess::MissingAgentsAccess { .. } => {
                Ok(OwnedChat { user, chat_id })
            }
        }
    }
}

/// A chat the caller may start work in (a turn, tool results, a stream): they own it
/// (404 otherwise) and still hold `agents-access` in its organization (403 naming the
/// missing role otherwise). Checked while the request is extracted, so before the body is
/// read and before a rate-limit token is spent.
pub struct WorkChat(pub OwnedChat);

impl FromRequestParts<ApiState> for WorkChat {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let (user, chat_id, access) = chat_access(parts, state).await?;
        match access {
            ChatAccess::Allowed => Ok(WorkChat(OwnedChat { user, chat_id })),
            ChatAccess::NotFound => Err(chat_not_found()),
            ChatAccess::MissingAgentsAccess { organization_id } => {
                Err(missing_agents_access(organization_id))
            }
        }
    }
}

/// The caller, the path's chat and what the caller may do in it.
async fn chat_access(
    parts: &mut Parts,
    state: &ApiState,
) -> Result<(AuthenticatedUser, Uuid, ChatAccess), ApiError> {
    let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
    // By name, so routes with more path segments (`/debug/runs/{run_id}`) work too.
    let Path(segments) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::invalid("chat_id", "must be a UUID"))?;
    let chat_id = segments
        .get("chat_id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::invalid("chat_id", "must be a UUID"))?;
    let access = state.store.chat_work_access(chat_id, user.id).await?;
    Ok((user, chat_id, access))
}

/// The 404 of a chat that is not the caller's.
pub(crate) fn chat_not_found() -> ApiError {
    ApiError::NotFound("chat not found".into())
}

/// A 403 naming the role the caller lost in `organization_id`.
pub(crate) fn missing_agents_access(organization_id: Uuid) -> ApiError {
    ApiError::Forbidden(format!(
        "you no longer have the `agents-access` role in this chat's organization \
         ({organization_id}); an organization admin can grant it again"
    ))
}

/// An organization the caller administers, from the `{organization_id}` path segment:
/// site owners administer every organization (404 for one that does not exist); anyone
/// else needs the `organization-admin` role in it: 403 naming the role for a member
/// without it, 404 for an organization they are not in (it may as well not exist).
pub struct OrganizationAdmin {
    /// The caller.
    pub user: AuthenticatedUser,
    /// The organization.
    pub organization_id: Uuid,
}

impl FromRequestParts<ApiState> for OrganizationAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        let Path(segments) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("organization_id", "must be a UUID"))?;
        let organization_id: Uuid = segments
            .get("organization_id")
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| ApiError::invalid("organization_id", "must be a UUID"))?;
        let not_found = || ApiError::NotFound("organization not found".into());
        if user.is_site_owner() {
            state
                .store
                .get_organization(organization_id)
                .await
                .map_err(|e| match e {
                    agentq_core::StoreError::NotFound => not_found(),
                    other => other.into(),
                })?;
            return Ok(OrganizationAdmin {
                user,
                organization_id,
            });
        }
        let membership = state
            .store
            .membership(organization_id, user.id)
            .await?
            .ok_or_else(not_found)?;
        if membership
            .roles
            .iter()
            .any(|r| r == OrganizationRole::OrganizationAdmin.as_str())
        {
            Ok(OrganizationAdmin {
                user,
                organization_id,
            })
        } else {
            Err(ApiError::Forbidden(
                "you need the `organization-admin` role in this organization (or to be a site \
                 owner) to manage its members and read its usage"
                    .into(),
            ))
        }
    }
}

/// A caller who owns the site; add it to a handler's arguments (instead of
/// [`CurrentUser`]) to make the route site owners' only: 403 for anyone else, checked
/// before the body is read.
pub struct SiteOwner(pub AuthenticatedUser);

impl FromRequestParts<ApiState> for SiteOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        // `required_scope` already asked for `admin` on every administration route; asking
        // again here keeps a site-owner route outside `/api/v1/admin/` honest too.
        if !user.token_allows(TokenScope::Admin) {
            return Err(ApiError::Forbidden(
                "this token lacks the `admin` scope that site administration needs".into(),
            ));
        }
        if user.is_site_owner() {
            Ok(SiteOwner(user))
        } else {
            Err(ApiError::Forbidden(
                "only site owners may change the site's settings, queues, providers and models"
                    .into(),
            ))
        }
    }
}
