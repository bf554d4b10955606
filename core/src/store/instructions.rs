//! Instructions at three levels (issue #12, item 2; ARCHITECTURE.md §3): the site's
//! system prompt (`site_config.system_prompt`), each user's personal instructions
//! (`users.instructions`) and each chat's (`chats.instructions`, set on create), plus the
//! columns that carry them, with the owner's skills, in the statement that acquires a
//! turn (`store::turns`), so a step's system message costs no read of its own.
//!
//! '' (site, user) and NULL (chat) mean "none". Sizes are the API's to bound.

use uuid::Uuid;

use super::{Store, pg_text};
use crate::StoreError;

pub use crate::domain::{InstructionSources, SkillListing};

/// The columns of [`InstructionSources`] for the chat aliased `chat` and its owner aliased
/// `user` in the statement that selects them.
pub(super) fn sources_columns(chat: &str, user: &str) -> String {
    format!(
        "(SELECT system_prompt FROM site_config WHERE id = 1) AS instructions_site,
         {user}.instructions AS instructions_user,
         {chat}.instructions AS instructions_chat,
         coalesce((SELECT jsonb_agg(jsonb_build_object('name', k.name, 'description', k.description)
                                    ORDER BY k.name)
                   FROM user_skills k WHERE k.owner_id = {chat}.owner_id), '[]') AS instructions_skills"
    )
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
}
