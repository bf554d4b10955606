//! Chat messages and their parts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// The person (or API client).
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

/// One piece of a message; a message's `content` is a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MessagePart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// Model reasoning, kept apart from the answer.
    Reasoning {
        /// The reasoning text.
        text: String,
        /// The provider's signature of this reasoning (Anthropic's signed `thinking`
        /// blocks), which it needs back, byte for byte, to accept the block in a later
        /// request; absent for reasoning that is only shown (OpenAI-style providers) and
        /// on streamed deltas.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the provider sent encrypted (Anthropic's `redacted_thinking`): nothing to
    /// show, kept only to be sent back with the step's tool calls, as the provider requires.
    RedactedReasoning {
        /// The encrypted reasoning, as received.
        data: String,
    },
    /// A tool call the model made.
    ToolCall {
        /// The provider's call id.
        tool_call_id: String,
        /// Tool name.
        name: String,
        /// Arguments as JSON.
        arguments: serde_json::Value,
    },
    /// A tool's result.
    ToolResult {
        /// The call it answers.
        tool_call_id: String,
        /// Result payload.
        output: serde_json::Value,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// A file the user attached (`file_ids`): the file is linked to the chat, and each
    /// request to the model carries its content in the provider's shape (ARCHITECTURE.md
    /// §7). Only in user messages.
    File {
        /// The file (`GET /api/v1/files/{id}`).
        file_id: Uuid,
        /// Its name.
        name: String,
        /// Its media type.
        mimetype: String,
        /// Its size in bytes.
        size: i64,
    },
}

impl MessagePart {
    /// The text of a text part, for prompt building and titles.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            MessagePart::Text { text } => Some(text),
            _ => None,
        }
    }
}

/// What replaced the end of a conversation (ARCHITECTURE.md §4.1): the `reason` of a
/// `messages_superseded` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SupersededBy {
    /// A user message was edited: it and everything after it were replaced.
    Edit,
    /// The last turn was run again: its answer was replaced.
    Regenerate,
}

/// Token usage of one provider call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Prompt tokens (including cached ones).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

/// What a message is in the conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MessageKind {
    /// A message of the conversation.
    #[default]
    Message,
    /// A compaction summary (ARCHITECTURE.md §7): written by the model, it stands for every
    /// message up to `compacted_through` in what later steps send; those stay readable here.
    Summary,
}

/// A persisted message.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    /// uuid v7: ordered by creation.
    pub id: Uuid,
    /// The chat it belongs to.
    pub chat_id: Uuid,
    /// The turn that produced (or, for a user message, started) it.
    pub turn_id: Option<Uuid>,
    /// Author.
    pub role: Role,
    /// The step of the turn, for assistant messages.
    pub step: Option<i32>,
    /// Parts.
    #[sqlx(json)]
    pub content: Vec<MessagePart>,
    /// Model that wrote it.
    pub model: Option<String>,
    /// Token usage.
    #[sqlx(json(nullable))]
    pub usage: Option<Usage>,
    /// Cost in micro-dollars.
    pub cost_micros: Option<i64>,
    /// The answer was cut short by an interrupt; it holds what had streamed.
    pub interrupted: bool,
    /// `summary` for a compaction summary; `message` otherwise.
    #[sqlx(default)]
    #[serde(default)]
    pub kind: MessageKind,
    /// For a summary: the last message it stands for (every message up to this id).
    #[sqlx(default)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_through: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When an edit or a regenerate replaced this message (ARCHITECTURE.md §4.1); `null`
    /// while it is part of the conversation. A superseded message is kept (its cost
    /// counts) but no model sees it again, and the message list shows it only when asked.
    #[sqlx(default)]
    pub superseded_at: Option<DateTime<Utc>>,
}

impl Message {
    /// A user message with `content`, as a new row holds it: no step, model, usage or
    /// cost, not interrupted or superseded.
    pub fn user(
        id: Uuid,
        chat_id: Uuid,
        turn_id: Option<Uuid>,
        content: Vec<MessagePart>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self::plain(id, chat_id, turn_id, Role::User, content, created_at)
    }

    /// A plain message (`kind` `message`) of `role` with `content` and nothing else: no
    /// step, model, usage or cost, not interrupted or superseded. What a new user row holds,
    /// and what tests build conversations from.
    pub fn plain(
        id: Uuid,
        chat_id: Uuid,
        turn_id: Option<Uuid>,
        role: Role,
        content: Vec<MessagePart>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            chat_id,
            turn_id,
            role,
            step: None,
            content,
            model: None,
            usage: None,
            cost_micros: None,
            interrupted: false,
            kind: MessageKind::Message,
            compacted_through: None,
            created_at,
            superseded_at: None,
        }
    }
}
