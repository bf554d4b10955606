//! Domain types: the vocabulary of ARCHITECTURE.md §3, as Rust types the store returns and
//! the API serializes. Status enums map to `text` columns whose CHECK constraints list the
//! same values.

mod chat;
mod debug_run;
mod diff_status;
mod file;
mod instruction_sources;
mod key_policy;
mod message;
mod notification;
mod provider;
mod reasoning;
mod spend_period;
mod token_scope;
mod turn;
mod user;

pub use chat::{
    BUILTIN_TOOL_NAMES, Chat, ChatStatus, ClientType, DynamicTool, IdempotencyKey, NewChat,
    PlanMode,
};
pub use debug_run::DebugRunStatus;
pub use diff_status::{ChatDiffStatus, DiffStatus, PrState, pr_host};
pub use file::{
    ChatFile, FileContent, FileKind, FileLinkWarning, FileMeta, MAX_CHAT_FILE_LINKS,
    MAX_FILE_BYTES, MAX_MESSAGE_FILES,
};
pub use instruction_sources::{InstructionSources, SkillListing};
pub use key_policy::{KeyPolicy, KeySource, KeyUnavailable, PolicyProblem};
pub use message::{Message, MessageKind, MessagePart, Role, SupersededBy, Usage};
pub use notification::NotificationStatus;
pub use provider::ProviderKind;
pub use reasoning::ReasoningEffort;
pub use spend_period::SpendPeriod;
pub use token_scope::TokenScope;
pub use turn::{AcquiredTurn, ToolCallKind, ToolCallRow, ToolCallStatus, TurnStatus};
pub use user::{
    ApiTokenInfo, AuthenticatedUser, Membership, OrganizationRole, OrganizationSummary, SiteRole,
    UserStatus, UserSummary,
};
