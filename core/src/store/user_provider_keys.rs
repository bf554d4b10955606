//! Users' own provider keys (issue #15 item 3; ARCHITECTURE.md §3) and what each user can
//! use: the key routes under `/api/v1/users/me/provider-keys`, the per-user model listing
//! and the worker's per-step key lookup. A key arrives here sealed (`core::secrets`) and
//! leaves only in [`SealedUserKey`], for a worker running that user's turn; every view the
//! API gets says `has_key` and when it last changed, never the key.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{KeyPolicy, ProviderKind},
};

/// One provider as a user's key list shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserProviderKeyStatus {
    /// The provider's id.
    pub provider_id: Uuid,
    /// The provider's name (also accepted as `{provider}` in the key routes).
    pub provider_name: String,
    /// Its wire format.
    pub kind: ProviderKind,
    /// Whether the provider takes users' keys now (a key stored before it stopped is kept
    /// but unused).
    pub allow_user_api_key: bool,
    /// Whether a user without a key uses the provider's own.
    pub allow_central_api_key_fallback: bool,
    /// Whether the caller stored a key for it.
    pub has_key: bool,
    /// When the caller's key was stored or last replaced.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A user's sealed key, for the worker.
#[derive(Clone, sqlx::FromRow)]
pub struct SealedUserKey {
    /// nonce || ciphertext.
    pub api_key_ciphertext: Vec<u8>,
    /// When it was stored: a worker's client for it is rebuilt when this changes.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for SealedUserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedUserKey")
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// An enabled model of an enabled provider with what decides whether a user can use it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModelForUser {
    /// The model's id.
    pub id: Uuid,
    /// Name sent to the provider.
    pub name: String,
    /// Name shown to people.
    pub display_name: String,
    /// Context window in tokens.
    pub context_limit: Option<i32>,
    /// Whether it is the site's default model.
    pub is_default: bool,
    /// Its provider.
    pub provider_id: Uuid,
    /// Provider name.
    pub provider_name: String,
    /// Provider kind.
    pub provider_kind: ProviderKind,
    /// Key policy: central key enabled.
    pub central_api_key_enabled: bool,
    /// Key policy: user keys allowed.
    pub allow_user_api_key: bool,
    /// Key policy: fallback to the central key.
    pub allow_central_api_key_fallback: bool,
    /// Whether the provider has a key stored.
    pub has_central_key: bool,
    /// Whether the user stored a key for the provider.
    pub has_user_key: bool,
}

impl ModelForUser {
    /// The provider's key policy.
    pub fn key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            central_api_key_enabled: self.central_api_key_enabled,
            allow_user_api_key: self.allow_user_api_key,
            allow_central_api_key_fallback: self.allow_central_api_key_fallback,
        }
    }
}

impl Store {
    /// The providers a user may keep a key for (enabled ones that take user keys) and any
    /// other provider the user holds a key for, by name.
    pub async fn list_user_provider_keys(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<UserProviderKeyStatus>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT p.id AS provider_id, p.name AS provider_name, p.kind, p.allow_user_api_key,
                    p.allow_central_api_key_fallback, k.user_id IS NOT NULL AS has_key, k.updated_at
             FROM providers p
             LEFT JOIN user_provider_keys k ON k.provider_id = p.id AND k.user_id = $1
             WHERE (p.enabled AND p.allow_user_api_key) OR k.user_id IS NOT NULL
             ORDER BY p.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores (or replaces) a user's sealed key for a provider; when it was stored.
    pub async fn put_user_provider_key(
        &self,
        user_id: Uuid,
        provider_id: Uuid,
        sealed: &[u8],
    ) -> Result<DateTime<Utc>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO user_provider_keys (user_id, provider_id, api_key_ciphertext)
             VALUES ($1, $2, $3)
             ON CONFLICT (user_id, provider_id)
             DO UPDATE SET api_key_ciphertext = EXCLUDED.api_key_ciphertext, updated_at = now()
             RETURNING updated_at",
        )
        .bind(user_id)
        .bind(provider_id)
        .bind(sealed)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Forgets a user's key for a provider; whether there was one.
    pub async fn delete_user_provider_key(
        &self,
        user_id: Uuid,
        provider_id: Uuid,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM user_provider_keys WHERE user_id = $1 AND provider_id = $2")
                .bind(user_id)
                .bind(provider_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A user's sealed key for a provider, read for each step that may use it (never
    /// cached for another user).
    pub async fn user_provider_key(
        &self,
        user_id: Uuid,
        provider_id: Uuid,
    ) -> Result<Option<SealedUserKey>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT api_key_ciphertext, updated_at FROM user_provider_keys
             WHERE user_id = $1 AND provider_id = $2",
        )
        .bind(user_id)
        .bind(provider_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every enabled model of an enabled provider, with what decides whether `user_id`
    /// can use it (`GET /api/v1/models`), by provider and name.
    pub async fn models_for_user(&self, user_id: Uuid) -> Result<Vec<ModelForUser>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.name, m.display_name, m.context_limit, m.is_default,
                    p.id AS provider_id, p.name AS provider_name, p.kind AS provider_kind,
                    p.central_api_key_enabled, p.allow_user_api_key, p.allow_central_api_key_fallback,
                    p.api_key_ciphertext IS NOT NULL AS has_central_key,
                    EXISTS (SELECT 1 FROM user_provider_keys k
                            WHERE k.provider_id = p.id AND k.user_id = $1) AS has_user_key
             FROM models m JOIN providers p ON p.id = m.provider_id
             WHERE m.enabled AND p.enabled
             ORDER BY p.name, m.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
