//! LLM provider adapters: each turns a conversation into a stream of [`ProviderEvent`]s,
//! and every failure into a [`ChatError`]. Hand-written (reqwest + eventsource-stream) for
//! full control of deltas, errors and lenient parsing (CRATES.md).

mod echo;
mod errors;
mod openai;

use std::{sync::Arc, time::Duration};

use agentq_core::{
    ChatError,
    config::{ProviderConfig, ProviderKind},
    domain::{Message, Usage},
};
use futures::stream::BoxStream;

pub use echo::EchoProvider;
pub use errors::classify_http_error;
pub use openai::OpenAiProvider;

/// One streamed piece of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// Answer text.
    Text(String),
    /// Reasoning text.
    Reasoning(String),
    /// Token usage (usually last).
    Usage(Usage),
    /// The model that answered, as the provider names it.
    Model(String),
}

/// A stream of events; ends when the answer is complete.
pub type ProviderStream = BoxStream<'static, Result<ProviderEvent, ChatError>>;

/// What to send: the conversation so far.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    /// Model name.
    pub model: String,
    /// Messages, oldest first.
    pub messages: Vec<Message>,
}

/// A configured provider.
#[derive(Clone)]
pub enum Provider {
    /// OpenAI-compatible Chat Completions.
    OpenAi(Arc<OpenAiProvider>),
    /// The built-in echo model.
    Echo(EchoProvider),
}

impl Provider {
    /// Builds the provider named by the configuration.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ChatError> {
        Ok(match config.kind {
            ProviderKind::Openai => Provider::OpenAi(Arc::new(OpenAiProvider::new(
                &config.openai_base_url,
                config.openai_api_key.clone(),
                Duration::from_secs(config.startup_timeout_secs),
                Duration::from_secs(config.silence_timeout_secs),
            )?)),
            ProviderKind::Echo => Provider::Echo(EchoProvider),
        })
    }

    /// Starts streaming an answer.
    pub async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ChatError> {
        match self {
            Provider::OpenAi(p) => p.stream(request).await,
            Provider::Echo(p) => Ok(p.stream(request)),
        }
    }
}
