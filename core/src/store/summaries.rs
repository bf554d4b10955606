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

/// The rows of the prompt history of the chat `chat` (an SQL expression: a parameter, or a
/// column of the statement around it), as [`MESSAGE_COLUMNS`], unordered: order them by
/// [`HISTORY_ORDER`]. The one definition of what a step sends, read alone
/// ([`Store::prompt_history`]) or with the turn ([`history_column`]).
fn history_rows(chat: &str) -> String {
    let latest_summary = |column: &str| {
        format!(
            "SELECT {column} FROM chat_messages
             WHERE chat_id = {chat} AND kind = 'summary' AND superseded_at IS NULL
             ORDER BY id DESC LIMIT 1"
        )
    };
    let (id, through) = (latest_summary("id"), latest_summary("compacted_through"));
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages m
         WHERE m.chat_id = {chat} AND m.superseded_at IS NULL
           AND (m.id = ({id})
                OR (m.kind = 'message'
                    AND m.id > coalesce(({through}), '00000000-0000-0000-0000-000000000000')))"
    )
}

/// The prompt history's order: the summary first, then the messages, oldest first.
const HISTORY_ORDER: &str = "kind = 'summary' DESC, id";

/// A column of the prompt history of the chat `chat` (an SQL expression) as the text of
/// one JSON array of messages, in order: the acquisition reads it with the turn, so a step
/// costs no statement of its own for it.
pub(super) fn history_column(chat: &str) -> String {
    format!(
        "(SELECT coalesce(json_agg(h ORDER BY {HISTORY_ORDER}), '[]'::json)::text FROM ({}) h)",
        history_rows(chat)
    )
}

impl Store {
    /// The conversation as the next step sends it, oldest first: the chat's latest summary
    /// (if any) and then every message after the last one it stands for. Messages an edit
    /// or a regenerate replaced (summaries included) are left out. A step's first read
    /// comes with its turn ([`AcquiredTurn::history`](crate::domain::AcquiredTurn)), in
    /// the acquisition's statement; this one is for the reads after a compaction.
    pub async fn prompt_history(&self, chat_id: Uuid) -> Result<Vec<Message>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{} ORDER BY {HISTORY_ORDER}",
            history_rows("$1")
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
