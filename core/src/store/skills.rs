//! A user's personal skills (issue #12, item 7; ARCHITECTURE.md §3): named markdown
//! documents, listed in the system prompt of the owner's chats by name and description.
//!
//! Every query is scoped by owner, so a skill is addressed by its name (unique per owner)
//! and another user's skill is simply not found. The per-user cap is checked while the
//! owner's user row is locked, so two creations racing for the last free place cannot both
//! win.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Store, pg_text};
use crate::{StoreError, skill_md::SkillDraft};

/// A skill with its body.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Skill {
    /// uuid v7.
    pub id: Uuid,
    /// Kebab-case name, unique per owner; the skill's address in the API.
    pub name: String,
    /// One line ('' when none); shown to the model in the system prompt.
    pub description: String,
    /// The markdown body.
    pub body: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A skill without its body, for lists.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkillSummary {
    /// uuid v7.
    pub id: Uuid,
    /// Kebab-case name, unique per owner.
    pub name: String,
    /// One line ('' when none).
    pub description: String,
    /// Size of the body in bytes.
    pub body_bytes: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What a creation or an update did.
#[derive(Debug, Clone)]
pub enum SkillWrite {
    /// Stored.
    Saved(Skill),
    /// The owner already has a skill of that name.
    NameTaken,
    /// The owner already has the most skills allowed.
    LimitReached,
}

/// Partial update; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct SkillChanges {
    /// New name (checked by `skill_md::check_name`).
    pub name: Option<String>,
    /// New description (normalized by `skill_md::normalize_description`).
    pub description: Option<String>,
    /// New body (checked by `skill_md::check_body`).
    pub body: Option<String>,
}

const COLUMNS: &str = "id, name, description, body, created_at, updated_at";

impl Store {
    /// `owner`'s skills without their bodies, by name.
    pub async fn list_skills(&self, owner: Uuid) -> Result<Vec<SkillSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, description, octet_length(body) AS body_bytes, created_at, updated_at
             FROM user_skills WHERE owner_id = $1 ORDER BY name",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One of `owner`'s skills by name.
    pub async fn get_skill(&self, owner: Uuid, name: &str) -> Result<Skill, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM user_skills WHERE owner_id = $1 AND name = $2"
        )))
        .bind(owner)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Adds a skill unless `owner` has one of that name or already has `max` skills.
    pub async fn create_skill(
        &self,
        owner: Uuid,
        skill: &SkillDraft,
        max: i64,
    ) -> Result<SkillWrite, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The count below is a new statement, so it sees every creation that committed
        // while this one waited for the lock (READ COMMITTED takes a snapshot per statement).
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let saved: Result<Option<Skill>, sqlx::Error> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO user_skills (id, owner_id, name, description, body)
             SELECT $1, $2, $3, $4, $5
             WHERE (SELECT count(*) FROM user_skills WHERE owner_id = $2) < $6
             RETURNING {COLUMNS}"
            )))
            .bind(Uuid::now_v7())
            .bind(owner)
            .bind(&skill.name)
            .bind(pg_text(&skill.description))
            .bind(pg_text(&skill.body))
            .bind(max)
            .fetch_optional(&mut *tx)
            .await;
        // A failed statement aborted the transaction: dropping `tx` rolls it back.
        let outcome = match saved {
            Ok(Some(skill)) => SkillWrite::Saved(skill),
            Ok(None) => SkillWrite::LimitReached,
            Err(e) => {
                return match StoreError::from(e) {
                    StoreError::Duplicate { field: "name" } => Ok(SkillWrite::NameTaken),
                    other => Err(other),
                };
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Changes one of `owner`'s skills (found by its current name).
    pub async fn update_skill(
        &self,
        owner: Uuid,
        name: &str,
        changes: &SkillChanges,
    ) -> Result<SkillWrite, StoreError> {
        let updated: Result<Option<Skill>, sqlx::Error> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE user_skills SET
                    name = coalesce($3, name),
                    description = coalesce($4, description),
                    body = coalesce($5, body),
                    updated_at = now()
                 WHERE owner_id = $1 AND name = $2
                 RETURNING {COLUMNS}"
            )))
            .bind(owner)
            .bind(name)
            .bind(changes.name.as_deref())
            .bind(changes.description.as_deref().map(pg_text))
            .bind(changes.body.as_deref().map(pg_text))
            .fetch_optional(&self.pool)
            .await;
        match updated {
            Ok(Some(skill)) => Ok(SkillWrite::Saved(skill)),
            Ok(None) => Err(StoreError::NotFound),
            Err(e) => match StoreError::from(e) {
                StoreError::Duplicate { field: "name" } => Ok(SkillWrite::NameTaken),
                other => Err(other),
            },
        }
    }

    /// One skill of `chat_id`'s owner by name, for the `read_skill` tool (the call knows
    /// its chat, not its owner). `None`: the owner has no skill of that name.
    pub async fn chat_owner_skill(
        &self,
        chat_id: Uuid,
        name: &str,
    ) -> Result<Option<Skill>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM user_skills
             WHERE owner_id = (SELECT owner_id FROM chats WHERE id = $1) AND name = $2"
        )))
        .bind(chat_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The names of `chat_id`'s owner's skills, by name, at most `limit` of them, and how
    /// many there are in all (what a `read_skill` error lists).
    pub async fn chat_owner_skill_names(
        &self,
        chat_id: Uuid,
        limit: i64,
    ) -> Result<(Vec<String>, i64), StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, count(*) OVER () FROM user_skills
             WHERE owner_id = (SELECT owner_id FROM chats WHERE id = $1)
             ORDER BY name LIMIT $2",
        )
        .bind(chat_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let total = rows.first().map_or(0, |(_, total)| *total);
        Ok((rows.into_iter().map(|(name, _)| name).collect(), total))
    }

    /// Deletes one of `owner`'s skills; whether there was one.
    pub async fn delete_skill(&self, owner: Uuid, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM user_skills WHERE owner_id = $1 AND name = $2")
            .bind(owner)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
