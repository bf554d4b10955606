//! The admin usage report (issue #15, item 4): what assistant messages cost over a range
//! of time, rolled up by user, by model and by chat. Costs are those of
//! [`super::spend_limits`]: answers and compaction summaries, superseded ones included, of
//! chats that still exist (deleting a chat deletes its messages and so its costs).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// One user's spend in the range.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserUsage {
    /// The chats' owner.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Summed cost, micro-dollars.
    pub cost_micros: i64,
    /// Assistant messages counted.
    pub messages: i64,
}

/// One model's spend in the range.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelUsage {
    /// The model name the provider reported (`null` when none was stored).
    pub model: Option<String>,
    /// Summed cost, micro-dollars.
    pub cost_micros: i64,
    /// Assistant messages counted.
    pub messages: i64,
}

/// One chat's spend in the range.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatUsage {
    /// The chat.
    pub chat_id: Uuid,
    /// Its owner.
    pub owner_id: Uuid,
    /// Its title.
    pub title: String,
    /// Summed cost, micro-dollars.
    pub cost_micros: i64,
    /// Assistant messages counted.
    pub messages: i64,
}

/// Costs from `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    /// Summed cost of every counted message, micro-dollars.
    pub total_micros: i64,
    /// Per user, most expensive first.
    pub by_user: Vec<UserUsage>,
    /// Per model, most expensive first.
    pub by_model: Vec<ModelUsage>,
    /// Per chat, most expensive first, at most the `chat_limit` asked for.
    pub by_chat: Vec<ChatUsage>,
}

impl Store {
    /// The usage report over `[from, to)`, with at most `chat_limit` chats; with
    /// `organization`, of that organization's chats only (what its admins read).
    pub async fn usage_report(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        chat_limit: i64,
        organization: Option<Uuid>,
    ) -> Result<UsageReport, StoreError> {
        let by_user: Vec<UserUsage> = sqlx::query_as(
            "SELECT c.owner_id AS user_id, u.email, sum(m.cost_micros)::bigint AS cost_micros,
                    count(*) AS messages
             FROM chat_messages m JOIN chats c ON c.id = m.chat_id JOIN users u ON u.id = c.owner_id
             WHERE m.role = 'assistant' AND m.cost_micros IS NOT NULL
               AND m.created_at >= $1 AND m.created_at < $2
               AND ($3::uuid IS NULL OR c.organization_id = $3)
             GROUP BY c.owner_id, u.email ORDER BY cost_micros DESC, c.owner_id",
        )
        .bind(from)
        .bind(to)
        .bind(organization)
        .fetch_all(&self.pool)
        .await?;
        let by_model = sqlx::query_as(
            "SELECT m.model, sum(m.cost_micros)::bigint AS cost_micros, count(*) AS messages
             FROM chat_messages m JOIN chats c ON c.id = m.chat_id
             WHERE m.role = 'assistant' AND m.cost_micros IS NOT NULL
               AND m.created_at >= $1 AND m.created_at < $2
               AND ($3::uuid IS NULL OR c.organization_id = $3)
             GROUP BY m.model ORDER BY cost_micros DESC, m.model",
        )
        .bind(from)
        .bind(to)
        .bind(organization)
        .fetch_all(&self.pool)
        .await?;
        let by_chat = sqlx::query_as(
            "SELECT c.id AS chat_id, c.owner_id, c.title, sum(m.cost_micros)::bigint AS cost_micros,
                    count(*) AS messages
             FROM chat_messages m JOIN chats c ON c.id = m.chat_id
             WHERE m.role = 'assistant' AND m.cost_micros IS NOT NULL
               AND m.created_at >= $1 AND m.created_at < $2
               AND ($4::uuid IS NULL OR c.organization_id = $4)
             GROUP BY c.id ORDER BY cost_micros DESC, c.id LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(chat_limit)
        .bind(organization)
        .fetch_all(&self.pool)
        .await?;
        Ok(UsageReport {
            total_micros: by_user.iter().map(|u| u.cost_micros).sum(),
            by_user,
            by_model,
            by_chat,
        })
    }
}
