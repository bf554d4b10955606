//! Instructions at three levels (issue #12, item 2; ARCHITECTURE.md §3): the site's
//! system prompt (`site_config.system_prompt`), each user's personal instructions
//! (`users.instructions`) and each chat's (`chats.instructions`, set on create), plus the
//! one read the worker makes to compose a step's system message from them and the owner's
//! skills.
//!
//! '' (site, user) and NULL (chat) mean "none". Sizes are the API's to bound.

use serde::Deserialize;
use uuid::Uuid;

use super::{Store, pg_text};
use crate::StoreError;

/// Everything a chat's system message is composed from, read in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstructionSources {
    /// The site's system prompt ('' when none).
    pub site: String,
    /// The chat owner's personal instructions ('' when none).
    pub user: String,
    /// The chat's own instructions.
    pub chat: Option<String>,
    /// The owner's skills, by name.
    pub skills: Vec<SkillListing>,
}

/// A skill as the system prompt lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SkillListing {
    /// Kebab-case name.
    pub name: String,
    /// One line ('' when none).
    pub description: String,
}

#[derive(sqlx::FromRow)]
struct SourcesRow {
    site: String,
    user_instructions: String,
    chat_instructions: Option<String>,
    skills: sqlx::types::Json<Vec<SkillListing>>,
}

impl Store {
    /// The site's system prompt ('' when none).
    pub async fn site_system_prompt(&self) -> Result<String, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT system_prompt FROM site_config WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Replaces the site's system prompt; returns it as stored.
    pub async fn set_site_system_prompt(&self, prompt: &str) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE site_config SET system_prompt = $1, updated_at = now() WHERE id = 1
             RETURNING system_prompt",
        )
        .bind(pg_text(prompt))
        .fetch_one(&self.pool)
        .await?)
    }

    /// `user`'s personal instructions ('' when none).
    pub async fn user_instructions(&self, user: Uuid) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT instructions FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Replaces `user`'s personal instructions; returns them as stored.
    pub async fn set_user_instructions(
        &self,
        user: Uuid,
        instructions: &str,
    ) -> Result<String, StoreError> {
        sqlx::query_scalar(
            "UPDATE users SET instructions = $2 WHERE id = $1 RETURNING instructions",
        )
        .bind(user)
        .bind(pg_text(instructions))
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// What `chat_id`'s system message is composed from: the site prompt, the owner's
    /// instructions, the chat's, and the owner's skills (name and description, by name).
    pub async fn instruction_sources(
        &self,
        chat_id: Uuid,
    ) -> Result<InstructionSources, StoreError> {
        let row: SourcesRow = sqlx::query_as(
            "SELECT (SELECT system_prompt FROM site_config WHERE id = 1) AS site,
                    u.instructions AS user_instructions,
                    c.instructions AS chat_instructions,
                    coalesce((SELECT jsonb_agg(jsonb_build_object('name', s.name, 'description', s.description)
                                               ORDER BY s.name)
                              FROM user_skills s WHERE s.owner_id = c.owner_id), '[]') AS skills
             FROM chats c JOIN users u ON u.id = c.owner_id
             WHERE c.id = $1",
        )
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(InstructionSources {
            site: row.site,
            user: row.user_instructions,
            chat: row.chat_instructions,
            skills: row.skills.0,
        })
    }
}
