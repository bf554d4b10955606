//! `/api/v1/admin/providers` and `/api/v1/admin/models`: providers and models as data, for
//! site owners. Keys and headers are sealed before they reach the store and never come
//! back out: a provider shows `has_api_key` and `has_headers` only.

use std::collections::BTreeMap;

use agentq_core::{
    domain::{AuthenticatedUser, ProviderKind},
    store::{ModelView, ProviderChanges, ProviderView},
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody},
    extract::JsonBody,
};

pub(crate) fn require_site_owner(user: &AuthenticatedUser) -> Result<(), ApiError> {
    if user.is_site_owner() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only site owners may manage providers and models".into(),
        ))
    }
}

fn parse_id(raw: &str, field: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// Body of `POST` and `PATCH /admin/providers`. In a patch, absent fields stay as they
/// are and `"api_key": null` removes the key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    /// Unique name, 1-100 characters, shown in errors; required on create.
    #[schema(max_length = 100)]
    name: Option<String>,
    /// Wire format: `openai`, `openai-compat`, `anthropic` or `openrouter`; required on
    /// create. Any other value is a 400 naming `kind`.
    #[schema(example = "openai")]
    kind: Option<ProviderKind>,
    /// `http://` or `https://` URL; defaults by kind on create (required for
    /// `openai-compat`).
    base_url: Option<String>,
    /// Sealed before it is stored and never returned; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
    /// Extra request headers, sealed like the key; `null` removes them.
    #[serde(default, deserialize_with = "present")]
    headers: Option<Option<BTreeMap<String, String>>>,
    /// Disabled providers fail turns with `provider_disabled`.
    enabled: Option<bool>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

impl ProviderBody {
    fn into_changes(self, state: &ApiState, creating: bool) -> Result<ProviderChanges, ApiError> {
        let name = self.name.map(|n| n.trim().to_owned());
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
        if let Some(url) = &base_url {
            refuse_control_chars("base_url", url)?;
            let ok = reqwest_like_url(url);
            if !ok {
                return Err(ApiError::invalid(
                    "base_url",
                    "must be an http:// or https:// URL",
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
        Ok(ProviderChanges {
            name,
            kind: self.kind,
            base_url,
            api_key,
            headers,
            enabled: self.enabled,
        })
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
];

/// A 400 naming `field` when `text` holds a control character (U+0000 included).
fn refuse_control_chars(field: &str, text: &str) -> Result<(), ApiError> {
    match agentq_core::text::forbidden_char(text) {
        Some(c) => Err(ApiError::invalid(
            field,
            format!(
                "must not contain {} (a control character)",
                agentq_core::text::describe_char(c)
            ),
        )),
        None => Ok(()),
    }
}

fn reqwest_like_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

fn conflict_on_name(e: agentq_core::StoreError, what: &str) -> ApiError {
    match e.constraint() {
        Some("providers_name_key") | Some("models_provider_id_name_key") => {
            ApiError::invalid("name", format!("a {what} with this name exists"))
        }
        Some("models_provider_id_fkey") => ApiError::invalid("provider_id", "names no provider"),
        _ => match e {
            agentq_core::StoreError::NotFound => ApiError::NotFound(format!("{what} not found")),
            other => other.into(),
        },
    }
}

/// Body of `GET /api/v1/admin/providers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderList {
    /// Every provider, without secrets.
    pub providers: Vec<ProviderView>,
}

/// Body of `GET /api/v1/admin/models`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Every model.
    pub models: Vec<ModelView>,
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
    CurrentUser(user): CurrentUser,
) -> Result<Json<ProviderList>, ApiError> {
    require_site_owner(&user)?;
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
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<(StatusCode, Json<ProviderView>), ApiError> {
    require_site_owner(&user)?;
    let changes = body.into_changes(&state, true)?;
    let provider = state
        .store
        .create_provider(&changes)
        .await
        .map_err(|e| conflict_on_name(e, "provider"))?;
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
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<Json<ProviderView>, ApiError> {
    require_site_owner(&user)?;
    let id = parse_id(&id, "provider_id")?;
    let changes = body.into_changes(&state, false)?;
    Ok(Json(
        state
            .store
            .update_provider(id, &changes)
            .await
            .map_err(|e| conflict_on_name(e, "provider"))?,
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
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_site_owner(&user)?;
    let id = parse_id(&id, "provider_id")?;
    state
        .store
        .delete_provider(id)
        .await
        .map_err(|e| conflict_on_name(e, "provider"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST` and `PATCH /admin/models`; absent fields keep their value (or default).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    /// Its provider; required on create.
    provider_id: Option<Uuid>,
    /// Name sent to the provider, 1-200 characters; required on create.
    #[schema(max_length = 200)]
    name: Option<String>,
    /// Name shown to people.
    display_name: Option<String>,
    /// Context window in tokens (positive); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(minimum = 1)]
    context_limit: Option<Option<i32>>,
    /// Output cap sent with each request (positive); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(minimum = 1)]
    max_output_tokens: Option<Option<i32>>,
    /// `low`, `medium` or `high`; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    reasoning_effort: Option<Option<String>>,
    /// Micro-dollars per million input tokens.
    #[schema(minimum = 0)]
    input_price_micros: Option<i64>,
    /// Micro-dollars per million output tokens.
    #[schema(minimum = 0)]
    output_price_micros: Option<i64>,
    /// Micro-dollars per million cached input tokens read.
    #[schema(minimum = 0)]
    cache_read_price_micros: Option<i64>,
    /// Micro-dollars per million input tokens written to the cache.
    #[schema(minimum = 0)]
    cache_write_price_micros: Option<i64>,
    /// The model chats use when they name none.
    is_default: Option<bool>,
    /// Disabled models cannot be picked (default `true` on create).
    enabled: Option<bool>,
}

impl ModelBody {
    /// Applies the body to `base` (a new model's defaults or the stored model).
    fn apply(self, mut m: ModelView) -> Result<ModelView, ApiError> {
        if let Some(p) = self.provider_id {
            m.provider_id = p;
        }
        if let Some(name) = self.name {
            m.name = name.trim().to_owned();
        }
        if m.name.is_empty() || m.name.chars().count() > 200 {
            return Err(ApiError::invalid("name", "is required (1-200 characters)"));
        }
        refuse_control_chars("name", &m.name)?;
        if let Some(d) = self.display_name {
            refuse_control_chars("display_name", &d)?;
            m.display_name = d;
        }
        if let Some(v) = self.context_limit {
            m.context_limit = v;
        }
        if m.context_limit.is_some_and(|v| v <= 0) {
            return Err(ApiError::invalid(
                "context_limit",
                "must be a positive number of tokens",
            ));
        }
        if let Some(v) = self.max_output_tokens {
            m.max_output_tokens = v;
        }
        if m.max_output_tokens.is_some_and(|v| v <= 0) {
            return Err(ApiError::invalid(
                "max_output_tokens",
                "must be a positive number of tokens",
            ));
        }
        if let Some(v) = self.reasoning_effort {
            m.reasoning_effort = v;
        }
        if m.reasoning_effort
            .as_deref()
            .is_some_and(|e| !["low", "medium", "high"].contains(&e))
        {
            return Err(ApiError::invalid(
                "reasoning_effort",
                "must be low, medium or high",
            ));
        }
        for (field, value, target) in [
            (
                "input_price_micros",
                self.input_price_micros,
                &mut m.input_price_micros,
            ),
            (
                "output_price_micros",
                self.output_price_micros,
                &mut m.output_price_micros,
            ),
            (
                "cache_read_price_micros",
                self.cache_read_price_micros,
                &mut m.cache_read_price_micros,
            ),
            (
                "cache_write_price_micros",
                self.cache_write_price_micros,
                &mut m.cache_write_price_micros,
            ),
        ] {
            if let Some(v) = value {
                if v < 0 {
                    return Err(ApiError::invalid(
                        field,
                        "must not be negative (micro-dollars per million tokens)",
                    ));
                }
                *target = v;
            }
        }
        if let Some(v) = self.is_default {
            m.is_default = v;
        }
        if let Some(v) = self.enabled {
            m.enabled = v;
        }
        Ok(m)
    }
}

/// `GET /api/v1/admin/models`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/models",
    tag = "admin",
    responses(
        (status = 200, description = "Every model.", body = ModelList),
        (status = 403, description = "Only site owners manage models.", body = ErrorBody),
    )
)]
pub async fn list_models(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<ModelList>, ApiError> {
    require_site_owner(&user)?;
    Ok(Json(ModelList {
        models: state.store.list_models().await?,
    }))
}

/// `POST /api/v1/admin/models` -> 201.
#[utoipa::path(
    post,
    path = "/api/v1/admin/models",
    tag = "admin",
    request_body = ModelBody,
    responses(
        (status = 201, description = "The model.", body = ModelView),
        (status = 400, description = "A field is invalid, the provider does not exist or the name is taken.", body = ErrorBody),
        (status = 403, description = "Only site owners manage models.", body = ErrorBody),
    )
)]
pub async fn create_model(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<ModelBody>,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
    require_site_owner(&user)?;
    let provider_id = body
        .provider_id
        .ok_or_else(|| ApiError::invalid("provider_id", "is required"))?;
    let base = ModelView {
        id: Uuid::nil(),
        provider_id,
        name: String::new(),
        display_name: String::new(),
        context_limit: None,
        max_output_tokens: None,
        reasoning_effort: None,
        input_price_micros: 0,
        output_price_micros: 0,
        cache_read_price_micros: 0,
        cache_write_price_micros: 0,
        is_default: false,
        enabled: true,
    };
    let model = body.apply(base)?;
    let created = state
        .store
        .create_model(&model)
        .await
        .map_err(|e| conflict_on_name(e, "model"))?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `PATCH /api/v1/admin/models/{id}`.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/models/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "The model's id.")),
    request_body = ModelBody,
    responses(
        (status = 200, description = "The model after the change.", body = ModelView),
        (status = 400, description = "A field or the id is invalid, or the name is taken.", body = ErrorBody),
        (status = 403, description = "Only site owners manage models.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
    )
)]
pub async fn update_model(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ModelBody>,
) -> Result<Json<ModelView>, ApiError> {
    require_site_owner(&user)?;
    let id = parse_id(&id, "model_id")?;
    let current = state
        .store
        .get_model(id)
        .await
        .map_err(|e| conflict_on_name(e, "model"))?;
    let model = body.apply(current)?;
    Ok(Json(
        state
            .store
            .update_model(&model)
            .await
            .map_err(|e| conflict_on_name(e, "model"))?,
    ))
}

/// `DELETE /api/v1/admin/models/{id}` -> 204.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/models/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "The model's id.")),
    responses(
        (status = 204, description = "The model is deleted."),
        (status = 400, description = "The id is not a UUID.", body = ErrorBody),
        (status = 403, description = "Only site owners manage models.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
    )
)]
pub async fn delete_model(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_site_owner(&user)?;
    let id = parse_id(&id, "model_id")?;
    state
        .store
        .delete_model(id)
        .await
        .map_err(|e| conflict_on_name(e, "model"))?;
    Ok(StatusCode::NO_CONTENT)
}
