//! Live chat events on a capped Redis stream per chat (ARCHITECTURE.md §8).
//!
//! Workers and the API publish; `GET /chats/{id}/stream` replays and follows. The stream
//! entry id is the SSE `id`, so `Last-Event-ID` resumes exactly. The pieces:
//!
//! - [`payload`]: what one event may weigh. A `message` event carries a bounded preview of
//!   its content (the full message is one `GET /chats/{id}/messages` away) and every event is
//!   cut to a byte cap, so a chat's stream holds at most `max_len × max_event_bytes`.
//! - [`publisher`]: one batching task per process writes events in pipelines; under pressure
//!   it drops streamed deltas (counted), never persisted-state events.
//! - [`history`]: reading what a stream still holds (replay pages, and whether a resume
//!   point was trimmed away, which the stream answers with a `reset`).
//! - [`hub`]: the API process's shared reader: a few `XREAD BLOCK`s over every followed chat,
//!   fanned out to SSE subscribers through bounded buffers.
//! - [`chat_list`], [`chat_list_feed`]: each owner's chat list stream (`GET /chats/events`):
//!   what its events say, and the task that announces committed changes on it. It shares the
//!   publisher, the shard tags and the hub with the chat streams ([`topic`]).

pub mod chat_list;
pub mod chat_list_feed;
pub mod history;
pub mod hub;
pub mod payload;
pub mod publisher;
pub mod topic;

pub use chat_list::ChatListEvent;
pub use chat_list_feed::ChatListChange;
pub use history::StreamPosition;
pub use hub::{EventHub, HubConfig, Subscription};
pub use payload::PayloadLimits;
pub use publisher::EventPublisher;
pub use topic::StreamTopic;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    ChatError,
    domain::{ChatStatus, Message, MessagePart, Role, SupersededBy},
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
    /// A message as persisted. On the stream its content is a preview: text is cut to
    /// `--event-preview-bytes` and large tool arguments or results to a string prefix of
    /// their JSON; `data.truncated` is true when anything was cut, and
    /// `GET /chats/{id}/messages` has the message whole.
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
    /// When the calls were too large for one event, `data.truncated` is true and the
    /// arguments are read from the assistant message (`GET /chats/{id}/messages`).
    ActionRequired {
        /// The calls waiting for the client.
        tool_calls: Vec<ActionToolCall>,
    },
    /// An edit or a regenerate replaced the end of the conversation: every message whose
    /// id is at least `from_message_id` (ids are ordered by creation) is superseded, gone
    /// from what the model sees and from the message list. Drop them; the new turn's
    /// `status`, the edit's new user `message` and the new answer follow.
    MessagesSuperseded {
        /// The first superseded message: drop it and every later one.
        from_message_id: Uuid,
        /// `edit` or `regenerate`.
        reason: SupersededBy,
    },
    /// The step compacted the conversation (ARCHITECTURE.md §7): the older part is now
    /// the summary message `summary_message_id` in what the model sees. The originals stay
    /// readable in `GET /chats/{id}/messages`; the summary is listed there too (kind
    /// `summary`).
    Compaction {
        /// The summary message.
        summary_message_id: Uuid,
        /// The last message the summary stands for.
        compacted_through: Uuid,
        /// How many messages it replaced in what the model sees.
        messages_compacted: usize,
        /// Estimated tokens of the step's request before compaction.
        tokens_before: u64,
        /// Estimated tokens after it.
        tokens_after: u64,
    },
    /// The chat got a generated title (after its first answer; never over a title the
    /// user set).
    Title {
        /// The new title.
        title: String,
    },
    /// The stream cannot continue without a gap: the events after the client's
    /// `Last-Event-ID` were trimmed or expired. Reload `GET /chats/{id}/messages`; the stream
    /// goes on after this event (whose `id` is the resume point from now on). Sent by the
    /// API only, never stored.
    Reset {
        /// Why the client must reload.
        reason: ResetReason,
    },
}

/// Why a stream sent `reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ResetReason {
    /// Events after the resume point were trimmed from the chat's capped stream.
    Trimmed,
    /// The chat's stream expired (it had been quiet longer than its TTL) or was never there.
    Expired,
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
            ChatEvent::MessagesSuperseded { .. } => "messages_superseded",
            ChatEvent::Reset { .. } => "reset",
            ChatEvent::Compaction { .. } => "compaction",
            ChatEvent::Title { .. } => "title",
        }
    }

    /// The SSE data: the event's fields as JSON, unbounded (see [`payload::encode`] for
    /// what is published).
    pub fn data_json(&self) -> String {
        self.data_value().to_string()
    }

    /// The event's fields as a JSON value.
    pub fn data_value(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("events serialize");
        value
            .get_mut("data")
            .map(serde_json::Value::take)
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// Whether the event reports state that is persisted (a message, a status, an error, a
    /// pending action, a retry, superseded messages). Those are never dropped by the publisher; streamed deltas
    /// (`message_part`) are, under pressure, because the message that follows holds them.
    pub fn is_persisted_state(&self) -> bool {
        !matches!(self, ChatEvent::MessagePart { .. })
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

/// Limits of chat event streams and of what one process queues for them.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Approximate number of entries kept per chat.
    pub max_len: usize,
    /// The stream expires this long after its last event.
    pub ttl: Duration,
    /// What one event may weigh.
    pub payload: PayloadLimits,
    /// Bytes of events a process may hold waiting for Redis before it drops deltas.
    pub publish_buffer_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_len: 5_000,
            ttl: Duration::from_secs(24 * 3600),
            payload: PayloadLimits::default(),
            publish_buffer_bytes: 4 << 20,
        }
    }
}

pub(crate) fn parse_entries(entries: Vec<crate::queue::entries::Entry>) -> Vec<StoredEvent> {
    entries.into_iter().filter_map(stored_event).collect()
}

pub(crate) fn stored_event(entry: crate::queue::entries::Entry) -> Option<StoredEvent> {
    Some(StoredEvent {
        name: entry.get("event")?,
        data: entry.get("data").unwrap_or_else(|| "{}".to_owned()),
        id: entry.id,
    })
}
