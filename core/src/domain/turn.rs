//! A turn: one run of the model (and its tools) answering the chat's newest user message.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lifecycle of a turn (ARCHITECTURE.md §4.2). At most one unfinished turn per chat. The
/// `chat_turns.status` CHECK constraint lists the same values; the store's SQL names them
/// in its transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker holds the lease.
    Running,
    /// Waiting for its tool calls.
    AwaitingTools,
    /// Done.
    Completed,
    /// Failed; `error` says why.
    Failed,
    /// Stopped by the user.
    Interrupted,
}

/// A turn a worker just acquired, with what it needs to run it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AcquiredTurn {
    /// Id.
    pub id: Uuid,
    /// Chat.
    pub chat_id: Uuid,
    /// Owner of the chat.
    pub owner_id: Uuid,
    /// Sequence in the chat.
    pub seq: i32,
    /// Step to run.
    pub step: i32,
    /// Attempt number of this step (1 = first acquisition; released, handed-back and
    /// lease-lost runs count too).
    pub attempt: i32,
    /// An interrupt was asked for while no worker ran the turn (it was handed back).
    pub interrupt_requested: bool,
    /// This acquisition's lease owner (`<worker>/<acquisition>`): every later write of
    /// the step names it, so a stale run of the same turn in the same process cannot
    /// write over the current one.
    pub lease_owner: String,
    /// The chat's client-defined tools.
    #[sqlx(json)]
    pub dynamic_tools: Vec<super::DynamicTool>,
    /// The chat's plan mode as the step starts (read at every acquisition, so a change
    /// applies from the next step).
    pub plan_mode: Option<super::PlanMode>,
    /// Whether to record a debug run (site switch and the owner's switch both on).
    pub debug: bool,
    /// The chat's model (`None`: the default model).
    pub model_config_id: Option<Uuid>,
    /// The parent, when the chat is a subagent (it is offered no subagent tools).
    pub parent_chat_id: Option<Uuid>,
    /// A subagent's type (`general`, `explore`: read-only tools only); `None` for a root.
    pub mode: Option<String>,
    /// A subagent's parent's plan mode as the step starts: a child of a plan-mode parent
    /// is offered MCP tools only of servers allowed in plan mode.
    pub parent_plan_mode: Option<super::PlanMode>,
    /// The chat's reasoning level as the step starts (`None`: its model's option); read at
    /// every acquisition, so a change applies from the next step.
    pub reasoning_effort: Option<super::ReasoningEffort>,
    /// What the step's system message is composed from, read as the step starts.
    #[sqlx(flatten)]
    pub instructions: super::InstructionSources,
    /// Whether any enabled MCP server applies to the chat as the step starts: without one
    /// the step offers no MCP tools and reads no servers.
    pub any_mcp_server: bool,
    /// The conversation as the step sends it, read with the turn
    /// (`Store::prompt_history`), as the JSON the statement wrote: the step decodes it
    /// ([`AcquiredTurn::take_history`]), so a message this build cannot read fails that
    /// step, whose retries count toward the attempt cap like any other failure, and not
    /// the acquisition.
    pub history: String,
    /// The chat's list entry as the acquisition left it, announced with the step's start
    /// (`store::chat_list_entries`); `None`: announced after a read.
    #[sqlx(skip)]
    pub list_entry: Option<Box<crate::store::ChatListEntry>>,
}

impl AcquiredTurn {
    /// The conversation read with the turn, decoded; the turn keeps none of it (the step
    /// holds one copy).
    pub fn take_history(&mut self) -> Result<Vec<super::Message>, crate::StoreError> {
        serde_json::from_str(&std::mem::take(&mut self.history))
            .map_err(|e| crate::StoreError::Database(sqlx::Error::Decode(Box::new(e))))
    }
}

/// Lifecycle of a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ToolCallStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// Waiting for the client (dynamic tools).
    Waiting,
    /// Done.
    Succeeded,
    /// Done with an error result.
    Failed,
}

impl ToolCallStatus {
    /// Where a call with a result ends: `failed` for an error result, else `succeeded`.
    pub fn finished(is_error: bool) -> Self {
        if is_error {
            ToolCallStatus::Failed
        } else {
            ToolCallStatus::Succeeded
        }
    }
}

/// Who runs a tool call (`tool_calls.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ToolCallKind {
    /// A worker runs it (`RunToolCall`).
    Builtin,
    /// The client runs it and posts the result (ARCHITECTURE.md §4.3).
    Dynamic,
}

/// A tool call row.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct ToolCallRow {
    /// Id (what clients name in `tool-results`).
    pub id: Uuid,
    /// Its turn.
    pub turn_id: Uuid,
    /// Its chat.
    pub chat_id: Uuid,
    /// The turn step that asked for it.
    pub step: i32,
    /// The provider's call id.
    pub provider_call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments.
    pub arguments: serde_json::Value,
    /// Who answers it: a worker (`builtin`) or the client (`dynamic`).
    pub kind: ToolCallKind,
    /// The tool source that offered it in its step (`builtin`, `skill`, `client`, ...), or
    /// `not_offered`: what a worker runs it with (ARCHITECTURE.md §7).
    pub source: String,
    /// Status.
    pub status: ToolCallStatus,
    /// Attempts so far.
    pub attempt: i32,
}
