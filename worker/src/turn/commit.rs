//! Writes what a step produced through the store (one transaction each) and announces the
//! committed change with [`ChatOutcome`] (ARCHITECTURE.md §7, §8): a final answer, a tool
//! step (fan-out), an interrupt or a failure. A lease lost before the commit writes
//! nothing: another worker owns the turn now.

use agentq_core::{
    domain::AcquiredTurn,
    outcome::ChatOutcome,
    store::{AnswerTitle, Completion, NewToolCall},
};

use super::{Answer, TurnEngine, TurnJobError};

/// How a step ended: its name, as its job's log line and `agentq_turn_steps_total` name
/// it (`completed`, `tool_step`, `failed`, `interrupted` or `lease_lost`), and whether
/// its commit left the chat's generated title pending (a first answer, or any answer while
/// a request is still pending, on a worker that generates titles), which the job
/// generates next.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepEnd {
    pub(super) name: &'static str,
    pub(super) title_pending: bool,
}

impl StepEnd {
    /// An end that leaves no title to generate.
    const fn named(name: &'static str) -> Self {
        Self {
            name,
            title_pending: false,
        }
    }
}

/// The step's end when another worker took the turn over.
const LEASE_LOST: StepEnd = StepEnd::named("lease_lost");

impl TurnEngine {
    /// Writes what the step produced and announces it; returns how the step ended.
    pub(super) async fn commit(
        &self,
        turn: &AcquiredTurn,
        answer: Answer,
    ) -> Result<StepEnd, TurnJobError> {
        let chat_id = turn.chat_id;
        let end = match &answer {
            Answer::Complete { calls, .. } if !calls.is_empty() => "tool_step",
            Answer::Complete { .. } => "completed",
            Answer::Failed(_) => "failed",
            Answer::Interrupted(_) => "interrupted",
            Answer::LeaseLost => LEASE_LOST.name,
        };
        agentq_core::metrics::turn_step(end);
        let outcome = match answer {
            Answer::LeaseLost => {
                tracing::warn!("lease lost while streaming; another worker owns the turn now");
                return Ok(LEASE_LOST);
            }
            Answer::Complete { completion, calls } if !calls.is_empty() => {
                return self.fan_out(turn, &completion, &calls).await;
            }
            Answer::Complete { completion, .. } => self
                .store
                .complete_turn(
                    turn.id,
                    chat_id,
                    turn.step,
                    &turn.lease_owner,
                    &completion,
                    if self.limits.generate_titles {
                        AnswerTitle::Generate
                    } else {
                        AnswerTitle::Keep
                    },
                )
                .await?
                .map(|outcome| (None, outcome)),
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
                    .map(|outcome| (None, outcome))
            }
            Answer::Failed(error) => {
                tracing::info!(kind = ?error.kind, error = %error, "turn failed");
                self.store
                    .fail_turn(turn.id, chat_id, &turn.lease_owner, &error)
                    .await?
                    .map(|outcome| (Some(error), outcome))
            }
        };
        let Some((error, outcome)) = outcome else {
            tracing::warn!("lease lost before commit; another worker owns the turn now");
            return Ok(LEASE_LOST);
        };
        let title_pending = outcome.title_pending;
        ChatOutcome::TurnFinished {
            chat_id,
            error,
            outcome: Box::new(outcome),
        }
        .announce(&self.events, &self.producer)
        .await?;
        Ok(StepEnd {
            name: end,
            title_pending,
        })
    }

    /// Stores a tool step and sends each builtin call out as its own job.
    async fn fan_out(
        &self,
        turn: &AcquiredTurn,
        completion: &Completion,
        calls: &[NewToolCall],
    ) -> Result<StepEnd, TurnJobError> {
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
            return Ok(LEASE_LOST);
        };
        let (builtin, dynamic) = (step.builtin.len(), step.dynamic.len());
        ChatOutcome::ToolStep {
            chat_id: turn.chat_id,
            step,
        }
        .announce(&self.events, &self.producer)
        .await?;
        tracing::debug!(builtin, dynamic, "tool calls fanned out");
        Ok(StepEnd::named("tool_step"))
    }
}
