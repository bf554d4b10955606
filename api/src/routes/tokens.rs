//! `/api/v1/users/me/tokens`: a user's own API tokens. List them (never the secret: only its
//! digest is stored, and not even that is returned), create one (the secret is in that one
//! response and nowhere else, ever), revoke one (it gets 401 from the next request on).
//!
//! A token may carry scopes (`chat:read`, `chat:create`, `chat:update`, `chat:delete`,
//! `admin`; ARCHITECTURE.md §11.2): it can then do only those things, and never more than
//! its user. A token made without scopes has every right its user has. A scoped token may
//! make tokens with some of its own scopes only, never an unscoped one, so no token can
//! mint a stronger one.
//!
//! Operators do the same for any user with `agentq admin tokens list|create|revoke`.

use agentq_core::domain::{ApiTokenInfo, TokenScope};
use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody},
    extract::{JsonBody, TokenId},
};

/// Longest token name, in characters.
/// Active (unrevoked) tokens one user may hold; creating one more is a 409.
pub const MAX_ACTIVE_TOKENS: usize = 50;

const MAX_TOKEN_NAME_CHARS: usize = 100;
/// Longest lifetime a caller may ask for, in days (ten years).
const MAX_EXPIRES_IN_DAYS: u32 = 3650;

/// The caller's tokens.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Tokens that are not revoked (expired ones included), newest first.
    pub tokens: Vec<ApiTokenInfo>,
}

/// Body of `POST /api/v1/users/me/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A name to recognise it by in lists (1-100 characters, no control characters).
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069][^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    pub name: Option<String>,
    /// Days until it expires, 1..=3650; absent: the server's default (`--token-expiry-days`,
    /// 90 unless configured; a server configured with 0 gives tokens that never expire).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// What the token may do: some of `chat:read`, `chat:create`, `chat:update`,
    /// `chat:delete`, `admin` (at least one). Absent or `null`: everything its user may do.
    /// A scope adds no right the user lacks (`admin` on a member's token opens nothing),
    /// and a request made with a scoped token may only ask for scopes it holds itself.
    #[serde(default)]
    #[schema(value_type = Option<Vec<TokenScope>>, min_items = 1)]
    pub scopes: Option<Vec<String>>,
}

/// A token just created: the only response that ever carries its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// What lists show about it.
    pub token: ApiTokenInfo,
    /// `aq_...`; send it as `Authorization: Bearer <secret>`. Shown once: store it now.
    pub secret: String,
}

/// `GET /api/v1/users/me/tokens`.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/tokens",
    tag = "users",
    responses(
        (status = 200, description = "The caller's tokens, without their secrets.", body = TokenList),
    )
)]
pub async fn list_tokens(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList {
        tokens: state.store.list_api_tokens(user.id).await?,
    }))
}

/// `POST /api/v1/users/me/tokens` -> 201 with the secret, shown once.
#[utoipa::path(
    post,
    path = "/api/v1/users/me/tokens",
    tag = "users",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "The token and its secret (shown once).", body = CreatedToken),
        (status = 409, description = "The caller already holds `MAX_ACTIVE_TOKENS` (50) active tokens; revoke one first.", body = ErrorBody),
        (status = 400, description = "`name`, `expires_in_days` or `scopes` is invalid.", body = ErrorBody),
        (status = 403, description = "The request's token is scoped and asked for a scope it does not hold (or for an unscoped token).", body = ErrorBody),
    )
)]
pub async fn create_token(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = body
        .name
        .ok_or_else(|| ApiError::invalid("name", "is required"))?;
    let name = crate::error::trimmed_within("name", &name, MAX_TOKEN_NAME_CHARS)?;
    if name.is_empty() {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1-{MAX_TOKEN_NAME_CHARS} characters"),
        ));
    }
    crate::error::refuse_control_chars("name", name)?;
    if let Some(days) = body.expires_in_days
        && !(1..=MAX_EXPIRES_IN_DAYS).contains(&days)
    {
        return Err(ApiError::invalid(
            "expires_in_days",
            format!("must be between 1 and {MAX_EXPIRES_IN_DAYS}"),
        ));
    }
    let scopes = checked_scopes(body.scopes)?;
    if let Some(held) = &user.token_scopes {
        match &scopes {
            None => {
                return Err(ApiError::Forbidden(format!(
                    "this token is limited to {}; a token it makes must name `scopes`, some of those",
                    held.join(", ")
                )));
            }
            Some(asked) => {
                if let Some(extra) = asked.iter().find(|s| !user.token_allows(**s)) {
                    return Err(ApiError::Forbidden(format!(
                        "this token lacks the `{extra}` scope, so it cannot make a token that has it"
                    )));
                }
            }
        }
    }
    // Tokens are rows and a list: a client minting them in a loop must meet a wall.
    let active = state.store.list_api_tokens(user.id).await?.len();
    if active >= MAX_ACTIVE_TOKENS {
        return Err(ApiError::Conflict(format!(
            "you have {active} active tokens, the most a user may hold; revoke one first"
        )));
    }
    let expires_at = state.config.tokens.expires_at(body.expires_in_days);
    let new = agentq_core::auth::generate_token();
    let id = state
        .store
        .create_scoped_api_token(user.id, name, &new.sha256, expires_at, scopes.as_deref())
        .await?;
    let token = state.store.get_api_token(user.id, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            secret: new.secret,
        }),
    ))
}

/// Scopes as sent, checked: known names, at least one, duplicates dropped, in the
/// documented order (`None`: no limit).
fn checked_scopes(scopes: Option<Vec<String>>) -> Result<Option<Vec<TokenScope>>, ApiError> {
    let Some(names) = scopes else {
        return Ok(None);
    };
    if names.is_empty() {
        return Err(ApiError::invalid(
            "scopes",
            "must name at least one scope; leave it out for a token with every right of its user",
        ));
    }
    let mut checked = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let scope = TokenScope::from_name(name).ok_or_else(|| {
            ApiError::invalid(
                format!("scopes[{i}]"),
                "must be `chat:read`, `chat:create`, `chat:update`, `chat:delete` or `admin`",
            )
        })?;
        checked.push(scope);
    }
    checked.sort_unstable();
    checked.dedup();
    Ok(Some(checked))
}

/// `DELETE /api/v1/users/me/tokens/{token_id}` -> 204; the token gets 401 from now on
/// (revoking the token of this very request is allowed).
#[utoipa::path(
    delete,
    path = "/api/v1/users/me/tokens/{token_id}",
    tag = "users",
    params(TokenId),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, description = "`token_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such token of the caller's (or already revoked).", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    TokenId(token_id): TokenId,
) -> Result<StatusCode, ApiError> {
    if state
        .store
        .revoke_api_token(Some(user.id), token_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("token not found".into()))
    }
}
