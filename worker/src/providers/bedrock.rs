//! AWS Bedrock's Converse stream API (`POST {base}/model/{modelId}/converse-stream`).
//!
//! The request translates agentq's history into Converse's shape: content blocks `text`,
//! `toolUse` (the assistant's calls) and `toolResult` (in a user message), roles
//! alternating (consecutive messages of one role are merged), the system prompt as
//! `system`, tools as `toolConfig.tools[].toolSpec`, and the output cap as
//! `inferenceConfig.maxTokens`. A request without tools sends earlier tool calls and results
//! as text: Converse refuses tool blocks without a `toolConfig`.
//!
//! The answer is a binary event stream ([`super::eventstream`]): `messageStart`, per content
//! block a `contentBlockStart` (a tool use's id and name), `contentBlockDelta`s (text, or
//! pieces of a tool use's input JSON, emitted whole at the block's stop) and a
//! `contentBlockStop`, then `messageStop` (stop reason) and `metadata` (usage). Exception
//! frames (`throttlingException`, `validationException`, ...) and HTTP errors become
//! [`ChatError`]s of the same kinds the other adapters report.
//!
//! Authentication, region and endpoint: a stored key is a Bedrock API key sent as a bearer
//! token; without one the request is signed with the worker's AWS credentials
//! ([`super::aws_auth`]). The region is the provider's, else the worker's; the endpoint is
//! the provider's base URL, else `https://bedrock-runtime.{region}.amazonaws.com`.
//! Reasoning and prompt-cache points are not sent yet.

use std::collections::BTreeMap;

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{Message, MessagePart, Role, Usage},
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::HeaderValue;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ProviderEvent, ProviderRequest, ProviderStream,
    attachments::{Attached, Attachments},
    attempt, aws_auth,
    errors::{config_error, invalid_tool_arguments, stream_cut, unreadable_event},
    limits::ProviderLimits,
    redact::Redactor,
    sse::{BodyEnd, Fed, Framing, WireParser},
};

/// What a model id keeps unescaped in the path: RFC 3986's unreserved characters. Colons
/// (`...-v1:0`) and slashes (an ARN) are escaped, as the AWS SDKs do.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How requests to Bedrock are authenticated.
enum Auth {
    /// A Bedrock API key, sent as `Authorization: Bearer`.
    Bearer(HeaderValue),
    /// SigV4 with the worker's AWS credentials.
    Chain,
}

/// A Bedrock runtime endpoint.
pub struct BedrockProvider {
    client: reqwest::Client,
    /// The configured base URL without its trailing slash; empty: the regional endpoint.
    base_url: String,
    region: Option<String>,
    auth: Auth,
    name: String,
    headers: Vec<(String, String)>,
    limits: ProviderLimits,
    redactor: Redactor,
}

impl BedrockProvider {
    /// `base_url` empty for the regional endpoint; `region` `None` for the worker's own;
    /// `api_key` `None` to sign with the worker's AWS credentials.
    pub fn new(
        base_url: &str,
        region: Option<String>,
        api_key: Option<&str>,
        limits: ProviderLimits,
    ) -> Result<Self, ChatError> {
        let name = "Bedrock";
        let auth = match api_key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    config_error(name, "the API key contains characters a header cannot")
                })?;
                value.set_sensitive(true);
                Auth::Bearer(value)
            }
            None => Auth::Chain,
        };
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        let mut redactor = if base_url.is_empty() {
            Redactor::default()
        } else {
            Redactor::for_url(&base_url)
        };
        if let Some(key) = api_key {
            redactor = redactor.with_secret(key);
        }
        Ok(Self {
            client: super::http_client(name)?,
            base_url,
            region: region.filter(|r| !r.trim().is_empty()),
            auth,
            name: name.to_owned(),
            headers: Vec::new(),
            limits,
            redactor,
        })
    }

    /// The name errors give the provider (its stored name); `Bedrock` by default.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Extra headers sent with every request (a gateway's key); they are not signed.
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        for (_, value) in &headers {
            self.redactor = self.redactor.with_secret(value);
        }
        self.headers = headers;
        self
    }

    /// Sends the request and streams the answer's events.
    pub async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ChatError> {
        // The chain's errors may name files, hosts and addresses: redacted like the rest.
        let http = self
            .http_request(&request)
            .await
            .map_err(|e| self.redactor.error(e))?;
        attempt::send_framed(
            http,
            Framing::EventStream,
            EventParser::new(&self.name),
            &self.limits,
            &self.redactor,
        )
        .await
    }

    /// The request, authenticated.
    async fn http_request(
        &self,
        request: &ProviderRequest,
    ) -> Result<reqwest::RequestBuilder, ChatError> {
        let url = self.url(&request.model).await?;
        let body = serde_json::to_vec(&request_body(request))
            .map_err(|e| config_error(&self.name, e.to_string()))?;
        let content_type = "application/json";
        let accept = "application/vnd.amazon.eventstream";
        let mut http = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::ACCEPT, accept);
        match &self.auth {
            Auth::Bearer(value) => {
                http = http.header(reqwest::header::AUTHORIZATION, value.clone());
            }
            Auth::Chain => {
                let region = self.region().await?;
                let credentials = aws_auth::chain_credentials(&self.name).await?;
                let signed = aws_auth::sigv4_headers(
                    &self.name,
                    credentials,
                    &region,
                    &url,
                    &[("content-type", content_type), ("accept", accept)],
                    &body,
                )?;
                for (name, value) in signed {
                    let mut value = HeaderValue::from_str(&value)
                        .map_err(|_| config_error(&self.name, "a signed header is not valid"))?;
                    value.set_sensitive(true);
                    http = http.header(name, value);
                }
            }
        }
        for (name, value) in &self.headers {
            http = http.header(name, value);
        }
        Ok(http.body(body))
    }

    /// The provider's region, else the worker's.
    async fn region(&self) -> Result<String, ChatError> {
        if let Some(region) = &self.region {
            return Ok(region.clone());
        }
        aws_auth::chain_region().await.ok_or_else(|| {
            ChatError::new(
                ChatErrorKind::Config,
                format!(
                    "{} has no region: set the provider's `region`, or AWS_REGION for the worker.",
                    self.name
                ),
            )
            .with_provider(&self.name)
        })
    }

    /// `{base}/model/{modelId}/converse-stream`.
    async fn url(&self, model: &str) -> Result<String, ChatError> {
        let base = if self.base_url.is_empty() {
            format!(
                "https://bedrock-runtime.{}.amazonaws.com",
                self.region().await?
            )
        } else {
            self.base_url.clone()
        };
        Ok(format!(
            "{base}/model/{}/converse-stream",
            utf8_percent_encode(model, PATH_SEGMENT)
        ))
    }
}

/// The JSON body of a Converse stream request.
fn request_body(request: &ProviderRequest) -> Value {
    let tools_offered = !request.tools.is_empty();
    let mut body =
        json!({ "messages": wire_messages(&request.messages, tools_offered, &request.files) });
    if let Some(system) = request.system.as_ref().filter(|s| !s.is_empty()) {
        body["system"] = json!([{ "text": system }]);
    }
    if tools_offered {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"toolSpec": {
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": {"json": *t.input_schema},
                }})
            })
            .collect();
        body["toolConfig"] = json!({ "tools": tools });
    }
    if let Some(max) = request.max_output_tokens {
        body["inferenceConfig"] = json!({ "maxTokens": max });
    }
    body
}

/// Bedrock takes images of at most 3.75 MB.
const MAX_IMAGE_BYTES: usize = 3_750_000;

/// The conversation in Converse form, roles alternating.
fn wire_messages(messages: &[Message], tools_offered: bool, files: &Attachments) -> Vec<Value> {
    let mut out: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let blocks: Vec<Value> = message
            .content
            .iter()
            .filter_map(|part| match part {
                MessagePart::File { .. } if message.role == Role::User => file_block(part, files),
                _ => wire_block(message.role, part, tools_offered),
            })
            .collect();
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

/// A user message's attached file (attachments.rs): images as `image` blocks and PDFs as
/// `document` blocks with base64 bytes, text files and notes as `text` blocks.
fn file_block(part: &MessagePart, files: &Attachments) -> Option<Value> {
    Some(match files.render(part, MAX_IMAGE_BYTES)? {
        Attached::Image { mimetype, data } => {
            let format = mimetype.strip_prefix("image/").unwrap_or("png");
            json!({"image": {"format": format, "source": {"bytes": data}}})
        }
        Attached::Pdf { name, data } => {
            // Converse allows letters, digits, spaces, hyphens, parentheses and brackets.
            let name: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || " -()[]".contains(c) {
                        c
                    } else {
                        ' '
                    }
                })
                .take(200)
                .collect();
            let name = if name.trim().is_empty() {
                "document".to_owned()
            } else {
                name
            };
            json!({"document": {"format": "pdf", "name": name, "source": {"bytes": data}}})
        }
        Attached::Text(text) => json!({ "text": text }),
    })
}

/// One part as a content block; `None` for parts Converse is not sent (reasoning, empty
/// text).
fn wire_block(role: Role, part: &MessagePart, tools_offered: bool) -> Option<Value> {
    match part {
        MessagePart::Text { text } if !text.is_empty() => Some(json!({ "text": text })),
        MessagePart::ToolCall {
            tool_call_id,
            name,
            arguments,
        } if role == Role::Assistant => {
            // `input` must be an object; arguments recorded as anything else become `{}`.
            let input = if arguments.is_object() {
                arguments.clone()
            } else {
                json!({})
            };
            Some(if tools_offered {
                json!({"toolUse": {"toolUseId": tool_call_id, "name": name, "input": input}})
            } else {
                json!({ "text": format!("(called the tool `{name}` with {input})") })
            })
        }
        MessagePart::ToolResult {
            tool_call_id,
            output,
            is_error,
        } => {
            let text = match output {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            // Converse refuses an empty text block, even inside a tool result.
            let text = if text.is_empty() {
                "(no output)".to_owned()
            } else {
                text
            };
            Some(if tools_offered {
                let status = if *is_error { "error" } else { "success" };
                json!({"toolResult": {
                    "toolUseId": tool_call_id,
                    "content": [{ "text": text }],
                    "status": status,
                }})
            } else {
                json!({ "text": format!("(the tool answered: {text})") })
            })
        }
        _ => None,
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    start: StartBody,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    #[serde(default)]
    tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    delta: DeltaBody,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeltaBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUseDelta>,
}

#[derive(Deserialize, Default)]
struct ToolUseDelta {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BlockStop {
    #[serde(default)]
    content_block_index: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    #[serde(default)]
    stop_reason: String,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// Converse's usage; `inputTokens` leaves out the tokens read from or written to the cache.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

#[derive(Deserialize, Default)]
struct Exception {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    body: Value,
}

/// A `toolUse` block whose input is still arriving.
struct OpenToolUse {
    id: String,
    name: String,
    json: String,
}

/// Turns event payloads into events, assembling tool-use inputs per block index.
struct EventParser {
    name: String,
    tool_uses: BTreeMap<u64, OpenToolUse>,
    /// `messageStop` arrived; `metadata` (usage) follows it.
    stopped: bool,
    /// `metadata` arrived.
    usage_seen: bool,
    tool_call_bytes: usize,
}

impl EventParser {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            tool_uses: BTreeMap::new(),
            stopped: false,
            usage_seen: false,
            tool_call_bytes: 0,
        }
    }

    /// Events in one payload (`{"<eventType>": {...}}`).
    fn feed(&mut self, data: &str) -> Result<Vec<ProviderEvent>, ChatError> {
        let unreadable = |e: serde_json::Error| unreadable_event(&self.name, e.to_string());
        let document: serde_json::Map<String, Value> =
            serde_json::from_str(&super::sse::without_lone_surrogates(data)).map_err(unreadable)?;
        let mut out = Vec::new();
        for (event, body) in document {
            match event.as_str() {
                "contentBlockStart" => {
                    let start: BlockStart = serde_json::from_value(body).map_err(unreadable)?;
                    if let Some(tool) = start.start.tool_use {
                        self.tool_call_bytes = self
                            .tool_call_bytes
                            .saturating_add(tool.tool_use_id.len() + tool.name.len());
                        self.tool_uses.insert(
                            start.content_block_index,
                            OpenToolUse {
                                id: tool.tool_use_id,
                                name: tool.name,
                                json: String::new(),
                            },
                        );
                    }
                }
                "contentBlockDelta" => {
                    let delta: BlockDelta = serde_json::from_value(body).map_err(unreadable)?;
                    if let Some(text) = delta.delta.text.filter(|t| !t.is_empty()) {
                        out.push(ProviderEvent::Text(text));
                    }
                    if let Some(piece) = delta.delta.tool_use {
                        self.tool_call_bytes =
                            self.tool_call_bytes.saturating_add(piece.input.len());
                        if let Some(open) = self.tool_uses.get_mut(&delta.content_block_index) {
                            open.json.push_str(&piece.input);
                        }
                    }
                }
                "contentBlockStop" => {
                    let stop: BlockStop = serde_json::from_value(body).map_err(unreadable)?;
                    if let Some(open) = self.tool_uses.remove(&stop.content_block_index) {
                        out.push(self.tool_call(stop.content_block_index, open)?);
                    }
                }
                "messageStop" => {
                    let stop: MessageStop = serde_json::from_value(body).map_err(unreadable)?;
                    for (index, open) in std::mem::take(&mut self.tool_uses) {
                        out.push(self.tool_call(index, open)?);
                    }
                    if stop.stop_reason == "content_filtered" {
                        return Err(ChatError::new(
                            ChatErrorKind::ContentFilter,
                            format!("{} filtered the answer's content.", self.name),
                        )
                        .with_provider(&self.name));
                    }
                    self.stopped = true;
                }
                "metadata" => {
                    let metadata: Metadata = serde_json::from_value(body).map_err(unreadable)?;
                    if let Some(usage) = metadata.usage {
                        out.push(ProviderEvent::Usage(Usage {
                            input_tokens: usage
                                .input_tokens
                                .saturating_add(usage.cache_read_input_tokens)
                                .saturating_add(usage.cache_write_input_tokens),
                            output_tokens: usage.output_tokens,
                            cache_read_tokens: usage.cache_read_input_tokens,
                            cache_write_tokens: usage.cache_write_input_tokens,
                        }));
                    }
                    self.usage_seen = true;
                }
                "exception" => {
                    let exception: Exception = serde_json::from_value(body).map_err(unreadable)?;
                    return Err(stream_exception(&self.name, exception));
                }
                // `messageStart` and event types added later.
                _ => {}
            }
        }
        Ok(out)
    }

    /// A finished `toolUse` block as a call, its streamed input parsed.
    fn tool_call(&self, index: u64, open: OpenToolUse) -> Result<ProviderEvent, ChatError> {
        let arguments = if open.json.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&open.json)
                .map_err(|e| invalid_tool_arguments(&self.name, &open.name, e.to_string()))?
        };
        let id = if open.id.is_empty() {
            format!("tooluse_{index}")
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

impl WireParser for EventParser {
    fn provider(&self) -> &str {
        &self.name
    }

    fn feed(&mut self, data: &str) -> Result<Fed, ChatError> {
        let batch = EventParser::feed(self, data)?;
        Ok(if self.stopped && self.usage_seen {
            Fed::Last(batch)
        } else {
            Fed::More(batch)
        })
    }

    fn end(&mut self, end: BodyEnd) -> Result<Vec<ProviderEvent>, ChatError> {
        match end {
            // The answer is whole at `messageStop`; only its usage is missing.
            BodyEnd::Eof if self.stopped => Ok(Vec::new()),
            BodyEnd::Eof => Err(stream_cut(
                &self.name,
                "the stream ended without messageStop",
            )),
            BodyEnd::Broken(detail) => Err(stream_cut(&self.name, detail)),
        }
    }

    fn tool_call_bytes(&self) -> usize {
        self.tool_call_bytes
    }
}

/// An exception frame, classified by its documented type.
fn stream_exception(provider: &str, exception: Exception) -> ChatError {
    let message = exception
        .body
        .get("message")
        .or_else(|| exception.body.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let lower = message.to_ascii_lowercase();
    let (kind, retryable, what) = match exception.kind.as_str() {
        "throttlingException" => (ChatErrorKind::RateLimit, true, "is rate limiting requests"),
        "serviceUnavailableException" | "modelNotReadyException" => {
            (ChatErrorKind::Overloaded, true, "is unavailable")
        }
        "modelTimeoutException" => (ChatErrorKind::Timeout, true, "timed out"),
        "accessDeniedException" | "unrecognizedClientException" => {
            (ChatErrorKind::Auth, false, "rejected the credentials")
        }
        "resourceNotFoundException" => (
            ChatErrorKind::Config,
            false,
            "does not know this model or endpoint",
        ),
        "validationException"
            if lower.contains("too long")
                || lower.contains("too many")
                || lower.contains("context") =>
        {
            (
                ChatErrorKind::ContextLength,
                false,
                "says the conversation is longer than the model's context",
            )
        }
        "validationException" => (ChatErrorKind::Generic, false, "rejected the request"),
        // `internalServerException`, `modelStreamErrorException` and types added later.
        _ => (ChatErrorKind::Generic, true, "failed"),
    };
    let mut error = ChatError::new(
        kind,
        format!("{provider} {what} in the middle of an answer."),
    )
    .with_provider(provider)
    .retryable(retryable);
    if !message.is_empty() {
        error = error.with_detail(format!("{}: {message}", exception.kind));
    }
    error
}

#[cfg(test)]
mod tests {
    use agentq_core::domain::{Message, MessagePart, Role};

    use super::*;
    use crate::providers::ToolSpec;

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

    fn text(t: &str) -> MessagePart {
        MessagePart::Text { text: t.into() }
    }

    fn request(messages: Vec<Message>, tools: Vec<ToolSpec>) -> ProviderRequest {
        ProviderRequest {
            model: "anthropic.claude-3-haiku-20240307-v1:0".into(),
            system: Some("Be brief.".into()),
            messages,
            tools,
            max_output_tokens: Some(300),
            cache: None,
            cache_key: None,
            reasoning_effort: None,
            files: Default::default(),
        }
    }

    fn history() -> Vec<Message> {
        vec![
            message(Role::User, vec![text("time?")]),
            message(
                Role::Assistant,
                vec![MessagePart::ToolCall {
                    tool_call_id: "tooluse_1".into(),
                    name: "clock".into(),
                    arguments: json!({"tz": "UTC"}),
                }],
            ),
            message(
                Role::Tool,
                vec![MessagePart::ToolResult {
                    tool_call_id: "tooluse_1".into(),
                    output: json!("noon"),
                    is_error: false,
                }],
            ),
            message(Role::User, vec![text("thanks")]),
        ]
    }

    #[test]
    fn the_request_is_converse_shaped_with_roles_alternating() {
        let clock = ToolSpec {
            name: "clock".into(),
            description: "Tells the time.".into(),
            input_schema: std::sync::Arc::new(json!({"type": "object"})),
        };
        let body = request_body(&request(history(), vec![clock]));
        assert_eq!(body["system"], json!([{"text": "Be brief."}]));
        assert_eq!(body["inferenceConfig"], json!({"maxTokens": 300}));
        assert_eq!(
            body["toolConfig"]["tools"][0],
            json!({"toolSpec": {"name": "clock", "description": "Tells the time.",
                                "inputSchema": {"json": {"type": "object"}}}})
        );
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "{body}");
        assert_eq!(
            messages[1]["content"][0],
            json!({"toolUse": {"toolUseId": "tooluse_1", "name": "clock", "input": {"tz": "UTC"}}})
        );
        // The tool result and the next user text share one user message.
        assert_eq!(
            messages[2]["content"],
            json!([{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "noon"}],
                                   "status": "success"}},
                   {"text": "thanks"}])
        );
    }

    #[test]
    fn without_tools_earlier_calls_go_as_text() {
        let body = request_body(&request(history(), Vec::new()));
        assert!(body.get("toolConfig").is_none());
        let text = body["messages"].to_string();
        assert!(
            !text.contains("toolUse") && !text.contains("toolResult"),
            "{text}"
        );
        assert!(text.contains("noon"), "{text}");
    }

    #[test]
    fn model_ids_are_one_escaped_path_segment() {
        let encoded =
            utf8_percent_encode("anthropic.claude-3-haiku-20240307-v1:0", PATH_SEGMENT).to_string();
        assert_eq!(encoded, "anthropic.claude-3-haiku-20240307-v1%3A0");
        let arn = utf8_percent_encode(
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
            PATH_SEGMENT,
        )
        .to_string();
        assert!(!arn.contains('/') && !arn.contains(':'), "{arn}");
    }

    fn parse(payloads: &[&str]) -> Result<(Vec<ProviderEvent>, bool), ChatError> {
        let mut parser = EventParser::new("Bedrock");
        let mut events = Vec::new();
        for payload in payloads {
            match WireParser::feed(&mut parser, payload)? {
                Fed::More(batch) => events.extend(batch),
                Fed::Last(batch) => {
                    events.extend(batch);
                    return Ok((events, true));
                }
            }
        }
        Ok((events, false))
    }

    #[test]
    fn text_and_tool_use_stream_back_with_usage() {
        let (events, last) = parse(&[
            r#"{"messageStart":{"role":"assistant"}}"#,
            r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"Let me "}}}"#,
            r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"check."}}}"#,
            r#"{"contentBlockStop":{"contentBlockIndex":0}}"#,
            r#"{"contentBlockStart":{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_a","name":"clock"}}}}"#,
            r#"{"contentBlockDelta":{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"tz\":"}}}}"#,
            r#"{"contentBlockDelta":{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"UTC\"}"}}}}"#,
            r#"{"contentBlockStop":{"contentBlockIndex":1}}"#,
            r#"{"messageStop":{"stopReason":"tool_use"}}"#,
            r#"{"metadata":{"usage":{"inputTokens":10,"outputTokens":5,"cacheReadInputTokens":4},"metrics":{"latencyMs":1}}}"#,
        ])
        .unwrap();
        assert!(last);
        assert_eq!(
            events,
            vec![
                ProviderEvent::Text("Let me ".into()),
                ProviderEvent::Text("check.".into()),
                ProviderEvent::ToolCall {
                    id: "tooluse_a".into(),
                    name: "clock".into(),
                    arguments: json!({"tz": "UTC"}),
                },
                ProviderEvent::Usage(Usage {
                    input_tokens: 14,
                    output_tokens: 5,
                    cache_read_tokens: 4,
                    cache_write_tokens: 0,
                }),
            ]
        );
    }

    #[test]
    fn exceptions_map_to_error_kinds() {
        let error = |kind: &str, message: &str| {
            let payload = json!({"exception": {"type": kind, "body": {"message": message}}});
            parse(&[payload.to_string().as_str()]).unwrap_err()
        };
        let throttled = error("throttlingException", "Too many requests");
        assert_eq!(throttled.kind, ChatErrorKind::RateLimit);
        assert!(throttled.retryable);
        let long = error(
            "validationException",
            "Input is too long for requested model.",
        );
        assert_eq!(long.kind, ChatErrorKind::ContextLength);
        assert!(!long.retryable);
        let invalid = error("validationException", "bad field");
        assert_eq!(invalid.kind, ChatErrorKind::Generic);
        assert!(!invalid.retryable);
        assert_eq!(
            error("serviceUnavailableException", "").kind,
            ChatErrorKind::Overloaded
        );
        assert!(error("modelStreamErrorException", "x").retryable);
    }

    #[test]
    fn a_stream_cut_before_message_stop_is_an_error_and_after_it_is_not() {
        let mut parser = EventParser::new("Bedrock");
        WireParser::feed(
            &mut parser,
            r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"Hi"}}}"#,
        )
        .unwrap();
        assert!(parser.end(BodyEnd::Eof).is_err());
        WireParser::feed(&mut parser, r#"{"messageStop":{"stopReason":"end_turn"}}"#).unwrap();
        assert_eq!(parser.end(BodyEnd::Eof).unwrap(), Vec::new());
    }
}
