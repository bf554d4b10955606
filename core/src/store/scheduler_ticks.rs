//! The scheduler's tick ledger (ARCHITECTURE.md §10): any number of scheduler replicas fire the
//! same cron tick, and exactly one runs it.
//!
//! A tick takes a transaction-scoped PostgreSQL advisory lock for its job (so a tick that
//! overruns is never run by a second replica at the same time) and inserts its
//! `(job, tick_at)` row (so a replica that fires the same tick later, after the first has
//! finished, finds it done). Both live in one transaction held for the tick's length: the
//! row becomes visible, and the lock is released, when the tick commits its outcome. A
//! runner that dies mid-tick leaves neither behind.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Store;
use crate::StoreError;

/// The right to run one tick; finish it with [`TickLease::finish`]. Dropping it without
/// finishing gives the tick up (nothing is recorded).
pub struct TickLease {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    job: String,
    tick_at: DateTime<Utc>,
}

impl Store {
    /// Claims tick `tick_at` of `job` (on the cron expression `schedule`) for `runner`;
    /// `None` when another runner holds the job's lock (a tick of it is running) or has
    /// already run this tick.
    pub async fn begin_tick(
        &self,
        job: &str,
        schedule: Option<&str>,
        tick_at: DateTime<Utc>,
        runner: &str,
    ) -> Result<Option<TickLease>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("agentq:scheduler:{job}"))
                .fetch_one(&mut *tx)
                .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
        let claimed = sqlx::query(
            "INSERT INTO scheduler_ticks (job, tick_at, runner, schedule) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job, tick_at) DO NOTHING",
        )
        .bind(job)
        .bind(tick_at)
        .bind(runner)
        .bind(schedule)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            // Roll back now, not on drop: a dropped transaction is rolled back lazily, and
            // until then it would keep the job's lock from the next tick.
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(TickLease {
            tx,
            job: job.to_owned(),
            tick_at,
        }))
    }

    /// Forgets ticks older than `before` (the ledger only needs recent ones).
    pub async fn prune_ticks(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM scheduler_ticks WHERE tick_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

impl TickLease {
    /// Records what the tick did and when the schedule fires next (`next_tick_at`, shown
    /// by the dashboard), and releases the job's lock.
    pub async fn finish(
        mut self,
        outcome: &Value,
        error: Option<&str>,
        next_tick_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE scheduler_ticks SET finished_at = now(), outcome = $3, error = $4,
                    next_tick_at = $5
             WHERE job = $1 AND tick_at = $2",
        )
        .bind(&self.job)
        .bind(self.tick_at)
        .bind(outcome)
        .bind(error)
        .bind(next_tick_at)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
