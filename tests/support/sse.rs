//! A minimal SSE client over reqwest for reading `/chats/{id}/stream`.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

/// One received event.
#[derive(Debug, Clone)]
pub struct Received {
    /// SSE id (the Redis stream entry id).
    pub id: String,
    /// SSE event name.
    pub event: String,
    /// Parsed data.
    pub data: Value,
}

/// Reads events from `url` until `stop` returns true for one (included) or `limit` passes.
pub async fn read_until(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    last_event_id: Option<&str>,
    limit: Duration,
    stop: impl Fn(&Received) -> bool,
) -> Vec<Received> {
    let mut request = client.get(url).bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.expect("stream request");
    assert_eq!(response.status(), 200, "stream status");
    let mut events = response.bytes_stream().eventsource();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some(Ok(event))) = next else { break };
        let received = Received {
            id: event.id,
            event: event.event,
            data: serde_json::from_str(&event.data).unwrap_or(Value::Null),
        };
        let done = stop(&received);
        out.push(received);
        if done {
            break;
        }
    }
    out
}

/// True for the `status` event announcing `status`.
pub fn is_status(event: &Received, status: &str) -> bool {
    event.event == "status" && event.data["status"] == status
}
