//! A real HTTP server on 127.0.0.1 speaking OpenAI Chat Completions streaming, one SSE
//! chunk at a time, answering `Echo: <last user message>`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures::StreamExt;
use serde_json::{Value, json};

/// How the fake behaves; tests change it while it runs.
#[derive(Clone, Debug)]
pub struct Behavior {
    /// Pause before each chunk.
    pub chunk_delay: Duration,
    /// Scripted replies, used in order before falling back to the echo answer.
    pub script: std::collections::VecDeque<Reply>,
    /// Scripted replies per conversation: a request whose first user message contains the
    /// key takes the next reply of that key's queue (before `script`), so chats that run at
    /// once (a parent and its subagents) are scripted apart.
    pub scripts_by_prompt: Vec<(String, std::collections::VecDeque<Reply>)>,
    /// The model's context window in tokens ([`request_tokens`]), when it has one: a
    /// request whose tokens plus its `max_tokens` pass it is refused as OpenAI refuses it
    /// (400 `context_length_exceeded`); answers are cut at `max_tokens`; usage reports the
    /// request's real size; and agentq's compaction requests (their system message starts
    /// with [`SUMMARIZER_OPENING`]) get a short summary, never a scripted reply.
    pub context_limit: Option<u64>,
    /// Decides the reply from the request itself, before any script: a conversation whose
    /// next reply depends on where it stands (tool results present or not) instead of on
    /// the order of requests, so a step retried after a failure or a killed worker gets
    /// the same reply again.
    pub responder: Option<Responder>,
    /// Failures injected into a share of requests (see [`FakeOpenAi::inject_faults`]).
    pub faults: Option<Faults>,
}

/// Chooses a reply from a request's JSON body; `None` falls back to the scripts and the echo.
pub type Respond = dyn Fn(&Value) -> Option<Reply> + Send + Sync;

/// A shared [`Respond`].
#[derive(Clone)]
pub struct Responder(pub Arc<Respond>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// Failure injection: `percent` of requests (chosen by a hash of `seed` and the request's
/// number, so one seed gives one sequence of decisions) fail instead of being answered, in
/// turn as a 429 (`Retry-After: 1`), a 500, a stream cut after two chunks, or a stall (no
/// byte for `stall`, then the connection drops).
#[derive(Clone, Debug)]
pub struct Faults {
    /// Seeds the choice of failing requests and their kind.
    pub seed: u64,
    /// Share of requests that fail, in percent.
    pub percent: u64,
    /// How long a stalled request sends nothing.
    pub stall: Duration,
    requests: u64,
    /// What was injected so far.
    pub injected: InjectedFaults,
}

/// Counts of injected failures by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectedFaults {
    /// 429 answers.
    pub rate_limited: u64,
    /// 500 answers.
    pub server_errors: u64,
    /// Streams cut in the middle.
    pub cut_streams: u64,
    /// Requests that got no byte, then a dropped connection.
    pub stalls: u64,
}

impl InjectedFaults {
    /// All injected failures.
    pub fn total(&self) -> u64 {
        self.rate_limited + self.server_errors + self.cut_streams + self.stalls
    }
}

/// One injected failure.
#[derive(Clone, Copy, Debug)]
enum Fault {
    RateLimited,
    ServerError,
    CutStream,
    Stall(Duration),
}

impl Faults {
    /// The fault for the next request, if it is one of the failing ones.
    fn next(&mut self) -> Option<Fault> {
        let n = self.requests;
        self.requests += 1;
        let roll = splitmix64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if roll % 100 >= self.percent {
            return None;
        }
        let fault = match (roll / 100) % 4 {
            0 => Fault::RateLimited,
            1 => Fault::ServerError,
            2 => Fault::CutStream,
            _ => Fault::Stall(self.stall),
        };
        let counter = match fault {
            Fault::RateLimited => &mut self.injected.rate_limited,
            Fault::ServerError => &mut self.injected.server_errors,
            Fault::CutStream => &mut self.injected.cut_streams,
            Fault::Stall(_) => &mut self.injected.stalls,
        };
        *counter += 1;
        Some(fault)
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finalizer).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How agentq's compaction requests begin their system message.
pub const SUMMARIZER_OPENING: &str = "You compact the conversation";

/// The size in tokens the fake gives a request: its messages and tools as JSON, at 4 bytes
/// a token (about what OpenAI's tokenizers give English prose).
pub fn request_tokens(body: &Value) -> u64 {
    let size =
        body["messages"].to_string().len() + body.get("tools").map_or(0, |t| t.to_string().len());
    size.div_ceil(4) as u64
}

/// The output cap a request sets (`max_tokens` or `max_completion_tokens`), if any.
pub fn max_output(body: &Value) -> Option<u64> {
    body["max_tokens"]
        .as_u64()
        .or_else(|| body["max_completion_tokens"].as_u64())
}

/// In a scripted tool call's arguments, a string value replaced by the `chat_id` of the
/// last tool result in the request (a spawned subagent's id, which no script knows ahead).
pub const LAST_RESULT_CHAT_ID: &str = "$LAST_RESULT_CHAT_ID";

/// One scripted reply.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Stream this text.
    Text(String),
    /// Stream these tool calls `(id, name, arguments)`, in parallel, by index.
    ToolCalls(Vec<(String, String, Value)>),
    /// Answer with an HTTP error.
    Status {
        /// Status code.
        code: u16,
        /// `Retry-After` header value, if any.
        retry_after: Option<String>,
        /// Body.
        body: String,
    },
    /// Stream `chunks` pieces of the echo answer, then drop the connection.
    CutAfter(usize),
    /// Send nothing for this long, then the echo answer.
    Hang(Duration),
    /// Stream `text` deltas without end, one per chunk pause: never silent, never finished.
    Endless(String),
    /// Answer with this status and an error body that never ends (a piece every 50 ms).
    EndlessErrorBody(u16),
    /// Answer with this 3xx status and `Location: location`.
    Redirect {
        /// Status code.
        code: u16,
        /// Where the redirect points.
        location: String,
    },
    /// Stream one tool call whose `index` is this value.
    ToolCallAtIndex(u64),
}

/// What the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The JSON body.
    pub body: Value,
    /// The Authorization header.
    pub authorization: Option<String>,
    /// Every header, lower-case names.
    pub headers: Vec<(String, String)>,
}

#[derive(Clone)]
struct Shared {
    behavior: Arc<Mutex<Behavior>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A running fake.
pub struct FakeOpenAi {
    /// Base URL to configure as `openai_base_url`.
    pub base_url: String,
    shared: Shared,
}

impl FakeOpenAi {
    /// Starts the fake on a free port.
    pub async fn start(chunk_delay: Duration) -> Self {
        let shared = Shared {
            behavior: Arc::new(Mutex::new(Behavior {
                chunk_delay,
                script: Default::default(),
                scripts_by_prompt: Vec::new(),
                context_limit: None,
                responder: None,
                faults: None,
            })),
            received: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}/v1"),
            shared,
        }
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Queues scripted replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.behavior.lock().unwrap().script.extend(replies);
    }

    /// Queues scripted replies for the requests of conversations whose first user message
    /// contains `key`.
    pub fn script_for(&self, key: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut behavior = self.shared.behavior.lock().unwrap();
        match behavior
            .scripts_by_prompt
            .iter_mut()
            .find(|(k, _)| k == key)
        {
            Some((_, queue)) => queue.extend(replies),
            None => behavior
                .scripts_by_prompt
                .push((key.to_owned(), replies.into_iter().collect())),
        }
    }

    /// The requests received so far whose first user message contains `key`.
    pub fn received_for(&self, key: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| first_user_text(&r.body).contains(key))
            .collect()
    }

    /// Gives the fake model a context window of `tokens` (see [`Behavior::context_limit`]).
    pub fn set_context_limit(&self, tokens: Option<u64>) {
        self.shared.behavior.lock().unwrap().context_limit = tokens;
    }

    /// Lets `respond` choose the reply of every request from its body (see
    /// [`Behavior::responder`]).
    pub fn respond_with(&self, respond: impl Fn(&Value) -> Option<Reply> + Send + Sync + 'static) {
        self.shared.behavior.lock().unwrap().responder = Some(Responder(Arc::new(respond)));
    }

    /// Makes `percent` of the requests from now on fail (see [`Faults`]), deterministically
    /// from `seed`.
    pub fn inject_faults(&self, seed: u64, percent: u64, stall: Duration) {
        self.shared.behavior.lock().unwrap().faults = Some(Faults {
            seed,
            percent,
            stall,
            requests: 0,
            injected: InjectedFaults::default(),
        });
    }

    /// Stops injecting failures; returns what was injected.
    pub fn stop_faults(&self) -> InjectedFaults {
        self.shared
            .behavior
            .lock()
            .unwrap()
            .faults
            .take()
            .map(|f| f.injected)
            .unwrap_or_default()
    }

    /// Changes the pause between chunks.
    pub fn set_chunk_delay(&self, d: Duration) {
        self.shared.behavior.lock().unwrap().chunk_delay = d;
    }
}

/// A real HTTP server on 127.0.0.1 that counts every request it gets (any method, any
/// path) and keeps their headers: the "other host" a redirect points at.
pub struct RequestSink {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    received: Arc<Mutex<Vec<Headers>>>,
}

/// One request's headers, lower-case names.
pub type Headers = Vec<(String, String)>;

impl RequestSink {
    /// Starts the sink on a free port.
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<Headers>>> = Arc::default();
        let seen = received.clone();
        let app = Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let headers = headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            v.to_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                seen.lock().unwrap().push(headers);
                (StatusCode::OK, "captured")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}"),
            received,
        }
    }

    /// The headers of each request received so far.
    pub fn received(&self) -> Vec<Headers> {
        self.received.lock().unwrap().clone()
    }
}

/// The names of the tools a request offers, in order.
pub fn offered(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The text of a request's first user message.
pub fn first_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The `chat_id` in the last tool result of a request, if any.
fn last_result_chat_id(body: &Value) -> Option<String> {
    let content = body["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")?["content"]
        .as_str()?;
    let result: Value = serde_json::from_str(content).ok()?;
    result["chat_id"].as_str().map(str::to_owned)
}

/// `arguments` with every [`LAST_RESULT_CHAT_ID`] string replaced by `chat_id`.
fn fill_chat_id(arguments: &Value, chat_id: Option<&str>) -> Value {
    match arguments {
        Value::String(s) if s == LAST_RESULT_CHAT_ID => Value::String(
            chat_id
                .unwrap_or("no tool result named a chat_id")
                .to_owned(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_chat_id(v, chat_id)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The answer the fake gives to a conversation whose last user message is `text`.
pub fn answer_to(text: &str) -> String {
    format!("Echo: {text}")
}

async fn completions(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let all = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    shared.received.lock().unwrap().push(Received {
        body: body.clone(),
        authorization,
        headers: all,
    });
    if body.get("stream") != Some(&Value::Bool(true)) {
        return (StatusCode::BAD_REQUEST, "stream must be true").into_response();
    }
    let (fault, responder) = {
        let mut behavior = shared.behavior.lock().unwrap();
        let fault = behavior.faults.as_mut().and_then(Faults::next);
        (fault, behavior.responder.clone())
    };
    match fault {
        Some(Fault::RateLimited) => {
            return Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("retry-after", "1")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    r#"{"error":{"message":"injected: slow down","type":"rate_limit"}}"#,
                ))
                .unwrap();
        }
        Some(Fault::ServerError) => {
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    r#"{"error":{"message":"injected: server error","type":"server_error"}}"#,
                ))
                .unwrap();
        }
        Some(Fault::Stall(pause)) => {
            tokio::time::sleep(pause).await;
            let dropped = futures::stream::once(async {
                Err::<String, _>(std::io::Error::other("stalled, then dropped"))
            });
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(dropped))
                .unwrap();
        }
        Some(Fault::CutStream) | None => {}
    }
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let context_limit = shared.behavior.lock().unwrap().context_limit;
    let summarizing = context_limit.is_some()
        && body["messages"][0]["role"] == "system"
        && body["messages"][0]["content"]
            .as_str()
            .is_some_and(|s| s.starts_with(SUMMARIZER_OPENING));
    if let Some(limit) = context_limit {
        let tokens = request_tokens(&body) + max_output(&body).unwrap_or(0);
        if tokens > limit {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {
                    "message": format!("This model's maximum context length is {limit} tokens. However, you requested {tokens} tokens. Please reduce the length of the messages."),
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }})),
            )
                .into_response();
        }
    }
    let (delay, reply) = {
        let mut behavior = shared.behavior.lock().unwrap();
        let first_user = first_user_text(&body);
        let reply = if summarizing {
            Some(Reply::Text(format!(
                "Summary: the user sent long messages; the latest one began {:?}.",
                last_user
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("User: "))
                    .unwrap_or_default()
                    .chars()
                    .take(60)
                    .collect::<String>()
            )))
        } else if matches!(fault, Some(Fault::CutStream)) {
            Some(Reply::CutAfter(2))
        } else if let Some(reply) = responder.as_ref().and_then(|r| (r.0)(&body)) {
            Some(reply)
        } else {
            let keyed = behavior
                .scripts_by_prompt
                .iter_mut()
                .find(|(key, _)| first_user.contains(key.as_str()))
                .map(|(_, queue)| queue.pop_front());
            match keyed {
                Some(reply) => reply,
                None => behavior.script.pop_front(),
            }
        };
        (behavior.chunk_delay, reply)
    };
    let mut cut = None;
    let mut chunks: Vec<String> = Vec::new();
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "fake-gpt", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
    };
    if let Some(Reply::Hang(pause)) = &reply {
        tokio::time::sleep(*pause).await;
    }
    match reply {
        Some(Reply::Endless(piece)) => {
            let first = chunk(json!({"role": "assistant", "content": ""}), None);
            let head = futures::stream::iter([first]);
            let rest = futures::stream::repeat(chunk(json!({"content": piece}), None));
            let stream = head.chain(rest).then(move |c| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::convert::Infallible>(format!("data: {c}\n\n"))
            });
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap();
        }
        Some(Reply::EndlessErrorBody(code)) => {
            let head = futures::stream::iter([r#"{"error":{"message":"#.to_owned()]);
            let rest = futures::stream::repeat("still failing ".to_owned());
            let stream = head.chain(rest).then(|piece| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::convert::Infallible>(piece)
            });
            return Response::builder()
                .status(code)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .unwrap();
        }
        Some(Reply::Redirect { code, location }) => {
            return Response::builder()
                .status(code)
                .header(header::LOCATION, location)
                .body(Body::empty())
                .unwrap();
        }
        Some(Reply::ToolCallAtIndex(index)) => {
            chunks.push(chunk(json!({"role": "assistant", "content": null}), None));
            chunks.push(chunk(json!({"tool_calls": [{"index": index, "id": "call_far", "type": "function", "function": {"name": "current_time", "arguments": "{}"}}]}), None));
            chunks.push(chunk(json!({}), Some("tool_calls")));
        }
        Some(Reply::Status {
            code,
            retry_after,
            body,
        }) => {
            let mut response = Response::builder()
                .status(code)
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(after) = retry_after {
                response = response.header("retry-after", after);
            }
            return response.body(Body::from(body)).unwrap();
        }
        Some(Reply::ToolCalls(calls)) => {
            chunks.push(chunk(json!({"role": "assistant", "content": null}), None));
            let chat_id = last_result_chat_id(&body);
            for (index, (id, name, arguments)) in calls.iter().enumerate() {
                let args = fill_chat_id(arguments, chat_id.as_deref()).to_string();
                let (head, tail) = args.split_at(args.len() / 2);
                chunks.push(chunk(json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": head}}]}), None));
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": tail}}]}),
                    None,
                ));
            }
            chunks.push(chunk(json!({}), Some("tool_calls")));
        }
        other => {
            let mut answer = match &other {
                Some(Reply::Text(text)) => text.clone(),
                _ => answer_to(&last_user),
            };
            if let (Some(_), Some(max)) = (context_limit, max_output(&body)) {
                // A model stops at its output cap.
                let cap = answer.floor_char_boundary(max as usize * 4);
                answer.truncate(cap);
            }
            if let Some(Reply::CutAfter(n)) = other {
                cut = Some(n + 1);
            }
            chunks.push(chunk(json!({"role": "assistant", "content": ""}), None));
            for piece in answer.split_inclusive(' ') {
                chunks.push(chunk(json!({"content": piece}), None));
            }
            chunks.push(chunk(json!({}), Some("stop")));
        }
    }
    let prompt_tokens = match context_limit {
        Some(_) => request_tokens(&body) as usize,
        None => last_user.split_whitespace().count(),
    };
    let completion_tokens = chunks.len().saturating_sub(2);
    chunks.push(json!({"id": "c1", "model": "fake-gpt", "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}).to_string());
    chunks.push("[DONE]".into());
    if let Some(n) = cut {
        chunks.truncate(n);
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(format!("data: {c}\n\n"))),
        )
        .chain(futures::stream::once(async {
            Err(std::io::Error::other("connection dropped"))
        }));
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let stream = futures::stream::unfold(chunks.into_iter(), move |mut rest| async move {
        let chunk = rest.next()?;
        tokio::time::sleep(delay).await;
        Some((
            Ok::<_, std::convert::Infallible>(format!("data: {chunk}\n\n")),
            rest,
        ))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
