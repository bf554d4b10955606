//! The provider adapters against recorded transcripts in each provider's documented
//! streaming format, served chunk by chunk by a real HTTP server on 127.0.0.1, and against
//! the failures real providers produce: refusals with `Retry-After`, overload, bad keys,
//! context overflow, streams cut mid-answer, servers that never answer or go quiet.

use std::{
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agentq_core::{
    ChatError, ChatErrorKind,
    config::{ProviderConfig, ProviderKind, defaults},
    domain::{Message, MessagePart, Role, Usage},
};
use agentq_worker::providers::{
    AnthropicProvider, OpenAiProvider, Provider, ProviderEvent, ProviderLimits, ProviderRequest,
    ProviderStream, ToolSpec,
};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use futures::StreamExt;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// A fake provider: a real axum server that replays a script.

/// How the fake ends a stream after its last chunk.
#[derive(Clone, Copy, Debug)]
enum End {
    /// Finishes the body normally.
    Clean,
    /// Drops the connection without finishing the body.
    Drop,
    /// Keeps the connection open, silent, for this long.
    Hang(Duration),
}

/// What the fake answers to every request.
#[derive(Clone, Debug)]
enum Reply {
    /// `200 text/event-stream`, one chunk at a time with a pause before each.
    Stream {
        chunks: Vec<Vec<u8>>,
        pause: Duration,
        end: End,
    },
    /// A non-success status with headers and a body.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Sends nothing at all for this long.
    Stall(Duration),
}

/// One request the fake received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
struct Shared {
    reply: Arc<Reply>,
    received: Arc<Mutex<Vec<Received>>>,
}

struct FakeProvider {
    /// `http://127.0.0.1:<port>`.
    base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeProvider {
    async fn start(reply: Reply) -> Self {
        let shared = Shared {
            reply: Arc::new(reply),
            received: Arc::default(),
        };
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}"),
            received: shared.received,
        }
    }

    /// The one request the test made.
    fn request(&self) -> Received {
        let received = self.received.lock().unwrap();
        assert_eq!(received.len(), 1, "expected exactly one request");
        received[0].clone()
    }
}

async fn serve(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    match shared.reply.as_ref().clone() {
        Reply::Stream { chunks, pause, end } => {
            let chunks = futures::stream::iter(chunks).then(move |chunk| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, io::Error>(chunk)
            });
            let ending = futures::stream::once(async move {
                match end {
                    End::Clean => None,
                    End::Drop => {
                        // Let the last chunk leave before the connection is dropped.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Some(Err(io::Error::other("the fake drops the connection")))
                    }
                    End::Hang(d) => {
                        tokio::time::sleep(d).await;
                        None
                    }
                }
            })
            .filter_map(|item| async move { item });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(chunks.chain(ending)))
                .unwrap()
        }
        Reply::Status {
            status,
            headers,
            body,
        } => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json");
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(body)).unwrap()
        }
        Reply::Stall(d) => {
            tokio::time::sleep(d).await;
            Response::new(Body::empty())
        }
    }
}

/// A transcript's SSE events (each ending with its blank line), in order.
fn fixture(name: &str) -> Vec<String> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split_inclusive("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Each event as its own chunk.
fn event_by_event(events: &[String], end: End) -> Reply {
    Reply::Stream {
        chunks: events.iter().map(|e| e.as_bytes().to_vec()).collect(),
        pause: Duration::from_millis(2),
        end,
    }
}

/// The whole transcript cut into pieces of `size` bytes, splitting lines, JSON and
/// multi-byte characters across chunks.
fn in_pieces(events: &[String], size: usize) -> Reply {
    Reply::Stream {
        chunks: events
            .concat()
            .as_bytes()
            .chunks(size)
            .map(<[u8]>::to_vec)
            .collect(),
        pause: Duration::from_millis(1),
        end: End::Clean,
    }
}

fn status(status: u16, headers: Vec<(&'static str, String)>, body: &str) -> Reply {
    Reply::Status {
        status,
        headers,
        body: body.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// The conversation both adapters are asked to continue.

fn message(role: Role, content: Vec<MessagePart>) -> Message {
    Message::plain(
        uuid::Uuid::now_v7(),
        uuid::Uuid::nil(),
        None,
        role,
        content,
        chrono::Utc::now(),
    )
}

fn text(text: &str) -> MessagePart {
    MessagePart::Text { text: text.into() }
}

/// A user question, an assistant step that called two tools, their results (one failed),
/// and a follow-up question.
fn history_with_tool_calls() -> Vec<Message> {
    vec![
        message(
            Role::User,
            vec![text("What's the weather in Paris and Tokyo?")],
        ),
        message(
            Role::Assistant,
            vec![
                MessagePart::Reasoning {
                    text: "Two lookups.".into(),
                    signature: None,
                },
                text("Checking both."),
                MessagePart::ToolCall {
                    tool_call_id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"}),
                },
                MessagePart::ToolCall {
                    tool_call_id: "call_2".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Tokyo"}),
                },
            ],
        ),
        message(
            Role::Tool,
            vec![
                MessagePart::ToolResult {
                    tool_call_id: "call_1".into(),
                    output: json!({"temp_c": 18}),
                    is_error: false,
                },
                MessagePart::ToolResult {
                    tool_call_id: "call_2".into(),
                    output: json!("weather service timed out"),
                    is_error: true,
                },
            ],
        ),
        message(Role::User, vec![text("And tomorrow?")]),
    ]
}

fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"]
    })
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city.".into(),
        input_schema: weather_schema().into(),
    }
}

fn request(model: &str, max_output_tokens: Option<u32>) -> ProviderRequest {
    ProviderRequest {
        model: model.into(),
        system: None,
        messages: history_with_tool_calls(),
        tools: vec![weather_tool()],
        max_output_tokens,
        cache: None,
        cache_key: None,
        reasoning_effort: None,
        files: Default::default(),
    }
}

fn simple_request() -> ProviderRequest {
    ProviderRequest {
        model: "any".into(),
        system: None,
        messages: vec![message(Role::User, vec![text("Hi")])],
        tools: Vec::new(),
        max_output_tokens: None,
        cache: None,
        cache_key: None,
        reasoning_effort: None,
        files: Default::default(),
    }
}

/// The events a stream yields up to its end, and the error that ended it, if any.
async fn drain(stream: ProviderStream) -> (Vec<ProviderEvent>, Option<ChatError>) {
    let mut events = Vec::new();
    let mut stream = stream;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends or fails within 10 s")
    {
        match item {
            Ok(event) => events.push(event),
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing follows an error");
                return (events, Some(error));
            }
        }
    }
    (events, None)
}

/// The error a request ends with, whether refused up front or failing mid-stream.
async fn failure(started: Result<ProviderStream, ChatError>) -> ChatError {
    match started {
        Err(error) => error,
        Ok(stream) => drain(stream)
            .await
            .1
            .expect("the stream should have failed"),
    }
}

fn tool_call(id: &str, arguments: Value) -> ProviderEvent {
    ProviderEvent::ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments,
    }
}

fn assert_error(
    error: &ChatError,
    kind: ChatErrorKind,
    retryable: bool,
    retry_after: Option<Duration>,
) {
    assert_eq!(error.kind, kind, "{error:?}");
    assert_eq!(error.retryable, retryable, "{error:?}");
    assert_eq!(error.retry_after, retry_after, "{error:?}");
}

// ---------------------------------------------------------------------------------------
// OpenAI-compatible Chat Completions.

const FAST: Duration = Duration::from_secs(5);

/// The default limits with these first-byte and silence timeouts.
fn limits(startup: Duration, silence: Duration) -> ProviderLimits {
    ProviderLimits {
        startup_timeout: startup,
        silence_timeout: silence,
        ..ProviderLimits::default()
    }
}

fn openai(fake: &FakeProvider) -> OpenAiProvider {
    openai_with_timeouts(fake, FAST, FAST)
}

fn openai_with_timeouts(
    fake: &FakeProvider,
    startup: Duration,
    silence: Duration,
) -> OpenAiProvider {
    OpenAiProvider::new(
        &format!("{}/v1", fake.base_url),
        Some("sk-test".into()),
        limits(startup, silence),
    )
    .unwrap()
}

fn openai_transcript_events() -> Vec<ProviderEvent> {
    vec![
        ProviderEvent::Model("gpt-4.1-2025-04-14".into()),
        ProviderEvent::Reasoning("The user wants weather ".into()),
        ProviderEvent::Reasoning("for two cities.".into()),
        ProviderEvent::Text("Checking ".into()),
        ProviderEvent::Text("both cities…".into()),
        tool_call("call_Paris7f3", json!({"city": "Paris", "unit": "c"})),
        tool_call("call_Tokyo2c9", json!({"city": "Tokyo"})),
        ProviderEvent::Usage(Usage {
            input_tokens: 1850,
            output_tokens: 74,
            cache_read_tokens: 1536,
            cache_write_tokens: 0,
        }),
    ]
}

#[tokio::test]
async fn openai_streams_reasoning_text_parallel_tool_calls_and_cached_usage() {
    let events = fixture("openai/reasoning_text_parallel_tools.sse");
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;
    let provider = openai(&fake).with_headers(vec![("X-Title".into(), "agentq tests".into())]);

    let (streamed, error) = drain(
        provider
            .stream(request("gpt-4.1", Some(1000)))
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(error, None);
    assert_eq!(streamed, openai_transcript_events());
    let received = fake.request();
    assert_eq!(received.path, "/v1/chat/completions");
    assert_eq!(received.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(received.header("x-title"), Some("agentq tests"));
    assert_eq!(
        received.body,
        json!({
            "model": "gpt-4.1",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 1000,
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": weather_schema()
            }}],
            "messages": [
                {"role": "user", "content": "What's the weather in Paris and Tokyo?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":18}"},
                {"role": "tool", "tool_call_id": "call_2", "content": "weather service timed out"},
                {"role": "user", "content": "And tomorrow?"}
            ]
        })
    );
}

#[tokio::test]
async fn openai_transcript_split_mid_line_and_mid_character_reads_the_same() {
    let events = fixture("openai/reasoning_text_parallel_tools.sse");
    let fake = FakeProvider::start(in_pieces(&events, 13)).await;

    let (streamed, error) = drain(
        openai(&fake)
            .stream(request("gpt-4.1", None))
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(error, None);
    assert_eq!(streamed, openai_transcript_events());
}

#[tokio::test]
async fn an_ollama_style_stream_with_a_whole_tool_call_and_no_cache_details_works() {
    let events = fixture("openai/ollama_whole_tool_call.sse");
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;

    let (streamed, error) = drain(openai(&fake).stream(simple_request()).await.unwrap()).await;

    assert_eq!(error, None);
    assert_eq!(
        streamed,
        vec![
            ProviderEvent::Model("qwen3:8b".into()),
            ProviderEvent::Text("Let me look.".into()),
            tool_call("call_k2mx9", json!({"city": "Oslo"})),
            ProviderEvent::Usage(Usage {
                input_tokens: 212,
                output_tokens: 31,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
            }),
        ]
    );
    let body = fake.request().body;
    assert!(body.get("tools").is_none(), "no tools key without tools");
    assert!(body.get("max_tokens").is_none(), "no cap unless one is set");
}

#[tokio::test]
async fn an_openrouter_style_stream_with_keepalive_comments_and_reasoning_works() {
    let events = fixture("openai/openrouter_comments_text.sse");
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;

    let (streamed, error) = drain(openai(&fake).stream(simple_request()).await.unwrap()).await;

    assert_eq!(error, None);
    assert_eq!(
        streamed,
        vec![
            ProviderEvent::Model("deepseek/deepseek-r1".into()),
            ProviderEvent::Reasoning("Short question.".into()),
            ProviderEvent::Text("Four.".into()),
            ProviderEvent::Usage(Usage {
                input_tokens: 14,
                output_tokens: 9,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
            }),
        ]
    );
}

#[tokio::test]
async fn openai_rate_limit_is_retryable_after_the_servers_delay() {
    let body = r#"{"error":{"message":"Rate limit reached for gpt-4.1","type":"requests","code":"rate_limit_exceeded"}}"#;
    let fake = FakeProvider::start(status(429, vec![("retry-after", "7".into())], body)).await;

    let error = failure(openai(&fake).stream(simple_request()).await).await;

    assert_error(
        &error,
        ChatErrorKind::RateLimit,
        true,
        Some(Duration::from_secs(7)),
    );
    assert_eq!(error.status_code, Some(429));
    assert_eq!(
        error.message,
        "OpenAI is rate limiting requests (HTTP 429)."
    );
    assert_eq!(
        error.detail.as_deref(),
        Some("Rate limit reached for gpt-4.1")
    );
}

#[tokio::test]
async fn errors_name_the_service_behind_the_openai_format() {
    let fake = FakeProvider::start(status(429, vec![("retry-after", "7".into())], "{}")).await;

    let error = failure(
        openai(&fake)
            .with_name("OpenRouter")
            .stream(simple_request())
            .await,
    )
    .await;

    assert_eq!(
        error.message,
        "OpenRouter is rate limiting requests (HTTP 429)."
    );
    assert_eq!(error.provider.as_deref(), Some("OpenRouter"));
}

#[tokio::test]
async fn openai_unavailable_with_a_retry_after_date_waits_until_that_date() {
    let at = chrono::Utc::now() + chrono::Duration::seconds(30);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let fake = FakeProvider::start(status(503, vec![("retry-after", date)], "")).await;

    let error = failure(openai(&fake).stream(simple_request()).await).await;

    assert_eq!(
        (error.kind, error.retryable),
        (ChatErrorKind::Overloaded, true)
    );
    let wait = error.retry_after.expect("a wait from the date");
    assert!(
        (Duration::from_secs(27)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn openai_server_error_is_retryable() {
    let body = r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}"#;
    let fake = FakeProvider::start(status(500, vec![], body)).await;

    let error = failure(openai(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Generic, true, None);
    assert_eq!(error.status_code, Some(500));
}

#[tokio::test]
async fn openai_rejecting_the_key_is_not_retried() {
    let body = r#"{"error":{"message":"Incorrect API key provided: sk-test.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let fake = FakeProvider::start(status(401, vec![], body)).await;

    let error = failure(openai(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Auth, false, None);
}

#[tokio::test]
async fn openai_context_overflow_is_context_length() {
    let body = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let fake = FakeProvider::start(status(400, vec![], body)).await;

    let error = failure(openai(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::ContextLength, false, None);
}

#[tokio::test]
async fn an_openai_stream_dropped_mid_answer_is_a_retryable_cut() {
    let events = fixture("openai/reasoning_text_parallel_tools.sse");
    let fake = FakeProvider::start(event_by_event(&events[..5], End::Drop)).await;

    let (streamed, error) = drain(openai(&fake).stream(simple_request()).await.unwrap()).await;

    assert_eq!(streamed, openai_transcript_events()[..5].to_vec());
    let error = error.expect("the cut is an error");
    assert_error(&error, ChatErrorKind::Generic, true, None);
    assert_eq!(
        error.message,
        "OpenAI closed the stream in the middle of an answer."
    );
    assert_ne!(
        error.detail.as_deref(),
        Some("the stream ended without [DONE] or a finish reason"),
        "the connection broke rather than ending cleanly"
    );
}

#[tokio::test]
async fn an_openai_stream_that_ends_without_done_or_finish_reason_is_a_cut() {
    let events = fixture("openai/reasoning_text_parallel_tools.sse");
    // Everything up to the tool-call arguments, then a clean end of the body.
    let fake = FakeProvider::start(event_by_event(&events[..9], End::Clean)).await;

    let (streamed, error) = drain(openai(&fake).stream(simple_request()).await.unwrap()).await;

    assert!(
        !streamed
            .iter()
            .any(|e| matches!(e, ProviderEvent::ToolCall { .. })),
        "half-streamed calls are not emitted"
    );
    let error = error.expect("the cut is an error");
    assert_error(&error, ChatErrorKind::Generic, true, None);
    assert_eq!(
        error.message,
        "OpenAI closed the stream in the middle of an answer."
    );
}

#[tokio::test]
async fn openai_sending_no_first_byte_is_a_startup_timeout() {
    let fake = FakeProvider::start(Reply::Stall(Duration::from_secs(3))).await;
    let provider = openai_with_timeouts(&fake, Duration::from_millis(200), FAST);
    let started = Instant::now();

    let error = failure(provider.stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::StartupTimeout, true, None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_openai_stream_gone_quiet_is_a_silence_timeout() {
    let events = fixture("openai/reasoning_text_parallel_tools.sse");
    let fake = FakeProvider::start(event_by_event(
        &events[..3],
        End::Hang(Duration::from_secs(3)),
    ))
    .await;
    let provider = openai_with_timeouts(&fake, FAST, Duration::from_millis(200));

    let (streamed, error) = drain(provider.stream(simple_request()).await.unwrap()).await;

    assert_eq!(streamed.len(), 3);
    assert_error(
        &error.expect("silence is an error"),
        ChatErrorKind::StreamSilenceTimeout,
        true,
        None,
    );
}

// ---------------------------------------------------------------------------------------
// Anthropic Messages.

fn anthropic(fake: &FakeProvider) -> AnthropicProvider {
    anthropic_with_timeouts(fake, FAST, FAST)
}

fn anthropic_with_timeouts(
    fake: &FakeProvider,
    startup: Duration,
    silence: Duration,
) -> AnthropicProvider {
    AnthropicProvider::new(&fake.base_url, "sk-ant-test", limits(startup, silence)).unwrap()
}

fn anthropic_config(fake: &FakeProvider) -> ProviderConfig {
    let mut config: ProviderConfig = defaults();
    config.kind = ProviderKind::Anthropic;
    config.anthropic_base_url = fake.base_url.clone();
    config.anthropic_api_key = Some("sk-ant-test".into());
    config.provider_headers = vec!["anthropic-beta: interleaved-thinking-2025-05-14".into()];
    config
}

fn anthropic_transcript_events() -> Vec<ProviderEvent> {
    vec![
        ProviderEvent::Model("claude-sonnet-4-5-20250929".into()),
        ProviderEvent::Reasoning("Two cities, ".into()),
        ProviderEvent::Reasoning("so two weather calls.".into()),
        ProviderEvent::ReasoningSignature(
            "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into(),
        ),
        ProviderEvent::Text("I'll check ".into()),
        ProviderEvent::Text("both — Paris and Tokyo.".into()),
        tool_call(
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            json!({"city": "Paris", "unit": "c"}),
        ),
        tool_call("toolu_01Ax9qLmTokyoWx7Gh2bVn4K", json!({"city": "Tokyo"})),
        ProviderEvent::Usage(Usage {
            input_tokens: 472 + 1200 + 3000,
            output_tokens: 156,
            cache_read_tokens: 3000,
            cache_write_tokens: 1200,
        }),
    ]
}

#[tokio::test]
async fn anthropic_streams_thinking_text_parallel_tool_uses_and_cache_usage() {
    let events = fixture("anthropic/thinking_text_parallel_tools.sse");
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;
    let provider = Provider::from_config(&anthropic_config(&fake)).unwrap();

    let (streamed, error) = drain(
        provider
            .stream(request("claude-sonnet-4-5", None))
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(error, None);
    assert_eq!(streamed, anthropic_transcript_events());
    let received = fake.request();
    assert_eq!(received.path, "/v1/messages");
    assert_eq!(received.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(received.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        received.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14")
    );
    assert_eq!(received.header("authorization"), None);
    assert_eq!(
        received.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "stream": true,
            "tools": [{
                "name": "get_weather",
                "description": "Current weather for a city.",
                "input_schema": weather_schema()
            }],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What's the weather in Paris and Tokyo?"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Tokyo"}}
                ]},
                // The tool results and the follow-up merge into one user message.
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp_c\":18}", "is_error": false},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "weather service timed out", "is_error": true},
                    {"type": "text", "text": "And tomorrow?"}
                ]}
            ]
        })
    );
}

#[tokio::test]
async fn anthropic_transcript_split_mid_line_and_mid_character_reads_the_same() {
    let events = fixture("anthropic/thinking_text_parallel_tools.sse");
    let fake = FakeProvider::start(in_pieces(&events, 11)).await;

    let (streamed, error) = drain(
        anthropic(&fake)
            .stream(request("claude-sonnet-4-5", Some(2048)))
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(error, None);
    assert_eq!(streamed, anthropic_transcript_events());
    assert_eq!(fake.request().body["max_tokens"], 2048);
}

#[tokio::test]
async fn anthropic_without_a_key_is_a_missing_key_error() {
    let fake = FakeProvider::start(Reply::Stall(Duration::ZERO)).await;
    let mut config = anthropic_config(&fake);
    config.anthropic_api_key = None;

    let Err(error) = Provider::from_config(&config) else {
        panic!("a provider without a key");
    };

    assert_error(&error, ChatErrorKind::MissingKey, false, None);
    assert_eq!(
        error.message,
        "Anthropic has no API key configured (set AGENTQ_ANTHROPIC_API_KEY)."
    );
}

#[tokio::test]
async fn anthropic_rate_limit_is_retryable_after_the_servers_delay() {
    let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
    let fake = FakeProvider::start(status(429, vec![("retry-after", "7".into())], body)).await;

    let error = failure(anthropic(&fake).stream(simple_request()).await).await;

    assert_error(
        &error,
        ChatErrorKind::RateLimit,
        true,
        Some(Duration::from_secs(7)),
    );
    assert_eq!(
        error.message,
        "Anthropic is rate limiting requests (HTTP 429)."
    );
    assert_eq!(
        error.detail.as_deref(),
        Some("Number of request tokens has exceeded your per-minute rate limit")
    );
}

#[tokio::test]
async fn anthropic_overloaded_529_is_retryable() {
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let fake = FakeProvider::start(status(529, vec![], body)).await;

    let error = failure(anthropic(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Overloaded, true, None);
    assert_eq!(error.status_code, Some(529));
}

#[tokio::test]
async fn anthropic_overloaded_mid_stream_is_retryable_after_the_partial_text() {
    let events = fixture("anthropic/overloaded_mid_stream.sse");
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;

    let (streamed, error) = drain(anthropic(&fake).stream(simple_request()).await.unwrap()).await;

    assert_eq!(
        streamed,
        vec![
            ProviderEvent::Model("claude-sonnet-4-5-20250929".into()),
            ProviderEvent::Text("Hello".into()),
        ]
    );
    let error = error.expect("the error event fails the stream");
    assert_error(&error, ChatErrorKind::Overloaded, true, None);
    assert_eq!(error.status_code, None);
    assert_eq!(error.detail.as_deref(), Some("Overloaded"));
}

#[tokio::test]
async fn anthropic_server_error_is_retryable() {
    let body = r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
    let fake = FakeProvider::start(status(500, vec![], body)).await;

    let error = failure(anthropic(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Generic, true, None);
}

#[tokio::test]
async fn anthropic_rejecting_the_key_is_not_retried() {
    let body =
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    let fake = FakeProvider::start(status(401, vec![], body)).await;

    let error = failure(anthropic(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Auth, false, None);
}

#[tokio::test]
async fn anthropic_prompt_too_long_is_context_length() {
    let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
    let fake = FakeProvider::start(status(400, vec![], body)).await;

    let error = failure(anthropic(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::ContextLength, false, None);
}

#[tokio::test]
async fn an_anthropic_stream_dropped_mid_answer_is_a_retryable_cut() {
    let events = fixture("anthropic/thinking_text_parallel_tools.sse");
    // Up to the middle of the first tool_use block's input.
    let fake = FakeProvider::start(event_by_event(&events[..15], End::Drop)).await;

    let (streamed, error) = drain(anthropic(&fake).stream(simple_request()).await.unwrap()).await;

    assert_eq!(streamed, anthropic_transcript_events()[..6].to_vec());
    let error = error.expect("the cut is an error");
    assert_error(&error, ChatErrorKind::Generic, true, None);
    assert_eq!(
        error.message,
        "Anthropic closed the stream in the middle of an answer."
    );
}

#[tokio::test]
async fn an_anthropic_stream_that_ends_without_message_stop_is_a_cut() {
    let events = fixture("anthropic/thinking_text_parallel_tools.sse");
    let without_stop = &events[..events.len() - 1];
    let fake = FakeProvider::start(event_by_event(without_stop, End::Clean)).await;

    let (_, error) = drain(anthropic(&fake).stream(simple_request()).await.unwrap()).await;

    assert_error(
        &error.expect("the cut is an error"),
        ChatErrorKind::Generic,
        true,
        None,
    );
}

#[tokio::test]
async fn anthropic_sending_no_first_byte_is_a_startup_timeout() {
    let fake = FakeProvider::start(Reply::Stall(Duration::from_secs(3))).await;
    let provider = anthropic_with_timeouts(&fake, Duration::from_millis(200), FAST);
    let started = Instant::now();

    let error = failure(provider.stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::StartupTimeout, true, None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_anthropic_stream_gone_quiet_is_a_silence_timeout() {
    let events = fixture("anthropic/thinking_text_parallel_tools.sse");
    let fake = FakeProvider::start(event_by_event(
        &events[..4],
        End::Hang(Duration::from_secs(3)),
    ))
    .await;
    let provider = anthropic_with_timeouts(&fake, FAST, Duration::from_millis(200));

    let (_, error) = drain(provider.stream(simple_request()).await.unwrap()).await;

    assert_error(
        &error.expect("silence is an error"),
        ChatErrorKind::StreamSilenceTimeout,
        true,
        None,
    );
}

// ---------------------------------------------------------------------------------------
// Bounds every attempt keeps, whatever the provider does.

#[tokio::test]
async fn a_stream_that_never_finishes_ends_at_the_attempt_deadline() {
    let delta = r#"data: {"choices":[{"delta":{"content":"again "}}]}"#;
    let fake = FakeProvider::start(Reply::Stream {
        chunks: vec![format!("{delta}\n\n").into_bytes(); 2_000],
        pause: Duration::from_millis(5),
        end: End::Clean,
    })
    .await;
    let limits = ProviderLimits {
        attempt_deadline: Duration::from_secs(1),
        ..ProviderLimits::default()
    };
    let provider = OpenAiProvider::new(&format!("{}/v1", fake.base_url), None, limits).unwrap();
    let started = Instant::now();

    let (streamed, error) = drain(provider.stream(simple_request()).await.unwrap()).await;

    let took = started.elapsed();
    eprintln!("endless stream, 1 s deadline: ended after {took:?}");
    assert!(streamed.len() > 10, "the answer streamed until then");
    let error = error.expect("the deadline is an error");
    assert_error(&error, ChatErrorKind::Timeout, false, None);
    assert!(error.message.contains("after 1 s"), "{}", error.message);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn one_sse_event_larger_than_the_answer_cap_is_refused_before_it_is_buffered() {
    // A `data:` line that never ends, then silence.
    let mut chunks = vec![b"data: {\"choices\":[{\"delta\":{\"content\":\"".to_vec()];
    chunks.extend(std::iter::repeat_n(vec![b'a'; 8 * 1024], 200));
    let fake = FakeProvider::start(Reply::Stream {
        chunks,
        pause: Duration::from_millis(1),
        end: End::Hang(Duration::from_secs(5)),
    })
    .await;
    let limits = ProviderLimits {
        max_answer_bytes: 16 * 1024,
        ..ProviderLimits::default()
    };
    let provider = OpenAiProvider::new(&format!("{}/v1", fake.base_url), None, limits).unwrap();

    let error = failure(provider.stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Generic, false, None);
    assert!(error.message.contains("16384 bytes"), "{}", error.message);
}

#[tokio::test]
async fn anthropic_tool_input_past_the_answer_cap_fails_the_attempt() {
    let mut events = vec![
        r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":5}}}"#
            .to_owned(),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#
            .to_owned(),
    ];
    let piece = "x".repeat(1_000);
    events.push(
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"pad\":\""}}"#
            .to_owned(),
    );
    for _ in 0..40 {
        events.push(format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"input_json_delta","partial_json":"{piece}"}}}}"#
        ));
    }
    let chunks = events
        .iter()
        .map(|e| format!("event: x\ndata: {e}\n\n").into_bytes())
        .collect();
    let fake = FakeProvider::start(Reply::Stream {
        chunks,
        pause: Duration::from_millis(1),
        end: End::Clean,
    })
    .await;
    let limits = ProviderLimits {
        max_answer_bytes: 16 * 1024,
        ..ProviderLimits::default()
    };
    let provider = AnthropicProvider::new(&fake.base_url, "sk-ant-test", limits).unwrap();

    let (streamed, error) = drain(provider.stream(simple_request()).await.unwrap()).await;

    assert_eq!(streamed, vec![ProviderEvent::Model("claude-x".into())]);
    let error = error.expect("past the cap");
    assert_error(&error, ChatErrorKind::Generic, false, None);
    assert_eq!(
        error.message,
        "Anthropic sent an answer longer than 16384 bytes, the most agentq accepts \
         (text, reasoning and tool calls together; AGENTQ_PROVIDER_MAX_ANSWER_BYTES)."
    );
}

#[tokio::test]
async fn an_anthropic_redirect_is_refused_before_the_key_leaves() {
    let other_host = FakeProvider::start(Reply::Status {
        status: 200,
        headers: vec![],
        body: String::new(),
    })
    .await;
    let fake = FakeProvider::start(Reply::Status {
        status: 308,
        headers: vec![("location", format!("{}/v1/messages", other_host.base_url))],
        body: String::new(),
    })
    .await;
    let provider = Provider::from_config(&anthropic_config(&fake)).unwrap();

    let error = failure(provider.stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Config, false, None);
    assert_eq!(error.status_code, Some(308));
    assert!(
        error
            .message
            .starts_with("Anthropic answered with a redirect (HTTP 308)")
    );
    assert!(
        other_host.received.lock().unwrap().is_empty(),
        "the other host received a request"
    );
    assert_eq!(fake.request().header("x-api-key"), Some("sk-ant-test"));
}

#[tokio::test]
async fn a_huge_error_body_is_read_in_part_and_shown_short() {
    let fake = FakeProvider::start(Reply::Status {
        status: 529,
        headers: vec![],
        body: "overloaded ".repeat(100_000),
    })
    .await;

    let error = failure(openai(&fake).stream(simple_request()).await).await;

    assert_error(&error, ChatErrorKind::Overloaded, true, None);
    let detail = error.detail.expect("the body is the detail");
    assert!(detail.starts_with("overloaded overloaded"), "{detail}");
    assert!(detail.len() <= 2_048 + '…'.len_utf8(), "{}", detail.len());
}

/// The system message as each wire format carries it: OpenAI a leading `system` message,
/// Anthropic the top-level `system` field (never a message: its roles are user and
/// assistant only).
#[tokio::test]
async fn the_system_message_goes_where_each_wire_format_expects_it() {
    let events = fixture("openai/reasoning_text_parallel_tools.sse");
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;
    let mut with_system = simple_request();
    with_system.system = Some("Site rules.\n\nAnswer in French.".into());
    drain(openai(&fake).stream(with_system.clone()).await.unwrap()).await;
    assert_eq!(
        fake.request().body["messages"],
        json!([
            {"role": "system", "content": "Site rules.\n\nAnswer in French."},
            {"role": "user", "content": "Hi"}
        ])
    );

    let events = fixture("anthropic/thinking_text_parallel_tools.sse");
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;
    let provider = Provider::from_config(&anthropic_config(&fake)).unwrap();
    drain(provider.stream(with_system).await.unwrap()).await;
    let body = fake.request().body;
    assert_eq!(body["system"], json!("Site rules.\n\nAnswer in French."));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    );

    // No system message: neither format gets an empty one.
    let fake = FakeProvider::start(event_by_event(&events, End::Clean)).await;
    let provider = Provider::from_config(&anthropic_config(&fake)).unwrap();
    drain(provider.stream(simple_request()).await.unwrap()).await;
    assert!(fake.request().body.get("system").is_none());
}
