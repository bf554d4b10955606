//! Tool calls as jobs (ARCHITECTURE.md §4.3): fan-out when a step asks for tools,
//! one conditional transition per call, and fan-in exactly once when the step's last call
//! finishes.
//!
//! Fan-in takes the turn row lock before it looks at the step's calls, so two calls that
//! finish at the same instant on two processes serialize: the second one sees the first's
//! result, and only one moves the turn `awaiting_tools` -> `queued`.

use std::time::Duration;

use sqlx::types::Json;
use uuid::Uuid;

use std::borrow::Cow;

use super::{
    MESSAGE_COLUMNS, Store, pg_json, pg_text,
    turns::{
        Completion, StepEnd, StepOfTurn, TurnOutcome, end_step_with_answer, promote_queued_message,
    },
};
use crate::{
    StoreError,
    domain::{
        AcquiredTurn, ChatStatus, Message, MessagePart, ToolCallKind, ToolCallRow, ToolCallStatus,
    },
};

/// A call the model asked for.
#[derive(Debug, Clone)]
pub struct NewToolCall {
    /// The provider's call id.
    pub provider_call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments.
    pub arguments: serde_json::Value,
    /// Whether the client runs it (`requires_action`) instead of a worker.
    pub dynamic: bool,
    /// The tool source that offered it in this step, or `not_offered` (the worker's tool
    /// registry decides; ARCHITECTURE.md §7). A worker runs the call from this source.
    pub source: String,
}

/// What recording a tool step produced.
#[derive(Debug, Clone)]
pub struct ToolStep {
    /// The assistant message of the step (text and tool-call parts).
    pub message: Message,
    /// Calls a worker runs: enqueue one `RunToolCall` each.
    pub builtin: Vec<ToolCallRow>,
    /// Calls the client runs: announce them in an `action_required` event.
    pub dynamic: Vec<ToolCallRow>,
}

/// The step's last call finished: the turn is `queued` again with the results, or, when
/// a plan-mode call of the step succeeded, `completed` with the chat waiting for the user.
#[derive(Debug, Clone)]
pub struct FanIn {
    /// The turn to enqueue.
    pub turn_id: Uuid,
    /// Its chat.
    pub chat_id: Uuid,
    /// The tool message holding every result of the step.
    pub results: Message,
    /// `Some`: the turn completed and waits for the user (`requires_action`, or a queued
    /// message promoted as the answer); nothing resumes `turn_id`.
    pub awaits_user: Option<Box<TurnOutcome>>,
}

/// One result a client posts for a dynamic call.
#[derive(Debug, Clone)]
pub struct ToolResultInput {
    /// `tool_calls.id`.
    pub tool_call_id: Uuid,
    /// The output.
    pub output: serde_json::Value,
    /// Whether the tool failed.
    pub is_error: bool,
}

/// Why posted tool results were refused; each names the ids concerned.
#[derive(Debug, thiserror::Error)]
pub enum ToolResultsError {
    /// The chat does not exist or is not the caller's.
    #[error("chat not found")]
    NotFound,
    /// The chat is not waiting for tool results.
    #[error("the chat is not waiting for tool results")]
    NotWaiting,
    /// Ids that are not waiting calls of this chat.
    #[error("unknown tool_call_id(s): {0:?}")]
    Unknown(Vec<Uuid>),
    /// Ids given more than once.
    #[error("duplicate tool_call_id(s): {0:?}")]
    Duplicate(Vec<Uuid>),
    /// Waiting calls without a result.
    #[error("missing results for tool_call_id(s): {0:?}")]
    Missing(Vec<Uuid>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ToolResultsError {
    fn from(e: sqlx::Error) -> Self {
        ToolResultsError::Store(e.into())
    }
}

const TOOL_CALL_COLUMNS: &str =
    "id, turn_id, chat_id, step, provider_call_id, name, arguments, kind, source, status, attempt";

impl Store {
    /// `running` -> `awaiting_tools`: stores the step's assistant message and one row per
    /// call (builtin `queued`, dynamic `waiting` with a deadline); the chat goes
    /// `requires_action` when a dynamic call waits. `Ok(None)`: the lease was lost.
    /// Locks the chat row first (`c`), then the turn.
    pub async fn record_tool_step(
        &self,
        turn: &AcquiredTurn,
        worker: &str,
        completion: &Completion,
        calls: &[NewToolCall],
        dynamic_deadline: Duration,
    ) -> Result<Option<ToolStep>, StoreError> {
        let (turn_id, chat_id, step) = (turn.id, turn.chat_id, turn.step);
        let of = StepOfTurn::new(turn_id, chat_id, step);
        let Some((mut tx, message)) = end_step_with_answer(
            self.pool.begin().await?,
            of,
            worker,
            StepEnd::AwaitingTools,
            completion,
        )
        .await?
        else {
            return Ok(None);
        };
        let ids: Vec<Uuid> = calls.iter().map(|_| Uuid::now_v7()).collect();
        let provider_ids: Vec<Cow<str>> =
            calls.iter().map(|c| pg_text(&c.provider_call_id)).collect();
        let names: Vec<Cow<str>> = calls.iter().map(|c| pg_text(&c.name)).collect();
        let arguments: Vec<Json<serde_json::Value>> =
            calls.iter().map(|c| pg_json(&c.arguments)).collect();
        let kinds: Vec<&str> = calls
            .iter()
            .map(|c| if c.dynamic { "dynamic" } else { "builtin" })
            .collect();
        let sources: Vec<&str> = calls.iter().map(|c| c.source.as_str()).collect();
        let rows: Vec<ToolCallRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tool_calls (id, turn_id, chat_id, step, provider_call_id, name, arguments, kind, source, status, deadline_at)
             SELECT c.id, $1, $2, $3, c.provider_call_id, c.name, c.arguments, c.kind, c.source,
                    CASE WHEN c.kind = 'dynamic' THEN 'waiting' ELSE 'queued' END,
                    CASE WHEN c.kind = 'dynamic' THEN now() + make_interval(secs => $9) END
             FROM unnest($4::uuid[], $5::text[], $6::text[], $7::jsonb[], $8::text[], $10::text[])
                  AS c(id, provider_call_id, name, arguments, kind, source)
             RETURNING {TOOL_CALL_COLUMNS}"
        )))
        .bind(turn_id)
        .bind(chat_id)
        .bind(step)
        .bind(&ids)
        .bind(&provider_ids)
        .bind(&names)
        .bind(&arguments)
        .bind(&kinds)
        .bind(dynamic_deadline.as_secs_f64())
        .bind(&sources)
        .fetch_all(&mut *tx)
        .await?;
        let (dynamic, builtin): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| r.kind == ToolCallKind::Dynamic);
        if !dynamic.is_empty() {
            sqlx::query(
                "UPDATE chats SET status = 'requires_action', updated_at = now()
                 WHERE id = $1 AND status = 'running'",
            )
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(ToolStep {
            message,
            builtin,
            dynamic,
        }))
    }

    /// `queued` -> `running` for `worker`, or `waiting` -> `running` for a parked
    /// `wait_agent` call whose child is idle (or gone) or whose deadline passed
    /// (`store::subagents`). `None`: a duplicate job, the call is done, or it still waits.
    pub async fn acquire_tool_call(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ToolCallRow>, StoreError> {
        // Taking up a parked wait again is not a new attempt: only starts after a lost
        // worker count against recovery's cap.
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE tool_calls SET status = 'running',
                    attempt = CASE WHEN status = 'waiting' THEN attempt ELSE attempt + 1 END,
                    lease_owner = $2,
                    lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND (status = 'queued'
                    OR (status = 'waiting' AND waits_for_chat_id IS NOT NULL
                        AND (deadline_at <= now()
                             OR NOT EXISTS (SELECT 1 FROM chats ch WHERE ch.id = waits_for_chat_id
                                            AND ch.status NOT IN ('waiting', 'error')))))
             RETURNING {TOOL_CALL_COLUMNS}"
        )))
        .bind(id)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `running` -> `succeeded`/`failed` with its output, then fan-in. `Ok(None)` when the
    /// lease was lost or other calls of the step are still unfinished.
    ///
    /// Two statements before the commit when other calls of the step still run (the usual
    /// case with parallel calls, which queue for these locks one after another): the locks,
    /// then the write with the check for unfinished calls. The check must be a statement
    /// after the one that waited for the turn's lock: a statement keeps the snapshot it
    /// started with, and a sibling call that finished while this one waited would look
    /// unfinished to it, so neither would fan in.
    pub async fn finish_tool_call(
        &self,
        call: &ToolCallRow,
        worker: &str,
        output: &serde_json::Value,
        is_error: bool,
    ) -> Result<Option<FanIn>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The chat row (its root's first, for a subagent: `lock_chat`), then the turn's.
        let locked: Option<i32> = sqlx::query_scalar(
            "WITH r AS (
                SELECT id FROM chats WHERE id = (SELECT root_chat_id FROM chats WHERE id = $1) FOR UPDATE
             ), c AS (
                SELECT id FROM chats WHERE id = $1 AND (SELECT count(*) FROM r) >= 0 FOR UPDATE
             )
             SELECT 1 FROM chat_turns WHERE id = $2 AND (SELECT count(*) FROM c) = 1 FOR UPDATE",
        )
        .bind(call.chat_id)
        .bind(call.turn_id)
        .fetch_optional(&mut *tx)
        .await?;
        if locked.is_none() {
            // The chat was deleted (retention) while the tool ran: nothing to record.
            tx.rollback().await?;
            return Ok(None);
        }
        // The call's own row still reads `running` in this statement's snapshot: `id <> $1`.
        let (done, unfinished): (bool, bool) = sqlx::query_as(
            "WITH d AS (
                UPDATE tool_calls SET status = $4, result = $3, finished_at = now(), lease_expires_at = NULL
                WHERE id = $1 AND status = 'running' AND lease_owner = $2
                RETURNING id
             )
             SELECT EXISTS (SELECT 1 FROM d),
                    EXISTS (SELECT 1 FROM tool_calls WHERE turn_id = $5 AND step = $6 AND id <> $1
                            AND status IN ('queued', 'running', 'waiting'))",
        )
        .bind(call.id)
        .bind(worker)
        .bind(pg_json(output))
        .bind(ToolCallStatus::finished(is_error))
        .bind(call.turn_id)
        .bind(call.step)
        .fetch_one(&mut *tx)
        .await?;
        if !done {
            tx.rollback().await?;
            return Ok(None);
        }
        let fan_in = if unfinished {
            None
        } else {
            fan_in_all_finished(&mut tx, call.turn_id, call.step).await?
        };
        tx.commit().await?;
        Ok(fan_in)
    }

    /// The calls of a chat's turn that wait for the client.
    pub async fn waiting_tool_calls(&self, chat_id: Uuid) -> Result<Vec<ToolCallRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOOL_CALL_COLUMNS} FROM tool_calls WHERE chat_id = $1 AND status = 'waiting' AND kind = 'dynamic' ORDER BY id"
        )))
        .bind(chat_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores the client's results for every waiting call of the chat, then fans in if no
    /// builtin call of the step still runs (`None`: the last one will). All waiting calls
    /// must be answered at once; anything else is refused, naming ids.
    pub async fn submit_tool_results(
        &self,
        chat_id: Uuid,
        owner: Uuid,
        results: &[ToolResultInput],
    ) -> Result<Option<FanIn>, ToolResultsError> {
        let mut tx = self.pool.begin().await?;
        // The chat row first, then the turn: the order of every transition.
        super::lock_chat(&mut tx, chat_id, Some(owner))
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ToolResultsError::NotFound,
                e => ToolResultsError::Store(e),
            })?;
        let turn: Option<(Uuid, ChatStatus)> = sqlx::query_as(
            "SELECT t.id, c.status FROM chats c
             LEFT JOIN chat_turns t ON t.chat_id = c.id AND t.status = 'awaiting_tools'
             WHERE c.id = $1 AND c.owner_id = $2",
        )
        .bind(chat_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?
        .map(|(t, s): (Option<Uuid>, ChatStatus)| (t.unwrap_or_default(), s));
        let Some((turn_id, status)) = turn else {
            return Err(ToolResultsError::NotFound);
        };
        if status != ChatStatus::RequiresAction || turn_id.is_nil() {
            return Err(ToolResultsError::NotWaiting);
        }
        lock_turn(&mut tx, turn_id).await?;
        let waiting: Vec<(Uuid, i32)> = sqlx::query_as(
            "SELECT id, step FROM tool_calls WHERE turn_id = $1 AND status = 'waiting' AND kind = 'dynamic'
             ORDER BY id",
        )
        .bind(turn_id)
        .fetch_all(&mut *tx)
        .await?;
        let waiting_ids: Vec<Uuid> = waiting.iter().map(|(id, _)| *id).collect();
        let mut seen = std::collections::HashSet::new();
        let duplicates: Vec<Uuid> = results
            .iter()
            .map(|r| r.tool_call_id)
            .filter(|id| !seen.insert(*id))
            .collect();
        if !duplicates.is_empty() {
            return Err(ToolResultsError::Duplicate(duplicates));
        }
        let unknown: Vec<Uuid> = results
            .iter()
            .map(|r| r.tool_call_id)
            .filter(|id| !waiting_ids.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(ToolResultsError::Unknown(unknown));
        }
        let missing: Vec<Uuid> = waiting_ids
            .iter()
            .copied()
            .filter(|id| !seen.contains(id))
            .collect();
        if !missing.is_empty() {
            return Err(ToolResultsError::Missing(missing));
        }
        let ids: Vec<Uuid> = results.iter().map(|r| r.tool_call_id).collect();
        let outputs: Vec<Json<serde_json::Value>> =
            results.iter().map(|r| pg_json(&r.output)).collect();
        let statuses: Vec<ToolCallStatus> = results
            .iter()
            .map(|r| ToolCallStatus::finished(r.is_error))
            .collect();
        sqlx::query(
            "UPDATE tool_calls t SET status = r.status, result = r.output, finished_at = now()
             FROM unnest($1::uuid[], $2::jsonb[], $3::text[]) AS r(id, output, status)
             WHERE t.id = r.id AND t.status = 'waiting' AND t.kind = 'dynamic'",
        )
        .bind(&ids)
        .bind(&outputs)
        .bind(&statuses)
        .execute(&mut *tx)
        .await?;
        let step = waiting.first().map(|(_, s)| *s).unwrap_or_default();
        let fanned = fan_in(&mut tx, turn_id, step).await?;
        if fanned.is_none() {
            // Builtin calls of the step still run; the last of them fans in. The client's
            // part is done, so the chat is no longer waiting for it.
            sqlx::query("UPDATE chats SET status = 'running', updated_at = now() WHERE id = $1 AND status = 'requires_action'")
                .bind(chat_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(fanned)
    }
}

/// Takes the turn row lock that serializes every finish of its calls; the caller holds the
/// chat row lock already (lock order: chat, turn, tool calls).
pub(super) async fn lock_turn(
    tx: &mut sqlx::PgConnection,
    turn_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query("SELECT 1 FROM chat_turns WHERE id = $1 FOR UPDATE")
        .bind(turn_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// If every call of `step` is finished: stores one tool message with their results (in
/// call order), moves the turn `awaiting_tools` -> `queued` at the next step and the chat
/// to `pending`. When a plan-mode call of the step succeeded (`ask_user_question`,
/// `propose_plan`), the turn goes `awaiting_tools` -> `completed` instead and the chat
/// `requires_action` until the user answers (or `pending` when a queued message is promoted
/// as the answer). The caller holds the chat and turn locks, so this runs once per step.
pub(super) async fn fan_in(
    tx: &mut sqlx::PgConnection,
    turn_id: Uuid,
    step: i32,
) -> Result<Option<FanIn>, StoreError> {
    let unfinished: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tool_calls WHERE turn_id = $1 AND step = $2
                        AND status IN ('queued', 'running', 'waiting'))",
    )
    .bind(turn_id)
    .bind(step)
    .fetch_one(&mut *tx)
    .await?;
    if unfinished {
        return Ok(None);
    }
    fan_in_all_finished(tx, turn_id, step).await
}

/// [`fan_in`] once its caller has seen, in a statement after the turn's lock, that every
/// call of `step` is finished.
async fn fan_in_all_finished(
    tx: &mut sqlx::PgConnection,
    turn_id: Uuid,
    step: i32,
) -> Result<Option<FanIn>, StoreError> {
    let awaits_user = super::plan_mode::step_awaits_user(tx, turn_id, step).await?;
    let resumed: Option<Uuid> = sqlx::query_scalar(if awaits_user {
        // The chat's status is the promotion's to set, below.
        "UPDATE chat_turns SET status = 'completed', finished_at = now()
         WHERE id = $1 AND status = 'awaiting_tools' AND step = $2
         RETURNING chat_id"
    } else {
        "WITH t AS (
            UPDATE chat_turns SET status = 'queued', step = step + 1, enqueued_at = now(), attempt = 0
            WHERE id = $1 AND status = 'awaiting_tools' AND step = $2
            RETURNING chat_id
         ), c AS (
            UPDATE chats SET status = 'pending', updated_at = now() FROM t
            WHERE chats.id = t.chat_id AND chats.status IN ('running', 'requires_action', 'pending')
         )
         SELECT chat_id FROM t"
    })
    .bind(turn_id)
    .bind(step)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(chat_id) = resumed else {
        return Ok(None);
    };
    let calls: Vec<(String, Json<serde_json::Value>, ToolCallStatus)> = sqlx::query_as(
        "SELECT provider_call_id, coalesce(result, 'null'::jsonb), status FROM tool_calls
         WHERE turn_id = $1 AND step = $2 ORDER BY id",
    )
    .bind(turn_id)
    .bind(step)
    .fetch_all(&mut *tx)
    .await?;
    let parts: Vec<MessagePart> = calls
        .into_iter()
        .map(|(tool_call_id, output, status)| MessagePart::ToolResult {
            tool_call_id,
            output: output.0,
            is_error: status == ToolCallStatus::Failed,
        })
        .collect();
    let results: Message = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO chat_messages (id, chat_id, turn_id, role, step, content) VALUES ($1, $2, $3, 'tool', $4, $5)
         RETURNING {MESSAGE_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(chat_id)
    .bind(turn_id)
    .bind(step)
    .bind(Json(&parts))
    .fetch_one(&mut *tx)
    .await?;
    let awaits_user = if awaits_user {
        Some(Box::new(
            promote_queued_message(tx, chat_id, None, ChatStatus::RequiresAction, None).await?,
        ))
    } else {
        None
    };
    Ok(Some(FanIn {
        turn_id,
        chat_id,
        results,
        awaits_user,
    }))
}
