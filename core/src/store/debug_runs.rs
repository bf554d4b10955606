//! Debug runs: what a turn sent to its provider and what came back, per attempt, for the
//! chat's owner to inspect (ARCHITECTURE.md §3). Written only when debug logging is on, so the
//! hot path pays nothing otherwise. Requests are stored in agentq's normalized form;
//! credentials never enter them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Store, pg_json};
use crate::{
    ChatError, StoreError,
    domain::{DebugRunStatus, Usage},
};

/// A run as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DebugRun {
    /// Id.
    pub id: Uuid,
    /// Chat.
    pub chat_id: Uuid,
    /// Turn.
    pub turn_id: Uuid,
    /// Where the run stands.
    pub status: DebugRunStatus,
    /// Provider name.
    pub provider: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Usage summed over the run's steps.
    #[sqlx(json(nullable))]
    pub usage: Option<Usage>,
    /// Final error.
    #[sqlx(json(nullable))]
    pub error: Option<ChatError>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One provider attempt of a run.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DebugStep {
    /// Id.
    pub id: Uuid,
    /// The turn step (model call number).
    pub step: i32,
    /// Attempt within the step (1 = first try).
    pub attempt: i32,
    /// The normalized request, credentials excluded.
    pub request: serde_json::Value,
    /// What came back: text, reasoning, tool calls.
    pub response: Option<serde_json::Value>,
    /// Usage of this attempt.
    #[sqlx(json(nullable))]
    pub usage: Option<Usage>,
    /// The attempt's error.
    #[sqlx(json(nullable))]
    pub error: Option<ChatError>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Milliseconds to the first streamed event.
    pub first_byte_ms: Option<i32>,
    /// Milliseconds the attempt took.
    pub duration_ms: i32,
}

/// A finished attempt, as the worker reports it.
#[derive(Debug, Clone)]
pub struct NewDebugStep {
    /// Turn step.
    pub step: i32,
    /// Attempt.
    pub attempt: i32,
    /// Normalized request.
    pub request: serde_json::Value,
    /// Response summary.
    pub response: Option<serde_json::Value>,
    /// Usage.
    pub usage: Option<Usage>,
    /// Error.
    pub error: Option<ChatError>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// First event latency.
    pub first_byte_ms: Option<i32>,
    /// Duration.
    pub duration_ms: i32,
    /// The conversation's last message as this step sent it; the next step of the chat
    /// records only the messages after it.
    pub last_message_id: Option<Uuid>,
}

const RUN_COLUMNS: &str = "id, chat_id, turn_id, status, provider, model, usage, error, started_at, finished_at, updated_at";
const STEP_COLUMNS: &str =
    "id, step, attempt, request, response, usage, error, started_at, first_byte_ms, duration_ms";

impl Store {
    /// The turn's run (created on its first step), now `running` again.
    pub async fn start_debug_run(
        &self,
        chat_id: Uuid,
        turn_id: Uuid,
        provider: &str,
        model: &str,
    ) -> Result<Uuid, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO chat_debug_runs (id, chat_id, turn_id, provider, model) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (turn_id) DO UPDATE SET status = 'running', updated_at = now()
             RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(chat_id)
        .bind(turn_id)
        .bind(provider)
        .bind(model)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The last message a recorded step of this chat sent (its newest run that recorded
    /// one), so the next step stores only what came after it.
    pub async fn debug_last_recorded_message(
        &self,
        chat_id: Uuid,
    ) -> Result<Option<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT last_message_id FROM chat_debug_runs
             WHERE chat_id = $1 AND last_message_id IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Appends one attempt to a run.
    pub async fn record_debug_step(
        &self,
        run_id: Uuid,
        step: &NewDebugStep,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "WITH s AS (
                INSERT INTO chat_debug_steps (id, run_id, step, attempt, request, response, usage, error, started_at, first_byte_ms, duration_ms)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             )
             UPDATE chat_debug_runs SET updated_at = now(),
                    last_message_id = coalesce($12, last_message_id)
             WHERE id = $2",
        )
        .bind(Uuid::now_v7())
        .bind(run_id)
        .bind(step.step)
        .bind(step.attempt)
        .bind(pg_json(&step.request))
        .bind(step.response.as_ref().map(pg_json))
        .bind(step.usage.as_ref().map(Json))
        .bind(step.error.as_ref().map(pg_json))
        .bind(step.started_at)
        .bind(step.first_byte_ms)
        .bind(step.duration_ms)
        .bind(step.last_message_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `running` -> where the run stands after a step (`awaiting_tools` until the turn
    /// ends; any other status finishes it). Returns whether the run was `running`: a run
    /// already moved on (a stale worker's late step) is left as it is.
    pub async fn finish_debug_run(
        &self,
        run_id: Uuid,
        to: DebugRunStatus,
        error: Option<&ChatError>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chat_debug_runs r SET status = $2, error = $3, updated_at = now(),
                    finished_at = CASE WHEN $4 THEN now() END,
                    usage = (SELECT jsonb_build_object(
                               'input_tokens', coalesce(sum((usage->>'input_tokens')::bigint), 0),
                               'output_tokens', coalesce(sum((usage->>'output_tokens')::bigint), 0),
                               'cache_read_tokens', coalesce(sum((usage->>'cache_read_tokens')::bigint), 0),
                               'cache_write_tokens', coalesce(sum((usage->>'cache_write_tokens')::bigint), 0))
                             FROM chat_debug_steps WHERE run_id = r.id)
             WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .bind(to)
        .bind(error.map(pg_json))
        .bind(to.is_finished())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The chat's newest runs (at most `limit`), newest first.
    pub async fn list_debug_runs(
        &self,
        chat_id: Uuid,
        limit: i64,
    ) -> Result<Vec<DebugRun>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM chat_debug_runs WHERE chat_id = $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(chat_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One run of the chat with its steps, oldest step first.
    pub async fn get_debug_run(
        &self,
        chat_id: Uuid,
        run_id: Uuid,
    ) -> Result<(DebugRun, Vec<DebugStep>), StoreError> {
        let run: DebugRun = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM chat_debug_runs WHERE id = $1 AND chat_id = $2"
        )))
        .bind(run_id)
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let steps = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM chat_debug_steps WHERE run_id = $1 ORDER BY id"
        )))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok((run, steps))
    }

    /// Turns the owner's own debug logging switch on or off.
    pub async fn set_user_debug_logging(
        &self,
        user: Uuid,
        enabled: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET debug_logging_enabled = $2 WHERE id = $1")
            .bind(user)
            .bind(enabled)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
