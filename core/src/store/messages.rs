//! Reading a chat's persisted messages.

use uuid::Uuid;

use super::Store;
use crate::{StoreError, domain::Message};

impl Store {
    /// Messages of a chat in creation order, after `after_id` (keyset), at most `limit`.
    pub async fn list_messages(
        &self,
        chat_id: Uuid,
        after_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, chat_id, turn_id, role, step, content, model, usage, cost_micros, interrupted, created_at
             FROM chat_messages WHERE chat_id = $1 AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .bind(chat_id)
        .bind(after_id)
        .bind(limit)
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
