//! Runs one step of a chat turn: acquire, stream the provider's answer to the chat's event
//! stream (retrying retryable failures with backoff), then commit what the step produced
//! (ARCHITECTURE.md §7):
//!
//! - a final answer: the assistant message, the turn `completed`, the next queued message
//!   promoted;
//! - tool calls: the assistant message and one `tool_calls` row per call, the turn
//!   `awaiting_tools`, one `RunToolCall` job per builtin call (fan-out), an
//!   `action_required` event for the client's own tools;
//! - an interrupt: what had streamed, marked interrupted;
//! - a final failure: a `ChatError` on the chat.
//!
//! A step costs three short transactions (acquire, read the conversation, commit) however
//! long the answer; deltas go to Redis only. The lease is renewed while the answer streams
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

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use agentq_core::{
    ChatError, ChatErrorKind, StoreError,
    domain::{AcquiredTurn, ChatStatus, MessagePart, Role, Usage},
    events::{ActionToolCall, ChatEvent, EventPublisher},
    queue::{Producer, RunToolCall, RunTurn},
    store::{Completion, NewDebugStep, NewToolCall, Store, TurnOutcome},
};
use futures::{FutureExt, StreamExt};
use rand::RngExt;
use std::panic::AssertUnwindSafe;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    leases::{LeaseKind, Leases},
    models::{ModelResolver, ModelTarget, Pricing, ResolveError},
    providers::{ProviderEvent, ProviderRequest, ToolSpec},
    tools::Builtins,
};

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

/// How turns retry and how far they go.
#[derive(Debug, Clone, Copy)]
pub struct TurnLimits {
    /// Provider attempts per step (1 + retries) for retryable failures.
    pub max_provider_attempts: u32,
    /// Longest backoff between attempts.
    pub max_backoff: Duration,
    /// Steps (model calls) per turn before it stops with an error.
    pub max_steps: i32,
    /// How long the client has to post results of its own tools.
    pub client_tool_deadline: Duration,
    /// Acquisitions of one step (first run included) before it fails with `worker_lost`.
    pub max_attempts: i32,
    /// Largest conversation, in bytes of JSON, sent to a provider in one request.
    pub max_conversation_bytes: usize,
    /// Most tool calls one step may ask for; more fail the step.
    pub max_tool_calls_per_step: usize,
}

impl Default for TurnLimits {
    fn default() -> Self {
        Self {
            max_provider_attempts: 6,
            max_backoff: Duration::from_secs(60),
            max_steps: 25,
            client_tool_deadline: Duration::from_secs(300),
            max_attempts: 3,
            max_conversation_bytes: 8 * 1024 * 1024,
            max_tool_calls_per_step: 64,
        }
    }
}

/// Turns running on this process, so an interrupt request can reach them.
#[derive(Clone, Default)]
pub struct RunningTurns(Arc<Mutex<HashMap<Uuid, Registration>>>);

/// One acquisition of a turn running here.
struct Registration {
    number: u64,
    lease_owner: String,
    interrupted: CancellationToken,
}

/// Tells registrations of the same turn apart (it can be re-acquired here while the job
/// that handed it back is still unwinding).
static REGISTRATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A turn registered in [`RunningTurns`]; it leaves the registry when dropped, however
/// the job that runs it ends (return, `?`, panic).
struct RunningTurn {
    turns: RunningTurns,
    turn_id: Uuid,
    registration: u64,
    interrupted: CancellationToken,
}

impl Drop for RunningTurn {
    fn drop(&mut self) {
        let mut running = self.turns.0.lock().expect("running turns lock");
        // A later registration of the same turn (re-acquired here) keeps its own entry.
        if running
            .get(&self.turn_id)
            .is_some_and(|r| r.number == self.registration)
        {
            running.remove(&self.turn_id);
        }
    }
}

impl RunningTurns {
    fn register(&self, turn_id: Uuid, lease_owner: &str) -> RunningTurn {
        let interrupted = CancellationToken::new();
        let registration = REGISTRATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let previous = self.0.lock().expect("running turns lock").insert(
            turn_id,
            Registration {
                number: registration,
                lease_owner: lease_owner.to_owned(),
                interrupted: interrupted.clone(),
            },
        );
        if let Some(stale) = previous {
            // An older run of this turn here lost its lease; it must stop, not race this one.
            stale.interrupted.cancel();
        }
        RunningTurn {
            turns: self.clone(),
            turn_id,
            registration,
            interrupted,
        }
    }

    /// Cancels the named turns if they run here.
    pub fn interrupt(&self, turn_ids: &[Uuid]) {
        let running = self.0.lock().expect("running turns lock");
        for id in turn_ids {
            if let Some(r) = running.get(id) {
                r.interrupted.cancel();
            }
        }
    }

    /// The turns running here, with the lease owner of each one's acquisition.
    pub fn held(&self) -> Vec<(Uuid, String)> {
        self.0
            .lock()
            .expect("running turns lock")
            .iter()
            .map(|(id, r)| (*id, r.lease_owner.clone()))
            .collect()
    }

    /// Whether any turn runs here (the interrupt poller skips its query otherwise).
    pub fn is_empty(&self) -> bool {
        self.0.lock().expect("running turns lock").is_empty()
    }
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
    /// Retries, step cap, client tool deadline.
    pub limits: TurnLimits,
    /// Tools workers run.
    pub builtins: Builtins,
    /// Turns running here, for interrupts.
    pub running: RunningTurns,
}

/// How a step's streaming ended.
enum Answer {
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

/// What every provider attempt of one step works with: the turn, its model, and the two
/// ways the step can be stopped.
#[derive(Clone, Copy)]
struct StepContext<'a> {
    turn: &'a AcquiredTurn,
    target: &'a ModelTarget,
    interrupted: &'a CancellationToken,
    lease_lost: &'a CancellationToken,
}

/// What one attempt streamed, for its debug step.
struct Trace {
    started: std::time::Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    first_event: Option<Duration>,
    text: String,
    reasoning: String,
    calls: Vec<serde_json::Value>,
    usage: Option<Usage>,
    model: Option<String>,
}

impl Default for Trace {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            started_at: chrono::Utc::now(),
            first_event: None,
            text: String::new(),
            reasoning: String::new(),
            calls: Vec::new(),
            usage: None,
            model: None,
        }
    }
}

/// Where a step's debug records go, and how many of its messages are recorded already.
struct DebugRecording {
    run_id: Uuid,
    messages_from: usize,
}

/// What ended one provider attempt.
enum Attempt {
    Done(Answer),
    Retry(ChatError),
}

impl TurnEngine {
    /// Hands back every turn still running here (`running` -> `queued`), so another worker
    /// takes them at once; used when a drain reaches its deadline.
    pub async fn release_running(&self) -> usize {
        let mut released = Vec::new();
        for (id, owner) in self.running.held() {
            match self.store.release_turn(id, &owner).await {
                Ok(true) => released.push(RunTurn { turn_id: id }),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(turn.id = %id, error = %e, "could not release the turn; recovery will after its lease")
                }
            }
        }
        // A fresh job for each: the old entry may still be acked by the job that is being
        // abandoned (it sees its lease gone), and a released turn must not wait for recovery.
        if let Err(e) = self.producer.enqueue_many(&released).await {
            tracing::warn!(error = %e, "could not enqueue released turns; recovery will");
        }
        released.len()
    }

    /// Runs the step of the turn named by `job`. A job whose turn is not `queued` (a
    /// duplicate or a replay) does nothing and succeeds.
    #[tracing::instrument(name = "turn", skip_all, fields(turn.id = %job.turn_id, chat.id = tracing::field::Empty, turn.attempt = tracing::field::Empty))]
    pub async fn run(&self, job: RunTurn) -> Result<(), TurnJobError> {
        // A lease owner of its own for this acquisition: a stale run of the same turn in this
        // process (its lease lost, the turn re-acquired here) can then write nothing.
        let owner = format!("{}/{}", self.worker_id, Uuid::now_v7().simple());
        let Some(turn) = self
            .store
            .acquire_turn(job.turn_id, &owner, self.lease)
            .await?
        else {
            tracing::debug!("turn is not queued (duplicate or finished job); nothing to do");
            return Ok(());
        };
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
        let mut result = AssertUnwindSafe(self.run_held(&turn, &running.interrupted, lease.lost()))
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
        if result.is_err() {
            // Hand the turn back so the retried job can acquire it again at once.
            self.release(turn.id, &turn.lease_owner).await;
        }
        result
    }

    /// Hands a turn back to `queued` if `owner` (one acquisition) still holds it (best
    /// effort: after its lease recovery does the same).
    async fn release(&self, turn_id: Uuid, owner: &str) {
        if let Err(e) = self.store.release_turn(turn_id, owner).await {
            tracing::warn!(turn.id = %turn_id, error = %e, "could not release the turn; recovery will after its lease");
        }
    }

    /// The step of an acquired turn, its lease held.
    async fn run_held(
        &self,
        turn: &AcquiredTurn,
        interrupted: &CancellationToken,
        lease_lost: &CancellationToken,
    ) -> Result<(), TurnJobError> {
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
        self.events.publish(
            turn.chat_id,
            ChatEvent::Status {
                status: ChatStatus::Running,
                chat_id: turn.chat_id,
            },
        );
        if turn.attempt > 1 {
            // Whatever an earlier run of this step streamed is void: say so before the new
            // run's first delta, so a client does not glue two answers together.
            self.events.publish(
                turn.chat_id,
                ChatEvent::Retry {
                    attempt: (turn.attempt - 1) as u32,
                    delay_ms: 0,
                    error: "The worker running this step stopped before it finished; the step \
                            starts again and replaces what it had streamed."
                        .into(),
                    kind: ChatErrorKind::WorkerLost,
                    provider: None,
                    status_code: None,
                    retrying_at: chrono::Utc::now(),
                },
            );
        }
        let target = match self.models.resolve(turn.model_config_id).await {
            Ok(target) => target,
            Err(ResolveError::Unusable(error)) => {
                return self.commit(turn, Answer::Failed(error)).await;
            }
            Err(ResolveError::Store(e)) => return Err(e.into()),
        };
        let debug_run = if turn.debug {
            match self
                .store
                .start_debug_run(turn.chat_id, turn.id, &target.provider_name, &target.model)
                .await
            {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a debug run; the turn runs without one");
                    None
                }
            }
        } else {
            None
        };
        self.run_acquired(turn, &target, interrupted, lease_lost, debug_run)
            .await
    }

    async fn run_acquired(
        &self,
        turn: &AcquiredTurn,
        target: &ModelTarget,
        interrupted: &CancellationToken,
        lease_lost: &CancellationToken,
        debug_run: Option<Uuid>,
    ) -> Result<(), TurnJobError> {
        let answer = if turn.step >= self.limits.max_steps {
            Answer::Failed(ChatError::new(
                ChatErrorKind::Generic,
                format!(
                    "The turn stopped after {} steps without a final answer.",
                    self.limits.max_steps
                ),
            ))
        } else {
            let history = self.store.conversation(turn.chat_id).await?;
            let size = serde_json::to_vec(&history).map_or(0, |v| v.len());
            if size > self.limits.max_conversation_bytes {
                Answer::Failed(ChatError::new(
                    ChatErrorKind::ContextLength,
                    format!(
                        "The conversation is {size} bytes, over the {} bytes agentq sends to a \
                         model in one request (--max-conversation-bytes); start a new chat.",
                        self.limits.max_conversation_bytes
                    ),
                ))
            } else {
                let mut tools = self.builtins.specs();
                tools.extend(turn.dynamic_tools.iter().map(|t| ToolSpec {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    input_schema: t.input_schema.clone(),
                }));
                let request = ProviderRequest {
                    model: target.model.clone(),
                    messages: history,
                    tools,
                    max_output_tokens: target.max_output_tokens,
                };
                let debug = match debug_run {
                    Some(run_id) => Some(DebugRecording {
                        run_id,
                        messages_from: self.recorded_prefix(turn.chat_id, &request).await,
                    }),
                    None => None,
                };
                let step = StepContext {
                    turn,
                    target,
                    interrupted,
                    lease_lost,
                };
                self.answer_with_retries(step, request, debug).await
            }
        };
        if let Some(run_id) = debug_run {
            use agentq_core::domain::DebugRunStatus;
            let (status, error) = match &answer {
                Answer::Complete { calls, .. } if !calls.is_empty() => {
                    (DebugRunStatus::AwaitingTools, None)
                }
                Answer::Complete { .. } => (DebugRunStatus::Completed, None),
                Answer::Failed(e) => (DebugRunStatus::Failed, Some(e)),
                Answer::Interrupted(_) => (DebugRunStatus::Interrupted, None),
                Answer::LeaseLost => (DebugRunStatus::Failed, None),
            };
            if let Err(e) = self.store.finish_debug_run(run_id, status, error).await {
                tracing::warn!(error = %e, "could not finish the debug run");
            }
        }
        self.commit(turn, answer).await
    }

    /// Writes what the step produced and announces it.
    async fn commit(&self, turn: &AcquiredTurn, answer: Answer) -> Result<(), TurnJobError> {
        let chat_id = turn.chat_id;
        agentq_core::metrics::turn_step(match &answer {
            Answer::Complete { calls, .. } if !calls.is_empty() => "tool_step",
            Answer::Complete { .. } => "completed",
            Answer::Failed(_) => "failed",
            Answer::Interrupted(_) => "interrupted",
            Answer::LeaseLost => "lease_lost",
        });
        let outcome = match answer {
            Answer::LeaseLost => {
                tracing::warn!("lease lost while streaming; another worker owns the turn now");
                return Ok(());
            }
            Answer::Complete { completion, calls } if !calls.is_empty() => {
                return self.fan_out(turn, &completion, &calls).await;
            }
            Answer::Complete { completion, .. } => {
                self.store
                    .complete_turn(turn.id, chat_id, turn.step, &turn.lease_owner, &completion)
                    .await?
            }
            Answer::Interrupted(partial) => {
                tracing::info!("turn interrupted");
                self.store
                    .interrupt_turn(
                        turn.id,
                        chat_id,
                        turn.step,
                        &turn.lease_owner,
                        partial.as_ref(),
                    )
                    .await?
            }
            Answer::Failed(error) => {
                tracing::info!(kind = ?error.kind, error = %error, "turn failed");
                let outcome = self
                    .store
                    .fail_turn(turn.id, chat_id, &turn.lease_owner, &error)
                    .await?;
                if outcome.is_some() {
                    self.events.publish(chat_id, ChatEvent::Error { error });
                }
                outcome
            }
        };
        let Some(outcome) = outcome else {
            tracing::warn!("lease lost before commit; another worker owns the turn now");
            return Ok(());
        };
        self.announce(chat_id, &outcome);
        if let Some(next) = outcome.next_turn_id {
            self.producer.enqueue(&RunTurn { turn_id: next }).await?;
        }
        Ok(())
    }

    /// Stores a tool step and sends each builtin call out as its own job.
    async fn fan_out(
        &self,
        turn: &AcquiredTurn,
        completion: &Completion,
        calls: &[NewToolCall],
    ) -> Result<(), TurnJobError> {
        let Some(step) = self
            .store
            .record_tool_step(
                turn,
                &turn.lease_owner,
                completion,
                calls,
                self.limits.client_tool_deadline,
            )
            .await?
        else {
            tracing::warn!("lease lost before commit; another worker owns the turn now");
            return Ok(());
        };
        let chat_id = turn.chat_id;
        self.events.publish(
            chat_id,
            ChatEvent::Message {
                message: Box::new(step.message),
            },
        );
        if !step.dynamic.is_empty() {
            let tool_calls = step
                .dynamic
                .iter()
                .map(|c| ActionToolCall {
                    tool_call_id: c.id,
                    tool_name: c.name.clone(),
                    args: c.arguments.clone(),
                })
                .collect();
            self.events
                .publish(chat_id, ChatEvent::ActionRequired { tool_calls });
            self.events.publish(
                chat_id,
                ChatEvent::Status {
                    status: ChatStatus::RequiresAction,
                    chat_id,
                },
            );
        }
        let jobs: Vec<RunToolCall> = step
            .builtin
            .iter()
            .map(|c| RunToolCall { tool_call_id: c.id })
            .collect();
        self.producer.enqueue_many(&jobs).await?;
        tracing::debug!(
            builtin = jobs.len(),
            dynamic = step.dynamic.len(),
            "tool calls fanned out"
        );
        Ok(())
    }

    /// Calls the provider until an answer, a final failure, an interrupt or a lost lease;
    /// retryable failures wait `1 s * 2^n` (jittered, at most `max_backoff`, or the
    /// provider's `Retry-After`) and are announced with a `retry` event.
    async fn answer_with_retries(
        &self,
        step: StepContext<'_>,
        request: ProviderRequest,
        mut debug: Option<DebugRecording>,
    ) -> Answer {
        let StepContext {
            turn,
            target,
            interrupted,
            lease_lost,
        } = step;
        let mut attempt = 1;
        loop {
            let mut trace = Trace::default();
            let outcome = self.attempt(step, request.clone(), &mut trace).await;
            let error_kind = match &outcome {
                Attempt::Retry(e) | Attempt::Done(Answer::Failed(e)) => {
                    serde_json::to_value(e.kind).ok()
                }
                _ => None,
            };
            agentq_core::metrics::provider_attempt(
                &target.provider_name,
                error_kind.as_ref().and_then(|k| k.as_str()),
                trace.started.elapsed(),
            );
            if let Some(debug) = debug.as_mut() {
                self.record_debug_step(step, debug, attempt, &request, &trace, &outcome)
                    .await;
            }
            let error = match outcome {
                Attempt::Done(answer) => return answer,
                Attempt::Retry(error) => error,
            };
            if attempt >= self.limits.max_provider_attempts {
                return Answer::Failed(error);
            }
            let delay = error
                .retry_after
                .unwrap_or_else(|| self.backoff(attempt))
                .min(self.limits.max_backoff);
            let retrying_at =
                chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::info!(attempt, delay_ms = delay.as_millis() as u64, kind = ?error.kind, "provider failed; retrying");
            self.events.publish(
                turn.chat_id,
                ChatEvent::Retry {
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                    error: error.message.clone(),
                    kind: error.kind,
                    provider: error.provider.clone(),
                    status_code: error.status_code,
                    retrying_at,
                },
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = interrupted.cancelled() => return Answer::Interrupted(None),
                _ = lease_lost.cancelled() => return Answer::LeaseLost,
            }
            attempt += 1;
        }
    }

    /// `1 s * 2^(attempt-1)` with ±20% jitter, so retries of many turns spread out.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = Duration::from_secs(1u64 << (attempt - 1).min(10));
        let jitter: f64 = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter).min(self.limits.max_backoff)
    }

    /// How many of the request's messages an earlier debug step of this chat recorded
    /// already (0 when none did, or when the conversation no longer holds that message).
    async fn recorded_prefix(&self, chat_id: Uuid, request: &ProviderRequest) -> usize {
        match self.store.debug_last_recorded_message(chat_id).await {
            Ok(Some(last)) => request
                .messages
                .iter()
                .position(|m| m.id == last)
                .map_or(0, |p| p + 1),
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the last recorded debug message");
                0
            }
        }
    }

    /// Appends one attempt to the turn's debug run (best effort: a failure is logged). The
    /// step stores only the messages after `debug.messages_from` (with `messages_from` in
    /// the request), so a long chat's debug steps grow linearly, not quadratically.
    async fn record_debug_step(
        &self,
        step: StepContext<'_>,
        debug: &mut DebugRecording,
        attempt: u32,
        request: &ProviderRequest,
        trace: &Trace,
        outcome: &Attempt,
    ) {
        let StepContext { turn, target, .. } = step;
        let error = match outcome {
            Attempt::Retry(e) | Attempt::Done(Answer::Failed(e)) => Some(e.clone()),
            _ => None,
        };
        let mut normalized = serde_json::to_value(request).unwrap_or_default();
        normalized["provider"] = serde_json::Value::from(target.provider_name.as_str());
        let from = debug.messages_from.min(request.messages.len());
        normalized["messages"] =
            serde_json::to_value(&request.messages[from..]).unwrap_or_default();
        normalized["messages_from"] = serde_json::Value::from(from);
        let step = NewDebugStep {
            step: turn.step,
            attempt: attempt as i32,
            request: normalized,
            response: Some(serde_json::json!({
                "text": trace.text,
                "reasoning": trace.reasoning,
                "tool_calls": trace.calls,
                "model": trace.model,
            })),
            usage: trace.usage.clone(),
            error,
            started_at: trace.started_at,
            first_byte_ms: trace.first_event.map(|d| d.as_millis() as i32),
            duration_ms: trace.started.elapsed().as_millis() as i32,
            last_message_id: request.messages.last().map(|m| m.id),
        };
        match self.store.record_debug_step(debug.run_id, &step).await {
            Ok(()) => debug.messages_from = request.messages.len(),
            Err(e) => tracing::warn!(error = %e, "could not record a debug step"),
        }
    }

    /// One provider call, streamed.
    async fn attempt(
        &self,
        step: StepContext<'_>,
        request: ProviderRequest,
        trace: &mut Trace,
    ) -> Attempt {
        let StepContext {
            turn,
            target,
            interrupted,
            lease_lost,
        } = step;
        let dynamic: Vec<&str> = turn.dynamic_tools.iter().map(|t| t.name.as_str()).collect();
        let started = tokio::select! {
            s = target.provider.stream(request) => s,
            _ = interrupted.cancelled() => return Attempt::Done(Answer::Interrupted(None)),
            _ = lease_lost.cancelled() => return Attempt::Done(Answer::LeaseLost),
        };
        let mut stream = match started {
            Ok(s) => s,
            Err(e) if e.retryable => return Attempt::Retry(e),
            Err(e) => return Attempt::Done(Answer::Failed(e)),
        };
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut usage = Usage::default();
        let mut model = target.model.clone();
        let mut calls = Vec::new();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = interrupted.cancelled() => {
                    let partial = (!text.is_empty() || !reasoning.is_empty())
                        .then(|| completion(&text, &reasoning, &[], model.clone(), usage.clone(), target.pricing));
                    return Attempt::Done(Answer::Interrupted(partial));
                }
                _ = lease_lost.cancelled() => return Attempt::Done(Answer::LeaseLost),
            };
            if trace.first_event.is_none() {
                trace.first_event = Some(trace.started.elapsed());
            }
            match next {
                None => break,
                Some(Err(e)) if e.retryable => return Attempt::Retry(e),
                Some(Err(e)) => return Attempt::Done(Answer::Failed(e)),
                Some(Ok(ProviderEvent::Text(delta))) => {
                    text.push_str(&delta);
                    trace.text.push_str(&delta);
                    self.publish_delta(turn, MessagePart::Text { text: delta });
                    // Tests make a step panic or stall here, mid-answer (compiled out unless
                    // the `failpoints` feature is on).
                    fail::fail_point!("turn-streaming");
                }
                Some(Ok(ProviderEvent::Reasoning(delta))) => {
                    reasoning.push_str(&delta);
                    trace.reasoning.push_str(&delta);
                    self.publish_delta(turn, MessagePart::Reasoning { text: delta });
                }
                Some(Ok(ProviderEvent::ToolCall { .. }))
                    if calls.len() >= self.limits.max_tool_calls_per_step =>
                {
                    // One step may not flood the shared tools queue (or the client).
                    return Attempt::Done(Answer::Failed(
                        ChatError::new(
                            ChatErrorKind::Generic,
                            format!(
                                "The model asked for more than {} tool calls in one step \
                                 (--max-tool-calls-per-step); the turn stopped.",
                                self.limits.max_tool_calls_per_step
                            ),
                        )
                        .with_provider(target.provider_name.clone()),
                    ));
                }
                Some(Ok(ProviderEvent::ToolCall {
                    id,
                    name,
                    arguments,
                })) => {
                    trace
                        .calls
                        .push(serde_json::json!({"id": id, "name": name, "arguments": arguments}));
                    self.publish_delta(
                        turn,
                        MessagePart::ToolCall {
                            tool_call_id: id.clone(),
                            name: name.clone(),
                            arguments: arguments.clone(),
                        },
                    );
                    calls.push(NewToolCall {
                        dynamic: dynamic.contains(&name.as_str()),
                        provider_call_id: id,
                        name,
                        arguments,
                    });
                }
                Some(Ok(ProviderEvent::Usage(u))) => {
                    trace.usage = Some(u.clone());
                    usage = u;
                }
                Some(Ok(ProviderEvent::Model(m))) => {
                    trace.model = Some(m.clone());
                    model = m;
                }
            }
        }
        let completion = completion(&text, &reasoning, &calls, model, usage, target.pricing);
        Attempt::Done(Answer::Complete { completion, calls })
    }

    fn publish_delta(&self, turn: &AcquiredTurn, part: MessagePart) {
        self.events.publish(
            turn.chat_id,
            ChatEvent::MessagePart {
                role: Role::Assistant,
                part,
                step: turn.step,
            },
        );
    }

    /// Events for what the commit changed: the answer, a promoted message, the new status.
    fn announce(&self, chat_id: Uuid, outcome: &TurnOutcome) {
        for message in outcome.message.iter().chain(outcome.promoted.iter()) {
            self.events.publish(
                chat_id,
                ChatEvent::Message {
                    message: Box::new(message.clone()),
                },
            );
        }
        self.events.publish(
            chat_id,
            ChatEvent::Status {
                status: outcome.status,
                chat_id,
            },
        );
    }
}

/// The assistant message of a step: reasoning, text, then its tool calls.
fn completion(
    text: &str,
    reasoning: &str,
    calls: &[NewToolCall],
    model: String,
    usage: Usage,
    pricing: Option<Pricing>,
) -> Completion {
    let mut content = Vec::new();
    if !reasoning.is_empty() {
        content.push(MessagePart::Reasoning {
            text: reasoning.to_owned(),
        });
    }
    if !text.is_empty() || calls.is_empty() {
        content.push(MessagePart::Text {
            text: text.to_owned(),
        });
    }
    content.extend(calls.iter().map(|c| MessagePart::ToolCall {
        tool_call_id: c.provider_call_id.clone(),
        name: c.name.clone(),
        arguments: c.arguments.clone(),
    }));
    Completion {
        content,
        model,
        cost_micros: pricing.map(|p| p.cost_micros(&usage)),
        usage,
    }
}
