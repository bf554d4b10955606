//! Compaction summaries (issue #13 item 2; ARCHITECTURE.md §7): what a step sends is the
//! chat's latest summary followed by every message after the last one it stands for
//! ([`Store::prompt_history`]); a step that compacts writes its summary with
//! [`Store::save_summary`], once per step and cut, only while it holds the turn's lease.

use uuid::Uuid;

use super::{MESSAGE_COLUMNS, Store, pg_json, pg_text};
use crate::{
    StoreError,
    domain::{Message, MessagePart, Usage},
};

/// A summary a step wrote.
#[derive(Debug, Clone)]
pub struct NewSummary<'a> {
    /// The chat.
    pub chat_id: Uuid,
    /// The turn whose step compacted.
    pub turn_id: Uuid,
    /// The step.
    pub step: i32,
    /// The acquisition that holds the turn (nothing is written for another).
    pub lease_owner: &'a str,
    /// The summary text.
    pub text: &'a str,
    /// The last message it stands for.
    pub compacted_through: Uuid,
    /// The model that wrote it.
    pub model: &'a str,
    /// Its usage.
    pub usage: &'a Usage,
    /// Its cost in micro-dollars, when the model is priced.
    pub cost_micros: Option<i64>,
}

impl Store {
    /// The conversation as the next step sends it, oldest first: the chat's latest summary
    /// (if any) and then every message after the last one it stands for. Messages an edit
    /// or a regenerate replaced (summaries included) are left out.
    pub async fn prompt_history(&self, chat_id: Uuid) -> Result<Vec<Message>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH s AS (
                SELECT id, compacted_through FROM chat_messages
                WHERE chat_id = $1 AND kind = 'summary' AND superseded_at IS NULL
                ORDER BY id DESC LIMIT 1
             )
             SELECT {MESSAGE_COLUMNS} FROM chat_messages m
             WHERE m.chat_id = $1 AND m.superseded_at IS NULL
               AND (m.id = (SELECT id FROM s)
                    OR (m.kind = 'message'
                        AND m.id > coalesce((SELECT compacted_through FROM s), '00000000-0000-0000-0000-000000000000')))
             ORDER BY m.kind = 'summary' DESC, m.id"
        )))
        .bind(chat_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Writes the summary of a step that compacted, if `lease_owner` still holds the turn
    /// and the step has none yet. `None`: the lease was lost, or the step's summary exists
    /// already (a run of the step before a crash wrote it): nothing was written.
    pub async fn save_summary(&self, new: &NewSummary<'_>) -> Result<Option<Message>, StoreError> {
        let content = [MessagePart::Text {
            text: new.text.to_owned(),
        }];
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO chat_messages (id, chat_id, turn_id, role, step, content, model, usage,
                                        cost_micros, kind, compacted_through)
             SELECT $1, $2, $3, 'assistant', $4, $5, $6, $7, $8, 'summary', $9
             WHERE EXISTS (SELECT 1 FROM chat_turns
                           WHERE id = $3 AND status = 'running' AND lease_owner = $10)
             ON CONFLICT (turn_id, step, compacted_through) WHERE kind = 'summary' DO NOTHING
             RETURNING {MESSAGE_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(new.chat_id)
        .bind(new.turn_id)
        .bind(new.step)
        .bind(pg_json(&content))
        .bind(pg_text(new.model))
        .bind(sqlx::types::Json(new.usage))
        .bind(new.cost_micros)
        .bind(new.compacted_through)
        .bind(new.lease_owner)
        .fetch_optional(&self.pool)
        .await?)
    }
}
