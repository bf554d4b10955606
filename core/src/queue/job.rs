//! The jobs: each carries ids only; the work it names lives in PostgreSQL.

use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// The queues agentq runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// Chat turns.
    Turns,
    /// Tool calls fanned out from turns.
    Tools,
    /// Outgoing email.
    Mail,
}

impl QueueName {
    /// Every queue.
    pub const ALL: [QueueName; 3] = [QueueName::Turns, QueueName::Tools, QueueName::Mail];

    /// The name used in keys, flags and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Turns => "turns",
            QueueName::Tools => "tools",
            QueueName::Mail => "mail",
        }
    }

    /// Parses a name given to `--queues`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == name.trim())
    }
}

/// A job type and the queue it travels on.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// The queue of this job type.
    const QUEUE: QueueName;
}

/// Run (or continue) a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunTurn {
    /// `chat_turns.id`.
    pub turn_id: Uuid,
}

impl Job for RunTurn {
    const QUEUE: QueueName = QueueName::Turns;
}

/// Run one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunToolCall {
    /// `tool_calls.id`.
    pub tool_call_id: Uuid,
}

impl Job for RunToolCall {
    const QUEUE: QueueName = QueueName::Tools;
}

/// Send one email from the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendMail {
    /// `notification_messages.id`.
    pub notification_id: Uuid,
}

impl Job for SendMail {
    const QUEUE: QueueName = QueueName::Mail;
}
