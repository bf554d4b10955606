//! A real HTTP server on 127.0.0.1 speaking Anthropic Messages streaming: it keeps every
//! request body and answers each, event by event, with the next scripted [`Reply`] (a short
//! text once the script is empty), reporting the usage set by [`FakeAnthropic::report_usage`].
//! Enough for end-to-end tests of what the worker sends (the adapter's parsing has its
//! transcript tests in `worker/tests/provider_transcripts.rs`).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// The text every unscripted answer streams.
pub const ANSWER: &str = "Bonjour from the fake Anthropic.";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A text answer.
    Text(String),
    /// One `tool_use` block: id, tool name, input (streamed as one `input_json_delta`).
    ToolUse(String, String, Value),
    /// A `thinking` block (its text as one `thinking_delta`, then its `signature_delta`),
    /// then the block of `then`.
    Thinking {
        /// The thinking text.
        thinking: String,
        /// Its signature.
        signature: String,
        /// What follows it (a text or a tool use).
        then: Box<Reply>,
    },
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Value>>,
    script: Mutex<VecDeque<Reply>>,
    usage: Mutex<Option<Value>>,
}

/// A running fake.
pub struct FakeAnthropic {
    /// Base URL to configure as `anthropic_base_url` (`/v1/messages` is appended).
    pub base_url: String,
    shared: Arc<Shared>,
}

impl FakeAnthropic {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let shared: Arc<Shared> = Arc::default();
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}"),
            shared,
        }
    }

    /// Request bodies received so far.
    pub fn received(&self) -> Vec<Value> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// The usage `message_start` reports from now on (default
    /// `{"input_tokens": 10, "output_tokens": 1}`); `message_delta` reports 6 output tokens.
    pub fn report_usage(&self, usage: Value) {
        *self.shared.usage.lock().unwrap() = Some(usage);
    }
}

async fn messages(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("claude-fake").to_owned();
    shared.received.lock().unwrap().push(body);
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::Text(ANSWER.into()));
    let usage = shared
        .usage
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| json!({"input_tokens": 10, "output_tokens": 1}));
    // Each content block: its `content_block_start` payload and its deltas.
    let mut blocks: Vec<(Value, Vec<Value>)> = Vec::new();
    let mut reply = reply;
    if let Reply::Thinking {
        thinking,
        signature,
        then,
    } = reply
    {
        blocks.push((
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            vec![
                json!({"type": "thinking_delta", "thinking": thinking}),
                json!({"type": "signature_delta", "signature": signature}),
            ],
        ));
        reply = *then;
    }
    let stop_reason = match reply {
        Reply::ToolUse(id, name, input) => {
            blocks.push((
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                vec![json!({"type": "input_json_delta", "partial_json": input.to_string()})],
            ));
            "tool_use"
        }
        Reply::Text(text) => {
            blocks.push((
                json!({"type": "text", "text": ""}),
                vec![json!({"type": "text_delta", "text": text})],
            ));
            "end_turn"
        }
        Reply::Thinking { .. } => panic!("a thinking block is followed by text or a tool use"),
    };
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
            "role": "assistant", "content": [], "model": model, "stop_reason": null,
            "usage": usage}}),
    )];
    for (index, (block, deltas)) in blocks.into_iter().enumerate() {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        for delta in deltas {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 6}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}
