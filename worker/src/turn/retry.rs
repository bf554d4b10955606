//! Provider attempts of one step: a retryable failure waits `1 s * 2^n` (jittered, capped,
//! or the provider's `Retry-After`) and is announced with a `retry` event before the next
//! attempt; an interrupt or a lost lease ends the wait (ARCHITECTURE.md §7).

use std::time::Duration;

use agentq_core::{ChatError, events::ChatEvent};
use rand::RngExt;

use super::{
    Answer, StepContext, TurnEngine,
    debug_record::{DebugRecording, Trace},
};
use crate::providers::ProviderRequest;

/// What ended one provider attempt.
pub(super) enum Attempt {
    Done(Answer),
    Retry(ChatError),
}

impl TurnEngine {
    /// Calls the provider until an answer, a final failure, an interrupt or a lost lease;
    /// retryable failures wait `1 s * 2^n` (jittered, at most `max_backoff`, or the
    /// provider's `Retry-After`) and are announced with a `retry` event.
    pub(super) async fn answer_with_retries(
        &self,
        step: StepContext<'_>,
        request: ProviderRequest,
        mut debug: Option<DebugRecording>,
    ) -> Answer {
        let StepContext { turn, target, .. } = step;
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
                _ = step.interrupted.cancelled() => return Answer::Interrupted(None),
                _ = step.lease_lost.cancelled() => return Answer::LeaseLost,
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
}
