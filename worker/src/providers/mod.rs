//! LLM provider adapters: each turns a conversation into a stream of [`ProviderEvent`]s,
//! and every failure into a [`ChatError`]. Hand-written (reqwest + eventsource-stream, and
//! AWS's event-stream framing and SigV4 for Bedrock) for full control of deltas, errors and
//! lenient parsing (ARCHITECTURE.md §7).
//!
//! Every attempt is bounded ([`ProviderLimits`]: first byte, silence, a deadline, error
//! bodies, answer size), follows no redirect, and reports errors its chat's owner may read.

mod anthropic;
mod attachments;
mod attempt;
mod aws_auth;
mod bedrock;
mod echo;
mod errors;
mod eventstream;
mod limits;
mod openai;
mod redact;
mod sse;

use std::{sync::Arc, time::Duration};

use agentq_core::{
    ChatError,
    config::{ProviderConfig, ProviderKind},
    domain::{Message, ReasoningEffort, Usage},
    secrets::ExposeSecret,
};
use futures::stream::BoxStream;

pub use anthropic::AnthropicProvider;
pub use attachments::Attachments;
pub use bedrock::BedrockProvider;
pub use echo::EchoProvider;
pub use errors::{MAX_RETRY_AFTER, classify_http_error};
pub use limits::{ERROR_BODY_MAX_BYTES, ProviderLimits};
pub use openai::OpenAiProvider;

/// One streamed piece of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// Answer text.
    Text(String),
    /// Reasoning text.
    Reasoning(String),
    /// The signature of the reasoning streamed since the last one (Anthropic signs each
    /// `thinking` block): it ends that block, and goes back with it in later requests.
    ReasoningSignature(String),
    /// A whole block of encrypted reasoning (Anthropic's `redacted_thinking`), to be sent
    /// back as received.
    RedactedReasoning(String),
    /// A complete tool call (adapters accumulate argument deltas until the call is whole).
    ToolCall {
        /// The provider's call id (`call_...`, `toolu_...`).
        id: String,
        /// Tool name.
        name: String,
        /// Arguments, parsed from the streamed JSON (`{}` when empty).
        arguments: serde_json::Value,
    },
    /// Token usage; adapters may send several, the last one wins.
    Usage(Usage),
    /// The model that answered, as the provider names it.
    Model(String),
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolSpec {
    /// Name the model uses.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its input, shared: a step's offer, its request and each attempt's
    /// copy of the request point at one tree instead of copying it (a worker with 1,000
    /// turns in flight held four copies of every schema, 46 KB a turn; bench/RESULTS.md).
    #[serde(serialize_with = "shared_json")]
    pub input_schema: std::sync::Arc<serde_json::Value>,
}

/// Serializes a shared JSON value as the value (serde's `rc` feature would do it for every
/// `Arc` in the tree, and change how every crate that uses serde is built).
pub fn shared_json<S: serde::Serializer>(
    value: &std::sync::Arc<serde_json::Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&**value, serializer)
}

/// A stream of events; ends when the answer is complete.
pub type ProviderStream = BoxStream<'static, Result<ProviderEvent, ChatError>>;

/// What to send: the conversation so far and the tools on offer.
///
/// Assistant messages may hold `MessagePart::ToolCall` parts; their results come back as
/// `Role::Tool` messages holding `MessagePart::ToolResult` parts, which adapters translate
/// to their wire format (OpenAI `role: tool` messages, Anthropic `tool_result` blocks).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderRequest {
    /// Model name.
    pub model: String,
    /// The system message (site prompt, user and chat instructions, skills; see
    /// `crate::instructions`); `None` sends none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Messages, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call (empty: none).
    pub tools: Vec<ToolSpec>,
    /// Cap on output tokens (Anthropic requires one; default 4096 there).
    pub max_output_tokens: Option<u32>,
    /// Prompt caching with explicit breakpoints (Anthropic): `None` marks none, else the
    /// cache entries' lifetime (ARCHITECTURE.md §7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheTtl>,
    /// A key stable across a chat's requests (its id), sent as `prompt_cache_key` by the
    /// adapters whose provider kind accepts one (OpenAI) and ignored by the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// How hard the model reasons: the chat's override, else the model's option
    /// (ARCHITECTURE.md §7). OpenAI-style adapters send it as `reasoning_effort`, the
    /// Anthropic adapter as `thinking` with the level's token budget; `None` sends neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// The content of the files the messages' `file` parts attach, as far as this request
    /// carries them (see `attachments.rs`). Not serialized: a debug run records the parts,
    /// which name the files, not megabytes of their content.
    #[serde(skip)]
    pub files: Attachments,
}

/// How long a provider keeps a cached prompt prefix (Anthropic's `ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum CacheTtl {
    /// Five minutes, refreshed by each read (the default; writes cost 1.25x input).
    #[default]
    #[serde(rename = "5m")]
    FiveMinutes,
    /// One hour (writes cost 2x input).
    #[serde(rename = "1h")]
    OneHour,
}

impl CacheTtl {
    /// From the stored `cache_ttl` (`5m`, `1h`); anything else is the default.
    pub fn from_setting(value: &str) -> Self {
        match value {
            "1h" => CacheTtl::OneHour,
            _ => CacheTtl::FiveMinutes,
        }
    }
}

/// The HTTP client an adapter keeps: bounded connect time, idle connections reused across
/// turns (one pool per provider, so many turns share a few TLS sessions), and no redirects:
/// a followed redirect would carry `x-api-key` and the configured headers to another host.
fn http_client(provider: &str) -> Result<reqwest::Client, ChatError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| errors::config_error(provider, format!("cannot build the HTTP client: {e}")))
}

/// Parses `Name: value` header settings.
pub fn extra_headers(settings: &[String]) -> Result<Vec<(String, String)>, ChatError> {
    settings
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok((name.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(ChatError::new(
                agentq_core::ChatErrorKind::Config,
                format!(
                    "provider header `{}` must look like `Name: value`",
                    s.split(':').next().unwrap_or_default()
                ),
            )),
        })
        .collect()
}

/// A configured provider.
#[derive(Clone)]
pub enum Provider {
    /// OpenAI-compatible Chat Completions.
    OpenAi(Arc<OpenAiProvider>),
    /// Anthropic Messages.
    Anthropic(Arc<AnthropicProvider>),
    /// AWS Bedrock's Converse stream.
    Bedrock(Arc<BedrockProvider>),
    /// The built-in echo model.
    Echo(EchoProvider),
}

impl Provider {
    /// Builds the provider named by the configuration. The flags reach only `openai`,
    /// `anthropic` and `echo`; the other OpenAI-speaking kinds use the OpenAI flags.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ChatError> {
        Ok(match config.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompat | ProviderKind::Openrouter => {
                Provider::OpenAi(Arc::new(
                    OpenAiProvider::new(
                        &config.openai_base_url,
                        config
                            .openai_api_key
                            .as_ref()
                            .map(|k| k.expose_secret().to_owned()),
                        ProviderLimits::from_config(config),
                    )?
                    .with_headers(extra_headers(&config.exposed_headers())?)
                    .with_prompt_cache_key(config.kind.accepts_prompt_cache_key())
                    .with_max_completion_tokens(
                        config.kind.caps_reasoning_with_max_completion_tokens(),
                    ),
                ))
            }
            ProviderKind::Echo => Provider::Echo(EchoProvider),
            ProviderKind::Bedrock => {
                return Err(errors::config_error(
                    "Bedrock",
                    "Bedrock is configured as a stored provider (POST /api/v1/admin/providers), not by flags",
                ));
            }
            ProviderKind::Anthropic => {
                let key = config
                    .anthropic_api_key
                    .as_ref()
                    .map(ExposeSecret::expose_secret)
                    .filter(|k| !k.trim().is_empty())
                    .ok_or_else(|| {
                        ChatError::new(
                            agentq_core::ChatErrorKind::MissingKey,
                            "Anthropic has no API key configured (set AGENTQ_ANTHROPIC_API_KEY).",
                        )
                        .with_provider("Anthropic")
                    })?;
                Provider::Anthropic(Arc::new(
                    AnthropicProvider::new(
                        &config.anthropic_base_url,
                        key,
                        ProviderLimits::from_config(config),
                    )?
                    .with_headers(extra_headers(&config.exposed_headers())?),
                ))
            }
        })
    }

    /// The provider's name, for debug runs and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::OpenAi(_) => "OpenAI",
            Provider::Anthropic(_) => "Anthropic",
            Provider::Bedrock(_) => "Bedrock",
            Provider::Echo(_) => "echo",
        }
    }

    /// Starts streaming an answer.
    pub async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ChatError> {
        match self {
            Provider::OpenAi(p) => p.stream(request).await,
            Provider::Anthropic(p) => p.stream(request).await,
            Provider::Bedrock(p) => p.stream(request).await,
            Provider::Echo(p) => Ok(p.stream(request)),
        }
    }
}
