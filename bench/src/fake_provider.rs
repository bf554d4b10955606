//! A local OpenAI-compatible provider on 127.0.0.1 (streaming Chat Completions, the shape
//! tests/support/fake_openai.rs speaks), for the scenarios the built-in echo model cannot
//! play: answering every first step with parallel tool calls (and timing the fan-in), and
//! holding answers until released (turns in flight, a worker killed mid-turn).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio::sync::watch;

/// How the fake answers a conversation's first step.
#[derive(Clone, Copy, Debug)]
pub enum Behavior {
    /// `calls` parallel `current_time` tool calls; the step after the results is a text.
    ToolCalls { calls: usize },
    /// Holds the answer until [`FakeProvider::release`], then a text.
    Stall,
}

#[derive(Clone)]
struct Shared {
    behavior: Behavior,
    /// Requests being held ([`Behavior::Stall`]).
    held: Arc<AtomicUsize>,
    released: watch::Receiver<bool>,
    /// When each conversation's tool calls were sent (keyed by its first user message).
    calls_sent: Arc<Mutex<HashMap<String, Instant>>>,
    /// Tool calls sent -> the next step's request, per conversation.
    fan_in: Arc<Mutex<Vec<Duration>>>,
}

/// A running fake provider.
pub struct FakeProvider {
    /// `http://127.0.0.1:<port>/v1`, for `--openai-base-url`.
    pub base_url: String,
    shared: Shared,
    release: watch::Sender<bool>,
    stop: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    pub async fn start(behavior: Behavior) -> anyhow::Result<Self> {
        let (release, released) = watch::channel(false);
        let shared = Shared {
            behavior,
            held: Arc::default(),
            released,
            calls_sent: Arc::default(),
            fan_in: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base_url: format!("http://{addr}/v1"),
            shared,
            release,
            stop,
        })
    }

    /// Requests held now.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::Relaxed)
    }

    /// Answers every held request, and every later one at once.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }

    /// The fan-in times measured so far.
    pub fn fan_in(&self) -> Vec<Duration> {
        self.shared.fan_in.lock().unwrap().clone()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        let _ = self.release.send(true);
        self.stop.abort();
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"id": "c1", "object": "chat.completion.chunk", "model": "fake-gpt",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

fn first_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn completions(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let has_results = body["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    let key = first_user_text(&body);
    let mut chunks = Vec::new();
    match shared.behavior {
        Behavior::ToolCalls { calls } if !has_results => {
            chunks.push(chunk(json!({"role": "assistant", "content": null}), None));
            for index in 0..calls {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": index, "id": format!("call_{index}"), "type": "function",
                        "function": {"name": "current_time", "arguments": "{}"}}]}),
                    None,
                ));
            }
            chunks.push(chunk(json!({}), Some("tool_calls")));
            shared
                .calls_sent
                .lock()
                .unwrap()
                .insert(key, Instant::now());
        }
        behavior => {
            if let Behavior::ToolCalls { .. } = behavior
                && let Some(sent) = shared.calls_sent.lock().unwrap().remove(&key)
            {
                shared.fan_in.lock().unwrap().push(sent.elapsed());
            }
            if let Behavior::Stall = behavior {
                shared.held.fetch_add(1, Ordering::Relaxed);
                let mut released = shared.released.clone();
                let _ = tokio::time::timeout(
                    Duration::from_secs(300),
                    released.wait_for(|released| *released),
                )
                .await;
                shared.held.fetch_sub(1, Ordering::Relaxed);
            }
            chunks.push(chunk(json!({"role": "assistant", "content": ""}), None));
            chunks.push(chunk(json!({"content": "Done."}), None));
            chunks.push(chunk(json!({}), Some("stop")));
        }
    }
    chunks.push(
        json!({"id": "c1", "model": "fake-gpt", "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
        .to_string(),
    );
    chunks.push("[DONE]".into());
    let body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from(body),
    )
        .into_response()
}
