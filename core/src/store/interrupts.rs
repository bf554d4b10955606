//! Interrupting a turn (ARCHITECTURE.md §7). The API records the request; the worker holding
//! the turn's lease polls for requests (one query per process, not per turn), stops the
//! stream and keeps what had streamed. A turn no worker holds (queued, or waiting for
//! tools) is stopped by the API directly.

use uuid::Uuid;

use super::{
    Store,
    turns::{
        Completion, StepOfTurn, TurnOutcome, insert_interrupted_message, promote_queued_message,
    },
};
use crate::{
    StoreError,
    domain::{ChatStatus, TurnStatus},
};

/// What an interrupt request did.
#[derive(Debug, Clone)]
pub enum InterruptOutcome {
    /// A worker runs the turn; it will stop within its poll interval.
    Requested {
        /// The running turn.
        turn_id: Uuid,
    },
    /// The turn was not running on a worker and is now `interrupted`.
    Stopped(Box<TurnOutcome>),
}

impl Store {
    /// Interrupts the chat's unfinished turn. [`StoreError::Conflict`] when there is none.
    pub async fn request_interrupt(
        &self,
        chat_id: Uuid,
        owner: Uuid,
    ) -> Result<InterruptOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lock_chat(&mut tx, chat_id, Some(owner)).await?;
        let turn: Option<(Uuid, TurnStatus)> = sqlx::query_as(
            "SELECT id, status FROM chat_turns WHERE chat_id = $1
             AND status IN ('queued', 'running', 'awaiting_tools') FOR UPDATE",
        )
        .bind(chat_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((turn_id, status)) = turn else {
            return Err(StoreError::Conflict(
                "no turn is running in this chat".into(),
            ));
        };
        if status == TurnStatus::Running {
            sqlx::query("UPDATE chat_turns SET interrupt_requested = true WHERE id = $1 AND status = 'running'")
                .bind(turn_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(InterruptOutcome::Requested { turn_id });
        }
        sqlx::query(
            "WITH t AS (
                UPDATE chat_turns SET status = 'interrupted', finished_at = now(), interrupt_requested = true,
                       lease_owner = NULL, lease_expires_at = NULL
                WHERE id = $1 AND status IN ('queued', 'awaiting_tools')
                RETURNING id
             )
             UPDATE tool_calls SET status = 'failed', finished_at = now(),
                    result = '{\"error\": \"the turn was interrupted\"}'
             WHERE turn_id IN (SELECT id FROM t) AND status IN ('queued', 'running', 'waiting')",
        )
        .bind(turn_id)
        .execute(&mut *tx)
        .await?;
        let outcome =
            promote_queued_message(&mut tx, chat_id, None, ChatStatus::Waiting, None).await?;
        tx.commit().await?;
        Ok(InterruptOutcome::Stopped(Box::new(outcome)))
    }

    /// Turns this worker process holds (lease owners `<worker>/...`) whose interrupt was
    /// requested.
    pub async fn interrupt_requests(&self, worker: &str) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM chat_turns WHERE status = 'running' AND interrupt_requested
             AND starts_with(lease_owner, $1 || '/')",
        )
        .bind(worker)
        .fetch_all(&self.pool)
        .await?)
    }

    /// `running` -> `interrupted`: keeps the partial answer (marked interrupted), then
    /// promotes the next queued message or leaves the chat `waiting`. `Ok(None)`: the lease
    /// was lost.
    pub async fn interrupt_turn(
        &self,
        turn_id: Uuid,
        chat_id: Uuid,
        step: i32,
        worker: &str,
        partial: Option<&Completion>,
    ) -> Result<Option<TurnOutcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lock_chat(&mut tx, chat_id, None).await?;
        let stopped = sqlx::query(
            "UPDATE chat_turns SET status = 'interrupted', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND status = 'running' AND lease_owner = $2",
        )
        .bind(turn_id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if stopped.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let message = match partial {
            Some(partial) => Some(
                insert_interrupted_message(
                    &mut tx,
                    StepOfTurn::new(turn_id, chat_id, step),
                    partial,
                )
                .await?,
            ),
            None => None,
        };
        let outcome =
            promote_queued_message(&mut tx, chat_id, message, ChatStatus::Waiting, None).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }
}
