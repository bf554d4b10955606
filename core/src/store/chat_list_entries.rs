//! What a chat list shows of a chat, read by id: the snapshot that `created` and `updated`
//! events of `GET /chats/events` carry (`core::events::chat_list`, ARCHITECTURE.md §8.2).
//!
//! The events are built from a read after the change committed, not from what the change
//! itself knew: a worker that moves a chat to `running` does not know its title or pin, and
//! a sidebar wants the whole entry so it can replace what it shows without a refetch. The
//! read is one primary-key lookup per batch of changed chats.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{ChatStatus, ClientType},
};

/// A chat as the list shows it: a root chat, or a subagent chat listed under its root.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatListEntry {
    /// The chat.
    pub id: Uuid,
    /// Whose list it is in (the stream's owner; not sent).
    #[serde(skip)]
    pub owner_id: Uuid,
    /// The parent, for a subagent chat; `null` for a root chat.
    pub parent_chat_id: Option<Uuid>,
    /// The root of the family, for a subagent chat (the list shows it among that root's
    /// `children`); `null` for a root chat.
    pub root_chat_id: Option<Uuid>,
    /// Title.
    pub title: String,
    /// Status.
    pub status: ChatStatus,
    /// Creator kind.
    pub client_type: ClientType,
    /// Position among the owner's pinned chats (1 first); `null`: not pinned.
    pub pin_order: Option<i32>,
    /// Key/value labels.
    #[sqlx(json)]
    pub labels: BTreeMap<String, String>,
    /// Whether the chat is archived (a subagent chat follows its root).
    pub archived: bool,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// A subagent chat's type (`general`, `explore`); `null` for a root chat.
    pub subagent_type: Option<String>,
    /// A subagent chat closed by `close_agent`; always false for a root chat.
    pub closed: bool,
    /// Newest message of the family (else creation).
    pub last_activity_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change: the list's order after the pin. A client that applies events keeps the
    /// entry with the later `updated_at` (events from different processes may interleave).
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// The list entries of the chats `ids` that still exist, in no particular order.
    ///
    /// One chat (the usual batch) is read with `id = $1`: PostgreSQL plans `id = ANY($1)`
    /// again on every call, because the generic plan it would cache assumes an array of
    /// ten, which is never cheaper than a custom plan for one; that planning cost more than
    /// the read itself (`bench/RESULTS.md`).
    pub async fn chat_list_entries(&self, ids: &[Uuid]) -> Result<Vec<ChatListEntry>, StoreError> {
        const COLUMNS: &str = "SELECT id, owner_id, parent_chat_id, root_chat_id, title, status,
                    client_type, pin_order, labels, archived, archived_at,
                    CASE WHEN parent_chat_id IS NOT NULL THEN coalesce(mode, 'general') END
                        AS subagent_type,
                    closed_at IS NOT NULL AS closed, last_activity_at, created_at, updated_at
             FROM chats";
        Ok(match ids {
            [one] => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1")))
                    .bind(one)
                    .fetch_all(&self.pool)
                    .await?
            }
            _ => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = ANY($1)")))
                    .bind(ids)
                    .fetch_all(&self.pool)
                    .await?
            }
        })
    }
}
