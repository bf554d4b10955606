//! Deleting chats for good: `DELETE /api/v1/chats/{id}` ([`Store::delete_chat`]) and the
//! retention purge (`retention.rs`) both delete whole families, a root chat with its
//! subagent chats, through [`delete_families_in`] (ARCHITECTURE.md §3, §10).
//!
//! Foreign keys cascade from a chat to its children, messages, turns, queued messages, tool
//! calls, debug runs (their steps with them), diff status, title grams and file links; the
//! files the family linked are deleted too when no other chat links them. The chat event
//! streams are not the store's: the caller announces `ChatOutcome::Deleted` with the ids
//! returned.
//!
//! A family with an unfinished turn is not deleted by hand: a worker may be streaming its
//! answer or running its tools, and would go on spending on a chat nobody can read. The
//! owner interrupts it first (`POST /chats/{id}/interrupt`, a busy subagent chat too).

use uuid::Uuid;

use super::Store;
use crate::StoreError;

impl Store {
    /// Deletes `owner`'s root chat `chat_id` with its subagent chats and all they hold
    /// (see the module page); returns the deleted chats' ids, the root first.
    /// [`StoreError::NotFound`]: no such chat of `owner`'s. [`StoreError::Conflict`]: a
    /// subagent chat (deleted with its root), or a turn of the family is unfinished.
    pub async fn delete_chat(&self, chat_id: Uuid, owner: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lock_chat(&mut tx, chat_id, Some(owner)).await?;
        let is_root: bool =
            sqlx::query_scalar("SELECT parent_chat_id IS NULL FROM chats WHERE id = $1")
                .bind(chat_id)
                .fetch_one(&mut *tx)
                .await?;
        if !is_root {
            return Err(StoreError::Conflict(
                "a subagent chat is deleted with its root chat: delete the root".into(),
            ));
        }
        // The children's rows too (root first, then children: the family lock order,
        // ARCHITECTURE.md §5), so no child starts a turn between the check and the delete.
        let children: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM chats WHERE root_chat_id = $1 ORDER BY id FOR UPDATE",
        )
        .bind(chat_id)
        .fetch_all(&mut *tx)
        .await?;
        let family: Vec<Uuid> = std::iter::once(chat_id).chain(children).collect();
        let busy: Option<Uuid> = sqlx::query_scalar(
            "SELECT chat_id FROM chat_turns
             WHERE chat_id = ANY($1) AND status IN ('queued', 'running', 'awaiting_tools')
             ORDER BY chat_id = $2 DESC LIMIT 1",
        )
        .bind(&family)
        .bind(chat_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(busy) = busy {
            let which = if busy == chat_id {
                "the chat".to_owned()
            } else {
                format!("its subagent chat {busy}")
            };
            return Err(StoreError::Conflict(format!(
                "{which} has a turn in progress: interrupt it first (POST /api/v1/chats/{busy}/interrupt), then delete"
            )));
        }
        delete_families_in(&mut tx, &[chat_id]).await?;
        tx.commit().await?;
        Ok(family)
    }
}

/// Deletes the root chats `roots` with their families inside the caller's transaction,
/// then the files they linked that no other chat links. Returns (chats, files) deleted,
/// counting roots only.
pub(super) async fn delete_families_in(
    tx: &mut sqlx::PgConnection,
    roots: &[Uuid],
) -> Result<(u64, u64), StoreError> {
    let files: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT l.file_id FROM chat_file_links l JOIN chats c ON c.id = l.chat_id
         WHERE c.id = ANY($1) OR c.root_chat_id = ANY($1)",
    )
    .bind(roots)
    .fetch_all(&mut *tx)
    .await?;
    let chats = sqlx::query("DELETE FROM chats WHERE id = ANY($1)")
        .bind(roots)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // The links of the deleted chats went with them (ON DELETE CASCADE).
    let files = sqlx::query(
        "DELETE FROM files f WHERE f.id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM chat_file_links l WHERE l.file_id = f.id)",
    )
    .bind(&files)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok((chats, files))
}
