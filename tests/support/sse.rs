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
    /// Raw data length in bytes, as sent.
    pub data_len: usize,
    /// When this client read it.
    pub at: std::time::Instant,
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
            data_len: event.data.len(),
            at: std::time::Instant::now(),
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

/// A stream read by a background task; its events arrive on `events` in order, and the
/// channel closes when the server ends the stream.
pub struct Follower {
    /// Events received so far and to come.
    pub events: tokio::sync::mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens `url` (asserting 200) and follows it in the background.
pub async fn follow(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> Follower {
    let response = open(client, url, token, last_event_id).await;
    assert_eq!(response.status(), 200, "stream status");
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = response.bytes_stream().eventsource();
        while let Some(Ok(event)) = stream.next().await {
            let received = Received {
                id: event.id,
                event: event.event,
                data: serde_json::from_str(&event.data).unwrap_or(Value::Null),
                data_len: event.data.len(),
                at: std::time::Instant::now(),
            };
            if tx.send(received).is_err() {
                break;
            }
        }
    });
    Follower { events, task }
}

/// Sends the stream request without reading it (for status checks).
pub async fn open(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(url).bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    request.send().await.expect("stream request")
}

impl Follower {
    /// The next event within `limit`; `None` when the stream ended or nothing came.
    pub async fn next(&mut self, limit: Duration) -> Option<Received> {
        tokio::time::timeout(limit, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Events until one matches `stop` (included), within `limit` in all.
    pub async fn until(
        &mut self,
        limit: Duration,
        stop: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            let done = stop(&event);
            out.push(event);
            if done {
                break;
            }
        }
        out
    }
}
