//! OIDC tokens for `user_oidc` MCP servers (issue #12, item 4; ARCHITECTURE.md §11).
//!
//! agentq does not log people in with OIDC itself; whatever does (a login front end, a
//! gateway) hands agentq the user's tokens at `PUT /api/v1/users/me/oidc-token`, and
//! workers forward the access token as `Bearer` to every `user_oidc` server the user's
//! chats call. When it has expired, a worker refreshes it with the refresh token at the
//! OIDC client site owners set at `/api/v1/admin/oidc-client` (the issuer's token endpoint
//! and agentq's client id and secret) and saves the new pair.
//!
//! Tokens and the client secret are sealed before the store and never come back: the
//! user sees `has_token`, `has_refresh_token` and `expires_at`; site owners see
//! `has_client_secret`.

use agentq_core::{
    secrets::SecretBox,
    store::{OidcClient, StoredTokens, UserTokenKey},
};
use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ApiState,
    auth::{CurrentUser, SiteOwner},
    error::{ApiError, ErrorBody},
    extract::JsonBody,
};

/// Longest access or refresh token accepted, in bytes (a JWT with many claims fits).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest lifetime a client may claim for an access token, in seconds (a year).
const MAX_EXPIRES_IN_SECS: i64 = 366 * 86_400;

/// The key that seals tokens, or a 409.
fn secrets_of(state: &ApiState) -> Result<&SecretBox, ApiError> {
    state.secrets.as_ref().ok_or_else(|| {
        ApiError::Conflict(
            "no AGENTQ_SECRET_KEY is configured, so agentq cannot store OIDC tokens".into(),
        )
    })
}

/// A token as a bearer credential: non-empty, bounded, visible ASCII only (it goes into
/// an `Authorization` header), else a 400 naming `field`.
fn check_token(field: &str, token: &str) -> Result<(), ApiError> {
    if token.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_TOKEN_BYTES} bytes"),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// Body of `PUT /api/v1/users/me/oidc-token`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcTokenBody {
    /// The user's OIDC access token (printable ASCII, at most 16 KiB).
    #[schema(
        required = true,
        nullable = false,
        max_length = 16384,
        pattern = "^[!-~]+$"
    )]
    pub access_token: Option<String>,
    /// Its refresh token, if the issuer gave one: without it an expired access token is
    /// simply not sent.
    #[schema(max_length = 16384, pattern = "^[!-~]+$")]
    pub refresh_token: Option<String>,
    /// Seconds the access token lives from now (1 to a year); absent: until the server
    /// refuses it.
    #[schema(minimum = 1, maximum = 31622400)]
    pub expires_in: Option<i64>,
}

/// What the caller may know of their stored OIDC token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OidcTokenStatus {
    /// Whether a token is stored.
    pub has_token: bool,
    /// Whether a refresh token is stored.
    pub has_refresh_token: bool,
    /// When the access token expires (null: unknown or no token).
    pub expires_at: Option<DateTime<Utc>>,
}

impl OidcTokenStatus {
    fn of(tokens: Option<&StoredTokens>) -> Self {
        Self {
            has_token: tokens.is_some(),
            has_refresh_token: tokens.is_some_and(|t| t.refresh_token_ciphertext.is_some()),
            expires_at: tokens.and_then(|t| t.expires_at),
        }
    }
}

/// `GET /api/v1/users/me/oidc-token`: whether the caller has stored one (never the token).
#[utoipa::path(
    get,
    path = "/api/v1/users/me/oidc-token",
    tag = "users",
    responses((status = 200, description = "Whether a token is stored, and until when; never the token.", body = OidcTokenStatus))
)]
pub async fn get_oidc_token(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<OidcTokenStatus>, ApiError> {
    let tokens = state
        .store
        .user_token(UserTokenKey::Oidc { user_id: user.id })
        .await?;
    Ok(Json(OidcTokenStatus::of(tokens.as_ref())))
}

/// `PUT /api/v1/users/me/oidc-token`: stores (replaces) the caller's OIDC tokens.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/oidc-token",
    tag = "users",
    request_body = OidcTokenBody,
    responses(
        (status = 200, description = "Stored, sealed; `user_oidc` servers receive the access token from the next call on.", body = OidcTokenStatus),
        (status = 400, description = "A field is missing, too long, not printable ASCII or out of range; `validations` names it.", body = ErrorBody),
        (status = 409, description = "agentq has no secret key to seal tokens with.", body = ErrorBody),
    )
)]
pub async fn put_oidc_token(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<OidcTokenBody>,
) -> Result<Json<OidcTokenStatus>, ApiError> {
    let access = body
        .access_token
        .ok_or_else(|| ApiError::invalid("access_token", "is required"))?;
    check_token("access_token", &access)?;
    if let Some(refresh) = &body.refresh_token {
        check_token("refresh_token", refresh)?;
    }
    let expires_at = match body.expires_in {
        None => None,
        Some(secs) if (1..=MAX_EXPIRES_IN_SECS).contains(&secs) => {
            Some(Utc::now() + chrono::Duration::seconds(secs))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "expires_in",
                format!("must be 1 to {MAX_EXPIRES_IN_SECS} seconds"),
            ));
        }
    };
    let secrets = secrets_of(&state)?;
    let tokens = StoredTokens {
        access_token_ciphertext: secrets.seal(&access),
        refresh_token_ciphertext: body.refresh_token.as_deref().map(|t| secrets.seal(t)),
        expires_at,
        scopes: Vec::new(),
    };
    let key = UserTokenKey::Oidc { user_id: user.id };
    state.store.save_user_token(key, &tokens).await?;
    Ok(Json(OidcTokenStatus::of(Some(&tokens))))
}

/// `DELETE /api/v1/users/me/oidc-token`: forgets the caller's OIDC tokens.
#[utoipa::path(
    delete,
    path = "/api/v1/users/me/oidc-token",
    tag = "users",
    responses((status = 204, description = "Gone (or there was none); `user_oidc` servers get no Authorization header from the caller's chats."))
)]
pub async fn delete_oidc_token(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_user_token(UserTokenKey::Oidc { user_id: user.id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OIDC client as site owners see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OidcClientView {
    /// The issuer's token endpoint (null: expired tokens are not refreshed).
    pub token_url: Option<String>,
    /// agentq's client id at the issuer.
    pub client_id: Option<String>,
    /// Whether a client secret is stored.
    pub has_client_secret: bool,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<OidcClient> for OidcClientView {
    fn from(c: OidcClient) -> Self {
        Self {
            token_url: c.token_url,
            client_id: c.client_id,
            has_client_secret: c.client_secret_ciphertext.is_some(),
            updated_at: c.updated_at,
        }
    }
}

/// Body of `PUT /api/v1/admin/oidc-client`: replaces every field (absent is none).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcClientBody {
    /// The issuer's token endpoint (`http(s)://`); null turns refreshing off.
    pub token_url: Option<String>,
    /// agentq's client id; required with a `token_url`.
    #[schema(max_length = 4096)]
    pub client_id: Option<String>,
    /// agentq's client secret (sealed, never returned); absent for a public client.
    #[schema(max_length = 4096)]
    pub client_secret: Option<String>,
}

/// `GET /api/v1/admin/oidc-client`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/oidc-client",
    tag = "admin",
    responses(
        (status = 200, description = "The OIDC client `user_oidc` tokens are refreshed with; the secret shows only as `has_client_secret`.", body = OidcClientView),
        (status = 403, description = "Only site owners see it.", body = ErrorBody),
    )
)]
pub async fn get_oidc_client(
    State(state): State<ApiState>,
    _owner: SiteOwner,
) -> Result<Json<OidcClientView>, ApiError> {
    Ok(Json(state.store.oidc_client().await?.into()))
}

/// `PUT /api/v1/admin/oidc-client`.
#[utoipa::path(
    put,
    path = "/api/v1/admin/oidc-client",
    tag = "admin",
    request_body = OidcClientBody,
    responses(
        (status = 200, description = "The client as stored.", body = OidcClientView),
        (status = 400, description = "A field is invalid; `validations` names it.", body = ErrorBody),
        (status = 403, description = "Only site owners change it.", body = ErrorBody),
        (status = 409, description = "agentq has no secret key to seal the client secret with.", body = ErrorBody),
    )
)]
pub async fn put_oidc_client(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    JsonBody(body): JsonBody<OidcClientBody>,
) -> Result<Json<OidcClientView>, ApiError> {
    let token_url = body
        .token_url
        .map(|u| super::mcp_servers::check_url("token_url", u))
        .transpose()?;
    let bounded = |field: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
        match v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            Some(v) if v.len() > 4096 || v.chars().any(char::is_control) => Err(ApiError::invalid(
                field,
                "must be 1-4096 bytes without control characters",
            )),
            other => Ok(other),
        }
    };
    let client_id = bounded("client_id", body.client_id)?;
    let client_secret = bounded("client_secret", body.client_secret)?;
    if token_url.is_some() && client_id.is_none() {
        return Err(ApiError::invalid(
            "client_id",
            "is required with a token_url",
        ));
    }
    let client_secret_ciphertext = match client_secret {
        Some(secret) => Some(secrets_of(&state)?.seal(&secret)),
        None => None,
    };
    let stored = state
        .store
        .set_oidc_client(&OidcClient {
            token_url,
            client_id,
            client_secret_ciphertext,
            updated_at: Utc::now(),
        })
        .await?;
    Ok(Json(stored.into()))
}
