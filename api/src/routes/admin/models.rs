//! `/api/v1/admin/models`: the models chats may pick, each on a provider, with its prices
//! and limits. One model may be the default; making another the default takes it away.

use agentq_core::{domain::ReasoningEffort, store::ModelView};
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

/// Body of `GET /api/v1/admin/models`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Every model.
    pub models: Vec<ModelView>,
}

/// Body of `POST` and `PATCH /admin/models`; absent fields keep their value (or default).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    /// Its provider; required on create.
    provider_id: Option<Uuid>,
    /// Name sent to the provider, 1-200 characters; required on create.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069][^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
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
    /// `low`, `medium` or `high`: sent as OpenAI's `reasoning_effort` or Anthropic's
    /// `thinking` budget; a chat may override it. `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ReasoningEffort>)]
    reasoning_effort: Option<Option<ReasoningEffort>>,
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
    /// Whether requests mark prompt-cache breakpoints (Anthropic `cache_control`; default
    /// `true` on create). Turn it off for a proxy that rejects the field.
    prompt_caching: Option<bool>,
    /// How long cached prompts live: `5m` (default) or `1h` (Anthropic's extended TTL,
    /// whose cache writes cost more).
    #[schema(example = "5m")]
    cache_ttl: Option<String>,
}

impl ModelBody {
    /// Applies the body to `base` (a new model's defaults or the stored model).
    fn apply(self, mut m: ModelView) -> Result<ModelView, ApiError> {
        if let Some(p) = self.provider_id {
            m.provider_id = p;
        }
        if let Some(name) = self.name {
            m.name = crate::error::trimmed_within("name", &name, 200)?.to_owned();
        }
        if m.name.is_empty() || m.name.chars().count() > 200 {
            return Err(ApiError::invalid("name", "is required (1-200 characters)"));
        }
        refuse_control_chars("name", &m.name)?;
        if let Some(d) = self.display_name {
            refuse_control_chars("display_name", &d)?;
            m.display_name = d;
        }
        for (field, value, target) in [
            ("context_limit", self.context_limit, &mut m.context_limit),
            (
                "max_output_tokens",
                self.max_output_tokens,
                &mut m.max_output_tokens,
            ),
        ] {
            if let Some(v) = value {
                *target = v;
            }
            if target.is_some_and(|v| v <= 0) {
                return Err(ApiError::invalid(
                    field,
                    "must be a positive number of tokens",
                ));
            }
        }
        if let (Some(limit), Some(output)) = (m.context_limit, m.max_output_tokens)
            && output >= limit
        {
            // The window holds the question and the answer: no room would be left to ask.
            return Err(ApiError::invalid(
                "max_output_tokens",
                format!("must be less than context_limit ({limit})"),
            ));
        }
        if let Some(v) = self.reasoning_effort {
            m.reasoning_effort = v;
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
        if let Some(v) = self.prompt_caching {
            m.prompt_caching = v;
        }
        if let Some(v) = self.cache_ttl {
            if !["5m", "1h"].contains(&v.as_str()) {
                return Err(ApiError::invalid("cache_ttl", "must be 5m or 1h"));
            }
            m.cache_ttl = v;
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
    _: SiteOwner,
) -> Result<Json<ModelList>, ApiError> {
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
    _: SiteOwner,
    JsonBody(body): JsonBody<ModelBody>,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
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
        prompt_caching: true,
        cache_ttl: "5m".into(),
    };
    let model = body.apply(base)?;
    let created = state
        .store
        .create_model(&model)
        .await
        .or_not_found("model")?;
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
    _: SiteOwner,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ModelBody>,
) -> Result<Json<ModelView>, ApiError> {
    let id = parse_id(&id, "model_id")?;
    let current = state.store.get_model(id).await.or_not_found("model")?;
    let model = body.apply(current)?;
    Ok(Json(
        state
            .store
            .update_model(&model)
            .await
            .or_not_found("model")?,
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
    _: SiteOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "model_id")?;
    state.store.delete_model(id).await.or_not_found("model")?;
    Ok(StatusCode::NO_CONTENT)
}
