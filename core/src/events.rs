//! Live chat events on a capped Redis stream per chat (DESIGN.md §4, "Events").
//!
//! Workers and the API publish; `GET /chats/{id}/stream` replays and follows. The stream
//! entry id is the SSE `id`, so `Last-Event-ID` resumes exactly. Publishing goes through
//! one batching task per process: events queue in memory and leave in one pipeline per
//! round trip, so a fast model's deltas cost a handful of round trips, not one each, and
//! the first delta still leaves at once when nothing else is in flight.

use std::time::Duration;

use redis::{Value, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    ChatError,
    domain::{ChatStatus, Message, MessagePart, Role},
    queue::chat_events_key,
};

/// An event on a chat's stream. The variant is the SSE `event:` name; the fields are `data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChatEvent {
    /// The chat's status changed.
    Status {
        /// New status.
        status: ChatStatus,
        /// The chat.
        chat_id: Uuid,
    },
    /// A streamed delta of the message being written.
    MessagePart {
        /// Author (assistant).
        role: Role,
        /// The delta.
        part: MessagePart,
        /// Step of the turn.
        step: i32,
    },
    /// A message as persisted.
    Message {
        /// The message.
        message: Box<Message>,
    },
    /// The chat's queue of waiting user messages changed.
    QueueUpdate {
        /// How many messages wait.
        queued_messages: i64,
    },
    /// A turn failed.
    Error {
        /// What went wrong.
        error: ChatError,
    },
    /// A provider call failed and will be retried.
    Retry {
        /// Which retry this is (1 = the first retry).
        attempt: u32,
        /// How long until it.
        delay_ms: u64,
        /// The failure's message.
        error: String,
        /// The failure's kind.
        kind: crate::ChatErrorKind,
        /// Provider name.
        provider: Option<String>,
        /// HTTP status, when there was one.
        status_code: Option<u16>,
        /// When the retry starts (RFC 3339).
        retrying_at: chrono::DateTime<chrono::Utc>,
    },
    /// The model called tools the client runs; post their results to `tool-results`.
    ActionRequired {
        /// The calls waiting for the client.
        tool_calls: Vec<ActionToolCall>,
    },
}

/// One call in an `action_required` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionToolCall {
    /// What to name in `POST /chats/{id}/tool-results`.
    pub tool_call_id: Uuid,
    /// The tool.
    pub tool_name: String,
    /// The model's arguments.
    pub args: serde_json::Value,
}

impl ChatEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            ChatEvent::Status { .. } => "status",
            ChatEvent::MessagePart { .. } => "message_part",
            ChatEvent::Message { .. } => "message",
            ChatEvent::QueueUpdate { .. } => "queue_update",
            ChatEvent::Error { .. } => "error",
            ChatEvent::Retry { .. } => "retry",
            ChatEvent::ActionRequired { .. } => "action_required",
        }
    }

    /// The SSE data: the event's fields as JSON.
    pub fn data_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("events serialize");
        value
            .get_mut("data")
            .map(|d| d.take().to_string())
            .unwrap_or_else(|| "{}".into())
    }
}

/// An event read back from a chat stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Stream entry id; the SSE `id`.
    pub id: String,
    /// Event name.
    pub name: String,
    /// JSON data.
    pub data: String,
}

/// Limits of chat event streams.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Approximate number of entries kept per chat.
    pub max_len: usize,
    /// The stream expires this long after its last event.
    pub ttl: Duration,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_len: 5_000,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

enum Command {
    Publish(Uuid, ChatEvent),
    Flush(oneshot::Sender<()>),
}

/// Publishes chat events through this process's batching task; cheap to clone.
#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::UnboundedSender<Command>,
}

impl EventPublisher {
    /// Starts the batching task on the shared connection. It ends when every publisher
    /// clone is dropped, after writing what was queued.
    pub fn start(conn: ConnectionManager, prefix: impl Into<String>, limits: EventLimits) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(conn, prefix.into(), limits, rx));
        Self { tx }
    }

    /// Queues an event for the chat's stream; never blocks on Redis.
    pub fn publish(&self, chat_id: Uuid, event: ChatEvent) {
        let _ = self.tx.send(Command::Publish(chat_id, event));
    }

    /// Waits until every event published before this call was written (or dropped after
    /// a Redis failure).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(
    mut conn: ConnectionManager,
    prefix: String,
    limits: EventLimits,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut batch = Vec::with_capacity(512);
    let ttl = limits.ttl.as_secs().max(1);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut pipe = redis::pipe();
        let mut waiters = Vec::new();
        let mut touched = std::collections::HashSet::new();
        for command in batch.drain(..) {
            match command {
                Command::Publish(chat_id, event) => {
                    let key = chat_events_key(&prefix, chat_id);
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(limits.max_len)
                        .arg("*")
                        .arg("event")
                        .arg(event.name())
                        .arg("data")
                        .arg(event.data_json())
                        .ignore();
                    touched.insert(key);
                }
                Command::Flush(done) => waiters.push(done),
            }
        }
        for key in &touched {
            pipe.cmd("EXPIRE").arg(key).arg(ttl).ignore();
        }
        if touched.is_empty() {
            // Only flush requests in this batch: nothing to write.
        } else if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            // Events are a live view; the messages endpoint stays the truth.
            tracing::warn!(error = %e, "publishing chat events failed; clients will read persisted messages");
        }
        for done in waiters {
            let _ = done.send(());
        }
    }
}

/// Reads a chat's event stream: replay, then follow with `XREAD BLOCK`.
pub struct EventReader {
    conn: ConnectionManager,
    key: String,
}

impl EventReader {
    /// A reader on `conn`, which must be a dedicated (blocking) connection.
    pub fn new(conn: ConnectionManager, prefix: &str, chat_id: Uuid) -> Self {
        Self {
            conn,
            key: chat_events_key(prefix, chat_id),
        }
    }

    /// Events after `after` (exclusive), or from the start of what the stream holds.
    pub async fn replay(
        &mut self,
        after: Option<&str>,
        count: usize,
    ) -> redis::RedisResult<Vec<StoredEvent>> {
        let start = after
            .map(|id| format!("({id}"))
            .unwrap_or_else(|| "-".into());
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn)
            .await?;
        Ok(parse_entries(reply))
    }

    /// Waits up to `block` for events after `after`.
    pub async fn follow(
        &mut self,
        after: &str,
        block: Duration,
        count: usize,
    ) -> redis::RedisResult<Vec<StoredEvent>> {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after)
            .query_async(&mut self.conn)
            .await?;
        Ok(crate::queue::entries::read_reply_entries(reply)
            .into_iter()
            .filter_map(stored_event)
            .collect())
    }
}

fn parse_entries(value: Value) -> Vec<StoredEvent> {
    crate::queue::entries::entries(value)
        .into_iter()
        .filter_map(stored_event)
        .collect()
}

fn stored_event(entry: crate::queue::entries::Entry) -> Option<StoredEvent> {
    Some(StoredEvent {
        name: entry.get("event")?.to_owned(),
        data: entry.get("data").unwrap_or("{}").to_owned(),
        id: entry.id,
    })
}
