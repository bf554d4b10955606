//! Recovery queries (ARCHITECTURE.md §7): turns and tool calls whose job was lost or
//! whose worker died go back to `queued` (and are enqueued again by the scheduler); after
//! too many attempts they fail with `worker_lost`. Client tool calls past their deadline
//! fail their turn.
//!
//! One scheduler replica at a time runs a tick (a session advisory lock); each item is its
//! own short transaction that locks the chat row before the turn, the same order the
//! worker uses when it finishes a turn, so recovery and a late worker never deadlock.

use std::time::Duration;

use sqlx::types::Json;
use uuid::Uuid;

use super::{
    Store, pg_json,
    tool_calls::{FanIn, fan_in, lock_turn},
    turns::{TurnOutcome, promote_queued_message},
};
use crate::{ChatError, ChatErrorKind, StoreError, domain::ChatStatus};

/// Advisory lock key of the recovery tick ("agentq-recovery").
const RECOVERY_LOCK: i64 = 0x6167_656e_7471_0001;

/// Bounds of one recovery tick.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryLimits {
    /// A queued item whose job was sent longer ago than this is sent again.
    pub stale_after: Duration,
    /// Most items of each kind handled per tick.
    pub batch: i64,
    /// Acquisitions of a tool call before its loss fails it with an error result (turns are
    /// capped by the worker, `--turn-max-attempts`).
    pub max_attempts: i32,
}

/// A turn recovery ended with an error.
#[derive(Debug, Clone)]
pub struct FailedTurn {
    /// Its chat.
    pub chat_id: Uuid,
    /// Why.
    pub error: ChatError,
    /// What failing it led to (a promoted queued message, maybe).
    pub outcome: TurnOutcome,
}

/// A tool call whose worker stopped renewing its lease.
struct LostToolCall {
    id: Uuid,
    turn_id: Uuid,
    chat_id: Uuid,
    step: i32,
    attempt: i32,
}

/// What one tick found; the scheduler enqueues and announces it.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Turns to enqueue (`RunTurn`).
    pub turns: Vec<Uuid>,
    /// Tool calls to enqueue (`RunToolCall`).
    pub tool_calls: Vec<Uuid>,
    /// Steps whose last call recovery finished: enqueue their turn.
    pub fanned_in: Vec<FanIn>,
    /// Turns recovery failed.
    pub failed: Vec<FailedTurn>,
}

impl Store {
    /// Runs one recovery tick. `None` when another scheduler holds the lock.
    pub async fn recover(&self, limits: RecoveryLimits) -> Result<Option<Recovered>, StoreError> {
        let mut lock_conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RECOVERY_LOCK)
            .fetch_one(&mut *lock_conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        let result = self.recover_locked(limits).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(RECOVERY_LOCK)
            .execute(&mut *lock_conn)
            .await;
        result.map(Some)
    }

    async fn recover_locked(&self, limits: RecoveryLimits) -> Result<Recovered, StoreError> {
        let mut found = Recovered::default();

        // Turns whose worker stopped renewing the lease go back to `queued`, whatever their
        // attempt count: the worker that acquires one next counts this start too and fails
        // the turn itself past `--turn-max-attempts` (one cap, in one place).
        let lost: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT id, chat_id FROM chat_turns
             WHERE status = 'running' AND lease_expires_at < now()
             ORDER BY lease_expires_at LIMIT $1",
        )
        .bind(limits.batch)
        .fetch_all(&self.pool)
        .await?;
        for (turn_id, chat_id) in lost {
            self.requeue_lost_turn(turn_id, chat_id).await?;
        }

        // Tool calls whose worker stopped renewing the lease.
        let lost_calls: Vec<(Uuid, Uuid, Uuid, i32, i32)> = sqlx::query_as(
            "SELECT id, turn_id, chat_id, step, attempt FROM tool_calls
             WHERE status = 'running' AND lease_expires_at < now()
             ORDER BY lease_expires_at LIMIT $1",
        )
        .bind(limits.batch)
        .fetch_all(&self.pool)
        .await?;
        for (call_id, turn_id, chat_id, step, attempt) in lost_calls {
            if attempt < limits.max_attempts {
                self.requeue_lost_tool_call(call_id).await?;
            } else {
                let call = LostToolCall {
                    id: call_id,
                    turn_id,
                    chat_id,
                    step,
                    attempt,
                };
                found
                    .fanned_in
                    .extend(self.fail_lost_tool_call(&call).await?);
            }
        }

        // Client tool calls past their deadline fail their turn.
        // The message names at most five calls: it is stored on the chat and shown with it.
        let expired: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT turn_id, chat_id,
                    array_to_string((array_agg(name ORDER BY id))[1:5], ', ')
                    || CASE WHEN count(*) > 5 THEN ' and ' || (count(*) - 5) || ' more' ELSE '' END
             FROM tool_calls
             WHERE status = 'waiting' AND deadline_at < now() AND waits_for_chat_id IS NULL
             GROUP BY turn_id, chat_id LIMIT $1",
        )
        .bind(limits.batch)
        .fetch_all(&self.pool)
        .await?;
        for (turn_id, chat_id, names) in expired {
            let error = ChatError::new(
                ChatErrorKind::Timeout,
                format!("The client sent no result for {names} before the deadline."),
            );
            if let Some(outcome) = self
                .fail_turn_awaiting_tools(turn_id, chat_id, &error)
                .await?
            {
                found.failed.push(FailedTurn {
                    chat_id,
                    error,
                    outcome,
                });
            }
        }

        // Queued items whose job is stale: send again (a duplicate finds nothing to acquire).
        found.turns.extend(
            sqlx::query_scalar::<_, Uuid>(
                "UPDATE chat_turns SET enqueued_at = now()
                 WHERE id IN (SELECT id FROM chat_turns WHERE status = 'queued'
                                AND enqueued_at < now() - make_interval(secs => $1)
                              ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id",
            )
            .bind(limits.stale_after.as_secs_f64())
            .bind(limits.batch)
            .fetch_all(&self.pool)
            .await?,
        );
        found.tool_calls.extend(
            sqlx::query_scalar::<_, Uuid>(
                "UPDATE tool_calls SET enqueued_at = now()
                 WHERE id IN (SELECT id FROM tool_calls WHERE status = 'queued'
                                AND enqueued_at < now() - make_interval(secs => $1)
                              ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id",
            )
            .bind(limits.stale_after.as_secs_f64())
            .bind(limits.batch)
            .fetch_all(&self.pool)
            .await?,
        );
        // `wait_agent` calls whose child is idle (its nudge was lost) or whose deadline
        // passed: send again. Past the deadline once at once, then like any stale item.
        found.tool_calls.extend(
            sqlx::query_scalar::<_, Uuid>(
                "UPDATE tool_calls SET enqueued_at = now()
                 WHERE id IN (
                    SELECT t.id FROM tool_calls t
                    WHERE t.status = 'waiting' AND t.waits_for_chat_id IS NOT NULL
                      AND ((t.deadline_at <= now() AND t.enqueued_at < t.deadline_at)
                           OR (t.enqueued_at < now() - make_interval(secs => $1)
                               AND (t.deadline_at <= now()
                                    OR NOT EXISTS (SELECT 1 FROM chats ch WHERE ch.id = t.waits_for_chat_id
                                                   AND ch.status NOT IN ('waiting', 'error')))))
                    ORDER BY t.enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id",
            )
            .bind(limits.stale_after.as_secs_f64())
            .bind(limits.batch)
            .fetch_all(&self.pool)
            .await?,
        );
        Ok(found)
    }

    /// `running` -> `queued` for a tool call whose worker stopped renewing its lease (due at
    /// once, so this tick's resend picks it up). Returns whether it was still lost.
    async fn requeue_lost_tool_call(&self, call_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tool_calls SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    enqueued_at = now() - interval '1 day'
             WHERE id = $1 AND status = 'running' AND lease_expires_at < now()",
        )
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `running` -> `failed` for a tool call that lost its worker too often: it gets an
    /// error result, and when the step has no open call left its turn fans in (returned,
    /// for the scheduler to enqueue). Locks the chat, then the turn, then the call.
    async fn fail_lost_tool_call(&self, call: &LostToolCall) -> Result<Option<FanIn>, StoreError> {
        let mut tx = self.pool.begin().await?;
        match super::lock_chat(&mut tx, call.chat_id, None).await {
            // Deleted with its chat meanwhile: nothing left to recover.
            Err(StoreError::NotFound) => return Ok(None),
            locked => locked?,
        }
        lock_turn(&mut tx, call.turn_id).await?;
        sqlx::query(
            "UPDATE tool_calls SET status = 'failed', finished_at = now(), lease_expires_at = NULL,
                    result = $2
             WHERE id = $1 AND status = 'running' AND lease_expires_at < now()",
        )
        .bind(call.id)
        .bind(Json(serde_json::json!({
            "error": format!("the worker running this tool stopped {} times", call.attempt)
        })))
        .execute(&mut *tx)
        .await?;
        // Fan-in is idempotent: whoever finished the step's last call (this or its worker)
        // moves the turn on once.
        let fanned = fan_in(&mut tx, call.turn_id, call.step).await?;
        tx.commit().await?;
        Ok(fanned)
    }

    /// `running` -> `queued` for a turn whose worker stopped renewing its lease (due at
    /// once); a `running` chat goes back to `pending`.
    async fn requeue_lost_turn(&self, turn_id: Uuid, chat_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lock_chat(&mut tx, chat_id, None).await?;
        sqlx::query(
            "WITH t AS (
                UPDATE chat_turns SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                       enqueued_at = now() - interval '1 day'
                WHERE id = $1 AND status = 'running' AND lease_expires_at < now()
                RETURNING chat_id
             )
             UPDATE chats SET status = 'pending', updated_at = now() FROM t
             WHERE chats.id = t.chat_id AND chats.status = 'running'",
        )
        .bind(turn_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `awaiting_tools` -> `failed` for a turn whose client never answered: its open tool
    /// calls fail with it, the chat gets `last_error`, then the next queued message is
    /// promoted. (Lost `running` turns are re-queued, never failed here: the worker that
    /// takes one next applies `--turn-max-attempts`.)
    async fn fail_turn_awaiting_tools(
        &self,
        turn_id: Uuid,
        chat_id: Uuid,
        error: &ChatError,
    ) -> Result<Option<TurnOutcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lock_chat(&mut tx, chat_id, None).await?;
        let failed = sqlx::query(
            "UPDATE chat_turns SET status = 'failed', finished_at = now(), error = $2,
                    lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND status = 'awaiting_tools'",
        )
        .bind(turn_id)
        .bind(pg_json(error))
        .execute(&mut *tx)
        .await?;
        if failed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE tool_calls SET status = 'failed', finished_at = now(), result = $2
             WHERE turn_id = $1 AND status IN ('queued', 'running', 'waiting')",
        )
        .bind(turn_id)
        .bind(pg_json(&serde_json::json!({ "error": error.message })))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE chats SET last_error = $2, updated_at = now() WHERE id = $1")
            .bind(chat_id)
            .bind(pg_json(error))
            .execute(&mut *tx)
            .await?;
        let outcome =
            promote_queued_message(&mut tx, chat_id, None, ChatStatus::Error, None).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }
}
