//! Subagent chats (issue #12 item 6; ARCHITECTURE.md §4.3, §7): a chat's model spawns a
//! child chat with `spawn_subagent`, waits for it with `wait_agent`, talks to it with
//! `message_agent` and ends it with `close_agent`. The worker's tools
//! (`worker/src/tools/subagents/`) call the functions here; this module holds their SQL.
//!
//! A child is a chat like any other (its own turns, queue, events) with `parent_chat_id`
//! and `root_chat_id` set and its subagent type in `mode`. Only a root chat spawns (one
//! level of children). Locks: spawning takes the parent's (the root's) chat lock before it
//! inserts the child, because a child's insert touches the root's `last_activity_at`
//! (ARCHITECTURE.md §5).
//!
//! # Waiting without holding a worker
//!
//! `wait_agent` parks its call: [`Store::wait_for_child`] moves it `running` -> `waiting`
//! with `waits_for_chat_id` (and its timeout in `deadline_at`) unless the child is already
//! idle. It reads the child under a share lock of the child's row, which every finish of the
//! child's turn holds for update while it decides the chat's status, so the two serialize:
//! either the wait sees the child idle and completes now, or the child's finish sees the
//! parked call (read by the finish's statement, `turns::promote_queued_message`, whose
//! caller takes the row lock in an earlier statement so that read's snapshot follows the
//! parking; returned in `TurnOutcome::waiting_calls`) and its outcome re-sends the call's
//! job. That
//! job may acquire a `waiting` call only once its child is idle or its deadline passed
//! (`Store::acquire_tool_call`), so duplicated and replayed nudges run it once; recovery
//! re-sends calls whose nudge was lost and calls past their deadline.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use sqlx::FromRow;

use super::{
    MESSAGE_COLUMNS, Store,
    chat_list_entries::{ChatListEntry, entry_json, entry_of},
    model_contexts::EFFECTIVE_MODEL,
    pg_json, pg_text,
};
use crate::{
    ChatError, StoreError,
    domain::{ChatStatus, Message, MessagePart},
};

/// The model each subagent type runs on, chosen by site owners; `None` runs a child on its
/// parent's model (a disabled choice does too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubagentModels {
    /// The model of `general` subagents.
    pub general: Option<Uuid>,
    /// The model of `explore` subagents.
    pub explore: Option<Uuid>,
}

/// A subagent chat as its parent (and the parent's owner) sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildChat {
    /// The child chat's id (a chat of its own: messages, stream, interrupt).
    pub id: Uuid,
    /// The chat that spawned it.
    pub parent_chat_id: Uuid,
    /// Its owner (the parent's).
    #[serde(skip)]
    pub owner_id: Uuid,
    /// Title (given by the model, else the prompt's first words).
    pub title: String,
    /// `general` or `explore` (`chats.mode`).
    pub subagent_type: String,
    /// Where the child stands.
    pub status: ChatStatus,
    /// Closed by `close_agent`: it takes no more messages from its parent.
    pub closed: bool,
    /// Why its last turn failed, when `status` is `error`.
    #[sqlx(json(nullable))]
    pub last_error: Option<ChatError>,
    /// When it was spawned.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

pub(super) const CHILD_COLUMNS: &str = "id, parent_chat_id, owner_id, title, coalesce(mode, 'general') AS subagent_type, \
     status, closed_at IS NOT NULL AS closed, last_error, created_at, updated_at";

/// What spawning a child needs.
#[derive(Debug, Clone)]
pub struct NewSubagent<'a> {
    /// The chat whose model spawns it.
    pub parent_chat_id: Uuid,
    /// The `spawn_subagent` call: a re-run of it finds the child it created.
    pub call_id: Uuid,
    /// `general` or `explore` (validated by the caller).
    pub subagent_type: &'a str,
    /// The child's first user message (bounded by the caller).
    pub prompt: &'a str,
    /// Title; empty derives one from the prompt.
    pub title: &'a str,
    /// Most children of one parent not closed at once.
    pub max_live: i64,
    /// Most children one parent ever spawns.
    pub max_total: i64,
}

/// What a spawn did.
#[derive(Debug, Clone)]
pub enum Spawned {
    /// A new child with its first message and queued turn (announce `TurnStarted`).
    Created {
        /// The child.
        child: ChildChat,
        /// Its first user message (boxed: the variant would dwarf the others).
        message: Box<Message>,
        /// Its queued turn.
        turn_id: Uuid,
        /// Its chat list entry as created (`None`: announced after a read).
        list_entry: Option<Box<ChatListEntry>>,
    },
    /// This call spawned the child already (the call ran again after a lost worker): the
    /// child's turn was announced then, and recovery re-sends it if that was lost.
    Existing(ChildChat),
    /// Not spawned; why, for the model.
    Refused(String),
}

/// Where a `wait_agent` call stands after [`Store::wait_for_child`].
#[derive(Debug, Clone)]
pub enum WaitState {
    /// The child is idle (`waiting` or `error`): the call completes with its answer.
    Finished(ChildChat),
    /// The call's deadline passed before the child finished.
    TimedOut(ChildChat),
    /// The call is parked (`waiting`); the child's finish or recovery re-sends it.
    Parked,
    /// The call is no longer this acquisition's (lease lost): write nothing.
    LeaseLost,
    /// No child of this chat has that id.
    NotAChild,
}

impl Store {
    /// The models site owners chose per subagent type (`None`: the parent's model).
    pub async fn subagent_models(&self) -> Result<SubagentModels, StoreError> {
        Ok(sqlx::query_as(
            "SELECT general_subagent_model_id AS general, explore_subagent_model_id AS explore
             FROM site_config WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Replaces both choices; an id that names no model is
    /// [`StoreError::UnknownReference`] naming `general` or `explore`.
    pub async fn set_subagent_models(
        &self,
        models: &SubagentModels,
    ) -> Result<SubagentModels, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE site_config SET general_subagent_model_id = $1, explore_subagent_model_id = $2,
                    updated_at = now()
             WHERE id = 1
             RETURNING general_subagent_model_id AS general, explore_subagent_model_id AS explore",
        )
        .bind(models.general)
        .bind(models.explore)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Creates the child chat of a `spawn_subagent` call with its first user message and
    /// queued turn, in one transaction that holds the parent's chat lock; owner,
    /// organization, client type and model come from the parent. Idempotent per call.
    pub async fn spawn_subagent(&self, new: &NewSubagent<'_>) -> Result<Spawned, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The parent first: the child's insert touches the root's activity (ARCHITECTURE.md §5).
        super::lock_chat(&mut tx, new.parent_chat_id, None).await?;
        let existing: Option<ChildChat> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHILD_COLUMNS} FROM chats WHERE spawn_call_id = $1"
        )))
        .bind(new.call_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(child) = existing {
            return Ok(Spawned::Existing(child));
        }
        let (is_child, live, total): (bool, i64, i64) = sqlx::query_as(
            "SELECT p.parent_chat_id IS NOT NULL,
                    (SELECT count(*) FROM chats c WHERE c.parent_chat_id = p.id AND c.closed_at IS NULL),
                    (SELECT count(*) FROM chats c WHERE c.parent_chat_id = p.id)
             FROM chats p WHERE p.id = $1",
        )
        .bind(new.parent_chat_id)
        .fetch_one(&mut *tx)
        .await?;
        if is_child {
            return Ok(Spawned::Refused(
                "a subagent cannot spawn subagents of its own; do the work yourself".into(),
            ));
        }
        if live >= new.max_live {
            return Ok(Spawned::Refused(format!(
                "this chat already has {live} open subagents (at most {}); wait for one and \
                 close it with `close_agent` before spawning another",
                new.max_live
            )));
        }
        if total >= new.max_total {
            return Ok(Spawned::Refused(format!(
                "this chat has spawned {total} subagents, the most one chat may"
            )));
        }
        let content = [MessagePart::Text {
            text: new.prompt.to_owned(),
        }];
        let title = if new.title.trim().is_empty() {
            super::chats::derive_title(&content)
        } else {
            new.title
                .trim()
                .chars()
                .filter(|&c| !crate::text::is_forbidden(c))
                .take(200)
                .collect()
        };
        let child_id = Uuid::now_v7();
        let turn_id = Uuid::now_v7();
        // The child's row, and its list entry as inserted (nothing later in this
        // transaction changes the row).
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH c AS (
                INSERT INTO chats (id, owner_id, organization_id, parent_chat_id, root_chat_id, title,
                                   status, mode, client_type, model_config_id, spawn_call_id,
                                   mcp_server_ids)
                -- The site's model for this subagent type, while it is enabled; else the
                -- model the parent runs on (its effective model, store::model_contexts),
                -- else the default model, named, so a disabled site model for the type is
                -- never reached through the order.
                SELECT $1, p.owner_id, p.organization_id, p.id, coalesce(p.root_chat_id, p.id), $3,
                       'pending', $4, p.client_type,
                       coalesce(
                           (SELECT m.id FROM site_config s JOIN models m
                              ON m.id = CASE $4 WHEN 'explore' THEN s.explore_subagent_model_id
                                                ELSE s.general_subagent_model_id END
                            WHERE s.id = 1 AND m.enabled),
                           (SELECT {EFFECTIVE_MODEL} FROM chats ch JOIN users u ON u.id = ch.owner_id
                            LEFT JOIN site_config s ON s.id = 1 WHERE ch.id = p.id),
                           (SELECT d.id FROM models d WHERE d.is_default AND d.enabled LIMIT 1)),
                       $5, p.mcp_server_ids
                FROM chats p WHERE p.id = $2
                RETURNING *
             ), t AS (
                INSERT INTO chat_turns (id, chat_id, seq, status) SELECT $6, id, 1, 'queued' FROM c
             )
             SELECT {CHILD_COLUMNS}, {ENTRY} AS list_entry FROM c",
            ENTRY = entry_json("c"),
        )))
        .bind(child_id)
        .bind(new.parent_chat_id)
        .bind(pg_text(&title))
        .bind(new.subagent_type)
        .bind(new.call_id)
        .bind(turn_id)
        .fetch_one(&mut *tx)
        .await?;
        let child = ChildChat::from_row(&row)?;
        let list_entry = entry_of(&row, "list_entry")?;
        let message: Message = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO chat_messages (id, chat_id, turn_id, role, content) VALUES ($1, $2, $3, 'user', $4)
             RETURNING {MESSAGE_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(child_id)
        .bind(turn_id)
        .bind(pg_json(&content))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Spawned::Created {
            child,
            message: Box::new(message),
            turn_id,
            list_entry,
        })
    }

    /// The child `child_id` of `parent_chat_id`, if it is one.
    pub async fn child_chat(
        &self,
        parent_chat_id: Uuid,
        child_id: Uuid,
    ) -> Result<Option<ChildChat>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHILD_COLUMNS} FROM chats WHERE id = $1 AND parent_chat_id = $2"
        )))
        .bind(child_id)
        .bind(parent_chat_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `owner`'s chat's children, oldest first (at most the spawn cap per chat);
    /// [`StoreError::NotFound`] when the chat is not `owner`'s.
    pub async fn list_child_chats(
        &self,
        parent_chat_id: Uuid,
        owner: Uuid,
    ) -> Result<Vec<ChildChat>, StoreError> {
        let children: Vec<ChildChat> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHILD_COLUMNS} FROM chats
             WHERE parent_chat_id = $1 AND owner_id = $2 ORDER BY id LIMIT 1000"
        )))
        .bind(parent_chat_id)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        if children.is_empty() {
            // Tell "no children" from "not your chat".
            self.get_chat(parent_chat_id, owner).await?;
        }
        Ok(children)
    }

    /// The text of the child's last assistant message still in its conversation (not
    /// superseded by an edit or a regenerate), at most `max_bytes` (cut on a
    /// character boundary), and whether it was cut. `None`: it has answered nothing yet.
    pub async fn last_answer(
        &self,
        chat_id: Uuid,
        max_bytes: usize,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let content: Option<sqlx::types::Json<Vec<MessagePart>>> = sqlx::query_scalar(
            "SELECT content FROM chat_messages
             WHERE chat_id = $1 AND role = 'assistant' AND kind = 'message' AND superseded_at IS NULL
             ORDER BY id DESC LIMIT 1",
        )
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(content.map(|parts| {
            let text: String = parts
                .0
                .iter()
                .filter_map(|p| match p {
                    MessagePart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("");
            if text.len() <= max_bytes {
                return (text, false);
            }
            let mut end = max_bytes;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            (text[..end].to_owned(), true)
        }))
    }

    /// One run of a `wait_agent` call acquired by `lease_owner`: the child's state now, or
    /// the call parked (`running` -> `waiting`, naming the child, its deadline set on the
    /// first park to `timeout` from now and kept after). See the module page for why the
    /// child's row is read under a share lock.
    pub async fn wait_for_child(
        &self,
        call_id: Uuid,
        lease_owner: &str,
        parent_chat_id: Uuid,
        child_id: Uuid,
        timeout: std::time::Duration,
    ) -> Result<WaitState, StoreError> {
        let mut tx = self.pool.begin().await?;
        let due: Option<bool> = sqlx::query_scalar(
            "SELECT coalesce(deadline_at, now() + make_interval(secs => $3)) <= now()
             FROM tool_calls WHERE id = $1 AND status = 'running' AND lease_owner = $2",
        )
        .bind(call_id)
        .bind(lease_owner)
        .bind(timeout.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(due) = due else {
            return Ok(WaitState::LeaseLost);
        };
        let child: Option<ChildChat> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHILD_COLUMNS} FROM chats WHERE id = $1 AND parent_chat_id = $2 FOR SHARE"
        )))
        .bind(child_id)
        .bind(parent_chat_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(child) = child else {
            return Ok(WaitState::NotAChild);
        };
        if matches!(child.status, ChatStatus::Waiting | ChatStatus::Error) {
            return Ok(WaitState::Finished(child));
        }
        if due {
            return Ok(WaitState::TimedOut(child));
        }
        sqlx::query(
            "UPDATE tool_calls SET status = 'waiting', waits_for_chat_id = $3,
                    deadline_at = coalesce(deadline_at, now() + make_interval(secs => $4)),
                    lease_owner = NULL, lease_expires_at = NULL, enqueued_at = now()
             WHERE id = $1 AND status = 'running' AND lease_owner = $2",
        )
        .bind(call_id)
        .bind(lease_owner)
        .bind(child_id)
        .bind(timeout.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(WaitState::Parked)
    }

    /// Closes a child (`close_agent`): `closed_at` set, so its parent's tools send it
    /// nothing more (the owner still may, through the API), and its queued messages dropped, so stopping its turn (the caller's, through
    /// `request_interrupt`, after this) starts no other. Locks the child's row first.
    pub async fn close_child_chat(
        &self,
        parent_chat_id: Uuid,
        child_id: Uuid,
    ) -> Result<Option<ChildChat>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The root's lock, then the child's (ARCHITECTURE.md §5), as `send_message` takes
        // them: a message to the child either lands before the close (and its queue entry is
        // cleared below) or finds the child closed.
        match super::lock_chat(&mut tx, child_id, None).await {
            Err(StoreError::NotFound) => return Ok(None),
            other => other?,
        }
        let child: Option<ChildChat> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE chats SET closed_at = coalesce(closed_at, now()), updated_at = now()
             WHERE id = $1 AND parent_chat_id = $2
             RETURNING {CHILD_COLUMNS}"
        )))
        .bind(child_id)
        .bind(parent_chat_id)
        .fetch_optional(&mut *tx)
        .await?;
        if child.is_some() {
            sqlx::query("DELETE FROM chat_queued_messages WHERE chat_id = $1")
                .bind(child_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(child)
    }
}
