//! Reading a chat's persisted messages. Messages replaced by an edit or a regenerate
//! (`superseded_at`, see `store::edits`) stay in the table but leave the conversation.

use uuid::Uuid;

use super::{MESSAGE_COLUMNS, Store};
use crate::{StoreError, domain::Message};

impl Store {
    /// How many assistant messages exist, in every chat: the benchmark's measure of
    /// answered turns.
    pub async fn count_assistant_messages(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM chat_messages WHERE role = 'assistant' AND kind = 'message'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Messages of a chat in creation order, after `after_id` (keyset), at most `limit`,
    /// and none that starts past `max_bytes` of content: the page is bounded in bytes in
    /// PostgreSQL, so the API never loads a thousand large messages to send a few. The
    /// first two messages always come, and so does the one that crosses the budget (so
    /// the caller sees there is more, even after a first message larger than the budget).
    /// Messages an edit or a regenerate replaced are left out unless `include_superseded`.
    pub async fn list_messages(
        &self,
        chat_id: Uuid,
        after_id: Option<Uuid>,
        limit: i64,
        max_bytes: i64,
        include_superseded: bool,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS}
             FROM (
                SELECT m.*, octet_length(m.content::text) AS size,
                       sum(octet_length(m.content::text)) OVER (ORDER BY m.id) AS running,
                       row_number() OVER (ORDER BY m.id) AS n
                FROM chat_messages m WHERE m.chat_id = $1 AND ($2::uuid IS NULL OR m.id > $2)
                  AND ($5 OR m.superseded_at IS NULL)
                ORDER BY m.id LIMIT $3
             ) page
             WHERE running - size <= $4 OR n <= 2
             ORDER BY id"
        )))
        .bind(chat_id)
        .bind(after_id)
        .bind(limit)
        .bind(max_bytes)
        .bind(include_superseded)
        .fetch_all(&self.pool)
        .await?)
    }
}
