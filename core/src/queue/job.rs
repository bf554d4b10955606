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

    /// The row the job names, for its log line.
    fn subject(&self) -> JobSubject;
}

/// The row a job names: each job carries exactly one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSubject {
    /// `chat_turns.id`.
    Turn(Uuid),
    /// `tool_calls.id`.
    ToolCall(Uuid),
    /// `notification_messages.id`.
    Notification(Uuid),
}

/// Run (or continue) a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunTurn {
    /// `chat_turns.id`.
    pub turn_id: Uuid,
}

impl Job for RunTurn {
    const QUEUE: QueueName = QueueName::Turns;

    fn subject(&self) -> JobSubject {
        JobSubject::Turn(self.turn_id)
    }
}

/// Run one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunToolCall {
    /// `tool_calls.id`.
    pub tool_call_id: Uuid,
}

impl Job for RunToolCall {
    const QUEUE: QueueName = QueueName::Tools;

    fn subject(&self) -> JobSubject {
        JobSubject::ToolCall(self.tool_call_id)
    }
}

/// Send one email from the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendMail {
    /// `notification_messages.id`.
    pub notification_id: Uuid,
}

impl Job for SendMail {
    const QUEUE: QueueName = QueueName::Mail;

    fn subject(&self) -> JobSubject {
        JobSubject::Notification(self.notification_id)
    }
}
