//! Which model answers where (issue #13 item 4; README "Models by context"): site owners
//! set a model per context (`root` chats, `subagent_general`, `subagent_explore`, `title`,
//! `compaction`), a user may set one for their own root chats, a chat may name its model,
//! and a message may switch the chat's model from then on. The order is one SQL expression,
//! [`EFFECTIVE_MODEL`], read at every step's acquisition, so a change applies from the next
//! step of every chat it concerns:
//!
//! 1. the chat's `model_config_id` (set on create, by PATCH, or by the last message that
//!    switched it; a subagent gets its type's site model, else its parent's model, at spawn);
//! 2. for a root chat, its owner's `root` override;
//! 3. the site's model for the chat's context (`root`, or the subagent's type);
//! 4. the site's default model (`models.is_default`);
//! 5. the provider the worker was started with (flags), when no model is data at all.
//!
//! The first that is set wins, even when it is disabled: the step then fails with a
//! `ChatError` that names it, rather than silently answering with another model. Setting a
//! disabled model (or one whose provider is disabled) anywhere is refused up front.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// The effective model id of the chat `ch` (owner `u`, site config `s`), steps 1 to 3 of
/// the order above; NULL leaves it to the default model (step 4). The caller's query
/// names the chat `ch`, its owner `u` and `site_config` `s` (LEFT JOINed).
pub(super) const EFFECTIVE_MODEL: &str = "coalesce(
        ch.model_config_id,
        CASE WHEN ch.parent_chat_id IS NULL THEN u.root_model_id END,
        CASE ch.mode WHEN 'general' THEN s.general_subagent_model_id
                     WHEN 'explore' THEN s.explore_subagent_model_id
                     ELSE s.root_model_id END)";

/// Where a chat's effective model comes from, in the order of the module page.
pub(super) const MODEL_SOURCE: &str = "CASE
        WHEN ch.model_config_id IS NOT NULL THEN 'chat'
        WHEN ch.parent_chat_id IS NULL AND u.root_model_id IS NOT NULL THEN 'user'
        WHEN (CASE ch.mode WHEN 'general' THEN s.general_subagent_model_id
                           WHEN 'explore' THEN s.explore_subagent_model_id
                           ELSE s.root_model_id END) IS NOT NULL THEN 'site_context'
        WHEN EXISTS (SELECT 1 FROM models d WHERE d.is_default) THEN 'site_default'
        ELSE 'worker_flags' END";

/// The site's model per context; `None`: the next step of the order decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelContexts {
    /// Root chats (those a person starts) that name no model and whose owner set none.
    #[serde(default)]
    pub root: Option<Uuid>,
    /// `general` subagents (the same setting as `/admin/subagent-models`' `general`).
    #[serde(default)]
    pub subagent_general: Option<Uuid>,
    /// `explore` subagents (the same setting as `/admin/subagent-models`' `explore`).
    #[serde(default)]
    pub subagent_explore: Option<Uuid>,
    /// Generated chat titles; `None`: the chat's own model.
    #[serde(default)]
    pub title: Option<Uuid>,
    /// Compaction summaries; `None`: the chat's own model.
    #[serde(default)]
    pub compaction: Option<Uuid>,
}

impl ModelContexts {
    /// Each context's name (as the API spells it) and its model.
    pub fn named(&self) -> [(&'static str, Option<Uuid>); 5] {
        [
            ("root", self.root),
            ("subagent_general", self.subagent_general),
            ("subagent_explore", self.subagent_explore),
            ("title", self.title),
            ("compaction", self.compaction),
        ]
    }
}

/// A user's own model choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserModelOverrides {
    /// The model of the user's root chats that name none (before the site's `root`).
    #[serde(default)]
    pub root: Option<Uuid>,
}

/// Whether a model can be chosen.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModelAvailability {
    /// The model's name.
    pub name: String,
    /// The model is enabled.
    pub enabled: bool,
    /// Its provider is enabled.
    pub provider_enabled: bool,
}

/// A chat's effective model and which step of the order chose it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectiveModel {
    /// The model that answers the chat's next step (`None`: the worker's flag-configured
    /// provider).
    pub model_id: Option<Uuid>,
    /// `chat`, `user`, `site_context`, `site_default` or `worker_flags`.
    pub source: String,
}

impl Store {
    /// The site's model per context.
    pub async fn model_contexts(&self) -> Result<ModelContexts, StoreError> {
        Ok(sqlx::query_as(
            "SELECT root_model_id AS root, general_subagent_model_id AS subagent_general,
                    explore_subagent_model_id AS subagent_explore, title_model_id AS title,
                    compaction_model_id AS compaction
             FROM site_config WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Replaces every context's model; an id that names no model is
    /// [`StoreError::UnknownReference`] naming the context.
    pub async fn set_model_contexts(
        &self,
        contexts: &ModelContexts,
    ) -> Result<ModelContexts, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE site_config SET root_model_id = $1, general_subagent_model_id = $2,
                    explore_subagent_model_id = $3, title_model_id = $4, compaction_model_id = $5,
                    updated_at = now()
             WHERE id = 1
             RETURNING root_model_id AS root, general_subagent_model_id AS subagent_general,
                       explore_subagent_model_id AS subagent_explore, title_model_id AS title,
                       compaction_model_id AS compaction",
        )
        .bind(contexts.root)
        .bind(contexts.subagent_general)
        .bind(contexts.subagent_explore)
        .bind(contexts.title)
        .bind(contexts.compaction)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A user's own model choices.
    pub async fn user_model_overrides(
        &self,
        user_id: Uuid,
    ) -> Result<UserModelOverrides, StoreError> {
        sqlx::query_as("SELECT root_model_id AS root FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Replaces a user's own model choices.
    pub async fn set_user_model_overrides(
        &self,
        user_id: Uuid,
        overrides: &UserModelOverrides,
    ) -> Result<UserModelOverrides, StoreError> {
        sqlx::query_as(
            "UPDATE users SET root_model_id = $2 WHERE id = $1 RETURNING root_model_id AS root",
        )
        .bind(user_id)
        .bind(overrides.root)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Whether the model `id` exists and can answer (`None`: no such model).
    pub async fn model_availability(
        &self,
        id: Uuid,
    ) -> Result<Option<ModelAvailability>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.name, m.enabled, p.enabled AS provider_enabled
             FROM models m JOIN providers p ON p.id = m.provider_id WHERE m.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The model that answers the chat's next step, and why.
    pub async fn effective_model(&self, chat_id: Uuid) -> Result<EffectiveModel, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce({EFFECTIVE_MODEL}, (SELECT d.id FROM models d WHERE d.is_default)) AS model_id,
                    {MODEL_SOURCE} AS source
             FROM chats ch JOIN users u ON u.id = ch.owner_id
             LEFT JOIN site_config s ON s.id = 1
             WHERE ch.id = $1"
        )))
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// The model for a chat's `title` or `compaction` work: the site's model for that
    /// context, else the chat's effective model (`None`: the default or the flags).
    pub async fn chat_context_model(
        &self,
        chat_id: Uuid,
        context: WorkContext,
    ) -> Result<Option<Uuid>, StoreError> {
        let column = match context {
            WorkContext::Title => "s.title_model_id",
            WorkContext::Compaction => "s.compaction_model_id",
        };
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce({column}, {EFFECTIVE_MODEL})
             FROM chats ch JOIN users u ON u.id = ch.owner_id
             LEFT JOIN site_config s ON s.id = 1
             WHERE ch.id = $1"
        )))
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }
}

/// Work a chat needs besides its answers, each with a site model of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkContext {
    /// Generating the chat's title.
    Title,
    /// Summarizing the older part of its conversation.
    Compaction,
}
