//! Runs one step of a chat turn: acquire, stream the provider's answer to the chat's event
//! stream (retrying retryable failures with backoff), then commit what the step produced
//! (ARCHITECTURE.md §7):
//!
//! - a final answer: the assistant message, the turn `completed`, the next queued message
//!   promoted;
//! - tool calls: the assistant message and one `tool_calls` row per call, the turn
//!   `awaiting_tools`, one `RunToolCall` job per call a worker answers (fan-out), an
//!   `action_required` event for the client's own tools;
//! - an interrupt: what had streamed, marked interrupted;
//! - a final failure: a `ChatError` on the chat.
//!
//! A step costs two short transactions (acquire, with the conversation read in the same
//! statement; commit; and a read of the chat's MCP servers when any applies) however long
//! the answer; deltas go to Redis only. The lease is renewed while the answer streams
//! (by the process's [`Leases`] heartbeat, for as long as the step's guard lives); losing it
//! stops the step without writing, because another worker owns it now.
//!
//! A step's cost is bounded whatever happens to it: each acquisition counts in the turn's
//! `attempt` (handed back on a drain, released after a database error, taken over after a
//! lost lease or a panic), and past [`TurnLimits::max_attempts`] the step fails with a
//! `worker_lost` [`ChatError`] without calling the model again. A result the database
//! refuses outright ([`StoreError::is_unsavable`]) fails the turn at once. A step that
//! runs again announces it with a `retry` event of kind `worker_lost` before its new
//! deltas, so a client drops the lost attempt's text instead of showing both as one answer.
//!
//! This module is the engine (acquire, guard, run, hand back); the pieces of a step live
//! beside it:
//!
//! - [`acquisitions`]: the acquisitions of the jobs this process starts together, taken in
//!   one statement ([`Acquisitions`]);
//! - [`limits`]: how far a turn may go ([`TurnLimits`]);
//! - [`running`]: the turns running on this process, so interrupts reach them;
//! - [`retry`]: provider attempts with backoff, announced by `retry` events;
//! - [`stream`]: one provider attempt, its deltas published and accumulated into the answer;
//! - [`debug_record`]: a debug chat's record of every attempt;
//! - [`commit`]: the answer written through the store and announced through
//!   [`agentq_core::outcome`] (ARCHITECTURE.md §8).

mod acquisitions;
mod attachments;
mod commit;
mod compaction;
mod context;
mod debug_record;
mod history;
mod limits;
mod retry;
mod running;
mod stream;
mod titles;

pub use acquisitions::Acquisitions;
pub use limits::TurnLimits;
pub use running::RunningTurns;

use std::time::Duration;

use agentq_core::{
    ChatError, ChatErrorKind, StoreError,
    domain::{AcquiredTurn, Message, MessageKind, MessagePart, Role},
    events::EventPublisher,
    outcome::{ChatOutcome, FollowUps},
    queue::{JobReport, Producer, RunTurn},
    store::{Completion, NewToolCall, Store},
};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    leases::{LeaseKind, Leases},
    models::{ModelResolver, ModelTarget, ResolveError},
    providers::ProviderRequest,
    tools::{Offer, StepTools, SubagentTools, ToolRegistry},
};
use commit::StepEnd;
use debug_record::DebugRecording;

/// Failures that make the job itself fail (and be retried by the queue); upstream failures
/// are not among them: they end the turn with a `ChatError`.
#[derive(Debug, thiserror::Error)]
pub enum TurnJobError {
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Enqueueing a follow-up job failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The step panicked (a bug); the turn was handed back and the retry counts.
    #[error("the turn step panicked: {0}")]
    Panicked(String),
}

/// Everything a worker needs to run turns; shared by all in-flight jobs.
pub struct TurnEngine {
    /// The database.
    pub store: Store,
    /// Enqueues follow-up turns and tool calls.
    pub producer: Producer,
    /// Publishes chat events.
    pub events: EventPublisher,
    /// Resolves each chat's model to a provider client.
    pub models: ModelResolver,
    /// This process's lease-owner name.
    pub worker_id: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Renews the leases this process holds.
    pub leases: Leases,
    /// Takes the turns of the jobs started together in one statement.
    pub acquisitions: Acquisitions,
    /// Retries, step cap, client tool deadline.
    pub limits: TurnLimits,
    /// Decides what each step offers (ARCHITECTURE.md §7).
    pub tools: ToolRegistry,
    /// Turns running here, for interrupts.
    pub running: RunningTurns,
}

/// How a step's streaming ended.
pub(super) enum Answer {
    /// The model finished; `calls` is empty for a final answer.
    Complete {
        completion: Completion,
        calls: Vec<NewToolCall>,
    },
    /// A final failure (or retries exhausted).
    Failed(ChatError),
    /// Interrupted; what had streamed.
    Interrupted(Option<Completion>),
    /// Another worker owns the turn now.
    LeaseLost,
}

/// What every provider attempt of one step works with: the turn, its model, the two
/// ways the step can be stopped, the tools it offered (to classify the model's calls), and
/// what the call is for.
#[derive(Clone, Copy)]
pub(super) struct StepContext<'a> {
    pub(super) turn: &'a AcquiredTurn,
    pub(super) target: &'a ModelTarget,
    pub(super) interrupted: &'a CancellationToken,
    pub(super) lease_lost: &'a CancellationToken,
    pub(super) offer: &'a Offer,
    pub(super) purpose: Purpose,
}

/// What a provider call of a step is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The step's answer: its deltas stream to the chat.
    Answer,
    /// A compaction summary: nothing streams; the summary is announced when stored.
    Compaction,
}

impl Purpose {
    /// The name debug runs record.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Purpose::Answer => "answer",
            Purpose::Compaction => "compaction",
        }
    }
}

/// How a held step can be stopped: the turn's interrupt and its lost lease.
#[derive(Clone, Copy)]
pub(super) struct Stops<'a> {
    pub(super) interrupted: &'a CancellationToken,
    pub(super) lease_lost: &'a CancellationToken,
}

impl TurnEngine {
    /// Hands back every turn still running here (`running` -> `queued`), so another worker
    /// takes them at once; used when a drain reaches its deadline.
    pub async fn release_running(&self) -> usize {
        let mut released = FollowUps::default();
        for (id, owner) in self.running.held() {
            match self.store.release_turn(id, &owner).await {
                Ok(true) => released.extend(ChatOutcome::Released { turn_id: id }.follow_ups()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(turn.id = %id, error = %e, "could not release the turn; recovery will after its lease")
                }
            }
        }
        // A fresh job for each: the old entry may still be acked by the job that is being
        // abandoned (it sees its lease gone), and a released turn must not wait for recovery.
        if let Err(e) = released.enqueue(&self.producer).await {
            tracing::warn!(error = %e, "could not enqueue released turns; recovery will");
        }
        released.len()
    }

    /// Runs the step of the turn named by `job`. A job whose turn is not `queued` (a
    /// duplicate or a replay) does nothing and succeeds. `report` gets the chat and how
    /// the step ended, for the job's log line.
    #[tracing::instrument(name = "turn", skip_all, fields(turn.id = %job.turn_id, chat.id = tracing::field::Empty, turn.attempt = tracing::field::Empty))]
    pub async fn run(&self, job: RunTurn, report: &JobReport) -> Result<(), TurnJobError> {
        // A lease owner of its own for this acquisition: a stale run of the same turn in this
        // process (its lease lost, the turn re-acquired here) can then write nothing.
        let owner = format!("{}/{}", self.worker_id, Uuid::now_v7().simple());
        let Some(mut turn) = self.acquisitions.acquire(job.turn_id, &owner).await? else {
            tracing::debug!("turn is not queued (duplicate or finished job); nothing to do");
            report.outcome("skipped");
            // A recovery nudge for a title, or a redelivery after a crash during one.
            self.title_if_pending(job.turn_id).await;
            return Ok(());
        };
        report.chat(turn.chat_id);
        // Read with the turn; the step holds this one copy, decoded where it is sent.
        let history = turn.take_history();
        let span = tracing::Span::current();
        span.record("chat.id", tracing::field::display(turn.chat_id));
        span.record("turn.attempt", turn.attempt);
        // Both guards live until this function returns, however it returns: the lease is
        // renewed and interrupts reach the step exactly as long as a job runs it.
        let lease = self
            .leases
            .hold(LeaseKind::Turn, turn.id, &turn.lease_owner);
        let running = self.running.register(turn.id, &turn.lease_owner);
        // A panic in the step is caught here, where the acquisition is known, so exactly
        // this acquisition is handed back (not a newer one of the same turn).
        let mut result =
            AssertUnwindSafe(self.run_held(&turn, history, &running.interrupted, lease.lost()))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(panic = %what, "the turn step panicked; handing the turn back");
                    Err(TurnJobError::Panicked(what))
                });
        if let Err(TurnJobError::Store(e)) = &result
            && e.is_unsavable()
        {
            // Retrying would call the model again for an answer that cannot be saved.
            tracing::warn!(error = %e, "the database refuses this step's result; failing the turn");
            agentq_core::metrics::turn_given_up("unsavable");
            let error = ChatError::new(
                ChatErrorKind::Generic,
                "agentq could not save this step's result (the database refused it), so the \
                 turn stopped instead of calling the model again.",
            );
            result = self.commit(&turn, Answer::Failed(error)).await;
        }
        match result {
            Ok(end) => {
                report.outcome(end.name);
                // After an answer that left a title pending (the chat's first, or any
                // while a request is still pending): the title (store::titles). Other steps skip
                // the claim; the recovery nudge of a request a crash left pending comes as
                // a job whose turn is done (the branch above).
                drop((lease, running));
                if end.title_pending {
                    self.title_if_pending(job.turn_id).await;
                }
                Ok(())
            }
            Err(e) => {
                // Hand the turn back so the retried job can acquire it again at once.
                self.release(turn.id, &turn.lease_owner).await;
                Err(e)
            }
        }
    }

    /// Hands a turn back to `queued` if `owner` (one acquisition) still holds it (best
    /// effort: after its lease recovery does the same).
    async fn release(&self, turn_id: Uuid, owner: &str) {
        if let Err(e) = self.store.release_turn(turn_id, owner).await {
            tracing::warn!(turn.id = %turn_id, error = %e, "could not release the turn; recovery will after its lease");
        }
    }

    /// The step of an acquired turn, its lease held; `history` is the conversation read
    /// with it.
    async fn run_held(
        &self,
        turn: &AcquiredTurn,
        history: Result<Vec<Message>, StoreError>,
        interrupted: &CancellationToken,
        lease_lost: &CancellationToken,
    ) -> Result<StepEnd, TurnJobError> {
        if turn.interrupt_requested {
            // Interrupted while handed back (no worker held it): stop before any model call.
            return self.commit(turn, Answer::Interrupted(None)).await;
        }
        if turn.attempt > self.limits.max_attempts {
            agentq_core::metrics::turn_given_up("attempts");
            let error = ChatError::new(
                ChatErrorKind::WorkerLost,
                format!(
                    "This step was started {} times without finishing (its worker stopped, \
                     was restarted or failed); agentq stopped it instead of calling the model again.",
                    turn.attempt - 1
                ),
            );
            return self.commit(turn, Answer::Failed(error)).await;
        }
        ChatOutcome::StepStarted {
            chat_id: turn.chat_id,
            attempt: turn.attempt,
            list_entry: turn.list_entry.clone(),
        }
        .publish(&self.events);
        let target = match self
            .models
            .resolve(turn.model_config_id, turn.owner_id)
            .await
        {
            Ok(target) => target,
            Err(ResolveError::Unusable(error)) => {
                return self.commit(turn, Answer::Failed(error)).await;
            }
            Err(ResolveError::Store(e)) => return Err(e.into()),
        };
        let debug_run = self.start_debug_run(turn, &target).await;
        let stops = Stops {
            interrupted,
            lease_lost,
        };
        self.run_acquired(turn, history, &target, stops, debug_run)
            .await
    }

    /// The step once its model is known: the request (or why none is sent), the provider's
    /// answer with retries, then the commit.
    async fn run_acquired(
        &self,
        turn: &AcquiredTurn,
        history: Result<Vec<Message>, StoreError>,
        target: &ModelTarget,
        stops: Stops<'_>,
        debug_run: Option<Uuid>,
    ) -> Result<StepEnd, TurnJobError> {
        let answer = if turn.step >= self.limits.max_steps {
            Answer::Failed(ChatError::new(
                ChatErrorKind::Generic,
                format!(
                    "The turn stopped after {} steps without a final answer.",
                    self.limits.max_steps
                ),
            ))
        } else {
            self.answer_step(turn, history, target, stops, debug_run)
                .await?
        };
        if let Some(run_id) = debug_run {
            self.finish_debug_run(run_id, &answer).await;
        }
        self.commit(turn, answer).await
    }

    /// The step's request and the provider's answer: the conversation as later steps see
    /// it (`history`, read with the turn; compacted first when it would pass the model's
    /// threshold), the system message and the tools on offer, then the answer with retries.
    async fn answer_step(
        &self,
        turn: &AcquiredTurn,
        history: Result<Vec<Message>, StoreError>,
        target: &ModelTarget,
        stops: Stops<'_>,
        debug_run: Option<Uuid>,
    ) -> Result<Answer, TurnJobError> {
        // Read with the turn, for the system message and the offer, so both agree on the
        // skills.
        let sources = &turn.instructions;
        // The chat's MCP servers are listed (from the worker's cache, mostly) before the
        // offer; a server that fails is left out and named in the guidance.
        let plan_mode = turn.plan_mode.is_some();
        let read_only = turn.mode.as_deref() == Some("explore");
        let mcp = match self.tools.mcp() {
            // Read with the turn: most chats have no server, and skip the read.
            Some(_) if !turn.any_mcp_server => None,
            Some(mcp) => Some(
                // A plan-mode parent's children see only the servers allowed in plan
                // mode, like the parent.
                mcp.offer(
                    &self.store,
                    turn.chat_id,
                    turn.owner_id,
                    plan_mode || turn.parent_plan_mode.is_some(),
                )
                .await?,
            ),
            None => None,
        };
        let offer = self.tools.offer(&StepTools {
            dynamic_tools: &turn.dynamic_tools,
            has_skills: !sources.skills.is_empty(),
            mcp: mcp.as_ref(),
            plan_mode,
            subagents: SubagentTools::for_chat(turn.parent_chat_id, plan_mode),
            read_only,
        });
        let system = crate::instructions::compose(sources, &offer.guidance());
        let tools = offer.specs();
        // The chat's own level wins over its model's option.
        let reasoning_effort = turn.reasoning_effort.or(target.reasoning_effort);
        let mut frame = compaction::RequestFrame {
            system: system.as_deref(),
            tools: &tools,
            reasoning: reasoning_effort,
            force: false,
        };
        // A provider that refuses the request as too long (its tokenizer counts more than
        // the estimate) gets one more try after a compaction forced now (compaction.rs),
        // on the conversation read again.
        let mut read_with_turn = Some(history);
        loop {
            let history = match read_with_turn.take() {
                Some(history) => history?,
                None => self.store.prompt_history(turn.chat_id).await?,
            };
            let history = history::answer_open_calls(history);
            let history = match self
                .fit_context(turn, target, stops, &frame, history, debug_run)
                .await?
            {
                compaction::Fitted::Ready(history) => history_for_provider(history),
                compaction::Fitted::Ended(answer) => return Ok(answer),
            };
            let size = serde_json::to_vec(&history).map_or(0, |v| v.len());
            if size > self.limits.max_conversation_bytes {
                return Ok(Answer::Failed(ChatError::new(
                    ChatErrorKind::ContextLength,
                    format!(
                        "The conversation is {size} bytes, over the {} bytes agentq sends to a \
                         model in one request (--max-conversation-bytes); start a new chat.",
                        self.limits.max_conversation_bytes
                    ),
                )));
            }
            let files = attachments::load(&self.store, turn.chat_id, &history).await?;
            let request = ProviderRequest {
                model: target.model.clone(),
                system: system.clone(),
                files,
                messages: history,
                tools: tools.clone(),
                max_output_tokens: target.max_output_tokens,
                cache: target.cache,
                // Stable for the chat, so its requests share one cached prefix.
                cache_key: Some(turn.chat_id.to_string()),
                reasoning_effort,
            };
            let step = StepContext {
                turn,
                target,
                interrupted: stops.interrupted,
                lease_lost: stops.lease_lost,
                offer: &offer,
                purpose: Purpose::Answer,
            };
            let debug = match debug_run {
                Some(run_id) => Some(DebugRecording {
                    run_id,
                    messages_from: self.recorded_prefix(turn.chat_id, &request).await,
                }),
                None => None,
            };
            match self.answer_with_retries(step, request, debug).await {
                Answer::Failed(error)
                    if error.kind == ChatErrorKind::ContextLength
                        && !frame.force
                        && target.context_limit.is_some() =>
                {
                    tracing::warn!(error = %error, "the provider refused the request as too long; compacting now");
                    frame.force = true;
                }
                answer => return Ok(answer),
            }
        }
    }
}

/// The prompt history as providers take it: a compaction summary goes as a user message
/// that says what it is (the wire formats know no other kind).
fn history_for_provider(history: Vec<Message>) -> Vec<Message> {
    history
        .into_iter()
        .map(|mut m| {
            if m.kind == MessageKind::Summary {
                m.role = Role::User;
                m.content = m
                    .content
                    .into_iter()
                    .map(|part| match part {
                        MessagePart::Text { text } => MessagePart::Text {
                            text: format!("{}{text}", compaction::SUMMARY_PREFIX),
                        },
                        other => other,
                    })
                    .collect();
            }
            m
        })
        .collect()
}
