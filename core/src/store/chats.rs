//! Creating and reading chats (the list is `chat_list.rs`), and sending user messages into
//! them. The pieces
//! that read an idle chat's state under its lock and start its next turn
//! ([`chat_state_in`], [`start_turn_in`]) are shared with edit and regenerate
//! (`store::edits`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{MAX_QUEUED_MESSAGES, MESSAGE_COLUMNS, Store, pg_json, pg_text};
use crate::{
    StoreError,
    domain::{Chat, IdempotencyKey, Message, MessagePart, NewChat, PlanMode},
};

/// What to do with a message sent while a turn runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BusyBehavior {
    /// Queue it; it starts the next turn (the default).
    #[default]
    Queue,
    /// Interrupt the running turn, then start it.
    Interrupt,
}

impl BusyBehavior {
    fn as_str(self) -> &'static str {
        match self {
            BusyBehavior::Queue => "queue",
            BusyBehavior::Interrupt => "interrupt",
        }
    }
}

/// How a message is sent: what it does to a busy chat and the chat settings it changes
/// from this message on (`None`: unchanged).
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOptions<'a> {
    /// What to do while a turn runs.
    pub busy: BusyBehavior,
    /// Replaces the chat's MCP servers.
    pub mcp_server_ids: Option<&'a [Uuid]>,
    /// Enters (`Some(Some)`) or leaves (`Some(None)`) plan mode.
    pub plan_mode: Option<Option<PlanMode>>,
    /// Switches the chat's model from the turn this message starts on (for a queued
    /// message: when it is promoted).
    pub model_config_id: Option<Uuid>,
    /// Uploads the message references (checked by the API: the owner's, of the chat's
    /// organization or none): linked to the chat, up to its limit, and a `file` part each
    /// is added to the message (see `store::files`).
    pub file_ids: &'a [Uuid],
}

/// The result of sending a message.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// The chat was idle: the message starts a new turn (enqueue `RunTurn`).
    Started {
        /// The persisted user message.
        message: Message,
        /// The queued turn.
        turn_id: Uuid,
    },
    /// A turn is running: the message waits in the chat's queue.
    Queued {
        /// Id of the queued message.
        queued_message_id: Uuid,
        /// 1-based place in the queue.
        position: i64,
    },
}

pub(super) const CHAT_COLUMNS: &str = "id, owner_id, organization_id, parent_chat_id, root_chat_id, title, status, client_type, \
     pin_order, labels, archived, archived_at, last_activity_at, last_error, dynamic_tools, model_config_id, instructions, plan_mode, reasoning_effort, created_at, updated_at";

/// The chat an `Idempotency-Key` made, found by a later try with the key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyedChat {
    /// The chat, as it is now.
    #[sqlx(flatten)]
    pub chat: Chat,
    /// The later try came with the same request (the same fingerprint) as the first.
    pub same_request: bool,
}

/// What [`Store::create_chat`] did.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per create, matched as soon as it is returned"
)]
pub enum ChatCreation {
    /// It made the chat, its first message and its queued turn (to enqueue).
    Created {
        /// The new chat.
        chat: Chat,
        /// Its first user message.
        message: Message,
        /// Its first turn.
        turn_id: Uuid,
    },
    /// The owner already has a chat under the request's `Idempotency-Key`: nothing was
    /// made.
    Replayed(KeyedChat),
}

impl Store {
    /// Creates a chat with its first user message and a queued turn, unless the owner is
    /// over their spend limit ([`StoreError::Conflict`]; not read again when
    /// `new.spend_checked`) or already has a chat under `new.idempotency`'s key (then
    /// nothing is made and [`ChatCreation::Replayed`] returns that chat; two creates with
    /// one key at once make one chat: the second waits for the first's commit on the
    /// key's unique index, then finds its chat).
    ///
    /// Without files the three rows are one statement (its own transaction); files are
    /// linked in a transaction around the chat's insert and the message's, under the chat's
    /// row lock (`store::files`). The spend check is a read before either: inside the
    /// transaction it would see no more than it does here (read committed).
    pub async fn create_chat(&self, new: NewChat) -> Result<ChatCreation, StoreError> {
        if !new.spend_checked {
            // A retry whose first try made the chat gets it, whatever was spent since.
            if let Some(key) = &new.idempotency
                && let Some(found) = self.idempotent_chat(new.owner_id, key).await?
            {
                return Ok(ChatCreation::Replayed(found));
            }
            super::spend_limits::refuse_over_limit_in(
                &mut *self.pool.acquire().await?,
                new.owner_id,
            )
            .await?;
        }
        let Some(idempotency) = &new.idempotency else {
            // Without a key there is no conflict to skip: the insert always makes the chat.
            return self.insert_chat(&new).await?.ok_or_else(|| {
                StoreError::Conflict("a chat without an Idempotency-Key was not made".into())
            });
        };
        // A chat found under the key may be deleted before it is read: then the key is
        // free again, and the next try makes the chat.
        for _ in 0..3 {
            if let Some(created) = self.insert_chat(&new).await? {
                return Ok(created);
            }
            if let Some(found) = self.idempotent_chat(new.owner_id, idempotency).await? {
                return Ok(ChatCreation::Replayed(found));
            }
        }
        Err(StoreError::Conflict(
            "the chat of this Idempotency-Key was being deleted; try again".into(),
        ))
    }

    /// The chat `owner` created under `key`; `None` when the key names none of their chats
    /// (never used, or its chat was deleted).
    pub async fn idempotent_chat(
        &self,
        owner: Uuid,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyedChat>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHAT_COLUMNS}, idempotency_fingerprint = $3 AS same_request
             FROM chats WHERE owner_id = $1 AND idempotency_key = $2"
        )))
        .bind(owner)
        .bind(&key.key)
        .bind(&key.fingerprint[..])
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The insert of [`Store::create_chat`]: `None` when the owner already has a chat under
    /// the key (`ON CONFLICT DO NOTHING` on `chats_owner_idempotency_key_idx`; the turn and
    /// the message are inserted from the chat's row, so nothing is).
    async fn insert_chat(&self, new: &NewChat) -> Result<Option<ChatCreation>, StoreError> {
        let chat_id = Uuid::now_v7();
        let message_id = Uuid::now_v7();
        let turn_id = Uuid::now_v7();
        let title = if new.title.trim().is_empty() {
            derive_title(&new.first_message)
        } else {
            new.title.trim().to_owned()
        };
        // The message rides in the statement unless files must be linked first: `$16` is
        // its content, NULL when it is inserted after the links.
        let with_files = !new.file_ids.is_empty();
        let insert = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH c AS (
                INSERT INTO chats (id, owner_id, organization_id, title, status, client_type, dynamic_tools, model_config_id, labels, instructions, mcp_server_ids, plan_mode, title_set_by_user, reasoning_effort, idempotency_key, idempotency_fingerprint)
                VALUES ($1, $2, $3, $4, 'pending', $5, $7, $8, $9, $10, $11, $12, $13, $14, $17, $18)
                {on_conflict}
                RETURNING {CHAT_COLUMNS}
             ), t AS (
                INSERT INTO chat_turns (id, chat_id, seq, status) SELECT $6, id, 1, 'queued' FROM c
             ), m AS (
                INSERT INTO chat_messages (id, chat_id, turn_id, role, content)
                SELECT $15, id, $6, 'user', $16 FROM c WHERE $16::jsonb IS NOT NULL
             )
             SELECT * FROM c",
            // Only with a key: the clause makes every insert a speculative one.
            on_conflict = if new.idempotency.is_some() {
                "ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
            } else {
                ""
            },
        )))
        .bind(chat_id)
        .bind(new.owner_id)
        .bind(new.organization_id)
        .bind(pg_text(&title))
        .bind(new.client_type)
        .bind(turn_id)
        .bind(pg_json(&new.dynamic_tools))
        .bind(new.model_config_id)
        .bind(pg_json(&new.labels))
        .bind(new.instructions.as_deref().map(pg_text))
        .bind(&new.mcp_server_ids)
        .bind(new.plan_mode)
        .bind(!new.title.trim().is_empty())
        .bind(new.reasoning_effort)
        .bind(message_id);
        let key = new.idempotency.as_ref().map(|k| k.key.as_str());
        let fingerprint = new.idempotency.as_ref().map(|k| &k.fingerprint[..]);
        if !with_files {
            let content = pg_json(&new.first_message);
            let mut conn = self.kept.take().await?;
            let inserted: Option<Chat> = insert
                .bind(&content)
                .bind(key)
                .bind(fingerprint)
                .fetch_optional(&mut *conn)
                .await?;
            conn.keep();
            let Some(chat) = inserted else {
                return Ok(None);
            };
            // The row as PostgreSQL holds it: the content as stored, the time of the
            // statement (both rows' `created_at` is its `now()`). The content was just
            // serialized from these parts, so reading it back cannot fail in practice; if
            // it did, the chat stands and the request answers 500.
            let content = serde_json::from_value(content.0)
                .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?;
            let message =
                Message::user(message_id, chat_id, Some(turn_id), content, chat.created_at);
            return Ok(Some(ChatCreation::Created {
                chat,
                message,
                turn_id,
            }));
        }
        let mut tx = self.pool.begin().await?;
        let Some(chat): Option<Chat> = insert
            .bind(None::<sqlx::types::Json<serde_json::Value>>)
            .bind(key)
            .bind(fingerprint)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        // At most `MAX_MESSAGE_FILES` files, all new to this chat: none is left out.
        let files =
            super::files::link_message_files_in(&mut tx, chat_id, new.owner_id, &new.file_ids)
                .await?;
        let first_message: Vec<MessagePart> = new
            .first_message
            .iter()
            .cloned()
            .chain(files.parts)
            .collect();
        let message: Message = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO chat_messages (id, chat_id, turn_id, role, content) VALUES ($1, $2, $3, 'user', $4)
             RETURNING {MESSAGE_COLUMNS}"
        )))
        .bind(message_id)
        .bind(chat_id)
        .bind(turn_id)
        .bind(pg_json(&first_message))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(ChatCreation::Created {
            chat,
            message,
            turn_id,
        }))
    }

    /// A chat if `owner` owns it; someone else's chat is [`StoreError::NotFound`] so ids
    /// cannot be probed.
    pub async fn get_chat(&self, chat_id: Uuid, owner: Uuid) -> Result<Chat, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHAT_COLUMNS} FROM chats WHERE id = $1 AND owner_id = $2"
        )))
        .bind(chat_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Archives or restores `owner`'s root chat by hand; its subagent chats follow.
    /// Archiving starts the retention clock (`archived_at`); restoring stops it. A subagent
    /// chat cannot be archived on its own: [`StoreError::Conflict`].
    pub async fn set_chat_archived(
        &self,
        chat_id: Uuid,
        owner: Uuid,
        archived: bool,
    ) -> Result<Chat, StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lock_chat(&mut tx, chat_id, Some(owner)).await?;
        let chat = set_archived_in(&mut tx, chat_id, archived).await?;
        tx.commit().await?;
        Ok(chat)
    }

    /// Sends a user message (a subagent chat closed by `close_agent` takes none:
    /// [`StoreError::Conflict`]): starts a turn when the chat is idle (`waiting`, `error`, or
    /// `requires_action` with no unfinished turn: the answer to a plan-mode question or
    /// plan), otherwise queues it
    /// (at most [`MAX_QUEUED_MESSAGES`], then [`StoreError::Conflict`]). A message to an
    /// archived chat restores it: it is in use again, and off the retention clock.
    ///
    /// The chat row is locked first, the same order the worker uses when it finishes a turn
    /// and promotes the queue, so a message is never queued behind a turn that has already
    /// looked for queued messages.
    ///
    /// `mcp_server_ids`, when given, replaces the chat's choice of MCP servers, and
    /// `plan_mode`, when given, enters (`Some(Some(Plan))`) or leaves (`Some(None)`) plan
    /// mode, both in the same transaction, so a refused send (queue full, not the owner's
    /// chat, the owner over their spend limit, `store::spend_limits`) changes nothing.
    /// The files of `file_ids` are linked in the same transaction; the ids returned with
    /// the outcome are those left out at the chat's link limit (the message went without
    /// them).
    pub async fn send_message(
        &self,
        chat_id: Uuid,
        owner: Uuid,
        content: &[MessagePart],
        options: &SendOptions<'_>,
    ) -> Result<(SendOutcome, Vec<Uuid>), StoreError> {
        let SendOptions {
            busy,
            mcp_server_ids,
            plan_mode,
            model_config_id,
            file_ids,
        } = *options;
        let mut tx = self.pool.begin().await?;
        // Lock first, then read: a statement that waits for the lock keeps the snapshot it
        // started with, so reading the turns in the locking statement could see state from
        // before the previous holder committed.
        super::lock_chat(&mut tx, chat_id, Some(owner)).await?;
        let state = chat_state_in(&mut tx, chat_id).await?;
        state.refuse_closed()?;
        super::spend_limits::refuse_over_limit_in(&mut tx, owner).await?;
        if state.busy() && state.queued >= MAX_QUEUED_MESSAGES {
            return Err(StoreError::Conflict(format!(
                "the chat already has {MAX_QUEUED_MESSAGES} queued messages; wait for the running turn to take them"
            )));
        }
        if let Some(ids) = mcp_server_ids {
            super::mcp_servers::choose_mcp_servers_in(&mut tx, chat_id, ids).await?;
        }
        if let Some(plan_mode) = plan_mode {
            super::plan_mode::set_plan_mode_in(&mut tx, chat_id, plan_mode).await?;
        }
        let files = super::files::link_message_files_in(&mut tx, chat_id, owner, file_ids).await?;
        let with_files: Vec<MessagePart>;
        let content = if files.parts.is_empty() {
            content
        } else {
            with_files = content.iter().cloned().chain(files.parts).collect();
            &with_files
        };
        if state.busy() {
            let id = Uuid::now_v7();
            sqlx::query(
                "WITH k AS (
                    -- A message to an archived chat restores it, with its subagent chats.
                    UPDATE chats SET archived = false, archived_at = NULL, updated_at = now()
                    WHERE (id = $2 OR root_chat_id = $2) AND archived
                 )
                 INSERT INTO chat_queued_messages (id, chat_id, content, busy_behavior, model_config_id)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(chat_id)
            .bind(pg_json(content))
            .bind(busy.as_str())
            .bind(model_config_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok((
                SendOutcome::Queued {
                    queued_message_id: id,
                    position: state.queued + 1,
                },
                files.not_linked,
            ));
        }
        if let Some(model_config_id) = model_config_id {
            // The message's model, checked by the API, is the chat's from this turn on.
            sqlx::query("UPDATE chats SET model_config_id = $2 WHERE id = $1")
                .bind(chat_id)
                .bind(model_config_id)
                .execute(&mut *tx)
                .await?;
        }
        let (turn_id, message) = start_turn_in(&mut tx, chat_id, &state, Some(content)).await?;
        tx.commit().await?;
        let message = message.expect("a turn started with content inserts its message");
        Ok((SendOutcome::Started { message, turn_id }, files.not_linked))
    }
}

/// What a change to a chat's conversation needs to know first, read under the chat's row
/// lock (so no turn starts or ends, and no message is queued or promoted, until the
/// caller commits).
#[derive(Debug, Clone, Copy)]
pub(super) struct ChatState {
    /// A turn is `queued`, `running` or `awaiting_tools`.
    pub unfinished_turn: bool,
    /// User messages waiting in the chat's queue.
    pub queued: i64,
    /// The highest turn `seq` so far (0 before the first).
    pub last_seq: i32,
    /// A subagent chat `close_agent` closed.
    pub closed: bool,
}

impl ChatState {
    /// Whether a turn runs or messages wait for one: a new message queues, and nothing may
    /// rewrite the conversation.
    pub fn busy(&self) -> bool {
        self.unfinished_turn || self.queued > 0
    }

    /// [`StoreError::Conflict`] for a closed subagent chat. Read under the chat's lock,
    /// which `close_agent` takes too: a message and a close never both win.
    pub fn refuse_closed(&self) -> Result<(), StoreError> {
        if self.closed {
            return Err(StoreError::Conflict(
                "this subagent chat was closed (close_agent); it takes no more messages".into(),
            ));
        }
        Ok(())
    }
}

/// The chat's [`ChatState`]; the caller holds the chat's row lock
/// (`super::lock_chat`). [`StoreError::NotFound`] when the chat is gone.
pub(super) async fn chat_state_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
) -> Result<ChatState, StoreError> {
    let state: Option<(bool, i64, i32, bool)> = sqlx::query_as(
        "SELECT
            EXISTS (SELECT 1 FROM chat_turns t WHERE t.chat_id = $1
                    AND t.status IN ('queued', 'running', 'awaiting_tools')),
            (SELECT count(*) FROM chat_queued_messages q WHERE q.chat_id = $1),
            (SELECT coalesce(max(seq), 0) FROM chat_turns t WHERE t.chat_id = $1),
            (SELECT closed_at IS NOT NULL FROM chats WHERE id = $1)",
    )
    .bind(chat_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (unfinished_turn, queued, last_seq, closed) = state.ok_or(StoreError::NotFound)?;
    Ok(ChatState {
        unfinished_turn,
        queued,
        last_seq,
        closed,
    })
}

/// Starts the next turn of an idle chat (`state` read under its lock, not
/// [`ChatState::busy`]): the turn `queued`, the chat `pending` with no `last_error` and
/// restored from the archive with its subagent chats, and, with `content`, the user
/// message the turn answers. One statement. A regenerate passes no content: its turn
/// answers the user message already in the conversation. Returns the turn id to enqueue
/// and the message.
pub(super) async fn start_turn_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    state: &ChatState,
    content: Option<&[MessagePart]>,
) -> Result<(Uuid, Option<Message>), StoreError> {
    let turn_id = Uuid::now_v7();
    let message: Option<Message> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH t AS (
            INSERT INTO chat_turns (id, chat_id, seq, status) VALUES ($3, $2, $4, 'queued')
         ), c AS (
            UPDATE chats SET status = 'pending', last_error = NULL, archived = false,
                   archived_at = NULL, last_activity_at = now(), updated_at = now()
            -- `requires_action` with no unfinished turn: a plan-mode question or plan
            -- waits for this answer (ARCHITECTURE.md §4.1).
            WHERE id = $2 AND status IN ('waiting', 'error', 'pending', 'requires_action')
         ), k AS (
            -- A message to an archived chat restores it, with its subagent chats.
            UPDATE chats SET archived = false, archived_at = NULL, updated_at = now()
            WHERE root_chat_id = $2 AND archived
         )
         INSERT INTO chat_messages (id, chat_id, turn_id, role, content)
         SELECT $1, $2, $3, 'user', $5 WHERE $5::jsonb IS NOT NULL
         RETURNING {MESSAGE_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(chat_id)
    .bind(turn_id)
    .bind(state.last_seq + 1)
    .bind(content.map(pg_json))
    .fetch_optional(&mut *tx)
    .await?;
    Ok((turn_id, message))
}

/// Archives or restores a root chat and its subagent chats inside the caller's
/// transaction, which holds the chat's lock; a subagent chat is [`StoreError::Conflict`].
pub(super) async fn set_archived_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    archived: bool,
) -> Result<Chat, StoreError> {
    let chat: Chat = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE chats SET archived = $2,
                archived_at = CASE WHEN $2 THEN coalesce(archived_at, now()) END,
                updated_at = now()
         WHERE id = $1 AND parent_chat_id IS NULL
         RETURNING {CHAT_COLUMNS}"
    )))
    .bind(chat_id)
    .bind(archived)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        StoreError::Conflict("a subagent chat is archived and restored with its root chat".into())
    })?;
    sqlx::query(
        "UPDATE chats SET archived = $2, archived_at = $3, updated_at = now()
         WHERE root_chat_id = $1 AND archived <> $2",
    )
    .bind(chat_id)
    .bind(archived)
    .bind(chat.archived_at)
    .execute(&mut *tx)
    .await?;
    Ok(chat)
}

/// A title from the first words of the first message (at most 80 characters).
pub(super) fn derive_title(parts: &[MessagePart]) -> String {
    let text = parts
        .iter()
        .filter_map(MessagePart::as_text)
        .collect::<Vec<_>>()
        .join(" ");
    // Titles hold no control characters (see `crate::text`): whitespace ones become spaces,
    // the others are dropped.
    let text: String = text
        .chars()
        .filter(|&c| c.is_whitespace() || !crate::text::is_forbidden(c))
        .collect();
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if words.chars().count() <= 80 {
        return words;
    }
    let cut: String = words.chars().take(79).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_words() {
        let parts = vec![MessagePart::Text {
            text: "  Fix   the\nbuild ".into(),
        }];
        assert_eq!(derive_title(&parts), "Fix the build");
        let long = vec![MessagePart::Text {
            text: "x ".repeat(100),
        }];
        assert_eq!(derive_title(&long).chars().count(), 80);
    }
}
