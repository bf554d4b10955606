//! Retention purges (ARCHITECTURE.md §10): debug runs past their window (in-progress ones too;
//! steps cascade) and archived chats archived longer ago than the chat window (messages,
//! turns, queued messages, tool calls, debug runs, diff statuses and title grams cascade),
//! with the files that only they linked (`chat_delete.rs`, shared with
//! `DELETE /api/v1/chats/{id}`).
//! Bounded batches, so a large backlog is worked off over several ticks without long locks.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// Rows one purge deletes at most.
pub const PURGE_BATCH: i64 = 1000;

impl Store {
    /// Deletes up to [`PURGE_BATCH`] debug runs last changed before `cutoff`.
    pub async fn purge_debug_runs(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM chat_debug_runs WHERE id IN (
                SELECT id FROM chat_debug_runs WHERE updated_at < $1 ORDER BY updated_at LIMIT $2
                FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(PURGE_BATCH)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes up to [`PURGE_BATCH`] archived root chats (with their children) archived
    /// before `cutoff`, then the files they linked that no kept chat links. Returns
    /// (chats, files) deleted.
    pub async fn purge_archived_chats(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let roots: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM chats WHERE parent_chat_id IS NULL AND archived AND archived_at < $1
             ORDER BY archived_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(cutoff)
        .bind(PURGE_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if roots.is_empty() {
            return Ok((0, 0));
        }
        let (chats, files) = super::chat_delete::delete_families_in(&mut tx, &roots).await?;
        tx.commit().await?;
        Ok((chats, files))
    }

    /// Deletes up to [`PURGE_BATCH`] files created before `cutoff` that no chat links
    /// (uploads never attached, or left behind by a chat deleted some other way).
    pub async fn purge_unlinked_files(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM files WHERE id IN (
                SELECT f.id FROM files f
                WHERE f.created_at < $1
                  AND NOT EXISTS (SELECT 1 FROM chat_file_links l WHERE l.file_id = f.id)
                ORDER BY f.created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(PURGE_BATCH)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
