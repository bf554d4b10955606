//! A debug chat records every provider attempt of its turns: the request (only the messages
//! an earlier step did not record), what streamed, usage, timing and the error, so an
//! operator can replay what the model saw (ARCHITECTURE.md §7). Recording is best effort:
//! a failure is logged and never fails the turn.

use std::time::Duration;

use agentq_core::{
    domain::{AcquiredTurn, DebugRunStatus, Usage},
    store::NewDebugStep,
};
use uuid::Uuid;

use super::{Answer, StepContext, TurnEngine, retry::Attempt};
use crate::{models::ModelTarget, providers::ProviderRequest};

/// What one attempt streamed, for its debug step.
pub(super) struct Trace {
    pub(super) started: std::time::Instant,
    pub(super) started_at: chrono::DateTime<chrono::Utc>,
    pub(super) first_event: Option<Duration>,
    pub(super) text: String,
    pub(super) reasoning: String,
    pub(super) calls: Vec<serde_json::Value>,
    pub(super) usage: Option<Usage>,
    pub(super) model: Option<String>,
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
pub(super) struct DebugRecording {
    pub(super) run_id: Uuid,
    pub(super) messages_from: usize,
}

impl TurnEngine {
    /// Opens the turn's debug run when the chat records one (best effort: without it the
    /// turn runs unrecorded).
    pub(super) async fn start_debug_run(
        &self,
        turn: &AcquiredTurn,
        target: &ModelTarget,
    ) -> Option<Uuid> {
        if turn.debug {
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
        }
    }

    /// Closes the turn's debug run with the status the step's answer gives it (best
    /// effort: a failure is logged).
    pub(super) async fn finish_debug_run(&self, run_id: Uuid, answer: &Answer) {
        let (status, error) = match answer {
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

    /// How many of the request's messages an earlier debug step of this chat recorded
    /// already (0 when none did, or when the conversation no longer holds that message).
    pub(super) async fn recorded_prefix(&self, chat_id: Uuid, request: &ProviderRequest) -> usize {
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
    pub(super) async fn record_debug_step(
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
        normalized["purpose"] = serde_json::Value::from(step.purpose.as_str());
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
}
