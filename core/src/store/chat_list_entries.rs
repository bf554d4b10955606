//! What a chat list shows of a chat, read by id: the snapshot that `created` and `updated`
//! events of `GET /chats/events` carry (`core::events::chat_list`, ARCHITECTURE.md §8.2).
//!
//! A sidebar wants the whole entry so it can replace what it shows without a refetch, and a
//! worker that moves a chat to `running` does not know its title or pin. So the entry is
//! written in SQL once ([`entry_json`]): the statements a turn runs return it from the row
//! they changed (the acquisition, a finish's promotion, `spawn_subagent`'s insert, and
//! `POST /chats`'s insert, whose returned chat holds it all), and their announcement needs
//! no read; other changes are
//! announced after a read by id ([`Store::chat_list_entries`], one primary-key lookup per
//! batch of changed chats) of the same expression.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{Chat, ChatStatus, ClientType},
};

/// A chat as the list shows it: a root chat, or a subagent chat listed under its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatListEntry {
    /// The chat.
    pub id: Uuid,
    /// Whose list it is in (the stream's owner; not sent).
    #[serde(skip_serializing)]
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

impl ChatListEntry {
    /// The entry of a root chat from its row, as `POST /chats` returns it: a root chat is
    /// never closed and has no subagent type. `None` for a subagent chat, whose type a
    /// [`Chat`] does not hold (`spawn_subagent`'s statement returns its entry).
    pub fn of_root_chat(chat: &Chat) -> Option<Self> {
        chat.parent_chat_id.is_none().then(|| Self {
            id: chat.id,
            owner_id: chat.owner_id,
            parent_chat_id: None,
            root_chat_id: chat.root_chat_id,
            title: chat.title.clone(),
            status: chat.status,
            client_type: chat.client_type,
            pin_order: chat.pin_order,
            labels: chat.labels.clone(),
            archived: chat.archived,
            archived_at: chat.archived_at,
            subagent_type: None,
            closed: false,
            last_activity_at: chat.last_activity_at,
            created_at: chat.created_at,
            updated_at: chat.updated_at,
        })
    }
}

/// The list entry of the `chats` row `row` (the table's name or an alias) as a `jsonb`
/// expression that decodes to a [`ChatListEntry`]: in a `RETURNING` it is the row as the
/// statement left it.
pub(crate) fn entry_json(row: &str) -> String {
    format!(
        "jsonb_build_object(
            'id', {row}.id, 'owner_id', {row}.owner_id, 'parent_chat_id', {row}.parent_chat_id,
            'root_chat_id', {row}.root_chat_id, 'title', {row}.title, 'status', {row}.status,
            'client_type', {row}.client_type, 'pin_order', {row}.pin_order, 'labels', {row}.labels,
            'archived', {row}.archived, 'archived_at', {row}.archived_at,
            'subagent_type', CASE WHEN {row}.parent_chat_id IS NOT NULL
                                  THEN coalesce({row}.mode, 'general') END,
            'closed', {row}.closed_at IS NOT NULL, 'last_activity_at', {row}.last_activity_at,
            'created_at', {row}.created_at, 'updated_at', {row}.updated_at)"
    )
}

/// A row's optional `column` written by [`entry_json`]. An entry this build cannot read
/// (a newer version wrote the row) is left out (and logged): the change is then announced
/// after a read, which decodes the same expression.
pub(crate) fn entry_of(
    row: &sqlx::postgres::PgRow,
    column: &str,
) -> Result<Option<Box<ChatListEntry>>, StoreError> {
    use sqlx::Row;
    let Some(json) = row.try_get::<Option<serde_json::Value>, _>(column)? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(json)
        .inspect_err(|e| tracing::warn!(error = %e, "a chat list entry cannot be read"))
        .ok()
        .map(Box::new))
}

impl Store {
    /// The list entries of the chats `ids` that still exist, in no particular order.
    ///
    /// One chat (the usual batch) is read with `id = $1`: PostgreSQL plans `id = ANY($1)`
    /// again on every call, because the generic plan it would cache assumes an array of
    /// ten, which is never cheaper than a custom plan for one; that planning cost more than
    /// the read itself (`bench/RESULTS.md`).
    pub async fn chat_list_entries(&self, ids: &[Uuid]) -> Result<Vec<ChatListEntry>, StoreError> {
        let select = format!("SELECT {} FROM chats", entry_json("chats"));
        let entries: Vec<Json<ChatListEntry>> = match ids {
            [one] => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{select} WHERE id = $1")))
                    .bind(one)
                    .fetch_all(&self.pool)
                    .await?
            }
            _ => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{select} WHERE id = ANY($1)")))
                    .bind(ids)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(entries.into_iter().map(|Json(entry)| entry).collect())
    }
}
