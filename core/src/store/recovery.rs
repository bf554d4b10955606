//! Recovery queries (DESIGN.md §4, "Recovery"): find turns whose job was lost or whose
//! worker died, so the scheduler can enqueue them again. One replica at a time, guarded by
//! a transaction-level advisory lock.

use std::time::Duration;

use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// Advisory lock key of the recovery tick ("agentq-recovery").
const RECOVERY_LOCK: i64 = 0x6167_656e_7471_0001;

impl Store {
    /// Under the recovery lock: hands turns whose lease expired back to `queued`, and
    /// returns every `queued` turn whose job was last sent more than `stale_after` ago
    /// (marking it sent now). `None` when another scheduler holds the lock.
    pub async fn turns_to_reenqueue(
        &self,
        stale_after: Duration,
        limit: i64,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RECOVERY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(None);
        }
        sqlx::query(
            "WITH t AS (
                UPDATE chat_turns SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                       enqueued_at = now() - interval '1 day'
                WHERE id IN (SELECT id FROM chat_turns WHERE status = 'running' AND lease_expires_at < now()
                             ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                RETURNING chat_id
             )
             UPDATE chats SET status = 'pending', updated_at = now() FROM t
             WHERE chats.id = t.chat_id AND chats.status = 'running'",
        )
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE chat_turns SET enqueued_at = now()
             WHERE id IN (SELECT id FROM chat_turns WHERE status = 'queued'
                            AND enqueued_at < now() - make_interval(secs => $1)
                          ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(stale_after.as_secs_f64())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(ids))
    }
}
