//! A user's own provider keys (issue #15 item 3; ARCHITECTURE.md §3, §11):
//! `/api/v1/users/me/provider-keys`. A provider whose key policy allows user keys takes
//! one per user; a worker uses it for that user's turns (the resolution table is on
//! `agentq_core::domain::KeyPolicy`). A key is sealed before it reaches the store and never
//! comes back: every answer says `has_key` and `updated_at`, nothing of the key itself.
//!
//! `{provider}` is the provider's id or its name.

use agentq_core::{
    StoreError,
    store::{ProviderView, UserProviderKeyStatus},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody, refuse_control_chars},
    extract::JsonBody,
};

/// Longest key accepted, in bytes.
pub const MAX_PROVIDER_KEY_BYTES: usize = 4096;

/// Body of `GET /api/v1/users/me/provider-keys`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderKeyList {
    /// Enabled providers that take users' keys, and any provider the caller holds a key
    /// for, by name; never a key.
    pub providers: Vec<UserProviderKeyStatus>,
}

/// Body of `PUT /api/v1/users/me/provider-keys/{provider}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderKeyBody {
    /// The key (printable ASCII, at most 4096 bytes; spaces, tabs and line breaks around
    /// it, as a paste brings, are dropped); sealed, never returned or logged.
    #[schema(
        required = true,
        nullable = false,
        max_length = 4096,
        pattern = "^[ \\t\\n\\r]*[!-~]+[ \\t\\n\\r]*$"
    )]
    pub api_key: Option<String>,
}

impl std::fmt::Debug for ProviderKeyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeyBody")
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The provider `{provider}` names, else a 404. A reference no provider can have (a
/// control character, which PostgreSQL may not even take in text, or longer than a name or
/// an id can be) is a 400 naming `provider`, before any lookup.
async fn provider(state: &ApiState, reference: &str) -> Result<ProviderView, ApiError> {
    refuse_control_chars("provider", reference)?;
    if reference.chars().count() > 100 {
        return Err(ApiError::invalid(
            "provider",
            "must be a provider's id or name (at most 100 characters)",
        ));
    }
    match state.store.find_provider(reference).await {
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!(
            "no provider with the id or name `{reference}`"
        ))),
        other => Ok(other?),
    }
}

/// The caller's status for one provider.
async fn status_of(
    state: &ApiState,
    user: uuid::Uuid,
    provider: &ProviderView,
) -> Result<UserProviderKeyStatus, ApiError> {
    let key = state.store.user_provider_key(user, provider.id).await?;
    Ok(UserProviderKeyStatus {
        provider_id: provider.id,
        provider_name: provider.name.clone(),
        kind: provider.kind,
        allow_user_api_key: provider.allow_user_api_key,
        allow_central_api_key_fallback: provider.allow_central_api_key_fallback,
        has_key: key.is_some(),
        updated_at: key.map(|k| k.updated_at),
    })
}

/// `GET /api/v1/users/me/provider-keys`.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/provider-keys",
    tag = "users",
    responses((status = 200, description = "Each provider the caller may keep a key for, and whether they did; never a key.", body = ProviderKeyList))
)]
pub async fn list_provider_keys(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<ProviderKeyList>, ApiError> {
    Ok(Json(ProviderKeyList {
        providers: state.store.list_user_provider_keys(user.id).await?,
    }))
}

/// `PUT /api/v1/users/me/provider-keys/{provider}`: stores (replaces) the caller's key.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/provider-keys/{provider}",
    tag = "users",
    params(("provider" = String, Path, description = "The provider's id or name.", min_length = 1, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$")),
    request_body = ProviderKeyBody,
    responses(
        (status = 200, description = "Stored, sealed; the caller's next turn on the provider uses it.", body = UserProviderKeyStatus),
        (status = 400, description = "`api_key` is missing, empty, too long or not printable ASCII, or `provider` holds a control character or is over 100 characters.", body = ErrorBody),
        (status = 404, description = "No such provider.", body = ErrorBody),
        (status = 409, description = "The provider does not take users' keys, or agentq has no secret key to seal it with.", body = ErrorBody),
    )
)]
pub async fn put_provider_key(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(reference): Path<String>,
    JsonBody(body): JsonBody<ProviderKeyBody>,
) -> Result<Json<UserProviderKeyStatus>, ApiError> {
    let key = body
        .api_key
        .ok_or_else(|| ApiError::invalid("api_key", "is required"))?;
    // The limit counts what was sent, as the document's `maxLength` does; only the
    // whitespace a paste brings is dropped, and anything else not printable is refused below.
    if key.len() > MAX_PROVIDER_KEY_BYTES {
        return Err(ApiError::invalid(
            "api_key",
            format!("must be at most {MAX_PROVIDER_KEY_BYTES} bytes"),
        ));
    }
    let key = key.trim_matches([' ', '\t', '\n', '\r']).to_owned();
    if key.is_empty() {
        return Err(ApiError::invalid(
            "api_key",
            "must not be empty (DELETE removes it)",
        ));
    }
    // It is sent as a header value: refuse now what no request could carry.
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "api_key",
            "must be printable ASCII without spaces",
        ));
    }
    let provider = provider(&state, &reference).await?;
    if !provider.allow_user_api_key {
        return Err(ApiError::Conflict(format!(
            "{} does not take users' own API keys (its key policy has allow_user_api_key off)",
            provider.name
        )));
    }
    let secrets = state.secrets.as_ref().ok_or_else(|| {
        ApiError::Conflict(
            "no AGENTQ_SECRET_KEY is configured, so agentq cannot store provider keys".into(),
        )
    })?;
    state
        .store
        .put_user_provider_key(user.id, provider.id, &secrets.seal(&key))
        .await?;
    Ok(Json(status_of(&state, user.id, &provider).await?))
}

/// `DELETE /api/v1/users/me/provider-keys/{provider}`: forgets the caller's key.
#[utoipa::path(
    delete,
    path = "/api/v1/users/me/provider-keys/{provider}",
    tag = "users",
    params(("provider" = String, Path, description = "The provider's id or name.", min_length = 1, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$")),
    responses(
        (status = 204, description = "Gone (or there was none); the caller's next turn on the provider uses the central key if the policy falls back to it, else fails with `missing_key`."),
        (status = 400, description = "`provider` holds a control character or is over 100 characters.", body = ErrorBody),
        (status = 404, description = "No such provider.", body = ErrorBody),
    )
)]
pub async fn delete_provider_key(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    let provider = provider(&state, &reference).await?;
    state
        .store
        .delete_user_provider_key(user.id, provider.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
