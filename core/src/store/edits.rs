//! Edit and regenerate (issue #13, item 6; ARCHITECTURE.md §4.1): two ways to replace the
//! end of an idle chat's conversation and run a new turn on what is left.
//!
//! - **Edit** ([`Store::edit_message`]) replaces any user message of the chat, and
//!   everything after it, with a new user message that starts a new turn.
//! - **Regenerate** ([`Store::regenerate`]) replaces what the last turn answered (its
//!   assistant and tool messages, and anything after them) and runs that turn's question
//!   again in a new turn; the user message stays.
//!
//! **Supersede, never delete.** Replaced messages get `superseded_at`; the rows stay, so an
//! assistant message's cost still counts and the history can be audited, but
//! `Store::prompt_history` (what the model sees) leaves them out, and so does the message
//! list unless asked. The rule is one comparison of ids (uuid v7, so id order is creation
//! order): an edit supersedes every message whose id is at least the edited one's, a
//! regenerate every message whose id is at least that of the last turn's first answer.
//! Whatever was written after that point, an answer, tool results or a compaction
//! summary, is superseded with it, so the rule holds whatever kinds of message later
//! features add. A superseded message is never live again.
//!
//! **Only an idle chat.** Both are refused ([`StoreError::Conflict`]) while a turn is
//! unfinished (`queued`, `running`, `awaiting_tools`) or messages wait in the queue: a
//! running step would answer a conversation that no longer exists. Each is one
//! transaction that takes the chat's row lock first (ARCHITECTURE.md §5), reads
//! [`ChatState`] under it, supersedes, and starts the turn the way `Store::send_message`
//! does ([`start_turn_in`]), so it is all or nothing and no turn starts or ends meanwhile.

use uuid::Uuid;

use super::{
    Store,
    chats::{ChatState, chat_state_in, start_turn_in},
    files::link_message_files_in,
    lock_chat,
};
use crate::{
    StoreError,
    domain::{Message, MessagePart, Role, SupersededBy},
};

/// What an edit or a regenerate committed: the messages it replaced, and the new turn.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The chat.
    pub chat_id: Uuid,
    /// An edit or a regenerate.
    pub by: SupersededBy,
    /// Every message of the chat whose id is at least this one is superseded now; `None`
    /// when nothing was (a regenerate of a turn that wrote no answer).
    pub superseded_from: Option<Uuid>,
    /// How many messages this change superseded.
    pub superseded: u64,
    /// The new user message (an edit); `None` for a regenerate, whose turn answers the
    /// user message already in the conversation.
    pub message: Option<Message>,
    /// The queued turn (enqueue `RunTurn`).
    pub turn_id: Uuid,
}

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The chat does not exist or is not the caller's.
    #[error("chat not found")]
    ChatNotFound,
    /// The chat has no message with that id.
    #[error("message not found")]
    MessageNotFound,
    /// The message is not the user's: only user messages are edited (regenerate replaces
    /// an answer).
    #[error("the message is a {role:?} message; only user messages can be edited")]
    NotUserMessage {
        /// Its role.
        role: Role,
    },
    /// Busy, closed or already superseded ([`StoreError::Conflict`]), or the database
    /// failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EditError {
    fn from(e: sqlx::Error) -> Self {
        EditError::Store(e.into())
    }
}

impl Store {
    /// Replaces `owner`'s user message `message_id` and everything after it with a new user
    /// message holding `content`, which starts a new turn (chat `pending`). The chat must be
    /// idle: not closed, no unfinished turn, no queued message ([`StoreError::Conflict`]
    /// inside [`EditError::Store`]). A message already superseded is a conflict too: edit
    /// what replaced it.
    ///
    /// `file_ids` `None` keeps the edited message's files; a list replaces them, linked as
    /// `Store::send_message` links them. Returned with the rewrite: the files left out at
    /// the chat's link limit.
    pub async fn edit_message(
        &self,
        chat_id: Uuid,
        owner: Uuid,
        message_id: Uuid,
        content: &[MessagePart],
        file_ids: Option<&[Uuid]>,
    ) -> Result<(Rewrite, Vec<Uuid>), EditError> {
        let mut tx = self.pool.begin().await?;
        lock_chat(&mut tx, chat_id, Some(owner))
            .await
            .map_err(|e| match e {
                StoreError::NotFound => EditError::ChatNotFound,
                e => e.into(),
            })?;
        let state = idle_state_in(&mut tx, chat_id, owner).await?;
        let (role, superseded, old_content): (Role, bool, sqlx::types::Json<Vec<MessagePart>>) =
            sqlx::query_as(
                "SELECT role, superseded_at IS NOT NULL, content FROM chat_messages
                 WHERE id = $2 AND chat_id = $1",
            )
            .bind(chat_id)
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(EditError::MessageNotFound)?;
        if role != Role::User {
            return Err(EditError::NotUserMessage { role });
        }
        if superseded {
            return Err(StoreError::Conflict(
                "this message was already replaced by an edit or a regenerate; edit the message that replaced it".into(),
            )
            .into());
        }
        let (files, not_linked) = match file_ids {
            // Still linked: the chat's links outlive the messages that made them.
            None => (
                old_content
                    .0
                    .into_iter()
                    .filter(|p| matches!(p, MessagePart::File { .. }))
                    .collect(),
                Vec::new(),
            ),
            Some(ids) => {
                let linked = link_message_files_in(&mut tx, chat_id, owner, ids).await?;
                (linked.parts, linked.not_linked)
            }
        };
        let content: Vec<MessagePart> = content.iter().cloned().chain(files).collect();
        let superseded = supersede_from_in(&mut tx, chat_id, message_id).await?;
        let (turn_id, message) = start_turn_in(&mut tx, chat_id, &state, Some(&content)).await?;
        tx.commit().await?;
        Ok((
            Rewrite {
                chat_id,
                by: SupersededBy::Edit,
                superseded_from: Some(message_id),
                superseded,
                message,
                turn_id,
            },
            not_linked,
        ))
    }

    /// Runs the last turn of `owner`'s chat again: its answer (every assistant and tool
    /// message of the turn, and anything written after the first of them) is superseded and
    /// a new turn answers the same user message. The chat must be idle, as for
    /// [`Store::edit_message`]. A last turn that wrote no answer (it failed or was
    /// interrupted before anything streamed) just runs again.
    pub async fn regenerate(&self, chat_id: Uuid, owner: Uuid) -> Result<Rewrite, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_chat(&mut tx, chat_id, Some(owner)).await?;
        let state = idle_state_in(&mut tx, chat_id, owner).await?;
        // The last turn's first answer: the earliest live message of the chat's newest turn
        // that is not the user's (uuid has no `min` in PostgreSQL 15, hence the sort).
        let first_answer: Option<Uuid> = sqlx::query_scalar(
            "SELECT m.id FROM chat_messages m
             WHERE m.chat_id = $1 AND m.role <> 'user' AND m.superseded_at IS NULL
               AND m.turn_id = (SELECT id FROM chat_turns WHERE chat_id = $1 ORDER BY seq DESC LIMIT 1)
             ORDER BY m.id LIMIT 1",
        )
        .bind(chat_id)
        .fetch_optional(&mut *tx)
        .await?;
        let superseded = match first_answer {
            Some(from) => supersede_from_in(&mut tx, chat_id, from).await?,
            None => 0,
        };
        let (turn_id, _) = start_turn_in(&mut tx, chat_id, &state, None).await?;
        tx.commit().await?;
        Ok(Rewrite {
            chat_id,
            by: SupersededBy::Regenerate,
            superseded_from: first_answer,
            superseded,
            message: None,
            turn_id,
        })
    }
}

/// The chat's state, refused unless the chat is idle: not a closed subagent, no unfinished
/// turn, no queued message, and its owner not over their spend limit. The caller holds
/// the chat's row lock.
async fn idle_state_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    owner: Uuid,
) -> Result<ChatState, StoreError> {
    let state = chat_state_in(tx, chat_id).await?;
    state.refuse_closed()?;
    super::spend_limits::refuse_over_limit_in(tx, owner).await?;
    if state.unfinished_turn {
        return Err(StoreError::Conflict(
            "a turn of this chat is still running; wait for it to finish or interrupt it first"
                .into(),
        ));
    }
    if state.queued > 0 {
        return Err(StoreError::Conflict(
            "messages wait in this chat's queue; wait for them to be answered first".into(),
        ));
    }
    Ok(state)
}

/// Supersedes every live message of the chat whose id is at least `from` (the rule of the
/// module page); returns how many. The caller holds the chat's row lock.
async fn supersede_from_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    from: Uuid,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE chat_messages SET superseded_at = now()
         WHERE chat_id = $1 AND id >= $2 AND superseded_at IS NULL",
    )
    .bind(chat_id)
    .bind(from)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}
