//! Reading a chat's persisted messages.

use uuid::Uuid;

use super::Store;
use crate::{StoreError, domain::Message};

impl Store {
    /// How many assistant messages exist, in every chat: the benchmark's measure of
    /// answered turns.
    pub async fn count_assistant_messages(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM chat_messages WHERE role = 'assistant'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Messages of a chat in creation order, after `after_id` (keyset), at most `limit`,
    /// and none that starts past `max_bytes` of content: the page is bounded in bytes in
    /// PostgreSQL, so the API never loads a thousand large messages to send a few. The
    /// first two messages always come, and so does the one that crosses the budget (so
    /// the caller sees there is more, even after a first message larger than the budget).
    pub async fn list_messages(
        &self,
        chat_id: Uuid,
        after_id: Option<Uuid>,
        limit: i64,
        max_bytes: i64,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, chat_id, turn_id, role, step, content, model, usage, cost_micros, interrupted, created_at
             FROM (
                SELECT m.*, octet_length(m.content::text) AS size,
                       sum(octet_length(m.content::text)) OVER (ORDER BY m.id) AS running,
                       row_number() OVER (ORDER BY m.id) AS n
                FROM chat_messages m WHERE m.chat_id = $1 AND ($2::uuid IS NULL OR m.id > $2)
                ORDER BY m.id LIMIT $3
             ) page
             WHERE running - size <= $4 OR n <= 2
             ORDER BY id",
        )
        .bind(chat_id)
        .bind(after_id)
        .bind(limit)
        .bind(max_bytes)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The whole conversation, oldest first, for building a prompt.
    pub async fn conversation(&self, chat_id: Uuid) -> Result<Vec<Message>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, chat_id, turn_id, role, step, content, model, usage, cost_micros, interrupted, created_at
             FROM chat_messages WHERE chat_id = $1 ORDER BY id",
        )
        .bind(chat_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
