//! Connecting a user to an `oauth2` MCP server (issue #12, item 4; ARCHITECTURE.md §11):
//! the authorization-code flow with PKCE (S256), whose tokens workers then send as
//! `Authorization: Bearer` on that user's calls to the server.
//!
//! 1. `POST /api/v1/mcp-servers/{id}/oauth/start` (the user's token): a random state and
//!    PKCE verifier are made; the store keeps the state's SHA-256 with the user, the server,
//!    the sealed verifier and the redirect URI for [`FLOW_TTL_SECS`]; the answer is the
//!    server's authorization URL to send the user's browser to.
//! 2. The authorization server redirects the browser to
//!    `GET /api/v1/mcp-servers/oauth/callback?code&state`, which carries no agentq token:
//!    the state authenticates it. The flow row is deleted as it is read, so a state works
//!    once; an unknown, used or expired state is a 400 naming `state`.
//! 3. The code is exchanged at the server's `oauth_token_url` with the client id, secret and
//!    verifier (`core::oauth`); the tokens are sealed and stored for (server, user).
//!
//! `DELETE /api/v1/mcp-servers/{id}/oauth` forgets the user's tokens. The redirect URI is
//! `AGENTQ_PUBLIC_BASE_URL` + [`CALLBACK_PATH`], so it is the same on every replica.

use agentq_core::{
    auth::hash_token,
    oauth::{self, ClientCredentials, OAuthError, TokenEndpoint},
    secrets::SecretBox,
    store::{McpAuthType, McpServerRecord, OAuthFlow, UserTokenKey},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::parse_id;
use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody},
    extract::QueryParams,
};

/// Where authorization servers send the user back, under the public base URL.
pub const CALLBACK_PATH: &str = "/api/v1/mcp-servers/oauth/callback";

/// Seconds a started flow may take before its state is refused.
pub const FLOW_TTL_SECS: i64 = 600;

/// Longest `state`, `code` or `error` accepted on the callback, in bytes.
const MAX_PARAM_BYTES: usize = 4096;

/// Body of `POST /api/v1/mcp-servers/{id}/oauth/start`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthStart {
    /// Send the user's browser here; the server redirects back to the callback.
    pub authorize_url: String,
    /// When the flow's state stops being accepted.
    pub expires_at: chrono::DateTime<Utc>,
}

/// Query of `GET /api/v1/mcp-servers/oauth/callback` (what the authorization server
/// appends). Unlike other queries it takes unknown parameters: authorization servers add
/// their own (`iss`, `session_state`, ...).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The state `start` put in the authorization URL.
    pub state: Option<String>,
    /// The authorization server's error code, when it refused.
    pub error: Option<String>,
    /// Its description of the error.
    pub error_description: Option<String>,
}

/// Body of a successful callback.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthConnected {
    /// Always true.
    pub connected: bool,
    /// The server now connected.
    pub mcp_server_id: Uuid,
    /// Its slug.
    pub slug: String,
}

/// The server's OAuth client registration, or a 409 saying what is missing.
fn client_of(server: &McpServerRecord) -> Result<(&str, &str, &str), ApiError> {
    if server.auth_type != McpAuthType::Oauth2 {
        return Err(ApiError::Conflict(format!(
            "MCP server `{}` does not use oauth2; there is nothing to connect",
            server.slug
        )));
    }
    match (
        server.oauth_client_id.as_deref(),
        server.oauth_authorize_url.as_deref(),
        server.oauth_token_url.as_deref(),
    ) {
        (Some(id), Some(authorize), Some(token)) => Ok((id, authorize, token)),
        _ => Err(ApiError::Conflict(format!(
            "MCP server `{}` lacks its OAuth client id or URLs; a site owner must set them",
            server.slug
        ))),
    }
}

/// The key that seals tokens, or a 409: without it no token can be stored.
fn secrets_of(state: &ApiState) -> Result<&SecretBox, ApiError> {
    state.secrets.as_ref().ok_or_else(|| {
        ApiError::Conflict(
            "no AGENTQ_SECRET_KEY is configured, so agentq cannot store OAuth tokens".into(),
        )
    })
}

/// An enabled server by id (a disabled one is as unknown to users as a missing one).
async fn enabled_server(state: &ApiState, id: Uuid) -> Result<McpServerRecord, ApiError> {
    match state.store.get_mcp_server(id).await {
        Ok(server) if server.enabled => Ok(server),
        Ok(_) | Err(agentq_core::StoreError::NotFound) => {
            Err(ApiError::NotFound("MCP server not found".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The redirect URI: the configured public base URL and [`CALLBACK_PATH`].
fn redirect_uri(state: &ApiState) -> Result<String, ApiError> {
    let base = state.config.public_base_url.as_deref().ok_or_else(|| {
        ApiError::Conflict(
            "AGENTQ_PUBLIC_BASE_URL is not configured, so there is no redirect URI for OAuth"
                .into(),
        )
    })?;
    let parsed = url::Url::parse(base.trim())
        .map_err(|_| ApiError::Internal("AGENTQ_PUBLIC_BASE_URL is not a URL".into()))?;
    Ok(format!(
        "{}{CALLBACK_PATH}",
        parsed.as_str().trim_end_matches('/')
    ))
}

/// `POST /api/v1/mcp-servers/{id}/oauth/start`: begins connecting the caller to an
/// `oauth2` server.
#[utoipa::path(
    post,
    path = "/api/v1/mcp-servers/{id}/oauth/start",
    tag = "mcp-servers",
    params(("id" = Uuid, Path, description = "The server's id.")),
    responses(
        (status = 200, description = "The authorization URL to send the user to; its state is good for 10 minutes and one callback.", body = OAuthStart),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such enabled server.", body = ErrorBody),
        (status = 409, description = "The server does not use oauth2 or lacks its client settings, or agentq has no public base URL or secret key.", body = ErrorBody),
    )
)]
pub async fn start_oauth(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OAuthStart>, ApiError> {
    let id = parse_id(&id)?;
    let server = enabled_server(&state, id).await?;
    // A server of an organization the caller is not in is as unknown to them as a
    // missing one (they could never use it, and must not learn its settings).
    if let Some(org) = server.organization_id
        && state.store.membership(org, user.id).await?.is_none()
    {
        return Err(ApiError::NotFound("MCP server not found".into()));
    }
    let (client_id, authorize_url, _) = client_of(&server)?;
    let secrets = secrets_of(&state)?;
    let redirect_uri = redirect_uri(&state)?;

    let flow_state = oauth::random_token();
    let verifier = oauth::random_token();
    let mut url = url::Url::parse(authorize_url).map_err(|_| {
        ApiError::Conflict(format!(
            "MCP server `{}` has an authorization URL that is not a URL",
            server.slug
        ))
    })?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("state", &flow_state)
            .append_pair("code_challenge", &oauth::pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        if !server.oauth_scopes.is_empty() {
            query.append_pair("scope", &server.oauth_scopes.join(" "));
        }
    }
    let expires_at = Utc::now() + chrono::Duration::seconds(FLOW_TTL_SECS);
    state
        .store
        .begin_oauth_flow(
            &hash_token(&flow_state),
            &OAuthFlow {
                server_id: server.id,
                user_id: user.id,
                code_verifier_ciphertext: secrets.seal(&verifier),
                redirect_uri,
                expires_at,
            },
        )
        .await?;
    Ok(Json(OAuthStart {
        authorize_url: url.into(),
        expires_at,
    }))
}

/// A callback parameter, present, non-empty and bounded, or a 400 naming it.
fn param(field: &str, value: Option<String>) -> Result<String, ApiError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid(field, "is required"))?;
    if value.len() > MAX_PARAM_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_PARAM_BYTES} bytes"),
        ));
    }
    Ok(value)
}

/// What the authorization server said, fit to repeat: no control characters, short.
fn shortened(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// `GET /api/v1/mcp-servers/oauth/callback`: finishes a flow; the `state` authenticates
/// the request, so it needs no token.
#[utoipa::path(
    get,
    path = "/api/v1/mcp-servers/oauth/callback",
    tag = "mcp-servers",
    security(()),
    params(CallbackQuery),
    responses(
        (status = 200, description = "The tokens are stored; the user's chats send them to the server.", body = OAuthConnected),
        (status = 400, description = "`state` is missing, unknown, already used or expired; `code` is missing or the token endpoint refused it; or the authorization server answered with an `error`.", body = ErrorBody),
        (status = 403, description = "The user who started connecting is suspended or deleted.", body = ErrorBody),
        (status = 404, description = "The server was deleted or disabled during the flow.", body = ErrorBody),
        (status = 409, description = "The server no longer uses oauth2, or agentq has no secret key.", body = ErrorBody),
        (status = 503, description = "The token endpoint did not answer.", body = ErrorBody),
    )
)]
pub async fn oauth_callback(
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<CallbackQuery>,
) -> Result<Json<OAuthConnected>, ApiError> {
    let flow_state = param("state", query.state)?;
    let flow = state
        .store
        .take_oauth_flow(&hash_token(&flow_state))
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "state",
                "is unknown or was already used; start connecting again",
            )
        })?;
    if flow.expires_at < Utc::now() {
        return Err(ApiError::invalid(
            "state",
            "has expired; start connecting again",
        ));
    }
    // The state stands in for the user's token here: it is worth no more than the user.
    if !state.store.user_is_active(flow.user_id).await? {
        return Err(ApiError::Forbidden(
            "the user who started connecting is no longer active".into(),
        ));
    }
    if let Some(error) = query.error.filter(|e| !e.is_empty()) {
        let description = query
            .error_description
            .map(|d| format!(" ({})", shortened(&d)))
            .unwrap_or_default();
        return Err(ApiError::invalid(
            "error",
            format!(
                "the authorization server refused: {}{description}",
                shortened(&error)
            ),
        ));
    }
    let code = param("code", query.code)?;
    let server = enabled_server(&state, flow.server_id).await?;
    let (client_id, _, token_url) = client_of(&server)?;
    let secrets = secrets_of(&state)?;
    let verifier = secrets
        .open(&flow.code_verifier_ciphertext)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let client_secret = server
        .oauth_client_secret_ciphertext
        .as_deref()
        .map(|sealed| secrets.open(sealed))
        .transpose()
        .map_err(|e| ApiError::Conflict(format!("MCP server `{}`: {e}", server.slug)))?;
    let granted = TokenEndpoint::default()
        .exchange_code(
            ClientCredentials {
                token_url,
                client_id,
                client_secret: client_secret.as_deref(),
            },
            &code,
            &flow.redirect_uri,
            &verifier,
        )
        .await
        .map_err(|e| match e {
            OAuthError::Unreachable(_) => ApiError::Unavailable(e.to_string()),
            OAuthError::Refused { .. } | OAuthError::BadResponse(_) => {
                ApiError::invalid("code", e.to_string())
            }
        })?;
    state
        .store
        .save_user_token(
            UserTokenKey::McpServer {
                server_id: server.id,
                user_id: flow.user_id,
            },
            &granted.seal(secrets, Utc::now(), None, &server.oauth_scopes),
        )
        .await?;
    tracing::info!(mcp_server.id = %server.id, user.id = %flow.user_id, "MCP server connected with OAuth");
    Ok(Json(OAuthConnected {
        connected: true,
        mcp_server_id: server.id,
        slug: server.slug,
    }))
}

/// `DELETE /api/v1/mcp-servers/{id}/oauth`: forgets the caller's tokens for the server.
#[utoipa::path(
    delete,
    path = "/api/v1/mcp-servers/{id}/oauth",
    tag = "mcp-servers",
    params(("id" = Uuid, Path, description = "The server's id.")),
    responses(
        (status = 204, description = "The caller's tokens for the server are gone (or there were none)."),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such server.", body = ErrorBody),
    )
)]
pub async fn disconnect_oauth(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    // A disabled server can still be disconnected: its tokens should not outlive the wish.
    state
        .store
        .get_mcp_server(id)
        .await
        .map_err(super::slug_conflict)?;
    state
        .store
        .delete_user_token(UserTokenKey::McpServer {
            server_id: id,
            user_id: user.id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
