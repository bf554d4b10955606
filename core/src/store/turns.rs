//! The turn state machine: acquire, renew, complete, fail (ARCHITECTURE.md §4.2).
//!
//! Each transition names its from-state and the lease owner, so a duplicate `RunTurn`
//! finds nothing to acquire and a worker that lost its lease cannot write a result.

use std::{sync::LazyLock, time::Duration};

use sqlx::{FromRow, Row, types::Json};
use uuid::Uuid;

use super::{
    MESSAGE_COLUMNS, Store,
    chat_list_entries::{ChatListEntry, entry_json, entry_of},
    model_contexts::EFFECTIVE_MODEL,
    pg_json, pg_text,
    sql_functions::{Called, SqlFunction, fetch_optional_calling},
    titles::{AnswerTitle, UNCLAIMED},
};
use crate::{
    ChatError, StoreError,
    domain::{AcquiredTurn, ChatStatus, Message, MessagePart, Usage},
};

/// What a worker hands the store when a step produced its final answer.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The assistant's parts.
    pub content: Vec<MessagePart>,
    /// Model name as the provider reported it.
    pub model: String,
    /// Token usage.
    pub usage: Usage,
    /// Cost in micro-dollars, when pricing is known.
    pub cost_micros: Option<i64>,
}

/// One turn a batched acquisition took ([`Store::acquire_turns`]): its id and the lease
/// owner it was taken for, and the turn as the worker reads it.
#[derive(Debug)]
pub struct TakenTurn {
    /// The turn.
    pub id: Uuid,
    /// The acquisition that took it.
    pub lease_owner: String,
    /// The acquired turn, or why its row could not be read.
    pub turn: Result<AcquiredTurn, StoreError>,
}

/// What finishing a turn led to.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    /// The assistant message just persisted (None when the turn failed).
    pub message: Option<Message>,
    /// The user message promoted from the queue, which starts `next_turn_id`.
    pub promoted: Option<Message>,
    /// A new queued turn to enqueue.
    pub next_turn_id: Option<Uuid>,
    /// The chat's status after the commit.
    pub status: ChatStatus,
    /// `wait_agent` calls parked on this chat (a subagent) that its now idle state
    /// completes: enqueue one `RunToolCall` each (ARCHITECTURE.md §7, subagents).
    pub waiting_calls: Vec<Uuid>,
    /// A generated title is pending after this answer (`store::titles`): asked for by
    /// this first answer, or still pending (a failed attempt, a lost job) with no call in
    /// flight for it. The worker generates it next.
    pub title_pending: bool,
    /// The chat's list entry as the finish committed it (`None`: announced after a read).
    pub list_entry: Option<Box<ChatListEntry>>,
}

impl TurnOutcome {
    /// The outcome of a finished turn: `Pending` when a queued message was promoted (it
    /// has a next turn), else the `idle` status the finish left the chat in.
    pub(super) fn new(
        message: Option<Message>,
        promoted: Option<Message>,
        next_turn_id: Option<Uuid>,
        idle: ChatStatus,
    ) -> Self {
        let status = if next_turn_id.is_some() {
            ChatStatus::Pending
        } else {
            idle
        };
        Self {
            message,
            promoted,
            next_turn_id,
            status,
            waiting_calls: Vec::new(),
            title_pending: false,
            list_entry: None,
        }
    }
}

impl Store {
    /// `queued` -> `running` with a lease for `worker`; the chat goes `running`.
    /// `None` means another delivery already took it (or it finished): ack and move on.
    /// Every acquisition counts in `attempt` (reset when tool results start a new step), so
    /// the caller can refuse to run a step that keeps coming back.
    ///
    /// Lock order: the chat row first (`c`), then the turn, like every other transition.
    /// A chat another transaction holds is waited for.
    pub async fn acquire_turn(
        &self,
        turn_id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<AcquiredTurn>, StoreError> {
        let taken = self
            .acquire_in(&[(turn_id, worker.to_owned())], lease, "FOR UPDATE")
            .await?;
        Ok(match taken.first() {
            Some(row) => Some(acquired(row)?),
            None => None,
        })
    }

    /// [`Store::acquire_turn`] for many turns in one statement, each `(turn, lease owner)`:
    /// returns the turns taken, each with its owner. A worker batches the acquisitions of
    /// the jobs it starts together (`worker::turn::acquisitions`): one statement, one
    /// commit and one round trip for all of them.
    ///
    /// Each turn taken is read on its own ([`TakenTurn`]): a row the worker cannot read
    /// (a value a newer version wrote) is that turn's error, not its batch's.
    ///
    /// **Never waits for a chat's lock**: a chat another transaction holds right now is skipped
    /// (`SKIP LOCKED`), and its turn is missing from the answer, as is a turn that was not
    /// `queued` (another delivery took it, or it finished). The caller takes each missing
    /// turn alone with [`Store::acquire_turn`], which waits and tells the two apart. A
    /// statement holding several chats' locks that waited for another could close a cycle
    /// with a transaction that locks two chats in another order (a family's root before
    /// its subagents; a pin that renumbers its owner's other pinned chats); one that never
    /// waits cannot. (It may wait, briefly, for a turn row that a lease renewal or
    /// recovery's resend holds: single statements that take no other lock and never wait.)
    /// A turn named twice (a duplicate delivery in the same batch) is taken once, by one of
    /// its owners.
    pub async fn acquire_turns(
        &self,
        turns: &[(Uuid, String)],
        lease: Duration,
    ) -> Result<Vec<TakenTurn>, StoreError> {
        let rows = self
            .acquire_in(turns, lease, "FOR UPDATE SKIP LOCKED")
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TakenTurn {
                    id: row.try_get("id")?,
                    lease_owner: row.try_get("lease_owner")?,
                    turn: acquired(row),
                })
            })
            .collect()
    }

    /// The acquisition of `turns`, their chats locked with `lock` (in `c`, evaluated once
    /// before any turn is: `= ANY(ARRAY(...))` runs it as an init plan), then the turns.
    /// Each turn comes with its chat's prompt history (a step's first read, one statement
    /// fewer a step), read with the snapshot the statement started with, like everything
    /// else it reads: a statement that waited for a chat's lock does not see what the
    /// holder committed meanwhile. That is exact because whatever a queued turn's
    /// conversation holds commits no later than the turn is queued (a message with its
    /// turn, tool results with the step they queue, a summary with the step that wrote it)
    /// and nothing adds to it while the turn waits (a message sent meanwhile waits in the
    /// chat's queue; an edit or a regenerate needs an idle chat). A turn this statement
    /// takes was `queued` in that snapshot, so its conversation is there too.
    ///
    /// The statement goes from the ids to their rows by primary key in the plan a worker
    /// connection makes with no statistics, as in one made with them. A worker caches one
    /// generic plan a connection ([`crate::db::Plans::Generic`]), made when the connection
    /// first runs the statement: on a new database that is while the tables are empty, and
    /// where nothing analyzes them (autovacuum off) the plan is kept as they grow. A planner
    /// with no statistics takes a table for ten pages, which a scan reads for less than ten
    /// lookups cost, and it takes a batch for ten ids. So, from what bench/RESULTS.md
    /// (session 21) measured of the plans made that way:
    /// - `w` ends in `LIMIT cardinality($1)`, which takes nothing away but makes the batch
    ///   one row to the planner (a limit it cannot read is a tenth of its input), so each
    ///   turn and each chat is one lookup by primary key. With ten ids, the plan scanned
    ///   every chat at each acquisition (191 buffer hits a turn over 10,000 turns with four
    ///   worker processes, growing with the tables).
    /// - The turns' status is tested as `(status = 'queued') IS TRUE` (the same: `status` is
    ///   never null), which no index answers: `chat_turns_unfinished_idx` looks a few rows
    ///   big without statistics, and a plan that read it for `queued` read every turn that
    ///   was ever queued and not vacuumed since.
    /// - The chats' update has no status filter a scan could serve: a chat whose turn is
    ///   `queued` is `pending`, and a `CASE` leaves any other status (and its `updated_at`)
    ///   as it was. Its `RETURNING` is each chat's list entry as the statement left it
    ///   ([`AcquiredTurn::list_entry`]).
    async fn acquire_in(
        &self,
        turns: &[(Uuid, String)],
        lease: Duration,
        lock: &str,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        let (ids, owners): (Vec<Uuid>, Vec<&str>) =
            turns.iter().map(|(id, o)| (*id, o.as_str())).unzip();
        let mut conn = self.kept.take().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH w AS (
                SELECT * FROM unnest($1::uuid[], $2::text[]) AS w(turn_id, owner)
                LIMIT cardinality($1::uuid[])
             ), c AS (
                SELECT id FROM chats
                WHERE id IN (SELECT chat_id FROM chat_turns
                             WHERE id IN (SELECT turn_id FROM w) AND (status = 'queued') IS TRUE)
                {lock}
             ), t AS (
                UPDATE chat_turns SET status = 'running', attempt = attempt + 1, lease_owner = w.owner,
                       lease_expires_at = now() + make_interval(secs => $3),
                       started_at = coalesce(started_at, now())
                FROM w
                WHERE chat_turns.id = w.turn_id AND (chat_turns.status = 'queued') IS TRUE
                  AND chat_turns.chat_id = ANY(ARRAY(SELECT id FROM c))
                RETURNING chat_turns.id, chat_turns.chat_id, chat_turns.seq, chat_turns.step,
                          chat_turns.attempt, chat_turns.interrupt_requested, chat_turns.lease_owner
             ), cs AS (
                UPDATE chats
                SET status = CASE WHEN chats.status = 'pending' THEN 'running' ELSE chats.status END,
                    updated_at = CASE WHEN chats.status = 'pending' THEN now() ELSE chats.updated_at END
                FROM t WHERE chats.id = t.chat_id
                RETURNING chats.id, {ENTRY} AS list_entry
             )
             SELECT t.id, t.chat_id, ch.owner_id, t.seq, t.step, t.attempt, t.interrupt_requested, t.lease_owner, ch.dynamic_tools, ch.plan_mode,
                    (u.debug_logging_enabled AND coalesce(s.debug_logging_enabled, false)) AS debug,
                    {EFFECTIVE_MODEL} AS model_config_id, ch.parent_chat_id, ch.mode,
                    par.plan_mode AS parent_plan_mode, ch.reasoning_effort, {SOURCES}, {MCP},
                    {HISTORY} AS history, cs.list_entry
             FROM t JOIN chats ch ON ch.id = t.chat_id
             LEFT JOIN cs ON cs.id = t.chat_id
             LEFT JOIN chats par ON par.id = ch.parent_chat_id
             JOIN users u ON u.id = ch.owner_id
             LEFT JOIN site_config s ON s.id = 1",
            SOURCES = super::instructions::sources_columns("ch", "u"),
            MCP = super::mcp_servers::any_applies_column("ch"),
            HISTORY = super::summaries::history_column("t.chat_id"),
            ENTRY = entry_json("chats"),
        )))
        .bind(&ids)
        .bind(&owners)
        .bind(lease.as_secs_f64())
        .fetch_all(&mut *conn)
        .await?;
        conn.keep();
        Ok(rows)
    }

    /// Extends the leases on these turns and tool calls, each named with the lease owner
    /// of its acquisition, in one statement however many there are (a worker beats once
    /// for all its work, not once per turn). Returns the ids still held: an id missing
    /// from the answer was lost (its lease expired and recovery or another acquisition
    /// took it), and its holder must stop writing.
    ///
    /// Rows another transaction has locked right now (the step committing) are skipped,
    /// not waited for (`SKIP LOCKED`), and still count as held: the heartbeat never waits
    /// on a lock, so it can never be part of a deadlock, and the next beat renews them.
    pub async fn renew_leases(
        &self,
        turns: &[(Uuid, String)],
        tool_calls: &[(Uuid, String)],
        lease: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        let (turn_ids, turn_owners): (Vec<Uuid>, Vec<&str>) =
            turns.iter().map(|(id, o)| (*id, o.as_str())).unzip();
        let (call_ids, call_owners): (Vec<Uuid>, Vec<&str>) =
            tool_calls.iter().map(|(id, o)| (*id, o.as_str())).unzip();
        Ok(sqlx::query_scalar(
            "WITH wt AS (
                SELECT * FROM unnest($1::uuid[], $2::text[]) AS w(id, owner)
             ), ht AS (
                SELECT t.id FROM chat_turns t JOIN wt ON wt.id = t.id AND wt.owner = t.lease_owner
                WHERE t.status = 'running'
             ), rt AS (
                UPDATE chat_turns SET lease_expires_at = now() + make_interval(secs => $5)
                WHERE id IN (SELECT id FROM chat_turns WHERE id IN (SELECT id FROM ht)
                             FOR UPDATE SKIP LOCKED)
             ), wc AS (
                SELECT * FROM unnest($3::uuid[], $4::text[]) AS w(id, owner)
             ), hc AS (
                SELECT c.id FROM tool_calls c JOIN wc ON wc.id = c.id AND wc.owner = c.lease_owner
                WHERE c.status = 'running'
             ), rc AS (
                UPDATE tool_calls SET lease_expires_at = now() + make_interval(secs => $5)
                WHERE id IN (SELECT id FROM tool_calls WHERE id IN (SELECT id FROM hc)
                             FOR UPDATE SKIP LOCKED)
             )
             SELECT id FROM ht UNION ALL SELECT id FROM hc",
        )
        .bind(&turn_ids)
        .bind(&turn_owners)
        .bind(&call_ids)
        .bind(&call_owners)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// `running` -> `queued`: hands a turn back (this worker cannot finish it: shutdown, or
    /// the database failed mid-turn) so the next delivery of its job runs it again at once
    /// instead of waiting for the lease to expire. Returns whether it was still ours.
    /// The release does not undo the acquisition's count in `attempt`: a turn handed back
    /// again and again still reaches the cap.
    pub async fn release_turn(&self, turn_id: Uuid, worker: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "WITH c AS (
                SELECT id FROM chats WHERE id = (SELECT chat_id FROM chat_turns WHERE id = $1) FOR UPDATE
             ), t AS (
                UPDATE chat_turns SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                       enqueued_at = now()
                WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND EXISTS (SELECT 1 FROM c)
                RETURNING chat_id
             )
             UPDATE chats SET status = 'pending', updated_at = now() FROM t
             WHERE chats.id = t.chat_id AND chats.status = 'running'",
        )
        .bind(turn_id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether the acquisition `owner` still holds `turn_id` (running under its lease).
    pub async fn holds_turn(&self, turn_id: Uuid, owner: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM chat_turns
                            WHERE id = $1 AND status = 'running' AND lease_owner = $2)",
        )
        .bind(turn_id)
        .bind(owner)
        .fetch_one(&self.pool)
        .await?)
    }

    /// `running` -> `completed`: persists the assistant message of `step` and usage, then
    /// promotes the next queued user message (chat `pending`, new turn) or leaves the chat
    /// `waiting`. The answer also settles the chat's title request as `title` says
    /// (`TurnOutcome::title_pending`, `store::titles`). `Ok(None)` means the lease was
    /// lost: nothing was written.
    ///
    /// One round trip: the statements of [`end_step_with_answer`] and
    /// [`promote_queued_message`], in that order, in one call of [`COMPLETE_TURN`] (as a
    /// transaction of those two statements where the role may not define it).
    pub async fn complete_turn(
        &self,
        turn_id: Uuid,
        chat_id: Uuid,
        step: i32,
        worker: &str,
        completion: &Completion,
        title: AnswerTitle,
    ) -> Result<Option<TurnOutcome>, StoreError> {
        let (message_id, next_message_id, next_turn) =
            (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (content, model) = (pg_json(&completion.content), pg_text(&completion.model));
        // A role that may not define the function takes no connection for it.
        let called = if COMPLETE_TURN.cannot_be_called() {
            Called::CannotDefine
        } else {
            let mut conn = self.kept.take().await?;
            let called = fetch_optional_calling(&mut conn, &COMPLETE_TURN, || {
                sqlx::query(sqlx::AssertSqlSafe(COMPLETE_TURN_CALL.as_str()))
                    .bind(turn_id)
                    .bind(chat_id)
                    .bind(worker)
                    .bind(step)
                    .bind(message_id)
                    .bind(&content)
                    .bind(&model)
                    .bind(Json(&completion.usage))
                    .bind(completion.cost_micros)
                    .bind(next_message_id)
                    .bind(next_turn)
                    .bind(ChatStatus::Waiting)
                    .bind(title_request(title))
            })
            .await?;
            conn.keep();
            called
        };
        let row = match called {
            Called::Row(Some(row)) => row,
            Called::Row(None) => return Ok(None),
            Called::CannotDefine => {
                let of = StepOfTurn::new(turn_id, chat_id, step);
                return self
                    .complete_turn_in_transaction(of, worker, completion, title)
                    .await;
            }
        };
        let Json(message) = row.try_get::<Json<Message>, _>("answer")?;
        outcome_of_promotion(&row, Some(message), next_turn, ChatStatus::Waiting).map(Some)
    }

    /// [`Store::complete_turn`] as a transaction of its two statements, for a role that
    /// may not define [`COMPLETE_TURN`].
    async fn complete_turn_in_transaction(
        &self,
        of: StepOfTurn,
        worker: &str,
        completion: &Completion,
        title: AnswerTitle,
    ) -> Result<Option<TurnOutcome>, StoreError> {
        let tx = self.pool.begin().await?;
        let Some((mut tx, message)) =
            end_step_with_answer(tx, of, worker, StepEnd::Completed, completion).await?
        else {
            return Ok(None);
        };
        let outcome = promote_queued_message(
            &mut tx,
            of.chat_id,
            Some(message),
            ChatStatus::Waiting,
            Some(title),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// `running` -> `failed` with a [`ChatError`]: the chat goes `error` with `last_error`,
    /// unless a queued message was waiting, which then starts the next turn.
    /// `Ok(None)` means the lease was lost.
    pub async fn fail_turn(
        &self,
        turn_id: Uuid,
        chat_id: Uuid,
        worker: &str,
        error: &ChatError,
    ) -> Result<Option<TurnOutcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lock_root_of(&mut tx, chat_id).await?;
        let failed = sqlx::query(
            "WITH c AS (
                UPDATE chats SET last_error = $4, updated_at = now() WHERE id = $2 RETURNING id
             )
             UPDATE chat_turns SET status = 'failed', finished_at = now(), error = $4,
                    lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND status = 'running' AND lease_owner = $3 AND EXISTS (SELECT 1 FROM c)",
        )
        .bind(turn_id)
        .bind(chat_id)
        .bind(worker)
        .bind(pg_json(error))
        .execute(&mut *tx)
        .await?;
        if failed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let outcome =
            promote_queued_message(&mut tx, chat_id, None, ChatStatus::Error, None).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }
}

/// Ends a finish (complete, fail, interrupt, recovery) the one way: moves the oldest queued
/// message into the conversation with a new queued turn (chat `pending`), or sets the chat
/// to `idle` (`waiting` or `error`) when the queue is empty, and returns the outcome whose
/// `status` is the chat's status after it. `message` is the assistant message the finish
/// wrote, if any; `title`, given for a completed answer, settles the chat's title request
/// (`store::titles`, [`AnswerTitle`]).
///
/// One statement, which also reads the `wait_agent` calls parked on the chat when nothing
/// is promoted: one version of the chat row per finish, and one round trip.
///
/// **The caller must have locked the chat row in an earlier statement of `tx`.** This
/// statement's reads (`first`, the parked calls) use the snapshot taken when it starts;
/// only a lock taken before that makes them exact. Were the lock first taken by the update
/// below, it would wait for a transaction parking a `wait_agent` call on this chat, then
/// update the chat while the read of parked calls, from the older snapshot, missed that
/// call: its nudge would be lost until recovery (store::subagents).
pub(super) async fn promote_queued_message(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    message: Option<Message>,
    idle: ChatStatus,
    title: Option<AnswerTitle>,
) -> Result<TurnOutcome, StoreError> {
    let turn_id = Uuid::now_v7();
    let row = sqlx::query(sqlx::AssertSqlSafe(promotion_sql(
        &Promotion::STATEMENT,
        "",
    )))
    .bind(chat_id)
    .bind(Uuid::now_v7())
    .bind(turn_id)
    .bind(idle)
    .bind(title.map(title_request))
    .fetch_one(&mut *tx)
    .await?;
    outcome_of_promotion(&row, message, turn_id, idle)
}

/// The title request a finish writes for `title` (`store::titles`).
fn title_request(title: AnswerTitle) -> &'static str {
    match title {
        AnswerTitle::Generate => "pending",
        AnswerTitle::Keep => "done",
    }
}

/// The outcome of a finish from the row of [`promotion_sql`] (read alone or in
/// [`COMPLETE_TURN`]'s row): `next_turn` is the id the promotion gave its new turn.
fn outcome_of_promotion(
    row: &sqlx::postgres::PgRow,
    message: Option<Message>,
    next_turn: Uuid,
    idle: ChatStatus,
) -> Result<TurnOutcome, StoreError> {
    // Read after the commit when the finish was one call (`COMPLETE_TURN`): a promoted
    // message this build cannot read (a newer version queued it) costs its event only.
    let promoted = row.try_get::<Option<serde_json::Value>, _>("promoted")?;
    let next_turn_id = promoted.as_ref().map(|_| next_turn);
    let promoted = promoted.and_then(|json| {
        serde_json::from_value::<Message>(json)
            .inspect_err(|e| {
                tracing::warn!(turn = %next_turn, error = %e,
                    "the promoted message cannot be read; its turn goes on without its event");
            })
            .ok()
    });
    let mut outcome = TurnOutcome::new(message, promoted, next_turn_id, idle);
    outcome.waiting_calls = row.try_get("waiting_calls")?;
    outcome.title_pending = row.try_get("title_pending")?;
    outcome.list_entry = entry_of(row, "list_entry")?;
    Ok(outcome)
}

/// A turn from a row of [`Store::acquire_turns`]'s statement, with its chat's list entry.
fn acquired(row: &sqlx::postgres::PgRow) -> Result<AcquiredTurn, StoreError> {
    let mut turn = AcquiredTurn::from_row(row)?;
    turn.list_entry = entry_of(row, "list_entry")?;
    Ok(turn)
}

/// Where [`promotion_sql`] finds its values: a parameter (`$n`) each.
struct Promotion {
    chat: &'static str,
    message_id: &'static str,
    turn_id: &'static str,
    idle: &'static str,
    title: &'static str,
}

impl Promotion {
    /// The statement [`promote_queued_message`] runs: its five parameters.
    const STATEMENT: Self = Self {
        chat: "$1",
        message_id: "$2",
        turn_id: "$3",
        idle: "$4",
        title: "$5",
    };
}

/// The promotion's statement ([`promote_queued_message`] documents it), its values taken
/// from `p`, its row led by `lead` (columns a caller adds before its own). One row:
/// `title_pending`, `waiting_calls`, and `promoted`, the user message promoted (as JSON,
/// null when the queue was empty), and `list_entry`, the chat's list entry as the update
/// left it (null when it changed nothing).
fn promotion_sql(p: &Promotion, lead: &str) -> String {
    let Promotion {
        chat,
        message_id,
        turn_id,
        idle,
        title,
    } = p;
    format!(
        "WITH first AS (
            -- Read under the chat's row lock: exact, and what the update below changes.
            SELECT {title}::text IS NOT NULL AND title_generation IS NULL
                   AND parent_chat_id IS NULL AND NOT title_set_by_user AS asks
            FROM chats WHERE id = {chat}
         ), q AS (
            DELETE FROM chat_queued_messages
            WHERE id = (SELECT id FROM chat_queued_messages WHERE chat_id = {chat} ORDER BY id LIMIT 1)
            RETURNING content, model_config_id
         ), t AS (
            INSERT INTO chat_turns (id, chat_id, seq, status)
            SELECT {turn_id}, {chat}, (SELECT coalesce(max(seq), 0) + 1 FROM chat_turns WHERE chat_id = {chat}), 'queued'
            FROM q
         ), c AS (
            UPDATE chats SET
                status = CASE WHEN EXISTS (SELECT 1 FROM q) THEN 'pending' ELSE {idle} END,
                -- The promoted message's switch of model applies from its turn on.
                model_config_id = coalesce((SELECT model_config_id FROM q), chats.model_config_id),
                title_generation = CASE
                    WHEN (SELECT asks FROM first) THEN {title}
                    -- Titles off: a request another worker left pending is closed, unless
                    -- that worker's call is in flight (store::titles).
                    WHEN {title} = 'done' AND title_generation = 'pending' AND {UNCLAIMED} THEN 'done'
                    ELSE title_generation END,
                title_requested_at = CASE WHEN (SELECT asks FROM first) AND {title} = 'pending' THEN now()
                                          ELSE title_requested_at END,
                last_activity_at = now(), updated_at = now()
            WHERE id = {chat} AND status IN ('running', 'pending', 'requires_action')
            -- Pending and free to claim: a call in flight is left alone.
            RETURNING title_generation = 'pending' AND {UNCLAIMED} AS title_pending,
                      {ENTRY} AS list_entry
         ), m AS (
            INSERT INTO chat_messages (id, chat_id, turn_id, role, content)
            SELECT {message_id}, {chat}, {turn_id}, 'user', q.content FROM q
            RETURNING {MESSAGE_COLUMNS}
         )
         SELECT {lead} coalesce((SELECT title_pending FROM c) AND {title} = 'pending', false) AS title_pending,
                -- Nothing promoted: a parent's `wait_agent` parked on this chat may complete.
                CASE WHEN EXISTS (SELECT 1 FROM q) THEN '{{}}'::uuid[]
                     ELSE ARRAY(SELECT id FROM tool_calls
                                WHERE waits_for_chat_id = {chat} AND status = 'waiting')
                END AS waiting_calls,
                (SELECT to_jsonb(m) FROM m) AS promoted,
                (SELECT list_entry FROM c) AS list_entry",
        ENTRY = entry_json("chats"),
    )
}

/// [`Store::complete_turn`]'s function: the answer's statement ([`end_step_sql`], for a
/// final answer: the root's and the chat's locks, the turn `completed`, the message), then
/// the promotion's ([`promotion_sql`]), which starts after the locks are held and so reads
/// what their last holders committed. No row when the lease was lost (nothing written).
/// Parameters: `$1`..`$9` the answer's, then the promoted message's id, the new turn's,
/// the idle status and the title request (`$10`..`$13`). Its row: the answer (as JSON),
/// then the promotion's columns.
pub(super) static COMPLETE_TURN: LazyLock<SqlFunction> = LazyLock::new(|| {
    SqlFunction::new("complete_turn", |name| {
        let (answer, insert) = end_step_sql(StepEnd::Completed);
        const PROMOTION: Promotion = Promotion {
            chat: "$2",
            message_id: "$10",
            turn_id: "$11",
            idle: "$12",
            title: "$13",
        };
        format!(
            "CREATE OR REPLACE FUNCTION {name}(
                 uuid, uuid, text, integer, uuid, jsonb, text, jsonb, bigint,
                 uuid, uuid, text, text)
             RETURNS TABLE (f_answer jsonb, f_title_pending boolean, f_waiting_calls uuid[],
                            f_promoted jsonb, f_list_entry jsonb)
             LANGUAGE plpgsql VOLATILE AS $agentq$
             DECLARE v_answer jsonb;
             BEGIN
                 WITH {answer}, m AS ({insert} RETURNING {MESSAGE_COLUMNS})
                 SELECT to_jsonb(m) INTO v_answer FROM m;
                 IF v_answer IS NULL THEN
                     RETURN;
                 END IF;
                 RETURN QUERY {promotion};
             END
             $agentq$",
            promotion = promotion_sql(&PROMOTION, "v_answer,"),
        )
    })
});

/// The call of [`COMPLETE_TURN`] that [`Store::complete_turn`] makes: its row named as
/// [`outcome_of_promotion`] reads it, the answer first.
static COMPLETE_TURN_CALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT f.* FROM {}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             AS f(answer, title_pending, waiting_calls, promoted, list_entry)",
        COMPLETE_TURN.name
    )
});

/// Which step of which turn an assistant message answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepOfTurn {
    pub turn_id: Uuid,
    pub chat_id: Uuid,
    pub step: i32,
}

impl StepOfTurn {
    pub(super) fn new(turn_id: Uuid, chat_id: Uuid, step: i32) -> Self {
        Self {
            turn_id,
            chat_id,
            step,
        }
    }
}

/// Where a step that produced an answer leaves its turn.
#[derive(Debug, Clone, Copy)]
pub(super) enum StepEnd {
    /// A final answer: `completed`.
    Completed,
    /// Tool calls: `awaiting_tools` (the caller stores the calls).
    AwaitingTools,
}

/// The statement of [`end_step_with_answer`] up to its `RETURNING`, in two parts: the
/// queries of its `WITH` (the locks, the turn's update) and the insert of the message
/// that follows them. `$1` the turn, `$2` the chat, `$3` the lease owner, `$4` the step,
/// `$5` the message's id, `$6`..`$9` its content, model, usage and cost.
fn end_step_sql(end: StepEnd) -> (String, &'static str) {
    // A finish moves the chat's `last_activity_at` (the promotion after it), and a
    // subagent's moves its root's by trigger: the root's lock comes first (`r`, read by the
    // chat's filter before the chat row is locked), as in `lock_chat`. A tool step changes
    // nothing of the root.
    let (ended, root, after_root) = match end {
        StepEnd::Completed => (
            "status = 'completed', finished_at = now(), lease_owner = NULL,
             lease_expires_at = NULL, step = $4",
            "r AS (
                SELECT id FROM chats WHERE id = (SELECT root_chat_id FROM chats WHERE id = $2) FOR UPDATE
             ),",
            "AND (SELECT count(*) FROM r) >= 0",
        ),
        StepEnd::AwaitingTools => (
            "status = 'awaiting_tools', lease_owner = NULL, lease_expires_at = NULL, step = $4",
            "",
            "",
        ),
    };
    let ctes = format!(
        "{root} c AS (
            SELECT id FROM chats WHERE id = $2 {after_root} FOR UPDATE
         ), t AS (
            UPDATE chat_turns SET {ended}
            WHERE id = $1 AND status = 'running' AND lease_owner = $3 AND EXISTS (SELECT 1 FROM c)
            RETURNING id
         )"
    );
    let insert = "INSERT INTO chat_messages (id, chat_id, turn_id, role, step, content, model, usage, cost_micros, interrupted)
         SELECT $5, $2, t.id, 'assistant', $4, $6, $7, $8, $9, false FROM t";
    (ctes, insert)
}

/// `running` -> `end` for the lease owner `worker`, and the step's assistant message, in
/// one statement in `tx`, which is handed back to go on. Locks the chat row first (`c`;
/// for a final answer the root's before it, `r`: [`end_step_sql`], whose final answers
/// [`Store::complete_turn`] runs in its function), then the turn, as `send_message` does.
/// `None` when the lease was lost: `tx` is rolled back, nothing written. The message's content and model go through `pg_json`/`pg_text`
/// because a model controls them (as in [`insert_interrupted_message`]).
pub(super) async fn end_step_with_answer(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    of: StepOfTurn,
    worker: &str,
    end: StepEnd,
    completion: &Completion,
) -> Result<Option<(sqlx::Transaction<'static, sqlx::Postgres>, Message)>, StoreError> {
    let (ctes, insert) = end_step_sql(end);
    let message: Option<Message> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH {ctes} {insert} RETURNING {MESSAGE_COLUMNS}"
    )))
    .bind(of.turn_id)
    .bind(of.chat_id)
    .bind(worker)
    .bind(of.step)
    .bind(Uuid::now_v7())
    .bind(pg_json(&completion.content))
    .bind(pg_text(&completion.model))
    .bind(Json(&completion.usage))
    .bind(completion.cost_micros)
    .fetch_optional(&mut *tx)
    .await?;
    match message {
        Some(message) => Ok(Some((tx, message))),
        None => {
            tx.rollback().await?;
            Ok(None)
        }
    }
}

/// Stores the assistant message of an interrupted step (what had streamed, marked
/// `interrupted`), in the transaction that moved its turn out of `running`; a step that
/// ended with an answer writes its message in the same statement
/// ([`end_step_with_answer`]). Content and model go through `pg_json`/`pg_text` because a
/// model controls them.
pub(super) async fn insert_interrupted_message(
    tx: &mut sqlx::PgConnection,
    of: StepOfTurn,
    completion: &Completion,
) -> Result<Message, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO chat_messages (id, chat_id, turn_id, role, step, content, model, usage, cost_micros, interrupted)
         VALUES ($1, $2, $3, 'assistant', $4, $5, $6, $7, $8, true)
         RETURNING {MESSAGE_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(of.chat_id)
    .bind(of.turn_id)
    .bind(of.step)
    .bind(pg_json(&completion.content))
    .bind(pg_text(&completion.model))
    .bind(Json(&completion.usage))
    .bind(completion.cost_micros)
    .fetch_one(&mut *tx)
    .await?)
}
