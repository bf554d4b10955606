//! Providers and models as data: what the admin API manages and what a worker resolves a
//! chat's model to. Secrets arrive here already sealed (see `secrets`) and leave only to
//! the worker; the API's view says `has_api_key` and nothing more.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{KeyPolicy, ProviderKind},
};

/// A provider as the admin API shows it (no secrets).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderView {
    /// Id.
    pub id: Uuid,
    /// Unique name, shown in errors ("OpenRouter is rate limiting...").
    pub name: String,
    /// Wire format.
    pub kind: ProviderKind,
    /// Base URL (empty for a Bedrock provider on its regional endpoint).
    pub base_url: String,
    /// The AWS region a Bedrock provider calls; `None`: the worker's own (`AWS_REGION`,
    /// its profile).
    pub region: Option<String>,
    /// Whether an API key is stored.
    pub has_api_key: bool,
    /// Whether extra headers are stored.
    pub has_headers: bool,
    /// Disabled providers fail turns with `provider_disabled`.
    pub enabled: bool,
    /// Key policy: the provider's own key may be used (ARCHITECTURE.md §3).
    pub central_api_key_enabled: bool,
    /// Key policy: users may store and use their own key.
    pub allow_user_api_key: bool,
    /// Key policy: a user without a key of their own uses the provider's key.
    pub allow_central_api_key_fallback: bool,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What creating or changing a provider writes (secrets sealed; `None` = unchanged on update).
#[derive(Debug, Clone, Default)]
pub struct ProviderChanges {
    /// Name.
    pub name: Option<String>,
    /// Kind (one of [`ProviderKind::STORED`]).
    pub kind: Option<ProviderKind>,
    /// Base URL.
    pub base_url: Option<String>,
    /// AWS region (Bedrock); `Some(None)` clears it.
    pub region: Option<Option<String>>,
    /// Sealed key; `Some(None)` clears it.
    pub api_key: Option<Option<Vec<u8>>>,
    /// Sealed JSON object of headers; `Some(None)` clears them.
    pub headers: Option<Option<Vec<u8>>>,
    /// Enabled.
    pub enabled: Option<bool>,
    /// Key policy switches; `None` = unchanged (defaults on create).
    pub central_api_key_enabled: Option<bool>,
    /// See [`ProviderView::allow_user_api_key`].
    pub allow_user_api_key: Option<bool>,
    /// See [`ProviderView::allow_central_api_key_fallback`].
    pub allow_central_api_key_fallback: Option<bool>,
}

impl ProviderView {
    /// The provider's key policy.
    pub fn key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            central_api_key_enabled: self.central_api_key_enabled,
            allow_user_api_key: self.allow_user_api_key,
            allow_central_api_key_fallback: self.allow_central_api_key_fallback,
        }
    }
}

impl ProviderChanges {
    /// The key policy `current` would have after these changes.
    pub fn key_policy_over(&self, current: KeyPolicy) -> KeyPolicy {
        KeyPolicy {
            central_api_key_enabled: self
                .central_api_key_enabled
                .unwrap_or(current.central_api_key_enabled),
            allow_user_api_key: self
                .allow_user_api_key
                .unwrap_or(current.allow_user_api_key),
            allow_central_api_key_fallback: self
                .allow_central_api_key_fallback
                .unwrap_or(current.allow_central_api_key_fallback),
        }
    }
}

/// A model as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelView {
    /// Id (what chats name as `model_config_id`).
    pub id: Uuid,
    /// Its provider.
    pub provider_id: Uuid,
    /// Name sent to the provider.
    pub name: String,
    /// Name shown to people.
    pub display_name: String,
    /// Context window in tokens.
    pub context_limit: Option<i32>,
    /// Output cap sent with each request.
    pub max_output_tokens: Option<i32>,
    /// `low`, `medium`, `high`: how hard the model reasons (sent as OpenAI's
    /// `reasoning_effort`, Anthropic's `thinking`); a chat may override it.
    pub reasoning_effort: Option<crate::domain::ReasoningEffort>,
    /// Micro-dollars per million input tokens.
    pub input_price_micros: i64,
    /// Micro-dollars per million output tokens.
    pub output_price_micros: i64,
    /// Micro-dollars per million cached input tokens read.
    pub cache_read_price_micros: i64,
    /// Micro-dollars per million input tokens written to the cache.
    pub cache_write_price_micros: i64,
    /// The model chats use when they name none.
    pub is_default: bool,
    /// Disabled models cannot be picked.
    pub enabled: bool,
    /// Whether requests mark prompt-cache breakpoints (Anthropic; default `true`).
    pub prompt_caching: bool,
    /// How long cached prompts live: `5m` (default) or `1h` (Anthropic's extended TTL).
    pub cache_ttl: String,
}

impl ResolvedModel {
    /// The provider's key policy.
    pub fn key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            central_api_key_enabled: self.central_api_key_enabled,
            allow_user_api_key: self.allow_user_api_key,
            allow_central_api_key_fallback: self.allow_central_api_key_fallback,
        }
    }
}

/// A chat's model with everything a worker needs to call it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResolvedModel {
    /// The model.
    #[sqlx(flatten)]
    pub model: ModelView,
    /// Provider name.
    pub provider_name: String,
    /// Provider kind.
    pub provider_kind: ProviderKind,
    /// Provider base URL.
    pub provider_base_url: String,
    /// Provider AWS region (Bedrock).
    pub provider_region: Option<String>,
    /// Sealed key.
    pub api_key_ciphertext: Option<Vec<u8>>,
    /// Sealed headers.
    pub headers_ciphertext: Option<Vec<u8>>,
    /// Whether the provider is enabled.
    pub provider_enabled: bool,
    /// Key policy: the provider's key may be used.
    pub central_api_key_enabled: bool,
    /// Key policy: users' own keys are used.
    pub allow_user_api_key: bool,
    /// Key policy: users without a key use the provider's.
    pub allow_central_api_key_fallback: bool,
    /// When the provider last changed (client caches key on it).
    pub provider_updated_at: DateTime<Utc>,
}

const PROVIDER_VIEW: &str = "id, name, kind, base_url, region, api_key_ciphertext IS NOT NULL AS has_api_key, \
     headers_ciphertext IS NOT NULL AS has_headers, enabled, central_api_key_enabled, allow_user_api_key, \
     allow_central_api_key_fallback, created_at, updated_at";
const MODEL_COLUMNS: &str = "id, provider_id, name, display_name, context_limit, max_output_tokens, reasoning_effort, \
     input_price_micros, output_price_micros, cache_read_price_micros, cache_write_price_micros, is_default, enabled, \
     prompt_caching, cache_ttl";

impl Store {
    /// Creates a provider; `changes` must name `name`, `kind` and `base_url`.
    pub async fn create_provider(&self, c: &ProviderChanges) -> Result<ProviderView, StoreError> {
        if let Some(problem) = c.key_policy_over(KeyPolicy::default()).problem() {
            return Err(StoreError::Invalid {
                field: problem.field,
                detail: problem.detail,
            });
        }
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO providers (id, name, kind, base_url, api_key_ciphertext, headers_ciphertext, enabled,
                                    central_api_key_enabled, allow_user_api_key, allow_central_api_key_fallback, region)
             VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, true), coalesce($9, false), coalesce($10, false), $11)
             RETURNING {PROVIDER_VIEW}"
        )))
        .bind(Uuid::now_v7())
        .bind(&c.name)
        .bind(c.kind)
        .bind(&c.base_url)
        .bind(c.api_key.clone().flatten())
        .bind(c.headers.clone().flatten())
        .bind(c.enabled.unwrap_or(true))
        .bind(c.central_api_key_enabled)
        .bind(c.allow_user_api_key)
        .bind(c.allow_central_api_key_fallback)
        .bind(c.region.clone().flatten())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every provider, by name.
    pub async fn list_providers(&self) -> Result<Vec<ProviderView>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PROVIDER_VIEW} FROM providers ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Applies the given changes to a provider. The key policy they make with the stored
    /// one is judged under the row's lock, so a refusal names the field [`KeyPolicy::problem`]
    /// blames even when two patches race (the database's check would only say "impossible").
    pub async fn update_provider(
        &self,
        id: Uuid,
        c: &ProviderChanges,
    ) -> Result<ProviderView, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (central, user, fallback): (bool, bool, bool) = sqlx::query_as(
            "SELECT central_api_key_enabled, allow_user_api_key, allow_central_api_key_fallback
             FROM providers WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let merged = c.key_policy_over(KeyPolicy {
            central_api_key_enabled: central,
            allow_user_api_key: user,
            allow_central_api_key_fallback: fallback,
        });
        if let Some(problem) = merged.problem() {
            return Err(StoreError::Invalid {
                field: problem.field,
                detail: problem.detail,
            });
        }
        let updated = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE providers SET
                name = coalesce($2, name), kind = coalesce($3, kind), base_url = coalesce($4, base_url),
                api_key_ciphertext = CASE WHEN $5 THEN $6 ELSE api_key_ciphertext END,
                headers_ciphertext = CASE WHEN $7 THEN $8 ELSE headers_ciphertext END,
                enabled = coalesce($9, enabled),
                central_api_key_enabled = coalesce($10, central_api_key_enabled),
                allow_user_api_key = coalesce($11, allow_user_api_key),
                allow_central_api_key_fallback = coalesce($12, allow_central_api_key_fallback),
                region = CASE WHEN $13 THEN $14 ELSE region END, updated_at = now()
             WHERE id = $1 RETURNING {PROVIDER_VIEW}"
        )))
        .bind(id)
        .bind(&c.name)
        .bind(c.kind)
        .bind(&c.base_url)
        .bind(c.api_key.is_some())
        .bind(c.api_key.clone().flatten())
        .bind(c.headers.is_some())
        .bind(c.headers.clone().flatten())
        .bind(c.enabled)
        .bind(c.central_api_key_enabled)
        .bind(c.allow_user_api_key)
        .bind(c.allow_central_api_key_fallback)
        .bind(c.region.is_some())
        .bind(c.region.clone().flatten())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(updated)
    }

    /// One provider, by id or by name (what `{provider}` in a user's key routes names); the
    /// id wins when one provider's id is another's name (the API refuses such names, rows
    /// written before it did may still have one).
    pub async fn find_provider(&self, reference: &str) -> Result<ProviderView, StoreError> {
        let id = reference.parse::<Uuid>().ok();
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PROVIDER_VIEW} FROM providers WHERE ($1::uuid IS NOT NULL AND id = $1) OR name = $2
             ORDER BY (id = $1) IS TRUE DESC LIMIT 1"
        )))
        .bind(id)
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Deletes a provider and its models (chats that used them fall back to the default).
    pub async fn delete_provider(&self, id: Uuid) -> Result<(), StoreError> {
        super::changed_one(
            sqlx::query("DELETE FROM providers WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    /// Creates a model; when it is the default, the previous default stops being one.
    pub async fn create_model(&self, m: &ModelView) -> Result<ModelView, StoreError> {
        let mut tx = self.pool.begin().await?;
        if m.is_default {
            sqlx::query("UPDATE models SET is_default = false WHERE is_default")
                .execute(&mut *tx)
                .await?;
        }
        let model = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO models (id, provider_id, name, display_name, context_limit, max_output_tokens, reasoning_effort,
                                 input_price_micros, output_price_micros, cache_read_price_micros, cache_write_price_micros,
                                 is_default, enabled, prompt_caching, cache_ttl)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING {MODEL_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(m.provider_id)
        .bind(&m.name)
        .bind(&m.display_name)
        .bind(m.context_limit)
        .bind(m.max_output_tokens)
        .bind(m.reasoning_effort)
        .bind(m.input_price_micros)
        .bind(m.output_price_micros)
        .bind(m.cache_read_price_micros)
        .bind(m.cache_write_price_micros)
        .bind(m.is_default)
        .bind(m.enabled)
        .bind(m.prompt_caching)
        .bind(&m.cache_ttl)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(model)
    }

    /// Every model, by provider and name.
    pub async fn list_models(&self) -> Result<Vec<ModelView>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM models ORDER BY provider_id, name"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// One model.
    pub async fn get_model(&self, id: Uuid) -> Result<ModelView, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Replaces a model's settings (the API merges a patch first).
    pub async fn update_model(&self, m: &ModelView) -> Result<ModelView, StoreError> {
        let mut tx = self.pool.begin().await?;
        if m.is_default {
            sqlx::query("UPDATE models SET is_default = false WHERE is_default AND id <> $1")
                .bind(m.id)
                .execute(&mut *tx)
                .await?;
        }
        let model = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE models SET provider_id = $2, name = $3, display_name = $4, context_limit = $5,
                    max_output_tokens = $6, reasoning_effort = $7, input_price_micros = $8,
                    output_price_micros = $9, cache_read_price_micros = $10, cache_write_price_micros = $11,
                    is_default = $12, enabled = $13, prompt_caching = $14, cache_ttl = $15,
                    updated_at = now()
             WHERE id = $1 RETURNING {MODEL_COLUMNS}"
        )))
        .bind(m.id)
        .bind(m.provider_id)
        .bind(&m.name)
        .bind(&m.display_name)
        .bind(m.context_limit)
        .bind(m.max_output_tokens)
        .bind(m.reasoning_effort)
        .bind(m.input_price_micros)
        .bind(m.output_price_micros)
        .bind(m.cache_read_price_micros)
        .bind(m.cache_write_price_micros)
        .bind(m.is_default)
        .bind(m.enabled)
        .bind(m.prompt_caching)
        .bind(&m.cache_ttl)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(model)
    }

    /// Deletes a model.
    pub async fn delete_model(&self, id: Uuid) -> Result<(), StoreError> {
        super::changed_one(
            sqlx::query("DELETE FROM models WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    /// The chat's model (`model_config_id`), else the default model; `None` when no model
    /// is configured as data (the worker then uses its flag-configured provider).
    pub async fn resolve_model(
        &self,
        model_config_id: Option<Uuid>,
    ) -> Result<Option<ResolvedModel>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.provider_id, m.name, m.display_name, m.context_limit, m.max_output_tokens,
                    m.reasoning_effort, m.input_price_micros, m.output_price_micros, m.cache_read_price_micros,
                    m.cache_write_price_micros, m.is_default, m.enabled, m.prompt_caching, m.cache_ttl,
                    p.name AS provider_name, p.kind AS provider_kind, p.base_url AS provider_base_url, p.region AS provider_region,
                    p.api_key_ciphertext, p.headers_ciphertext, p.enabled AS provider_enabled,
                    p.updated_at AS provider_updated_at, p.central_api_key_enabled, p.allow_user_api_key,
                    p.allow_central_api_key_fallback
             FROM models m JOIN providers p ON p.id = m.provider_id
             WHERE ($1::uuid IS NOT NULL AND m.id = $1) OR ($1::uuid IS NULL AND m.is_default)
             LIMIT 1",
        )
        .bind(model_config_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
