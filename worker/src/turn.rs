//! Runs one chat turn: acquire, stream the provider's answer to the chat's event stream,
//! commit the assistant message, promote the next queued message (DESIGN.md §4, steps 2-4).
//!
//! A turn costs three short transactions (acquire, read the conversation, complete) however
//! long the answer; deltas go to Redis only. The lease is renewed while the answer streams;
//! losing it stops the turn without writing, because another worker owns it now.

use std::time::Duration;

use agentq_core::{
    ChatError, StoreError,
    domain::{AcquiredTurn, ChatStatus, MessagePart, Role, Usage},
    events::{ChatEvent, EventPublisher},
    queue::{Producer, RunTurn},
    store::{Completion, Store, TurnOutcome},
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::providers::{Provider, ProviderEvent, ProviderRequest};

/// Failures that make the job itself fail (and be retried by the queue); upstream failures
/// are not among them: they end the turn with a `ChatError`.
#[derive(Debug, thiserror::Error)]
pub enum TurnJobError {
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Enqueueing the follow-up turn failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Everything a worker needs to run turns; shared by all in-flight jobs.
pub struct TurnEngine {
    /// The database.
    pub store: Store,
    /// Enqueues follow-up turns.
    pub producer: Producer,
    /// Publishes chat events.
    pub events: EventPublisher,
    /// The model endpoint.
    pub provider: Provider,
    /// Model name to ask for.
    pub model: String,
    /// This process's lease-owner name.
    pub worker_id: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
}

/// How a turn's streaming ended.
enum Answer {
    Complete(Completion),
    Failed(ChatError),
    LeaseLost,
}

impl TurnEngine {
    /// Runs the turn named by `job`. A job whose turn is not `queued` (a duplicate or a
    /// replay) does nothing and succeeds.
    #[tracing::instrument(skip_all, fields(turn.id = %job.turn_id))]
    pub async fn run(&self, job: RunTurn) -> Result<(), TurnJobError> {
        let Some(turn) = self
            .store
            .acquire_turn(job.turn_id, &self.worker_id, self.lease)
            .await?
        else {
            tracing::debug!("turn is not queued (duplicate or finished job); nothing to do");
            return Ok(());
        };
        tracing::Span::current().record("chat.id", tracing::field::display(turn.chat_id));
        self.events.publish(
            turn.chat_id,
            ChatEvent::Status {
                status: ChatStatus::Running,
                chat_id: turn.chat_id,
            },
        );
        match self.run_acquired(&turn).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Hand the turn back so the retried job can acquire it again at once.
                if let Err(release) = self.store.release_turn(turn.id, &self.worker_id).await {
                    tracing::warn!(error = %release, "could not release the turn; recovery will after its lease");
                }
                Err(e)
            }
        }
    }

    async fn run_acquired(&self, turn: &AcquiredTurn) -> Result<(), TurnJobError> {
        let history = self.store.conversation(turn.chat_id).await?;
        let lease_lost = CancellationToken::new();
        let renewer = tokio::spawn(renew_lease(
            self.store.clone(),
            turn.id,
            self.worker_id.clone(),
            self.lease,
            lease_lost.clone(),
        ));
        let answer = self
            .stream_answer(
                turn,
                ProviderRequest {
                    model: self.model.clone(),
                    messages: history,
                    tools: Vec::new(),
                    max_output_tokens: None,
                },
                &lease_lost,
            )
            .await;
        renewer.abort();
        let outcome = match answer {
            Answer::LeaseLost => {
                tracing::warn!("lease lost while streaming; another worker owns the turn now");
                return Ok(());
            }
            Answer::Complete(completion) => {
                self.store
                    .complete_turn(
                        turn.id,
                        turn.chat_id,
                        turn.step,
                        &self.worker_id,
                        &completion,
                    )
                    .await?
            }
            Answer::Failed(error) => {
                tracing::info!(kind = ?error.kind, error = %error, "turn failed upstream");
                let outcome = self
                    .store
                    .fail_turn(turn.id, turn.chat_id, &self.worker_id, &error)
                    .await?;
                if outcome.is_some() {
                    self.events
                        .publish(turn.chat_id, ChatEvent::Error { error });
                }
                outcome
            }
        };
        let Some(outcome) = outcome else {
            tracing::warn!("lease lost before commit; another worker owns the turn now");
            return Ok(());
        };
        self.announce(turn.chat_id, &outcome);
        if let Some(next) = outcome.next_turn_id {
            self.producer.enqueue(&RunTurn { turn_id: next }).await?;
        }
        Ok(())
    }

    /// Streams the provider's answer, publishing each delta, until it ends, fails, or the
    /// lease is lost.
    async fn stream_answer(
        &self,
        turn: &AcquiredTurn,
        request: ProviderRequest,
        lease_lost: &CancellationToken,
    ) -> Answer {
        let mut stream = match self.provider.stream(request).await {
            Ok(s) => s,
            Err(e) => return Answer::Failed(e),
        };
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut usage = Usage::default();
        let mut model = self.model.clone();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = lease_lost.cancelled() => return Answer::LeaseLost,
            };
            match next {
                None => break,
                Some(Err(e)) => return Answer::Failed(e),
                Some(Ok(ProviderEvent::Text(delta))) => {
                    text.push_str(&delta);
                    self.publish_delta(turn, MessagePart::Text { text: delta });
                }
                Some(Ok(ProviderEvent::Reasoning(delta))) => {
                    reasoning.push_str(&delta);
                    self.publish_delta(turn, MessagePart::Reasoning { text: delta });
                }
                Some(Ok(ProviderEvent::Usage(u))) => usage = u,
                Some(Ok(ProviderEvent::ToolCall { .. })) => {}
                Some(Ok(ProviderEvent::Model(m))) => model = m,
            }
        }
        let mut content = Vec::new();
        if !reasoning.is_empty() {
            content.push(MessagePart::Reasoning { text: reasoning });
        }
        content.push(MessagePart::Text { text });
        Answer::Complete(Completion {
            content,
            model,
            usage,
            cost_micros: None,
        })
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
        if let Some(message) = &outcome.message {
            self.events.publish(
                chat_id,
                ChatEvent::Message {
                    message: Box::new(message.clone()),
                },
            );
        }
        let status = if let Some(promoted) = &outcome.promoted {
            self.events.publish(
                chat_id,
                ChatEvent::Message {
                    message: Box::new(promoted.clone()),
                },
            );
            ChatStatus::Pending
        } else if outcome.message.is_some() {
            ChatStatus::Waiting
        } else {
            ChatStatus::Error
        };
        self.events
            .publish(chat_id, ChatEvent::Status { status, chat_id });
    }
}

/// Renews the lease every third of its length; cancels `lost` when renewal says it is gone.
async fn renew_lease(
    store: Store,
    turn_id: Uuid,
    worker: String,
    lease: Duration,
    lost: CancellationToken,
) {
    let period = lease / 3;
    loop {
        tokio::time::sleep(period).await;
        match store.renew_turn_lease(turn_id, &worker, lease).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            // A blip: keep the turn; the next renewal may succeed before the lease ends.
            Err(e) => tracing::warn!(error = %e, "renewing the turn lease failed"),
        }
    }
}
