//! OpenAI Chat Completions with `stream: true`, the wire format OpenAI, OpenRouter, vLLM,
//! Ollama and LiteLLM all speak. Parsing is lenient: missing or empty fields, absent
//! `usage`, unknown chunk fields and tool calls without an `index` are tolerated. Tool-call
//! arguments arrive in pieces keyed by `index`; a call is emitted whole when the model
//! finishes.

use std::{collections::BTreeMap, time::Duration};

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{Message, MessagePart, Role, Usage},
};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ProviderEvent, ProviderRequest, ProviderStream,
    errors::{classify_http_error, retry_after, transport_error},
};

const NAME: &str = "OpenAI";

/// An OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    headers: Vec<(String, String)>,
    startup_timeout: Duration,
    silence_timeout: Duration,
}

impl OpenAiProvider {
    /// `base_url` like `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        startup_timeout: Duration,
        silence_timeout: Duration,
    ) -> Result<Self, ChatError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key: api_key.filter(|k| !k.is_empty()),
            headers: Vec::new(),
            startup_timeout,
            silence_timeout,
        })
    }

    /// Extra headers sent with every request (OpenRouter's `HTTP-Referer`, a gateway key).
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers = headers;
        self
    }

    /// Sends the request and streams the answer's deltas.
    pub async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ChatError> {
        let mut http = self.client.post(&self.url).json(&request_body(&request));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        for (name, value) in &self.headers {
            http = http.header(name, value);
        }
        let response = match tokio::time::timeout(self.startup_timeout, http.send()).await {
            Err(_) => {
                return Err(ChatError::new(
                    ChatErrorKind::StartupTimeout,
                    format!(
                        "{NAME} sent nothing within {} s.",
                        self.startup_timeout.as_secs()
                    ),
                )
                .with_provider(NAME)
                .retryable(true));
            }
            Ok(Err(e)) => return Err(transport_error(NAME, &e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            let mut error = classify_http_error(NAME, status.as_u16(), &text);
            error.retry_after = wait;
            return Err(error);
        }
        let silence = self.silence_timeout;
        let events = response.bytes_stream().eventsource();
        let stream = futures::stream::unfold(
            Some((events, ChunkParser::default())),
            move |state| async move {
                let (mut events, mut parser) = state?;
                loop {
                    let next = match tokio::time::timeout(silence, events.next()).await {
                        Err(_) => return Some((Err(silence_error(silence)), None)),
                        Ok(None) => {
                            // EOF: fine after a finish reason (some servers skip [DONE]).
                            return match parser.finish(false) {
                                Ok(batch) if batch.is_empty() => None,
                                Ok(batch) => Some((Ok(batch), None)),
                                Err(e) => Some((Err(e), None)),
                            };
                        }
                        Ok(Some(Err(e))) => return Some((Err(stream_cut(&e.to_string())), None)),
                        Ok(Some(Ok(event))) => event,
                    };
                    let data = next.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    let batch = if data == "[DONE]" {
                        match parser.finish(true) {
                            Ok(batch) => return (!batch.is_empty()).then_some((Ok(batch), None)),
                            Err(e) => return Some((Err(e), None)),
                        }
                    } else {
                        parser.feed(data)
                    };
                    match batch {
                        Ok(batch) if batch.is_empty() => continue,
                        Ok(batch) => return Some((Ok(batch), Some((events, parser)))),
                        Err(e) => return Some((Err(e), None)),
                    }
                }
            },
        )
        .flat_map(|batch: Result<Vec<ProviderEvent>, ChatError>| match batch {
            Ok(events) => futures::stream::iter(events.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => futures::stream::iter(vec![Err(e)]),
        });
        Ok(Box::pin(stream))
    }
}

/// The JSON body of a streaming request.
fn request_body(request: &ProviderRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": wire_messages(&request.messages),
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}))
            .collect();
    }
    if let Some(max) = request.max_output_tokens {
        body["max_tokens"] = json!(max);
    }
    body
}

/// The conversation in Chat Completions form: assistant tool calls as `tool_calls`, each
/// tool result as its own `role: tool` message.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::new();
    for message in messages {
        let text: String = message
            .content
            .iter()
            .filter_map(MessagePart::as_text)
            .collect::<Vec<_>>()
            .join("\n");
        match message.role {
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

#[derive(Deserialize, Default)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
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
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
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
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// A tool call being assembled from deltas.
#[derive(Default, Debug)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Turns `data:` chunks into events, assembling tool calls across chunks.
#[derive(Default)]
struct ChunkParser {
    calls: BTreeMap<u64, PartialCall>,
    finished: bool,
}

impl ChunkParser {
    /// Events in one chunk.
    fn feed(&mut self, data: &str) -> Result<Vec<ProviderEvent>, ChatError> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            ChatError::new(
                ChatErrorKind::Generic,
                format!("{NAME} sent a stream chunk agentq cannot read."),
            )
            .with_provider(NAME)
            .retryable(true)
            .with_detail(e.to_string())
        })?;
        if let Some(error) = chunk.error {
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .map(|c| c as u16)
                .unwrap_or(500);
            return Err(classify_http_error(
                NAME,
                status,
                &json!({ "error": error }).to_string(),
            ));
        }
        let mut out = Vec::new();
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            out.push(ProviderEvent::Model(model));
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(r) = delta
                    .reasoning_content
                    .or(delta.reasoning)
                    .filter(|r| !r.is_empty())
                {
                    out.push(ProviderEvent::Reasoning(r));
                }
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(ProviderEvent::Text(text));
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    // Without an index, a delta with an id starts the next call; one
                    // without continues the last.
                    let index = call.index.unwrap_or_else(|| {
                        match (&call.id, self.calls.keys().next_back()) {
                            (Some(_), Some(last)) => last + 1,
                            (_, Some(last)) => *last,
                            (_, None) => 0,
                        }
                    });
                    let partial = self.calls.entry(index).or_default();
                    if let Some(id) = call.id.filter(|i| !i.is_empty()) {
                        partial.id = id;
                    }
                    if let Some(function) = call.function {
                        if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                            partial.name = name;
                        }
                        if let Some(args) = function.arguments {
                            partial.arguments.push_str(&args);
                        }
                    }
                }
            }
            match choice.finish_reason.as_deref() {
                Some("content_filter") => {
                    return Err(ChatError::new(
                        ChatErrorKind::ContentFilter,
                        format!("{NAME} stopped the answer with its content filter."),
                    )
                    .with_provider(NAME));
                }
                Some(_) => {
                    self.finished = true;
                    out.extend(self.take_calls()?);
                }
                None => {}
            }
        }
        if let Some(u) = chunk.usage {
            let cached = u
                .prompt_tokens_details
                .map(|d| d.cached_tokens)
                .unwrap_or(0);
            out.push(ProviderEvent::Usage(Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            }));
        }
        Ok(out)
    }

    /// The end of the stream: `[DONE]` (`done`) or EOF. Calls not yet emitted are; a stream
    /// that ends with neither `[DONE]` nor a finish reason was cut.
    fn finish(&mut self, done: bool) -> Result<Vec<ProviderEvent>, ChatError> {
        if !done && !self.finished {
            return Err(stream_cut(
                "the stream ended without [DONE] or a finish reason",
            ));
        }
        self.take_calls()
    }

    fn take_calls(&mut self) -> Result<Vec<ProviderEvent>, ChatError> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, call)| {
                let arguments = if call.arguments.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&call.arguments).map_err(|e| {
                        ChatError::new(
                            ChatErrorKind::Generic,
                            format!(
                                "{NAME} sent arguments for `{}` that are not valid JSON.",
                                call.name
                            ),
                        )
                        .with_provider(NAME)
                        .with_detail(e.to_string())
                    })?
                };
                let id = if call.id.is_empty() {
                    format!("call_{index}")
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

fn silence_error(silence: Duration) -> ChatError {
    ChatError::new(
        ChatErrorKind::StreamSilenceTimeout,
        format!(
            "{NAME} stopped sending for {} s in the middle of an answer.",
            silence.as_secs()
        ),
    )
    .with_provider(NAME)
    .retryable(true)
}

fn stream_cut(detail: &str) -> ChatError {
    ChatError::new(
        ChatErrorKind::Generic,
        format!("{NAME} closed the stream in the middle of an answer."),
    )
    .with_provider(NAME)
    .retryable(true)
    .with_detail(detail)
}

fn config_error(detail: String) -> ChatError {
    ChatError::new(
        ChatErrorKind::Config,
        format!("{NAME} is not configured correctly."),
    )
    .with_provider(NAME)
    .with_detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Result<Vec<ProviderEvent>, ChatError> {
        let mut parser = ChunkParser::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(parser.feed(c)?);
        }
        out.extend(parser.finish(true)?);
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
    fn a_stream_without_done_or_finish_reason_was_cut() {
        let mut parser = ChunkParser::default();
        parser
            .feed(r#"{"choices":[{"delta":{"content":"Hel"}}]}"#)
            .unwrap();
        let error = parser.finish(false).unwrap_err();
        assert!(error.retryable);
        assert!(error.message.contains("closed the stream"));
    }

    #[test]
    fn tool_history_is_sent_in_chat_completions_form() {
        let message = |role, content| Message {
            id: uuid::Uuid::nil(),
            chat_id: uuid::Uuid::nil(),
            turn_id: None,
            role,
            step: None,
            content,
            model: None,
            usage: None,
            cost_micros: None,
            interrupted: false,
            created_at: chrono::Utc::now(),
        };
        let wire = wire_messages(&[
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
        ]);
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
}
