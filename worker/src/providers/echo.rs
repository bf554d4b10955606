//! The built-in echo model: streams the last user message back, word by word, with no
//! network. It lets a newcomer try `agentq dev` without a key and lets benchmarks measure
//! agentq itself rather than a remote model.

use agentq_core::domain::{Message, MessagePart, Role, Usage};
use futures::stream;

use super::{ProviderEvent, ProviderRequest, ProviderStream};

/// The echo model.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoProvider;

impl EchoProvider {
    /// Streams `You said: <last user text>`.
    pub fn stream(&self, request: ProviderRequest) -> ProviderStream {
        let last = last_user_text(&request.messages);
        let answer = format!("You said: {last}");
        let input_tokens: u64 = request
            .messages
            .iter()
            .flat_map(|m| m.content.iter())
            .filter_map(MessagePart::as_text)
            .map(|t| t.split_whitespace().count() as u64)
            .sum();
        let mut events: Vec<_> = vec![Ok(ProviderEvent::Model("echo".into()))];
        let words: Vec<&str> = answer.split_inclusive(' ').collect();
        let output_tokens = words.len() as u64;
        events.extend(
            words
                .into_iter()
                .map(|w| Ok(ProviderEvent::Text(w.to_owned()))),
        );
        events.push(Ok(ProviderEvent::Usage(Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        })));
        Box::pin(stream::iter(events))
    }
}

fn last_user_text(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| {
            m.content
                .iter()
                .filter_map(MessagePart::as_text)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
