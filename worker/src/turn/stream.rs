//! One provider attempt, streamed: each delta is published to the chat's stream as it
//! comes and accumulated into the step's answer (reasoning, text, tool calls, usage, the
//! model's name); an interrupt keeps what streamed, a lost lease drops it (ARCHITECTURE.md
//! §7, §8).

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{AcquiredTurn, MessagePart, Role, Usage},
    events::ChatEvent,
    store::{Completion, NewToolCall},
};
use futures::StreamExt;

use super::{Answer, StepContext, TurnEngine, debug_record::Trace, retry::Attempt};
use crate::{
    models::Pricing,
    providers::{ProviderEvent, ProviderRequest},
};

impl TurnEngine {
    /// One provider call, streamed.
    pub(super) async fn attempt(
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
            offer,
        } = step;
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
                    // Classified against what this step offered (ARCHITECTURE.md §7).
                    calls.push(offer.call(id, name, arguments));
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
}

/// The assistant message of a step: reasoning, text, then its tool calls.
pub(super) fn completion(
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
