//! One provider attempt, streamed: each delta is published to the chat's stream as it
//! comes and accumulated into the step's answer (reasoning, text, tool calls, usage, the
//! model's name); an interrupt keeps what streamed, a lost lease drops it (ARCHITECTURE.md
//! §7, §8).
//!
//! The answer's parts keep the order they streamed in ([`AnswerParts`]): Anthropic wants
//! its signed thinking blocks back where they were, between the tool calls when it thinks
//! between them.

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{AcquiredTurn, MessagePart, Role, Usage},
    events::ChatEvent,
    store::Completion,
};
use futures::StreamExt;

use super::{Answer, Purpose, StepContext, TurnEngine, debug_record::Trace, retry::Attempt};
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
            purpose,
        } = step;
        // A compaction's summary is not the answer: it does not stream to the chat.
        let publish = |part: MessagePart| {
            if purpose == Purpose::Answer {
                self.publish_delta(turn, part);
            }
        };
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
        let mut answer = AnswerParts::default();
        let mut usage = Usage::default();
        let mut model = target.model.clone();
        let mut calls = Vec::new();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = interrupted.cancelled() => {
                    let partial = answer
                        .has_content()
                        .then(|| completion(answer.without_calls(), model.clone(), usage.clone(), target.pricing));
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
                    answer.text(&delta);
                    trace.text.push_str(&delta);
                    publish(MessagePart::Text { text: delta });
                    // Tests make a step panic or stall here, mid-answer (compiled out unless
                    // the `failpoints` feature is on).
                    fail::fail_point!("turn-streaming");
                }
                Some(Ok(ProviderEvent::Reasoning(delta))) => {
                    answer.reasoning(&delta);
                    trace.reasoning.push_str(&delta);
                    publish(MessagePart::Reasoning {
                        text: delta,
                        signature: None,
                    });
                }
                // Nothing to show: kept with the answer, to be sent back (no delta event).
                Some(Ok(ProviderEvent::ReasoningSignature(signature))) => answer.sign(signature),
                Some(Ok(ProviderEvent::RedactedReasoning(data))) => answer.redacted(data),
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
                    let part = MessagePart::ToolCall {
                        tool_call_id: id.clone(),
                        name: name.clone(),
                        arguments: arguments.clone(),
                    };
                    publish(part.clone());
                    answer.push(part);
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
        let completion = completion(answer.into_parts(), model, usage, target.pricing);
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

/// The parts of a step's answer in the order they streamed: consecutive text deltas make
/// one text part, consecutive reasoning deltas one reasoning part until a signature closes
/// it (a signed block stays exactly as the provider sent it), and each tool call and block
/// of redacted reasoning is a part of its own.
#[derive(Debug, Default, Clone)]
pub(super) struct AnswerParts {
    parts: Vec<MessagePart>,
    /// Whether the last part is reasoning still streaming (no signature yet).
    reasoning_open: bool,
}

impl AnswerParts {
    /// Appends answer text.
    pub(super) fn text(&mut self, delta: &str) {
        self.reasoning_open = false;
        if let Some(MessagePart::Text { text }) = self.parts.last_mut() {
            text.push_str(delta);
        } else {
            self.parts.push(MessagePart::Text {
                text: delta.to_owned(),
            });
        }
    }

    /// Appends reasoning text to the open reasoning part, or opens one.
    pub(super) fn reasoning(&mut self, delta: &str) {
        if self.reasoning_open
            && let Some(MessagePart::Reasoning { text, .. }) = self.parts.last_mut()
        {
            text.push_str(delta);
            return;
        }
        self.parts.push(MessagePart::Reasoning {
            text: delta.to_owned(),
            signature: None,
        });
        self.reasoning_open = true;
    }

    /// Signs and closes the open reasoning part (a signed block with no text streamed is
    /// still a block: the provider needs it back).
    pub(super) fn sign(&mut self, signature: String) {
        if !self.reasoning_open {
            self.parts.push(MessagePart::Reasoning {
                text: String::new(),
                signature: None,
            });
        }
        if let Some(MessagePart::Reasoning { signature: s, .. }) = self.parts.last_mut() {
            *s = Some(signature);
        }
        self.reasoning_open = false;
    }

    /// Appends a block of redacted reasoning.
    pub(super) fn redacted(&mut self, data: String) {
        self.push(MessagePart::RedactedReasoning { data });
    }

    /// Appends a whole part (a tool call).
    pub(super) fn push(&mut self, part: MessagePart) {
        self.reasoning_open = false;
        self.parts.push(part);
    }

    /// Whether any text or reasoning streamed (what an interrupt keeps).
    pub(super) fn has_content(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                MessagePart::Text { .. }
                    | MessagePart::Reasoning { .. }
                    | MessagePart::RedactedReasoning { .. }
            )
        })
    }

    /// The parts without tool calls: an interrupted step keeps what streamed, but its calls
    /// never run.
    pub(super) fn without_calls(&self) -> Vec<MessagePart> {
        self.parts
            .iter()
            .filter(|p| !matches!(p, MessagePart::ToolCall { .. }))
            .cloned()
            .collect()
    }

    /// The parts, in order.
    pub(super) fn into_parts(self) -> Vec<MessagePart> {
        self.parts
    }
}

/// The assistant message of a step from its parts in streamed order. An answer with no tool
/// call always has a text part (empty when the model said nothing).
pub(super) fn completion(
    mut content: Vec<MessagePart>,
    model: String,
    usage: Usage,
    pricing: Option<Pricing>,
) -> Completion {
    let answers = content
        .iter()
        .any(|p| matches!(p, MessagePart::Text { .. } | MessagePart::ToolCall { .. }));
    if !answers {
        content.push(MessagePart::Text {
            text: String::new(),
        });
    }
    Completion {
        content,
        model,
        cost_micros: pricing.map(|p| p.cost_micros(&usage)),
        usage,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reasoning(text: &str, signature: Option<&str>) -> MessagePart {
        MessagePart::Reasoning {
            text: text.into(),
            signature: signature.map(str::to_owned),
        }
    }

    #[test]
    fn parts_keep_their_streamed_order_and_signed_blocks_stay_whole() {
        let mut answer = AnswerParts::default();
        answer.reasoning("Two ");
        answer.reasoning("cities.");
        answer.sign("sig-1".into());
        answer.text("Checking ");
        answer.text("both.");
        let call = |id: &str| MessagePart::ToolCall {
            tool_call_id: id.into(),
            name: "get_weather".into(),
            arguments: json!({}),
        };
        answer.push(call("a"));
        // Interleaved thinking: a second signed block between the calls.
        answer.reasoning("Now Tokyo.");
        answer.sign("sig-2".into());
        answer.redacted("opaque".into());
        answer.push(call("b"));
        assert_eq!(
            answer.clone().into_parts(),
            vec![
                reasoning("Two cities.", Some("sig-1")),
                MessagePart::Text {
                    text: "Checking both.".into()
                },
                call("a"),
                reasoning("Now Tokyo.", Some("sig-2")),
                MessagePart::RedactedReasoning {
                    data: "opaque".into()
                },
                call("b"),
            ]
        );
        assert_eq!(answer.without_calls().len(), 4);
    }

    #[test]
    fn unsigned_reasoning_is_one_part_and_an_answer_without_calls_has_text() {
        let mut answer = AnswerParts::default();
        answer.reasoning("think");
        answer.reasoning("ing");
        assert!(answer.has_content());
        let done = completion(answer.into_parts(), "m".into(), Usage::default(), None);
        assert_eq!(
            done.content,
            vec![
                reasoning("thinking", None),
                MessagePart::Text {
                    text: String::new()
                }
            ]
        );
        // A signature with no reasoning text before it still makes a block.
        let mut answer = AnswerParts::default();
        answer.sign("sig".into());
        assert_eq!(answer.into_parts(), vec![reasoning("", Some("sig"))]);
    }
}
