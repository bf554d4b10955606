//! Anthropic Messages with `stream: true`.
//!
//! The request translates agentq's history into Anthropic's shape: tool calls become
//! `tool_use` blocks of the assistant, tool results `tool_result` blocks of a user message,
//! and consecutive messages of one role are merged because Anthropic requires the roles to
//! alternate. The answer arrives as typed SSE events: `message_start` (model, input usage),
//! then per content block a `content_block_start`, deltas and a `content_block_stop` (a
//! `tool_use` block's input arrives as `input_json_delta` pieces, emitted whole at the stop),
//! `message_delta` (output usage, stop reason) and `message_stop`. A stream that ends
//! without `message_stop` was cut; an in-stream `error` event is classified like an HTTP
//! error.
//!
//! **Thinking** (issue #13, item 3). A request with a reasoning effort turns `thinking` on
//! with the level's token budget (`ReasoningEffort::thinking_budget`) and raises
//! `max_tokens` to the budget plus the answer's own cap. A `thinking` block streams as
//! `thinking_delta`s then a `signature_delta`, a `redacted_thinking` block whole; both are
//! kept with the answer (the signature on its `MessagePart::Reasoning`) and sent back,
//! unchanged and in their place, in later requests that think, as Anthropic requires of
//! the step a tool result answers.

use std::collections::BTreeMap;

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{Message, MessagePart, Role, Usage},
};
use reqwest::header::HeaderValue;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CacheTtl, ProviderEvent, ProviderRequest, ProviderStream,
    attachments::{Attached, Attachments},
    attempt,
    errors::{config_error, invalid_tool_arguments, stream_cut, unreadable_event},
    limits::ProviderLimits,
    redact::Redactor,
    sse::{BodyEnd, Fed, WireParser},
};

/// The API version this adapter speaks.
const API_VERSION: &str = "2023-06-01";

/// Anthropic requires a cap on output tokens; this one is used when the request has none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// An Anthropic Messages endpoint (or a proxy speaking its format).
pub struct AnthropicProvider {
    client: reqwest::Client,
    url: String,
    api_key: HeaderValue,
    name: String,
    headers: Vec<(String, String)>,
    limits: ProviderLimits,
    redactor: Redactor,
}

impl AnthropicProvider {
    /// `base_url` like `https://api.anthropic.com`; `/v1/messages` is appended. The key is
    /// sent as `x-api-key`.
    pub fn new(base_url: &str, api_key: &str, limits: ProviderLimits) -> Result<Self, ChatError> {
        let name = "Anthropic";
        let mut api_key = HeaderValue::from_str(api_key.trim())
            .map_err(|_| config_error(name, "the API key contains characters a header cannot"))?;
        api_key.set_sensitive(true);
        let client = super::http_client(name)?;
        let url = format!("{}/v1/messages", base_url.trim_end_matches('/'));
        Ok(Self {
            client,
            redactor: Redactor::for_url(&url).with_secret(api_key.to_str().unwrap_or_default()),
            url,
            api_key,
            name: name.to_owned(),
            headers: Vec::new(),
            limits,
        })
    }

    /// The name errors give the provider (a gateway in front of Anthropic may want its own);
    /// `Anthropic` by default.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Extra headers sent with every request (`anthropic-beta`, a gateway key).
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        for (_, value) in &headers {
            self.redactor = self.redactor.with_secret(value);
        }
        self.headers = headers;
        self
    }

    /// Sends the request and streams the answer's events.
    pub async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ChatError> {
        let mut http = self
            .client
            .post(&self.url)
            .header("x-api-key", self.api_key.clone())
            .header("anthropic-version", API_VERSION)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&request_body(&request));
        for (name, value) in &self.headers {
            http = http.header(name, value);
        }
        attempt::send(
            http,
            EventParser::new(&self.name),
            &self.limits,
            &self.redactor,
        )
        .await
    }
}

/// The JSON body of a streaming request. With caching on, breakpoints go on the system
/// prompt, the last tool and the last block of the last message (see [`cache_breakpoints`]).
/// With a reasoning effort, `thinking` is on (see [`thinking_budget`]).
fn request_body(request: &ProviderRequest) -> Value {
    let thinking = thinking_budget(request);
    let answer_cap = request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut body = json!({
        "model": request.model,
        // Thinking counts against `max_tokens`, which must exceed the budget: the answer
        // keeps its own cap on top of the budget.
        "max_tokens": answer_cap.saturating_add(thinking.unwrap_or(0)),
        "messages": wire_messages(&request.messages, thinking.is_some(), &request.files),
        "stream": true,
    });
    if let Some(budget) = thinking {
        // No `temperature`, `top_k` or forced `tool_choice` goes with it: Anthropic refuses
        // them with thinking, and this adapter sends none of them.
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
    }
    if let Some(system) = &request.system {
        body["system"] = match request.cache {
            // Breakpoints need the block form; without caching the plain string is kept.
            Some(_) => json!([{"type": "text", "text": system}]),
            None => json!(system),
        };
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": *t.input_schema}))
            .collect();
    }
    if let Some(ttl) = request.cache {
        cache_breakpoints(&mut body, ttl);
    }
    body
}

/// The most bytes of one image Anthropic takes: it refuses an image whose base64 passes
/// 5 MiB, which is this many bytes of image.
const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024 / 4 * 3;

/// The most breakpoints Anthropic accepts in one request.
pub(crate) const MAX_CACHE_BREAKPOINTS: usize = 4;

/// Marks prompt-cache breakpoints (`cache_control`) where the request's prefix stops being
/// shared (ARCHITECTURE.md §7): after the system prompt and after the tools (the same for
/// every step of a chat), and on the last block of the last message, so the next step
/// (this request plus the answer and its tool results) reads everything up to here from the
/// cache and pays full price only for what is new. Anthropic caches in the order tools,
/// system, messages; three breakpoints stay within its limit of
/// [`MAX_CACHE_BREAKPOINTS`].
fn cache_breakpoints(body: &mut Value, ttl: CacheTtl) {
    let control = match ttl {
        CacheTtl::FiveMinutes => json!({"type": "ephemeral"}),
        CacheTtl::OneHour => json!({"type": "ephemeral", "ttl": "1h"}),
    };
    let mut marked = 0;
    for key in ["tools", "system", "messages"] {
        let list = body.get_mut(key).and_then(Value::as_array_mut);
        let block = if key == "messages" {
            list.and_then(|messages| messages.last_mut())
                .and_then(|message| message.get_mut("content"))
                .and_then(Value::as_array_mut)
                .and_then(|content| content.last_mut())
        } else {
            list.and_then(|blocks| blocks.last_mut())
        };
        if let Some(block) = block
            && marked < MAX_CACHE_BREAKPOINTS
        {
            block["cache_control"] = control.clone();
            marked += 1;
        }
    }
}

/// The `thinking.budget_tokens` of the request, or `None` to send it without thinking: no
/// reasoning effort, or a step that continues a tool loop whose assistant message did not
/// think. Anthropic requires one thinking configuration per assistant turn (a tool loop
/// is one turn) and, with thinking on, that the assistant message a tool result answers
/// starts with its signed thinking block; a loop that began without thinking (the chat's
/// level was set while its tools ran, or the model was switched) therefore finishes without
/// it, and the next user message thinks.
fn thinking_budget(request: &ProviderRequest) -> Option<u32> {
    let effort = request.reasoning_effort?;
    let continues_tool_loop = request
        .messages
        .last()
        .is_some_and(|m| m.role == Role::Tool);
    if continues_tool_loop {
        let open_step = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant)?;
        let starts_with_thinking = wire_blocks(open_step, true, &request.files)
            .1
            .first()
            .is_some_and(|b| matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking")));
        if !starts_with_thinking {
            return None;
        }
    }
    Some(effort.thinking_budget())
}

/// The conversation in Messages form, roles alternating; `thinking` says whether signed
/// reasoning goes back as `thinking` blocks (see [`wire_blocks`]).
fn wire_messages(messages: &[Message], thinking: bool, files: &Attachments) -> Vec<Value> {
    let mut out: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, blocks) = wire_blocks(message, thinking, files);
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    out.into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

/// The role and content blocks of one message, in the order they were received. With
/// `thinking`, reasoning Anthropic signed goes back as a `thinking` block with its
/// signature (and redacted reasoning as `redacted_thinking`), exactly as received, which
/// Anthropic requires of the step a tool result answers; without it, or unsigned (another
/// provider's reasoning), reasoning is not sent: Anthropic accepts no thinking block
/// without its signature.
/// A user message's attached files go as `image` and `document` blocks with a base64
/// source, text files as `text` blocks (attachments.rs).
fn wire_blocks(
    message: &Message,
    thinking: bool,
    files: &Attachments,
) -> (&'static str, Vec<Value>) {
    let role = match message.role {
        Role::User | Role::Tool => "user",
        Role::Assistant => "assistant",
    };
    let blocks = message
        .content
        .iter()
        .filter_map(|part| match part {
            MessagePart::Reasoning {
                text,
                signature: Some(signature),
            } if thinking && message.role == Role::Assistant => {
                Some(json!({"type": "thinking", "thinking": text, "signature": signature}))
            }
            MessagePart::RedactedReasoning { data }
                if thinking && message.role == Role::Assistant =>
            {
                Some(json!({"type": "redacted_thinking", "data": data}))
            }
            MessagePart::Text { text } if !text.is_empty() => {
                Some(json!({"type": "text", "text": text}))
            }
            MessagePart::File { .. } if message.role == Role::User => {
                match files.render(part, MAX_IMAGE_BYTES)? {
                    Attached::Image { mimetype, data } => Some(json!({
                        "type": "image",
                        "source": {"type": "base64", "media_type": mimetype, "data": data},
                    })),
                    Attached::Pdf { name, data } => Some(json!({
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
                        "title": name,
                    })),
                    Attached::Text(text) => Some(json!({"type": "text", "text": text})),
                }
            }
            MessagePart::ToolCall {
                tool_call_id,
                name,
                arguments,
            } if message.role == Role::Assistant => {
                // `input` must be an object; arguments recorded as anything else become `{}`.
                let input = if arguments.is_object() {
                    arguments.clone()
                } else {
                    json!({})
                };
                Some(json!({"type": "tool_use", "id": tool_call_id, "name": name, "input": input}))
            }
            MessagePart::ToolResult {
                tool_call_id,
                output,
                is_error,
            } => {
                let content = match output {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some(json!({
                    "type": "tool_result", "tool_use_id": tool_call_id,
                    "content": content, "is_error": is_error
                }))
            }
            _ => None,
        })
        .collect();
    (role, blocks)
}

/// One SSE event's `data`, tagged by its `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        #[serde(default)]
        message: WireMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u64,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u64,
        delta: WireDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: u64,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        #[serde(default)]
        error: WireError,
    },
    /// `ping` and any event type added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        /// Empty at the start of a streamed block (it comes as a `signature_delta`); whole
        /// from a proxy that sends whole blocks.
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        /// Empty (`{}`) when the input streams as deltas; whole from some proxies.
        #[serde(default)]
        input: Value,
    },
    /// Server tool blocks and any block type added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    ThinkingDelta {
        #[serde(default)]
        thinking: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    SignatureDelta {
        #[serde(default)]
        signature: String,
    },
    /// `citations_delta` and any delta type added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Usage fields; `message_start` carries the input side, `message_delta` the output (and,
/// in newer API versions, cumulative input counts too).
#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct WireError {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

/// A `tool_use` block whose input is still arriving.
struct OpenToolUse {
    id: String,
    name: String,
    json: String,
    /// The input given whole in `content_block_start`, used when no delta follows.
    initial: Value,
}

/// Usage as counted so far; Anthropic's `input_tokens` excludes cached tokens.
#[derive(Default)]
struct Counts {
    input: u64,
    output: u64,
    cache_write: u64,
    cache_read: u64,
}

impl Counts {
    fn update(&mut self, usage: WireUsage) {
        let fields = [
            (&mut self.input, usage.input_tokens),
            (&mut self.output, usage.output_tokens),
            (&mut self.cache_write, usage.cache_creation_input_tokens),
            (&mut self.cache_read, usage.cache_read_input_tokens),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                *field = value;
            }
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            // Saturating: the counts are the provider's, and a sum past u64 would panic.
            input_tokens: self
                .input
                .saturating_add(self.cache_write)
                .saturating_add(self.cache_read),
            output_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
        }
    }
}

impl WireParser for EventParser {
    fn provider(&self) -> &str {
        &self.name
    }

    fn feed(&mut self, data: &str) -> Result<Fed, ChatError> {
        let batch = EventParser::feed(self, data)?;
        Ok(if self.stopped {
            Fed::Last(batch)
        } else {
            Fed::More(batch)
        })
    }

    fn end(&mut self, end: BodyEnd) -> Result<Vec<ProviderEvent>, ChatError> {
        Err(match end {
            BodyEnd::Eof => stream_cut(&self.name, "the stream ended without message_stop"),
            BodyEnd::Broken(detail) => stream_cut(&self.name, detail),
        })
    }

    fn tool_call_bytes(&self) -> usize {
        self.tool_call_bytes
    }
}

/// Turns SSE `data` into events, assembling `tool_use` inputs per block index.
struct EventParser {
    name: String,
    tool_uses: BTreeMap<u64, OpenToolUse>,
    counts: Counts,
    /// Whether the final usage was sent (at `message_delta`).
    usage_sent: bool,
    /// `message_stop` arrived: the answer is complete.
    stopped: bool,
    /// Bytes of ids, names and inputs received (see [`WireParser::tool_call_bytes`]).
    tool_call_bytes: usize,
}

impl EventParser {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            tool_uses: BTreeMap::new(),
            counts: Counts::default(),
            usage_sent: false,
            stopped: false,
            tool_call_bytes: 0,
        }
    }

    /// Events in one SSE event's data.
    fn feed(&mut self, data: &str) -> Result<Vec<ProviderEvent>, ChatError> {
        let event: WireEvent = serde_json::from_str(&super::sse::without_lone_surrogates(data))
            .map_err(|e| unreadable_event(&self.name, e.to_string()))?;
        let mut out = Vec::new();
        match event {
            WireEvent::MessageStart { message } => {
                if let Some(model) = message.model.filter(|m| !m.is_empty()) {
                    out.push(ProviderEvent::Model(model));
                }
                if let Some(usage) = message.usage {
                    self.counts.update(usage);
                }
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } if !text.is_empty() => {
                    out.push(ProviderEvent::Text(text));
                }
                WireBlock::Thinking {
                    thinking,
                    signature,
                } => {
                    if !thinking.is_empty() {
                        out.push(ProviderEvent::Reasoning(thinking));
                    }
                    if !signature.is_empty() {
                        out.push(ProviderEvent::ReasoningSignature(signature));
                    }
                }
                WireBlock::RedactedThinking { data } => {
                    out.push(ProviderEvent::RedactedReasoning(data));
                }
                WireBlock::ToolUse { id, name, input } => {
                    // The input counts as sent (`null` when absent), so even an empty block
                    // adds to the answer.
                    let input_bytes = input.to_string().len();
                    self.tool_call_bytes = self
                        .tool_call_bytes
                        .saturating_add(id.len() + name.len() + input_bytes);
                    self.tool_uses.insert(
                        index,
                        OpenToolUse {
                            id,
                            name,
                            json: String::new(),
                            initial: input,
                        },
                    );
                }
                _ => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } if !text.is_empty() => {
                    out.push(ProviderEvent::Text(text));
                }
                WireDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    out.push(ProviderEvent::Reasoning(thinking));
                }
                WireDelta::SignatureDelta { signature } if !signature.is_empty() => {
                    out.push(ProviderEvent::ReasoningSignature(signature));
                }
                WireDelta::InputJsonDelta { partial_json } => {
                    if let Some(open) = self.tool_uses.get_mut(&index) {
                        self.tool_call_bytes =
                            self.tool_call_bytes.saturating_add(partial_json.len());
                        open.json.push_str(&partial_json);
                    }
                }
                _ => {}
            },
            WireEvent::ContentBlockStop { index } => {
                if let Some(open) = self.tool_uses.remove(&index) {
                    out.push(self.tool_call(index, open)?);
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.counts.update(usage);
                    self.usage_sent = true;
                    out.push(ProviderEvent::Usage(self.counts.usage()));
                }
                if delta.stop_reason.as_deref() == Some("refusal") {
                    return Err(ChatError::new(
                        ChatErrorKind::ContentFilter,
                        format!("{} declined to continue the answer.", self.name),
                    )
                    .with_provider(&self.name));
                }
            }
            WireEvent::MessageStop => {
                // Blocks a lenient proxy never closed are complete now.
                for (index, open) in std::mem::take(&mut self.tool_uses) {
                    out.push(self.tool_call(index, open)?);
                }
                if !self.usage_sent {
                    out.push(ProviderEvent::Usage(self.counts.usage()));
                }
                self.stopped = true;
            }
            WireEvent::Error { error } => return Err(stream_error(&self.name, error)),
            WireEvent::Other => {}
        }
        Ok(out)
    }

    /// A finished `tool_use` block as a call, its streamed input parsed.
    fn tool_call(&self, index: u64, open: OpenToolUse) -> Result<ProviderEvent, ChatError> {
        let arguments = if !open.json.trim().is_empty() {
            serde_json::from_str(&open.json)
                .map_err(|e| invalid_tool_arguments(&self.name, &open.name, e.to_string()))?
        } else if open.initial.is_object() {
            open.initial
        } else {
            json!({})
        };
        let id = if open.id.is_empty() {
            format!("toolu_{index}")
        } else {
            open.id
        };
        Ok(ProviderEvent::ToolCall {
            id,
            name: open.name,
            arguments,
        })
    }
}

/// An in-stream `error` event, classified by its documented `type`.
fn stream_error(provider: &str, error: WireError) -> ChatError {
    let lower = error.message.to_ascii_lowercase();
    let (kind, retryable, what) = match error.kind.as_str() {
        "overloaded_error" => (ChatErrorKind::Overloaded, true, "is overloaded"),
        "rate_limit_error" => (ChatErrorKind::RateLimit, true, "is rate limiting requests"),
        "authentication_error" | "permission_error" => {
            (ChatErrorKind::Auth, false, "rejected the API key")
        }
        "timeout_error" => (ChatErrorKind::Timeout, true, "timed out"),
        "invalid_request_error"
            if lower.contains("prompt is too long") || lower.contains("context") =>
        {
            (
                ChatErrorKind::ContextLength,
                false,
                "says the conversation is longer than the model's context",
            )
        }
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            (ChatErrorKind::Generic, false, "rejected the request")
        }
        // `api_error` and types added later: a failure on Anthropic's side.
        _ => (ChatErrorKind::Generic, true, "failed"),
    };
    let mut chat_error = ChatError::new(
        kind,
        format!("{provider} {what} in the middle of an answer."),
    )
    .with_provider(provider)
    .retryable(retryable);
    if !error.message.is_empty() {
        chat_error = chat_error.with_detail(error.message);
    }
    chat_error
}

#[cfg(test)]
mod tests {
    use agentq_core::domain::ReasoningEffort;

    use super::*;

    fn parse(events: &[&str]) -> Result<Vec<ProviderEvent>, ChatError> {
        let mut parser = EventParser::new("Anthropic");
        let mut out = Vec::new();
        for e in events {
            out.extend(parser.feed(e)?);
        }
        Ok(out)
    }

    #[test]
    fn a_tool_use_block_given_whole_is_a_call() {
        let events = parse(&[
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"some_future_event","x":1}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![ProviderEvent::ToolCall {
                id: "toolu_1".into(),
                name: "f".into(),
                arguments: json!({"a": 1})
            }]
        );
    }

    #[test]
    fn in_stream_errors_are_classified_by_type() {
        let error = |kind: &str, message: &str| {
            stream_error(
                "Anthropic",
                WireError {
                    kind: kind.into(),
                    message: message.into(),
                },
            )
        };
        let overloaded = error("overloaded_error", "Overloaded");
        assert_eq!(overloaded.kind, ChatErrorKind::Overloaded);
        assert!(overloaded.retryable);
        assert_eq!(
            overloaded.message,
            "Anthropic is overloaded in the middle of an answer."
        );
        assert_eq!(error("rate_limit_error", "").kind, ChatErrorKind::RateLimit);
        let api = error("api_error", "Internal server error");
        assert_eq!((api.kind, api.retryable), (ChatErrorKind::Generic, true));
        let long = error("invalid_request_error", "prompt is too long: 1 > 0");
        assert_eq!(
            (long.kind, long.retryable),
            (ChatErrorKind::ContextLength, false)
        );
        let invalid = error("invalid_request_error", "messages: roles must alternate");
        assert_eq!(
            (invalid.kind, invalid.retryable),
            (ChatErrorKind::Generic, false)
        );
        assert_eq!(
            error("authentication_error", "invalid x-api-key").kind,
            ChatErrorKind::Auth
        );
    }

    #[test]
    fn usage_counts_past_u64_saturate_instead_of_panicking() {
        let max = u64::MAX;
        let events = parse(&[
            &format!(r#"{{"type":"message_start","message":{{"usage":{{"input_tokens":{max},"cache_creation_input_tokens":{max},"cache_read_input_tokens":{max}}}}}}}"#),
            r#"{"type":"message_stop"}"#,
        ])
        .unwrap();
        let [ProviderEvent::Usage(usage)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(usage.input_tokens, u64::MAX);
    }

    #[test]
    fn tool_call_bytes_count_block_starts_and_input_deltas() {
        let mut parser = EventParser::new("Anthropic");
        for event in [
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#,
            r#"{"type":"content_block_delta","index":5,"delta":{"type":"input_json_delta","partial_json":"ignored"}}"#,
        ] {
            parser.feed(event).unwrap();
        }
        assert_eq!(
            parser.tool_call_bytes,
            "toolu_1".len() + "f".len() + "{}".len() + r#"{"a":1}"#.len()
        );
    }

    fn message(role: Role, content: Vec<MessagePart>) -> Message {
        Message::plain(
            uuid::Uuid::nil(),
            uuid::Uuid::nil(),
            None,
            role,
            content,
            chrono::DateTime::UNIX_EPOCH,
        )
    }

    fn text(text: &str) -> MessagePart {
        MessagePart::Text { text: text.into() }
    }

    fn cached_request(cache: Option<CacheTtl>) -> ProviderRequest {
        ProviderRequest {
            model: "claude-x".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                message(Role::User, vec![text("hi")]),
                message(Role::Assistant, vec![text("hello")]),
                message(Role::User, vec![text("a"), text("b")]),
            ],
            tools: vec![
                super::super::ToolSpec {
                    name: "one".into(),
                    description: String::new(),
                    input_schema: std::sync::Arc::new(json!({"type": "object"})),
                },
                super::super::ToolSpec {
                    name: "two".into(),
                    description: String::new(),
                    input_schema: std::sync::Arc::new(json!({"type": "object"})),
                },
            ],
            max_output_tokens: None,
            cache,
            cache_key: Some("chat".into()),
            reasoning_effort: None,
            files: Attachments::default(),
        }
    }

    #[test]
    fn caching_marks_the_system_prompt_the_last_tool_and_the_last_block() {
        let body = request_body(&cached_request(Some(CacheTtl::FiveMinutes)));
        let ephemeral = json!({"type": "ephemeral"});
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "Be brief.", "cache_control": ephemeral}])
        );
        assert!(body["tools"][0].get("cache_control").is_none());
        assert_eq!(body["tools"][1]["cache_control"], ephemeral);
        let messages = body["messages"].as_array().unwrap();
        assert!(messages[0]["content"][0].get("cache_control").is_none());
        assert!(messages[2]["content"][0].get("cache_control").is_none());
        assert_eq!(messages[2]["content"][1]["cache_control"], ephemeral);
        assert_eq!(body.to_string().matches("cache_control").count(), 3);
        assert!(body.get("prompt_cache_key").is_none());

        let hour = request_body(&cached_request(Some(CacheTtl::OneHour)));
        assert_eq!(
            hour["system"][0]["cache_control"],
            json!({"type": "ephemeral", "ttl": "1h"})
        );

        let off = request_body(&cached_request(None));
        assert_eq!(off["system"], "Be brief.");
        assert!(!off.to_string().contains("cache_control"));
    }

    #[test]
    fn usage_counts_cached_tokens_as_input() {
        let events = parse(&[
            r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":10,"output_tokens":1,"cache_creation_input_tokens":null,"cache_read_input_tokens":90}}}"#,
            r#"{"type":"message_stop"}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::Model("claude-x".into()),
                ProviderEvent::Usage(Usage {
                    input_tokens: 100,
                    output_tokens: 1,
                    cache_read_tokens: 90,
                    cache_write_tokens: 0
                })
            ]
        );
    }

    fn thinking_request(messages: Vec<Message>) -> ProviderRequest {
        ProviderRequest {
            messages,
            tools: Vec::new(),
            cache: None,
            reasoning_effort: Some(ReasoningEffort::Low),
            ..cached_request(None)
        }
    }

    fn call(id: &str) -> MessagePart {
        MessagePart::ToolCall {
            tool_call_id: id.into(),
            name: "current_time".into(),
            arguments: json!({}),
        }
    }

    fn result(id: &str) -> MessagePart {
        MessagePart::ToolResult {
            tool_call_id: id.into(),
            output: json!("noon"),
            is_error: false,
        }
    }

    fn signed(thinking: &str, signature: &str) -> MessagePart {
        MessagePart::Reasoning {
            text: thinking.into(),
            signature: Some(signature.into()),
        }
    }

    #[test]
    fn a_reasoning_effort_thinks_with_its_budget_on_top_of_the_answers_cap() {
        let body = request_body(&thinking_request(vec![message(
            Role::User,
            vec![text("hi")],
        )]));
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 1024})
        );
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS + 1024);
        let capped = request_body(&ProviderRequest {
            max_output_tokens: Some(500),
            reasoning_effort: Some(ReasoningEffort::High),
            ..thinking_request(vec![message(Role::User, vec![text("hi")])])
        });
        assert_eq!(capped["thinking"]["budget_tokens"], 16_384);
        assert_eq!(capped["max_tokens"], 500 + 16_384);
        let off = request_body(&ProviderRequest {
            reasoning_effort: None,
            ..thinking_request(vec![message(Role::User, vec![text("hi")])])
        });
        assert!(off.get("thinking").is_none());
        assert_eq!(off["max_tokens"], DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn signed_thinking_goes_back_in_place_and_unsigned_reasoning_never() {
        let history = vec![
            message(Role::User, vec![text("time?")]),
            message(
                Role::Assistant,
                vec![
                    signed("Check the clock.", "sig-1"),
                    call("toolu_1"),
                    MessagePart::RedactedReasoning {
                        data: "opaque".into(),
                    },
                    call("toolu_2"),
                ],
            ),
            message(Role::Tool, vec![result("toolu_1"), result("toolu_2")]),
        ];
        let body = request_body(&thinking_request(history.clone()));
        assert!(body.get("thinking").is_some(), "the loop began thinking");
        let types: Vec<&str> = body["messages"][1]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["thinking", "tool_use", "redacted_thinking", "tool_use"]
        );
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "thinking", "thinking": "Check the clock.", "signature": "sig-1"})
        );
        assert_eq!(
            body["messages"][1]["content"][2],
            json!({"type": "redacted_thinking", "data": "opaque"})
        );

        // Without thinking, no thinking block goes anywhere.
        let off = request_body(&ProviderRequest {
            reasoning_effort: None,
            ..thinking_request(history)
        });
        assert!(!off.to_string().contains("thinking"), "{off}");

        // Reasoning without a signature (another provider's) is never sent.
        let unsigned = request_body(&thinking_request(vec![
            message(Role::User, vec![text("a")]),
            message(
                Role::Assistant,
                vec![
                    MessagePart::Reasoning {
                        text: "hmm".into(),
                        signature: None,
                    },
                    text("b"),
                ],
            ),
            message(Role::User, vec![text("c")]),
        ]));
        assert!(unsigned.get("thinking").is_some());
        assert!(
            !unsigned["messages"].to_string().contains("hmm"),
            "{unsigned}"
        );
    }

    #[test]
    fn a_tool_loop_that_began_without_thinking_finishes_without_it() {
        // The chat's level was set while this step's tools ran: its assistant message has
        // no thinking block, which Anthropic requires of a thinking request's last step.
        let body = request_body(&thinking_request(vec![
            message(Role::User, vec![text("time?")]),
            message(Role::Assistant, vec![call("toolu_1")]),
            message(Role::Tool, vec![result("toolu_1")]),
        ]));
        assert!(body.get("thinking").is_none(), "{body}");
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        // The next user message starts a new turn, which thinks.
        let next = request_body(&thinking_request(vec![
            message(Role::User, vec![text("time?")]),
            message(Role::Assistant, vec![call("toolu_1")]),
            message(Role::Tool, vec![result("toolu_1")]),
            message(Role::Assistant, vec![text("noon")]),
            message(Role::User, vec![text("thanks")]),
        ]));
        assert!(next.get("thinking").is_some(), "{next}");
    }

    #[test]
    fn signatures_and_redacted_thinking_are_read() {
        let events = parse(&[
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hm."}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"opaque"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::Reasoning("Hm.".into()),
                ProviderEvent::ReasoningSignature("sig".into()),
                ProviderEvent::RedactedReasoning("opaque".into()),
            ]
        );
    }
}

/// Hostile Messages streams through the real read loop (docs/fuzzing.md).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::providers::sse::{
        Framing,
        fuzz::{answer_bytes, config, cut, cuts, limits, read_chunks, sse_body, text},
    };

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0u64..100_000).prop_map(Value::from),
            Just(Value::from(u64::MAX)),
            Just(Value::from(-1)),
            Just(Value::from(1e300)),
            Just(Value::Null),
        ]
    }

    /// One event's `type` and JSON: every event and block type, tool inputs split
    /// anywhere, block indexes colliding, counts past `u64`, errors, unknown types, deep
    /// nesting.
    fn event() -> impl Strategy<Value = (Option<String>, String)> {
        let index = prop_oneof![0u64..3, Just(u64::MAX)];
        let partial = prop_oneof![
            Just(r#"{"q": "ru"#.to_owned()),
            Just(r#"st"}"#.to_owned()),
            Just("{}".to_owned()),
            text(),
        ];
        let block = prop_oneof![
            text().prop_map(|t| json!({"type": "text", "text": t})),
            (text(), text()).prop_map(|(t, s)| json!({"type": "thinking", "thinking": t, "signature": s})),
            text().prop_map(|d| json!({"type": "redacted_thinking", "data": d})),
            (proptest::option::of("toolu_[a-c]"), "[a-z_]{0,8}", prop_oneof![Just(json!({})), Just(json!({"a": 1})), Just(Value::Null)])
                .prop_map(|(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input})),
            Just(json!({"type": "server_tool_use"})),
        ];
        let delta = prop_oneof![
            text().prop_map(|t| json!({"type": "text_delta", "text": t})),
            text().prop_map(|t| json!({"type": "thinking_delta", "thinking": t})),
            text().prop_map(|s| json!({"type": "signature_delta", "signature": s})),
            partial.prop_map(|p| json!({"type": "input_json_delta", "partial_json": p})),
            Just(json!({"type": "citations_delta"})),
        ];
        let usage = || {
            (number(), number(), number(), number()).prop_map(|(i, o, w, r)| {
                json!({
                "input_tokens": i, "output_tokens": o,
                "cache_creation_input_tokens": w, "cache_read_input_tokens": r})
            })
        };
        let data = prop_oneof![
            1 => (text(), usage()).prop_map(|(model, usage)| json!({"type": "message_start", "message": {"model": model, "usage": usage}})),
            3 => (index.clone(), block).prop_map(|(index, block)| json!({"type": "content_block_start", "index": index, "content_block": block})),
            5 => (index.clone(), delta).prop_map(|(index, delta)| json!({"type": "content_block_delta", "index": index, "delta": delta})),
            2 => index.prop_map(|index| json!({"type": "content_block_stop", "index": index})),
            1 => (proptest::option::of(prop_oneof![Just("end_turn"), Just("tool_use"), Just("refusal")]), proptest::option::of(usage()))
                .prop_map(|(stop, usage)| json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": usage})),
            1 => Just(json!({"type": "message_stop"})),
            1 => Just(json!({"type": "ping"})),
            1 => prop_oneof![Just("overloaded_error"), Just("invalid_request_error"), Just("nope")]
                .prop_map(|kind| json!({"type": "error", "error": {"type": kind, "message": "prompt is too long"}})),
        ];
        prop_oneof![
            10 => data.prop_map(|d| (d["type"].as_str().map(str::to_owned), d.to_string())),
            1 => (1usize..400).prop_map(|depth| (None, format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth)))),
            1 => text().prop_map(|t| (None, t)),
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        sse_body(proptest::collection::vec(event(), 0..40))
    }

    fn read(chunks: Vec<Vec<u8>>) -> Vec<Result<ProviderEvent, ChatError>> {
        read_chunks(
            Framing::Sse,
            chunks,
            EventParser::new("Anthropic"),
            &limits(),
        )
    }

    proptest! {
        #![proptest_config(config(500))]

        /// The events (and the error that ends them) are the same however the body is cut,
        /// the answer stays within its cap, and nothing comes after an error.
        #[test]
        fn fuzz_anthropic_streams_read_the_same_however_they_are_cut(body in body(), cuts in cuts()) {
            let whole = read(vec![body.clone()]);
            let cut = read(cut(&body, &cuts));
            prop_assert_eq!(&cut, &whole);
            prop_assert!(answer_bytes(&whole) <= limits().max_answer_bytes);
            if let Some(first_error) = whole.iter().position(Result::is_err) {
                prop_assert_eq!(first_error, whole.len() - 1);
            }
        }

        #[test]
        fn fuzz_anthropic_streams_read_the_same_byte_by_byte(body in body()) {
            let whole = read(vec![body.clone()]);
            let bytes = body.iter().map(|b| vec![*b]).collect();
            prop_assert_eq!(read(bytes), whole);
        }
    }
}
