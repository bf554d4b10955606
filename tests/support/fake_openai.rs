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
use serde_json::{Value, json};

/// How the fake behaves; tests change it while it runs.
#[derive(Clone, Debug)]
pub struct Behavior {
    /// Pause before each chunk.
    pub chunk_delay: Duration,
}

/// What the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The JSON body.
    pub body: Value,
    /// The Authorization header.
    pub authorization: Option<String>,
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
            behavior: Arc::new(Mutex::new(Behavior { chunk_delay })),
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

    /// Changes the pause between chunks.
    pub fn set_chunk_delay(&self, d: Duration) {
        self.shared.behavior.lock().unwrap().chunk_delay = d;
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
    shared.received.lock().unwrap().push(Received {
        body: body.clone(),
        authorization,
    });
    if body.get("stream") != Some(&Value::Bool(true)) {
        return (StatusCode::BAD_REQUEST, "stream must be true").into_response();
    }
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let answer = answer_to(&last_user);
    let pieces: Vec<String> = answer.split_inclusive(' ').map(str::to_owned).collect();
    let delay = shared.behavior.lock().unwrap().chunk_delay;
    let prompt_tokens = last_user.split_whitespace().count();
    let completion_tokens = pieces.len();
    let mut chunks: Vec<String> = vec![json!({"id": "c1", "object": "chat.completion.chunk", "model": "fake-gpt", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}).to_string()];
    for piece in pieces {
        chunks.push(json!({"id": "c1", "object": "chat.completion.chunk", "model": "fake-gpt", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}).to_string());
    }
    chunks.push(json!({"id": "c1", "model": "fake-gpt", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string());
    chunks.push(json!({"id": "c1", "model": "fake-gpt", "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}).to_string());
    chunks.push("[DONE]".into());
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
