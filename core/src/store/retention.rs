//! Retention purges (DESIGN.md §5): debug runs past their window (in-progress ones too;
//! steps cascade) and archived chats archived longer ago than the chat window (messages,
//! turns, queued messages, tool calls and debug runs cascade). Bounded batches, so a
//! large backlog is worked off over several ticks without long locks.

use chrono::{DateTime, Utc};

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
    /// before `cutoff`.
    pub async fn purge_archived_chats(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM chats WHERE id IN (
                SELECT id FROM chats WHERE parent_chat_id IS NULL AND archived AND archived_at < $1
                ORDER BY archived_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(PURGE_BATCH)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
