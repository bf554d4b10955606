//! A chat: a conversation owned by one user in one organization.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ChatError;

/// Where a chat stands; every change is one function in `store::chats` or `store::turns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChatStatus {
    /// Idle, waiting for the user.
    Waiting,
    /// A turn is queued and no worker has taken it yet.
    Pending,
    /// A worker is running a turn.
    Running,
    /// A tool needs a person or the client.
    RequiresAction,
    /// The last turn failed; `last_error` says why.
    Error,
}

impl ChatStatus {
    /// The wire name, as stored and sent in events.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatStatus::Waiting => "waiting",
            ChatStatus::Pending => "pending",
            ChatStatus::Running => "running",
            ChatStatus::RequiresAction => "requires_action",
            ChatStatus::Error => "error",
        }
    }
}

/// A chat's plan mode (`chats.plan_mode`; `None` on a chat is normal mode). In plan mode a
/// turn is offered only tools that change nothing, plus `ask_user_question` and
/// `propose_plan` (ARCHITECTURE.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PlanMode {
    /// Plan, ask and propose; change nothing.
    Plan,
}

/// Read from a string, so a value of another JSON type is an error about this field
/// ("invalid type"), not a JSON syntax error (serde_json's derived enums report one).
impl<'de> Deserialize<'de> for PlanMode {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        match text.as_str() {
            "plan" => Ok(PlanMode::Plan),
            other => Err(serde::de::Error::unknown_variant(other, &["plan"])),
        }
    }
}

/// Which kind of client created the chat; children inherit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, Default)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ClientType {
    /// The agentq web UI.
    Ui,
    /// Any API client (the default).
    #[default]
    Api,
}

/// A chat as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chat {
    /// uuid v7: ordered by creation.
    pub id: Uuid,
    /// The user who owns it.
    pub owner_id: Uuid,
    /// The organization it belongs to.
    pub organization_id: Uuid,
    /// Parent, for subagent chats.
    pub parent_chat_id: Option<Uuid>,
    /// Root of the family, for subagent chats.
    pub root_chat_id: Option<Uuid>,
    /// Human title.
    pub title: String,
    /// Current status.
    pub status: ChatStatus,
    /// Creator kind.
    pub client_type: ClientType,
    /// Position among the owner's pinned chats (1 first), which the list shows first;
    /// `null`: not pinned.
    pub pin_order: Option<i32>,
    /// Key/value labels (at most 50), searchable with `label:key=value`.
    #[sqlx(json)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Whether the chat is archived.
    pub archived: bool,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// Newest message of the chat family (else creation).
    pub last_activity_at: DateTime<Utc>,
    /// The last upstream failure, if the chat is in `error`.
    #[sqlx(json(nullable))]
    pub last_error: Option<ChatError>,
    /// Client-defined tools.
    #[sqlx(json)]
    pub dynamic_tools: Vec<DynamicTool>,
    /// The model the chat uses (`None`: the default model).
    pub model_config_id: Option<Uuid>,
    /// Instructions for this chat, set on create; the worker adds them to the system
    /// message after the site's and the owner's (ARCHITECTURE.md §7).
    pub instructions: Option<String>,
    /// `plan` while the chat is in plan mode; `null` otherwise.
    pub plan_mode: Option<PlanMode>,
    /// The chat's reasoning level, overriding its model's `reasoning_effort`; `null`: the
    /// model's (ARCHITECTURE.md §7).
    pub reasoning_effort: Option<super::ReasoningEffort>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What creating a chat needs.
#[derive(Debug, Clone)]
pub struct NewChat {
    /// Owner.
    pub owner_id: Uuid,
    /// Organization (the caller must hold `agents-access` there).
    pub organization_id: Uuid,
    /// Title; empty derives one from the first message.
    pub title: String,
    /// Creator kind.
    pub client_type: ClientType,
    /// The first user message.
    pub first_message: Vec<super::MessagePart>,
    /// Uploads the first message references (checked by the API: the owner's, of the
    /// chat's organization or none); linked to the chat, and a `file` part each is added
    /// to the message.
    pub file_ids: Vec<Uuid>,
    /// Tools the client runs itself (ARCHITECTURE.md §4.3).
    pub dynamic_tools: Vec<DynamicTool>,
    /// The model to use; `None` uses the default model.
    pub model_config_id: Option<Uuid>,
    /// Free-form key/value labels (searchable with `label:k=v`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Instructions for this chat (`None`: none).
    pub instructions: Option<String>,
    /// The chat's explicit choice of MCP servers (`None`: it did not choose, so
    /// `default_on` servers apply; see `store::mcp_servers`).
    pub mcp_server_ids: Option<Vec<Uuid>>,
    /// Start in plan mode (`Some(PlanMode::Plan)`) or not.
    pub plan_mode: Option<PlanMode>,
    /// The chat's reasoning level (`None`: its model's).
    pub reasoning_effort: Option<super::ReasoningEffort>,
    /// The caller checked the owner's spend limit just before
    /// (`Store::check_spend_limit`), or knows that none applies: the store does not read it
    /// again. `false`: the store checks it.
    pub spend_checked: bool,
    /// The request's `Idempotency-Key`: a create that names the key of one of the owner's
    /// chats makes nothing and returns that chat (`Store::create_chat`).
    pub idempotency: Option<IdempotencyKey>,
}

/// A create's `Idempotency-Key` (ARCHITECTURE.md §9): the client's name for one create,
/// unique among its owner's chats, so that a retry finds the chat its first try made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key as the client sent it.
    pub key: String,
    /// A digest of the request it came with: a retry must send the same request.
    pub fingerprint: [u8; 32],
}

/// Names of the tools workers run themselves (the builtins, the skill tool `read_skill`
/// and plan mode's tools); client-defined tools may not reuse them.
pub const BUILTIN_TOOL_NAMES: &[&str] = &[
    "current_time",
    "sleep",
    "read_skill",
    "ask_user_question",
    "propose_plan",
    "spawn_subagent",
    "wait_agent",
    "message_agent",
    "close_agent",
];

/// A client-defined tool: the model may call it, the client runs it and posts the result
/// to `POST /chats/{id}/tool-results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DynamicTool {
    /// Name the model uses (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of its input (an object schema).
    pub input_schema: serde_json::Value,
}
