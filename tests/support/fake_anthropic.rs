//! A real HTTP server on 127.0.0.1 speaking Anthropic Messages streaming: it keeps every
//! request body and answers each with a short text, event by event. Enough for end-to-end
//! tests of what the worker sends (the adapter's parsing has its transcript tests in
//! `worker/tests/provider_transcripts.rs`).

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::Value;

/// The text every answer streams.
pub const ANSWER: &str = "Bonjour from the fake Anthropic.";

/// A running fake.
pub struct FakeAnthropic {
    /// Base URL to configure as `anthropic_base_url` (`/v1/messages` is appended).
    pub base_url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl FakeAnthropic {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}"),
            received,
        }
    }

    /// Request bodies received so far.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

async fn messages(
    State(received): State<Arc<Mutex<Vec<Value>>>>,
    Json(body): Json<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or("claude-fake").to_owned();
    received.lock().unwrap().push(body);
    let events = [
        (
            "message_start",
            serde_json::json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
                "role": "assistant", "content": [], "model": model, "stop_reason": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}}),
        ),
        (
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 6}}),
        ),
        ("message_stop", serde_json::json!({"type": "message_stop"})),
    ];
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}
