//! OpenAI Chat Completions with `stream: true`, the wire format OpenAI, OpenRouter, vLLM,
//! Ollama and LiteLLM all speak. Parsing is lenient: missing, `null` or empty fields, absent
//! `usage`, unknown chunk fields and tool calls without an `index` are tolerated. Tool-call
//! arguments arrive in pieces keyed by `index`; a call is emitted whole when the model
//! finishes. A stream that ends with neither `[DONE]` nor a finish reason was cut.

use std::collections::HashMap;

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{Message, MessagePart, Role, Usage},
};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{
    ProviderEvent, ProviderRequest, ProviderStream,
    attachments::{Attached, Attachments},
    attempt,
    errors::{classify_http_error, invalid_tool_arguments, stream_cut, unreadable_event},
    limits::ProviderLimits,
    redact::Redactor,
    sse::{BodyEnd, Fed, WireParser},
};

/// An OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    name: String,
    headers: Vec<(String, String)>,
    limits: ProviderLimits,
    redactor: Redactor,
    /// Which optional fields requests carry (they depend on the provider kind).
    wire: WireOptions,
}

/// The fields of a request body that depend on the provider kind: what OpenAI accepts, an
/// OpenAI-compatible server or a router may refuse.
#[derive(Debug, Clone, Copy, Default)]
struct WireOptions {
    /// Send the request's cache key as `prompt_cache_key`.
    prompt_cache_key: bool,
    /// Send the output cap as `max_completion_tokens`.
    max_completion_tokens: bool,
}

impl OpenAiProvider {
    /// `base_url` like `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        limits: ProviderLimits,
    ) -> Result<Self, ChatError> {
        let name = "OpenAI";
        let client = super::http_client(name)?;
        let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        let api_key = api_key.filter(|k| !k.is_empty());
        let redactor = Redactor::for_url(&url).with_secret(api_key.as_deref().unwrap_or_default());
        Ok(Self {
            client,
            redactor,
            url,
            api_key,
            name: name.to_owned(),
            headers: Vec::new(),
            limits,
            wire: WireOptions::default(),
        })
    }

    /// Sends the request's cache key as `prompt_cache_key`, so a chat's requests reach the
    /// machines that cached its prefix (off by default: only OpenAI is known to accept it;
    /// see `ProviderKind::accepts_prompt_cache_key`).
    pub fn with_prompt_cache_key(mut self, send: bool) -> Self {
        self.wire.prompt_cache_key = send;
        self
    }

    /// Sends the output cap of every request as `max_completion_tokens` (OpenAI's
    /// reasoning models refuse `max_tokens`; off by default, see
    /// `ProviderKind::caps_reasoning_with_max_completion_tokens`).
    pub fn with_max_completion_tokens(mut self, send: bool) -> Self {
        self.wire.max_completion_tokens = send;
        self
    }

    /// The name errors give the provider ("OpenRouter is rate limiting requests"), since the
    /// same wire format reaches many services; `OpenAI` by default.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Extra headers sent with every request (OpenRouter's `HTTP-Referer`, a gateway key).
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        for (_, value) in &headers {
            self.redactor = self.redactor.with_secret(value);
        }
        self.headers = headers;
        self
    }

    /// Sends the request and streams the answer's deltas.
    pub async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ChatError> {
        let mut http = self
            .client
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&request_body(&request, self.wire));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        for (name, value) in &self.headers {
            http = http.header(name, value);
        }
        attempt::send(
            http,
            ChunkParser::new(&self.name),
            &self.limits,
            &self.redactor,
        )
        .await
    }
}

/// The JSON body of a streaming request; `wire` says which kind-dependent fields it may
/// carry. The system message and tools come first and unchanged from step to step, so the
/// provider's automatic prefix cache covers them (ARCHITECTURE.md §7).
fn request_body(request: &ProviderRequest, wire: WireOptions) -> Value {
    // The system message leads the conversation (Chat Completions has no separate field).
    let system = request
        .system
        .as_ref()
        .map(|system| json!({"role": "system", "content": system}));
    let messages: Vec<Value> = system
        .into_iter()
        .chain(wire_messages(&request.messages, &request.files))
        .collect();
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": *t.input_schema}}))
            .collect();
    }
    if let Some(effort) = request.reasoning_effort {
        // OpenAI's field; OpenRouter and most compatible servers read it too.
        body["reasoning_effort"] = json!(effort.as_str());
    }
    if let Some(max) = request.max_output_tokens {
        // OpenAI takes `max_completion_tokens` for every model and its reasoning models
        // refuse `max_tokens`, even for a request that sets no effort (a compaction
        // summary, a title).
        let field = if wire.max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[field] = json!(max);
    }
    if wire.prompt_cache_key
        && let Some(key) = &request.cache_key
    {
        body["prompt_cache_key"] = json!(key);
    }
    body
}

/// The most bytes of one image OpenAI takes (20 MB).
const MAX_IMAGE_BYTES: usize = 20_000_000;

/// The conversation in Chat Completions form: assistant tool calls as `tool_calls`, each
/// tool result as its own `role: tool` message, a user message with attached files as a
/// list of content parts (see [`user_content`]).
fn wire_messages(messages: &[Message], files: &Attachments) -> Vec<Value> {
    let mut out = Vec::new();
    for message in messages {
        let text: String = message
            .content
            .iter()
            .filter_map(MessagePart::as_text)
            .collect::<Vec<_>>()
            .join("\n");
        match message.role {
            Role::User if has_files(message) => {
                out.push(json!({"role": "user", "content": user_content(message, files)}));
            }
            Role::User if !text.is_empty() => out.push(json!({"role": "user", "content": text})),
            Role::User => {}
            Role::Assistant => {
                let calls: Vec<Value> = message
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        MessagePart::ToolCall {
                            tool_call_id,
                            name,
                            arguments,
                        } => Some(json!({
                            "id": tool_call_id, "type": "function",
                            "function": {"name": name, "arguments": arguments.to_string()}
                        })),
                        _ => None,
                    })
                    .collect();
                if calls.is_empty() {
                    if !text.is_empty() {
                        out.push(json!({"role": "assistant", "content": text}));
                    }
                } else {
                    let content = if text.is_empty() {
                        Value::Null
                    } else {
                        Value::String(text)
                    };
                    out.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
                }
            }
            Role::Tool => {
                for part in &message.content {
                    if let MessagePart::ToolResult {
                        tool_call_id,
                        output,
                        ..
                    } = part
                    {
                        let content = match output {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.push(json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}));
                    }
                }
            }
        }
    }
    out
}

fn has_files(message: &Message) -> bool {
    message
        .content
        .iter()
        .any(|p| matches!(p, MessagePart::File { .. }))
}

/// A user message's parts in order: text as `text` parts, attached images as `image_url`
/// parts with a `data:` URI, PDFs as `file` parts (`file_data`, a `data:` URI), text files
/// as `text` parts (attachments.rs).
fn user_content(message: &Message, files: &Attachments) -> Vec<Value> {
    message
        .content
        .iter()
        .filter_map(|part| match files.render(part, MAX_IMAGE_BYTES) {
            Some(Attached::Image { mimetype, data }) => Some(json!({
                "type": "image_url",
                "image_url": {"url": format!("data:{mimetype};base64,{data}")},
            })),
            Some(Attached::Pdf { name, data }) => Some(json!({
                "type": "file",
                "file": {"filename": name, "file_data": format!("data:application/pdf;base64,{data}")},
            })),
            Some(Attached::Text(text)) => Some(json!({"type": "text", "text": text})),
            None => match part {
                MessagePart::Text { text } if !text.is_empty() => {
                    Some(json!({"type": "text", "text": text}))
                }
                _ => None,
            },
        })
        .collect()
}

/// `null` reads as the default: servers send `"choices": null`, `"prompt_tokens": null`.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek, vLLM and Ollama name it `reasoning_content`, OpenRouter `reasoning`.
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize, Default)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize, Default)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    /// A piece of a JSON string; a few servers send the whole arguments as an object.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default, deserialize_with = "nullable")]
    prompt_tokens: u64,
    #[serde(default, deserialize_with = "nullable")]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    /// DeepSeek reports cache hits here instead of `prompt_tokens_details`.
    #[serde(default, deserialize_with = "nullable")]
    prompt_cache_hit_tokens: u64,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default, deserialize_with = "nullable")]
    cached_tokens: u64,
}

/// A tool call being assembled from deltas.
#[derive(Default, Debug)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// How a stream ended.
enum End {
    /// `data: [DONE]`.
    Done,
    /// The body ended.
    Eof,
    /// The connection broke (the detail says how).
    Broken(String),
}

impl WireParser for ChunkParser {
    fn provider(&self) -> &str {
        &self.name
    }

    fn feed(&mut self, data: &str) -> Result<Fed, ChatError> {
        if data == "[DONE]" {
            return self.finish(End::Done).map(Fed::Last);
        }
        ChunkParser::feed(self, data).map(Fed::More)
    }

    fn end(&mut self, end: BodyEnd) -> Result<Vec<ProviderEvent>, ChatError> {
        self.finish(match end {
            BodyEnd::Eof => End::Eof,
            BodyEnd::Broken(detail) => End::Broken(detail),
        })
    }

    fn tool_call_bytes(&self) -> usize {
        self.tool_call_bytes
    }
}

/// Turns `data:` chunks into events, assembling tool calls across chunks.
struct ChunkParser {
    name: String,
    /// Calls in the order they started.
    calls: Vec<PartialCall>,
    /// Wire `index` to position in `calls`.
    by_index: HashMap<u64, usize>,
    /// The model last announced, so it is announced once rather than with every chunk.
    model: Option<String>,
    /// A choice reported a finish reason: the answer is complete even without `[DONE]`.
    finished: bool,
    /// Bytes of ids, names and arguments received (see [`WireParser::tool_call_bytes`]).
    tool_call_bytes: usize,
}

impl ChunkParser {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            calls: Vec::new(),
            by_index: HashMap::new(),
            model: None,
            finished: false,
            tool_call_bytes: 0,
        }
    }

    /// Events in one chunk.
    fn feed(&mut self, data: &str) -> Result<Vec<ProviderEvent>, ChatError> {
        let chunk: Chunk = serde_json::from_str(&super::sse::without_lone_surrogates(data))
            .map_err(|e| unreadable_event(&self.name, e.to_string()))?;
        if let Some(error) = chunk.error {
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            return Err(classify_http_error(
                &self.name,
                status,
                &json!({ "error": error }).to_string(),
            ));
        }
        let mut out = Vec::new();
        if let Some(model) = chunk.model.filter(|m| !m.is_empty())
            && self.model.as_ref() != Some(&model)
        {
            self.model = Some(model.clone());
            out.push(ProviderEvent::Model(model));
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(r) = delta
                    .reasoning_content
                    .filter(|r| !r.is_empty())
                    .or(delta.reasoning)
                    .filter(|r| !r.is_empty())
                {
                    out.push(ProviderEvent::Reasoning(r));
                }
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(ProviderEvent::Text(text));
                }
                for call in delta.tool_calls {
                    self.add_call_delta(call);
                }
            }
            match choice.finish_reason.as_deref() {
                Some("content_filter") => {
                    return Err(ChatError::new(
                        ChatErrorKind::ContentFilter,
                        format!("{} stopped the answer with its content filter.", self.name),
                    )
                    .with_provider(&self.name));
                }
                Some(reason) if !reason.is_empty() => {
                    self.finished = true;
                    out.extend(self.take_calls()?);
                }
                _ => {}
            }
        }
        if let Some(u) = chunk.usage {
            let cached = u
                .prompt_tokens_details
                .map(|d| d.cached_tokens)
                .filter(|&c| c > 0)
                .unwrap_or(u.prompt_cache_hit_tokens);
            out.push(ProviderEvent::Usage(Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            }));
        }
        Ok(out)
    }

    /// Adds one `tool_calls` delta to the call it belongs to. The `index` names the call; a
    /// known `id` does too (some servers repeat it on every delta). Without an index, a new
    /// id starts the next call and a delta without one continues the last.
    fn add_call_delta(&mut self, delta: ToolCallDelta) {
        let id = delta.id.filter(|i| !i.is_empty());
        let (name, arguments) = match delta.function {
            Some(f) => (f.name.filter(|n| !n.is_empty()), f.arguments),
            None => (None, None),
        };
        let arguments = match arguments {
            Some(Value::String(piece)) => piece,
            Some(Value::Null) | None => String::new(),
            Some(whole) => whole.to_string(),
        };
        // A delta that carries nothing starts nothing: otherwise a stream of bare indexes
        // would grow the list of calls without adding a byte to the answer.
        if id.is_none() && name.is_none() && arguments.is_empty() {
            return;
        }
        let known_id = id
            .as_ref()
            .and_then(|id| self.calls.iter().position(|c| &c.id == id));
        let position = match (known_id, delta.index) {
            (Some(position), _) => position,
            (None, Some(index)) => match self.by_index.get(&index) {
                // The same index with a different id is a server reusing indexes.
                Some(&p) if id.is_none() || self.calls[p].id.is_empty() => p,
                _ => self.start_call(Some(index)),
            },
            (None, None) if id.is_none() && !self.calls.is_empty() => self.calls.len() - 1,
            (None, None) => self.start_call(None),
        };
        let call = &mut self.calls[position];
        let mut added = arguments.len();
        if let Some(id) = id
            && call.id != id
        {
            added += id.len();
            call.id = id;
        }
        if let Some(name) = name
            && call.name.is_empty()
        {
            added += name.len();
            call.name = name;
        }
        call.arguments.push_str(&arguments);
        self.tool_call_bytes = self.tool_call_bytes.saturating_add(added);
    }

    fn start_call(&mut self, index: Option<u64>) -> usize {
        self.calls.push(PartialCall::default());
        let position = self.calls.len() - 1;
        if let Some(index) = index {
            self.by_index.insert(index, position);
        }
        position
    }

    /// The end of the stream. Calls not yet emitted are; a stream that ends with neither
    /// `[DONE]` nor a finish reason was cut.
    fn finish(&mut self, end: End) -> Result<Vec<ProviderEvent>, ChatError> {
        match end {
            End::Done => {}
            _ if self.finished => {}
            End::Eof => {
                return Err(stream_cut(
                    &self.name,
                    "the stream ended without [DONE] or a finish reason",
                ));
            }
            End::Broken(detail) => return Err(stream_cut(&self.name, detail)),
        }
        self.take_calls()
    }

    fn take_calls(&mut self) -> Result<Vec<ProviderEvent>, ChatError> {
        self.by_index.clear();
        std::mem::take(&mut self.calls)
            .into_iter()
            .enumerate()
            .map(|(position, call)| {
                let arguments = if call.arguments.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&call.arguments).map_err(|e| {
                        invalid_tool_arguments(&self.name, &call.name, e.to_string())
                    })?
                };
                let id = if call.id.is_empty() {
                    format!("call_{position}")
                } else {
                    call.id
                };
                Ok(ProviderEvent::ToolCall {
                    id,
                    name: call.name,
                    arguments,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Result<Vec<ProviderEvent>, ChatError> {
        let mut parser = ChunkParser::new("OpenAI");
        let mut out = Vec::new();
        for c in chunks {
            out.extend(parser.feed(c)?);
        }
        out.extend(parser.finish(End::Done)?);
        Ok(out)
    }

    #[test]
    fn chunks_from_different_servers_parse() {
        let openai = r#"{"id":"x","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(
            parse(&[openai]).unwrap(),
            vec![
                ProviderEvent::Model("gpt-4o".into()),
                ProviderEvent::Text("Hi".into())
            ]
        );
        // Ollama/vLLM style: no model, empty delta, usage in the last chunk.
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(
            parse(&[usage]).unwrap(),
            vec![ProviderEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 5,
                cache_read_tokens: 2,
                cache_write_tokens: 0
            })]
        );
        let reasoning = r#"{"choices":[{"delta":{"reasoning_content":"hmm","content":""}}]}"#;
        assert_eq!(
            parse(&[reasoning]).unwrap(),
            vec![ProviderEvent::Reasoning("hmm".into())]
        );
        assert!(
            parse(&[r#"{"choices":[{"delta":{}}]}"#])
                .unwrap()
                .is_empty()
        );
        let in_stream = r#"{"error":{"message":"overloaded","code":503}}"#;
        assert_eq!(
            parse(&[in_stream]).unwrap_err().kind,
            ChatErrorKind::Overloaded
        );
    }

    #[test]
    fn parallel_tool_calls_are_assembled_by_index() {
        let events = parse(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read","arguments":"{\"pa"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"list","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"a.rs\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::ToolCall {
                    id: "call_a".into(),
                    name: "read".into(),
                    arguments: json!({"path": "a.rs"})
                },
                ProviderEvent::ToolCall {
                    id: "call_b".into(),
                    name: "list".into(),
                    arguments: json!({})
                },
            ]
        );
    }

    #[test]
    fn tool_calls_without_an_index_or_with_repeated_ids_are_assembled() {
        // Ollama style: each call whole in one delta, no index, arguments as an object.
        let events = parse(&[
            r#"{"model":"qwen3","choices":[{"delta":{"tool_calls":[{"id":"call_1","function":{"name":"a","arguments":{"x":1}}},{"id":"call_2","function":{"name":"b","arguments":"{}"}}]}}]}"#,
            r#"{"model":"qwen3","choices":[{"delta":{"content":null,"tool_calls":null},"finish_reason":"stop"}],"usage":null}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::Model("qwen3".into()),
                ProviderEvent::ToolCall {
                    id: "call_1".into(),
                    name: "a".into(),
                    arguments: json!({"x": 1})
                },
                ProviderEvent::ToolCall {
                    id: "call_2".into(),
                    name: "b".into(),
                    arguments: json!({})
                },
            ]
        );
        // LiteLLM style: the id and name repeated on every delta of the call.
        let events = parse(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"name":"f","arguments":"{\"a\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"name":"f","arguments":"2}"}}]}}]}"#,
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![ProviderEvent::ToolCall {
                id: "call_x".into(),
                name: "f".into(),
                arguments: json!({"a": 2})
            }]
        );
    }

    #[test]
    fn a_huge_tool_call_index_is_a_key_not_a_length() {
        for index in [4_294_967_295_u64, u64::MAX] {
            let events = parse(&[
                &format!(r#"{{"choices":[{{"delta":{{"tool_calls":[{{"index":{index},"id":"call_far","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}"#),
                &format!(r#"{{"choices":[{{"delta":{{"tool_calls":[{{"index":{index},"function":{{"arguments":""}}}}]}},"finish_reason":"tool_calls"}}]}}"#),
            ])
            .unwrap();
            assert_eq!(
                events,
                vec![ProviderEvent::ToolCall {
                    id: "call_far".into(),
                    name: "f".into(),
                    arguments: json!({})
                }]
            );
        }
    }

    #[test]
    fn tool_call_bytes_count_ids_names_and_arguments_once() {
        let mut parser = ChunkParser::new("OpenAI");
        for chunk in [
            // LiteLLM style: the id and name repeated on every delta are counted once.
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"name":"f","arguments":"{\"a\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"name":"f","arguments":"2}"}}]}}]}"#,
            // Deltas that carry nothing start no call, whatever their index.
            r#"{"choices":[{"delta":{"tool_calls":[{"index":7},{"index":8,"function":{"arguments":""}}]}}]}"#,
        ] {
            parser.feed(chunk).unwrap();
        }
        assert_eq!(
            parser.tool_call_bytes,
            "call_x".len() + "f".len() + r#"{"a":2}"#.len()
        );
        assert_eq!(parser.calls.len(), 1);
    }

    #[test]
    fn unparseable_arguments_name_the_tool() {
        let error = parse(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"search","arguments":"{\"q\": "}}]},"finish_reason":"tool_calls"}]}"#,
        ])
        .unwrap_err();
        assert_eq!(error.kind, ChatErrorKind::Generic);
        assert!(!error.retryable);
        assert!(error.message.contains("`search`"), "{}", error.message);
    }

    #[test]
    fn a_stream_without_done_or_finish_reason_was_cut() {
        let mut parser = ChunkParser::new("OpenRouter");
        parser
            .feed(r#"{"choices":[{"delta":{"content":"Hel"}}]}"#)
            .unwrap();
        let error = parser.finish(End::Eof).unwrap_err();
        assert!(error.retryable);
        assert_eq!(
            error.message,
            "OpenRouter closed the stream in the middle of an answer."
        );
    }

    #[test]
    fn tool_history_is_sent_in_chat_completions_form() {
        let message = |role, content| {
            Message::plain(
                uuid::Uuid::nil(),
                uuid::Uuid::nil(),
                None,
                role,
                content,
                chrono::Utc::now(),
            )
        };
        let wire = wire_messages(
            &[
                message(Role::User, vec![MessagePart::Text { text: "hi".into() }]),
                message(
                    Role::Assistant,
                    vec![MessagePart::ToolCall {
                        tool_call_id: "call_a".into(),
                        name: "read".into(),
                        arguments: json!({"path": "a"}),
                    }],
                ),
                message(
                    Role::Tool,
                    vec![MessagePart::ToolResult {
                        tool_call_id: "call_a".into(),
                        output: json!("file body"),
                        is_error: false,
                    }],
                ),
            ],
            &Attachments::default(),
        );
        assert_eq!(wire[1]["content"], Value::Null);
        assert_eq!(
            wire[1]["tool_calls"][0]["function"]["arguments"],
            r#"{"path":"a"}"#
        );
        assert_eq!(
            wire[2],
            json!({"role": "tool", "tool_call_id": "call_a", "content": "file body"})
        );
    }

    #[test]
    fn a_reasoning_effort_is_sent_and_openai_caps_it_with_max_completion_tokens() {
        let request = ProviderRequest {
            model: "o-model".into(),
            system: None,
            messages: Vec::new(),
            tools: Vec::new(),
            max_output_tokens: Some(900),
            cache: None,
            cache_key: None,
            reasoning_effort: Some(agentq_core::domain::ReasoningEffort::High),
            files: Attachments::default(),
        };
        let compatible = request_body(&request, WireOptions::default());
        assert_eq!(compatible["reasoning_effort"], "high");
        assert_eq!(compatible["max_tokens"], 900);
        assert!(compatible.get("max_completion_tokens").is_none());
        let openai = WireOptions {
            max_completion_tokens: true,
            ..WireOptions::default()
        };
        let body = request_body(&request, openai);
        assert_eq!(body["max_completion_tokens"], 900);
        assert!(body.get("max_tokens").is_none());
        // Without an effort OpenAI still gets `max_completion_tokens` (its reasoning models
        // refuse `max_tokens` on every request, a summary's or a title's too).
        let plain = ProviderRequest {
            reasoning_effort: None,
            ..request
        };
        let body = request_body(&plain, openai);
        assert!(body.get("reasoning_effort").is_none());
        assert_eq!(body["max_completion_tokens"], 900);
        assert!(body.get("max_tokens").is_none());
    }
}

/// Hostile Chat Completions streams through the real read loop (docs/fuzzing.md).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::providers::sse::{
        Framing,
        fuzz::{answer_bytes, config, cut, cuts, limits, read_chunks, sse_body, text},
    };

    /// Numbers as servers should and should not send them.
    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0u64..100_000).prop_map(Value::from),
            Just(Value::from(u64::MAX)),
            Just(Value::from(-1)),
            Just(Value::from(1e300)),
            Just(Value::Null),
            Just(Value::from("12")),
        ]
    }

    /// One chunk's JSON: text, reasoning, tool call pieces (indexes colliding, ids
    /// repeated or missing, arguments split anywhere), usage, the model, finish reasons,
    /// errors, and documents nested past serde_json's depth limit.
    fn chunk() -> impl Strategy<Value = String> {
        let arguments = prop_oneof![
            Just(r#"{"path": "/tmp"#.to_owned()),
            Just(r#"", "n": 1}"#.to_owned()),
            Just("{}".to_owned()),
            text(),
        ];
        prop_oneof![
            4 => text().prop_map(|t| json!({"choices": [{"delta": {"content": t}}]}).to_string()),
            1 => text().prop_map(|t| json!({"choices": [{"delta": {"reasoning_content": t}}]}).to_string()),
            3 => (proptest::option::of(0u64..3), proptest::option::of("call_[a-c]"),
                  proptest::option::of("[a-z_]{1,8}"), proptest::option::of(arguments))
                .prop_map(|(index, id, name, arguments)| json!({"choices": [{"delta": {"tool_calls": [
                    {"index": index, "id": id, "function": {"name": name, "arguments": arguments}}
                ]}}]}).to_string()),
            1 => (number(), number(), number()).prop_map(|(p, c, cached)| json!({
                "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c,
                "prompt_tokens_details": {"cached_tokens": cached}}}).to_string()),
            1 => text().prop_map(|m| json!({"model": m, "choices": null}).to_string()),
            1 => prop_oneof![Just("stop"), Just("tool_calls"), Just("length"), Just("content_filter"), Just("")]
                .prop_map(|r| json!({"choices": [{"delta": {}, "finish_reason": r}]}).to_string()),
            1 => number().prop_map(|code| json!({"error": {"code": code, "message": "boom"}}).to_string()),
            1 => Just("[DONE]".to_owned()),
            1 => (1usize..400).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
            1 => (1usize..200).prop_map(|depth| format!(
                r#"{{"choices":[{{"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":{}1{}}}}}]}}}}]}}"#,
                "[".repeat(depth), "]".repeat(depth))),
            1 => text(),
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        sse_body(proptest::collection::vec(
            chunk().prop_map(|data| (None, data)),
            0..40,
        ))
    }

    fn read(chunks: Vec<Vec<u8>>) -> Vec<Result<ProviderEvent, ChatError>> {
        read_chunks(Framing::Sse, chunks, ChunkParser::new("OpenAI"), &limits())
    }

    proptest! {
        #![proptest_config(config(500))]

        /// The events (and the error that ends them) are the same however the body is cut,
        /// the answer stays within its cap, and nothing comes after an error.
        #[test]
        fn fuzz_openai_streams_read_the_same_however_they_are_cut(body in body(), cuts in cuts()) {
            let whole = read(vec![body.clone()]);
            let cut = read(cut(&body, &cuts));
            prop_assert_eq!(&cut, &whole);
            prop_assert!(answer_bytes(&whole) <= limits().max_answer_bytes);
            if let Some(first_error) = whole.iter().position(Result::is_err) {
                prop_assert_eq!(first_error, whole.len() - 1);
            }
        }

        /// One byte at a time, the hardest cut.
        #[test]
        fn fuzz_openai_streams_read_the_same_byte_by_byte(body in body()) {
            let whole = read(vec![body.clone()]);
            let bytes = body.iter().map(|b| vec![*b]).collect();
            prop_assert_eq!(read(bytes), whole);
        }
    }
}
