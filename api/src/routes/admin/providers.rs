//! `/api/v1/admin/providers`: where turns are sent. Keys and headers are sealed before
//! they reach the store and never come back out: a provider shows `has_api_key` and
//! `has_headers` only. A `kind` outside [`ProviderKind::STORED`] is a 400 naming `kind`.
//! Each provider carries a key policy (whose key a user's turn uses; the table is on
//! [`KeyPolicy`]); a combination the database would refuse is a 400 naming the field.
//! A provider without a key is refused (a 400 naming `api_key`) unless its kind may call
//! without one: `openai-compat` (servers that need none) and `bedrock` (the worker's AWS
//! credential chain), or when its users bring their own keys (`allow_user_api_key`).

use std::collections::BTreeMap;

use agentq_core::{
    domain::{KeyPolicy, ProviderKind},
    store::{ProviderChanges, ProviderView},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{parse_id, present};
use crate::{
    ApiState,
    auth::SiteOwner,
    error::{ApiError, ErrorBody, OrNotFound, refuse_control_chars},
    extract::JsonBody,
};

/// Body of `POST` and `PATCH /admin/providers`. In a patch, absent fields stay as they
/// are and `"api_key": null` removes the key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    /// Unique name, 1-100 characters, shown in errors; required on create.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069][^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    name: Option<String>,
    /// Wire format: `openai`, `openai-compat`, `anthropic`, `openrouter` or `bedrock`;
    /// required on create. Any other value is a 400 naming `kind`.
    #[schema(example = "openai")]
    kind: Option<ProviderKind>,
    /// `http://` or `https://` URL; defaults by kind on create (required for
    /// `openai-compat`; for `bedrock` the default is the regional endpoint
    /// `https://bedrock-runtime.{region}.amazonaws.com`, stored as an empty string).
    base_url: Option<String>,
    /// AWS region of a `bedrock` provider (`us-east-1`); absent or `null`: the worker's
    /// own (`AWS_REGION`, `AWS_DEFAULT_REGION`, its profile). Refused for other kinds.
    #[serde(default, deserialize_with = "present")]
    #[schema(example = "us-east-1")]
    region: Option<Option<String>>,
    /// Sealed before it is stored and never returned; `null` removes it. Required for
    /// `openai`, `anthropic` and `openrouter`; for `bedrock` it is a Bedrock API key sent
    /// as a bearer token, and without one the worker signs with its AWS credentials.
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
    /// Extra request headers, sealed like the key; `null` removes them.
    #[serde(default, deserialize_with = "present")]
    headers: Option<Option<BTreeMap<String, String>>>,
    /// Disabled providers fail turns with `provider_disabled`.
    enabled: Option<bool>,
    /// Key policy (README "Provider keys"): the provider's own key may be used; default
    /// `true`.
    central_api_key_enabled: Option<bool>,
    /// Key policy: users may store and use their own key; default `false`.
    allow_user_api_key: Option<bool>,
    /// Key policy: a user without a key uses the provider's; default `false`. Needs both
    /// switches above on; an impossible combination is a 400 naming the field to change.
    allow_central_api_key_fallback: Option<bool>,
}

impl std::fmt::Debug for ProviderBody {
    /// Secrets show as whether they were given, never their value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |v: bool| if v { "***" } else { "null" };
        f.debug_struct("ProviderBody")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &self.api_key.as_ref().map(|k| given(k.is_some())),
            )
            .field(
                "headers",
                &self.headers.as_ref().map(|h| given(h.is_some())),
            )
            .field("enabled", &self.enabled)
            .field("central_api_key_enabled", &self.central_api_key_enabled)
            .field("allow_user_api_key", &self.allow_user_api_key)
            .field(
                "allow_central_api_key_fallback",
                &self.allow_central_api_key_fallback,
            )
            .finish()
    }
}

impl ProviderBody {
    fn into_changes(self, state: &ApiState, creating: bool) -> Result<ProviderChanges, ApiError> {
        let name = self
            .name
            .map(|n| crate::error::trimmed_within("name", &n, 100).map(str::to_owned))
            .transpose()?;
        if creating && name.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid("name", "is required"));
        }
        if let Some(n) = &name
            && (n.is_empty() || n.chars().count() > 100)
        {
            return Err(ApiError::invalid("name", "must be 1-100 characters"));
        }
        if let Some(n) = &name {
            refuse_control_chars("name", n)?;
            // `{provider}` in a user's key routes is an id or a name: a name that reads as
            // an id would be ambiguous.
            if n.parse::<Uuid>().is_ok() {
                return Err(ApiError::invalid(
                    "name",
                    "must not be a UUID (routes name a provider by id or by name)",
                ));
            }
        }
        if let Some(kind) = self.kind
            && !kind.is_stored()
        {
            return Err(ApiError::invalid(
                "kind",
                format!("must be one of {}", ProviderKind::stored_list()),
            ));
        }
        if creating && self.kind.is_none() {
            return Err(ApiError::invalid(
                "kind",
                format!("is required (one of {})", ProviderKind::stored_list()),
            ));
        }
        let region = match self.region {
            Some(Some(region)) => {
                if creating && self.kind != Some(ProviderKind::Bedrock) {
                    return Err(ApiError::invalid(
                        "region",
                        "is only used by bedrock providers",
                    ));
                }
                let valid = (1..=50).contains(&region.len())
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid {
                    return Err(ApiError::invalid(
                        "region",
                        "must be an AWS region name such as us-east-1",
                    ));
                }
                Some(Some(region))
            }
            other => other,
        };
        // A given URL is checked; a kind's default is trusted (Bedrock's is empty: the
        // regional endpoint).
        if let Some(url) = &self.base_url {
            refuse_control_chars("base_url", url)?;
            if !http_url_with_host(url) {
                return Err(ApiError::invalid(
                    "base_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        let mut base_url = self.base_url;
        if creating && base_url.is_none() {
            base_url = self
                .kind
                .and_then(ProviderKind::default_base_url)
                .map(str::to_owned);
            if base_url.is_none() {
                return Err(ApiError::invalid(
                    "base_url",
                    "is required for openai-compat providers",
                ));
            }
        }
        let seal = |field: &str, plain: String| -> Result<Vec<u8>, ApiError> {
            state
                .secrets
                .as_ref()
                .map(|b| b.seal(&plain))
                .ok_or_else(|| {
                    ApiError::invalid(
                        field,
                        "cannot be stored: the server has no AGENTQ_SECRET_KEY configured",
                    )
                })
        };
        let api_key = match self.api_key {
            None => None,
            Some(None) => Some(None),
            Some(Some(key)) if key.trim().is_empty() => {
                return Err(ApiError::invalid(
                    "api_key",
                    "must not be empty (send null to remove it)",
                ));
            }
            Some(Some(key)) => {
                // It is sent as a header value: refuse now what no request could carry.
                if axum::http::HeaderValue::from_str(key.trim()).is_err() {
                    return Err(ApiError::invalid(
                        "api_key",
                        "holds characters an HTTP header cannot carry (control characters or non-ASCII)",
                    ));
                }
                Some(Some(seal("api_key", key.trim().to_owned())?))
            }
        };
        let headers = match self.headers {
            None => None,
            Some(None) => Some(None),
            Some(Some(map)) => {
                if let Some(bad) = map.keys().find(|k| {
                    k.is_empty()
                        || !k
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }) {
                    return Err(ApiError::invalid(
                        "headers",
                        format!("`{bad}` is not a valid header name"),
                    ));
                }
                if let Some(reserved) = map
                    .keys()
                    .find(|k| RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
                {
                    return Err(ApiError::invalid(
                        "headers",
                        format!("`{reserved}` is set by agentq itself and cannot be configured"),
                    ));
                }
                if let Some((name, _)) = map
                    .iter()
                    .find(|(_, v)| axum::http::HeaderValue::from_str(v).is_err())
                {
                    return Err(ApiError::invalid(
                        format!("headers.{name}"),
                        "holds characters an HTTP header cannot carry (control characters or non-ASCII)",
                    ));
                }
                Some(Some(seal(
                    "headers",
                    serde_json::to_string(&map).unwrap_or_default(),
                )?))
            }
        };
        // Also the database's `providers_api_key_required` check, which covers a `PATCH`
        // that removes the key or changes the kind.
        if creating
            && let Some(kind) = self.kind
            && kind.needs_api_key()
            && self.allow_user_api_key != Some(true)
            && !matches!(api_key, Some(Some(_)))
        {
            return Err(ApiError::invalid(
                "api_key",
                format!(
                    "is required for {kind} providers (only openai-compat and bedrock providers, \
                     and providers whose users bring their own keys, may have none)"
                ),
            ));
        }
        Ok(ProviderChanges {
            name,
            kind: self.kind,
            base_url,
            region,
            api_key,
            headers,
            enabled: self.enabled,
            central_api_key_enabled: self.central_api_key_enabled,
            allow_user_api_key: self.allow_user_api_key,
            allow_central_api_key_fallback: self.allow_central_api_key_fallback,
        })
    }
}

/// A 400 naming the field when `policy` is one of the combinations the database refuses
/// (the table on [`KeyPolicy`]).
fn refuse_impossible_policy(policy: KeyPolicy) -> Result<(), ApiError> {
    match policy.problem() {
        Some(problem) => Err(ApiError::invalid(problem.field, problem.detail)),
        None => Ok(()),
    }
}

/// Headers agentq sets on provider requests itself; configuring them would break the
/// request (framing) or the credential.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
    "accept",
    "authorization",
    "x-api-key",
    "anthropic-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Whether `url` is an `http://` or `https://` URL with a host, read with `url::Url` (no
/// white space anywhere: it is stored as given, not as the parser would normalize it).
fn http_url_with_host(url: &str) -> bool {
    !url.contains(char::is_whitespace)
        && url::Url::parse(url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        })
}

/// Body of `GET /api/v1/admin/providers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderList {
    /// Every provider, without secrets.
    pub providers: Vec<ProviderView>,
}

/// `GET /api/v1/admin/providers`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/providers",
    tag = "admin",
    responses(
        (status = 200, description = "Every provider; secrets show only as `has_api_key` and `has_headers`.", body = ProviderList),
        (status = 403, description = "Only site owners manage providers.", body = ErrorBody),
    )
)]
pub async fn list_providers(
    State(state): State<ApiState>,
    _: SiteOwner,
) -> Result<Json<ProviderList>, ApiError> {
    Ok(Json(ProviderList {
        providers: state.store.list_providers().await?,
    }))
}

/// `POST /api/v1/admin/providers` -> 201.
#[utoipa::path(
    post,
    path = "/api/v1/admin/providers",
    tag = "admin",
    request_body = ProviderBody,
    responses(
        (status = 201, description = "The provider.", body = ProviderView),
        (status = 400, description = "A field is invalid or the name is taken; `validations` names it.", body = ErrorBody),
        (status = 403, description = "Only site owners manage providers.", body = ErrorBody),
    )
)]
pub async fn create_provider(
    State(state): State<ApiState>,
    _: SiteOwner,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<(StatusCode, Json<ProviderView>), ApiError> {
    let changes = body.into_changes(&state, true)?;
    refuse_impossible_policy(changes.key_policy_over(KeyPolicy::default()))?;
    let provider = state
        .store
        .create_provider(&changes)
        .await
        .or_not_found("provider")?;
    Ok((StatusCode::CREATED, Json(provider)))
}

/// `PATCH /api/v1/admin/providers/{id}`.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/providers/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "The provider's id.")),
    request_body = ProviderBody,
    responses(
        (status = 200, description = "The provider after the change.", body = ProviderView),
        (status = 400, description = "A field or the id is invalid, or the name is taken.", body = ErrorBody),
        (status = 403, description = "Only site owners manage providers.", body = ErrorBody),
        (status = 404, description = "No such provider.", body = ErrorBody),
    )
)]
pub async fn update_provider(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<Json<ProviderView>, ApiError> {
    let id = parse_id(&id, "provider_id")?;
    let changes = body.into_changes(&state, false)?;
    if changes.central_api_key_enabled.is_some()
        || changes.allow_user_api_key.is_some()
        || changes.allow_central_api_key_fallback.is_some()
    {
        // The database's check refuses it anyway (also when two patches race); here the
        // 400 names the field this patch should change.
        let current = state
            .store
            .find_provider(&id.to_string())
            .await
            .or_not_found("provider")?;
        refuse_impossible_policy(changes.key_policy_over(current.key_policy()))?;
    }
    Ok(Json(
        state
            .store
            .update_provider(id, &changes)
            .await
            .or_not_found("provider")?,
    ))
}

/// `DELETE /api/v1/admin/providers/{id}` -> 204 (its models go with it).
#[utoipa::path(
    delete,
    path = "/api/v1/admin/providers/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "The provider's id.")),
    responses(
        (status = 204, description = "The provider and its models are deleted."),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners manage providers.", body = ErrorBody),
        (status = 404, description = "No such provider.", body = ErrorBody),
    )
)]
pub async fn delete_provider(
    State(state): State<ApiState>,
    _: SiteOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "provider_id")?;
    state
        .store
        .delete_provider(id)
        .await
        .or_not_found("provider")?;
    Ok(StatusCode::NO_CONTENT)
}
