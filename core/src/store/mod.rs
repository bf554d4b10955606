//! `core::store`: the only place that writes SQL.
//!
//! One function per query, named after what it does for the caller. Every status change of
//! a chat or turn is one function here whose SQL names the from-state in its `WHERE` clause
//! and reports whether it won, so a duplicated or replayed job finds nothing to do.
//! Hot-path transitions are single statements (data-modifying CTEs) to keep each turn to a
//! few short round trips (ARCHITECTURE.md §5).
//!
//! # Lock order
//!
//! Every transaction that touches a chat and its turn or tool calls locks, in this order:
//! **the chat row, then the turn row, then tool call rows**. [`lock_chat`] takes the first;
//! single-statement transitions take it in a leading CTE
//! (`WITH c AS (SELECT id FROM chats WHERE id = ... FOR UPDATE)`) that the turn update
//! depends on (`AND EXISTS (SELECT 1 FROM c)`), so PostgreSQL locks the chat before it
//! locks the turn. Acquire, release, complete, fail, interrupt, the tool step, fan-in,
//! posted tool results and recovery all follow it, so two of them racing on one chat wait
//! for each other instead of deadlocking (`tests/lock_order.rs` races them). Statements
//! that lock a single row (lease renewal, acquiring a tool call) cannot be part of a cycle.
//! A batched acquisition ([`Store::acquire_turns`]) locks several chats, so it skips a chat
//! another transaction holds instead of waiting for it (`SKIP LOCKED`), and cannot be part
//! of one either; its chats are read once up front (`= ANY(ARRAY(...))`, not `EXISTS`).
//!
//! # Text PostgreSQL refuses
//!
//! Values a client, a model or a tool controls go through [`pg_json`] / [`pg_text`], which
//! replace U+0000 (see `pg_text.rs`): a write never fails on it.

mod access_changes;
mod archive;
mod chat_delete;
mod chat_list;
mod chat_list_entries;
mod chats;
mod constraints;
mod debug_runs;
mod diff_statuses;
mod edits;
mod files;
mod fixtures;
mod identity;
mod instructions;
mod interrupts;
mod kept_connections;
mod mcp_servers;
mod messages;
mod model_contexts;
mod notifications;
mod operator_view;
mod organizations;
mod pg_text;
mod pins;
mod plan_mode;
mod providers;
mod recovery;
mod retention;
mod scheduler_ticks;
mod secret_rotation;
mod site_config;
mod skills;
mod spend_limits;
mod sql_functions;
mod subagents;
mod summaries;
mod titles;
mod tool_calls;
mod turns;
mod usage_report;
mod user_provider_keys;
mod user_tokens;
mod users;

pub use access_changes::{AccessSignal, LISTENER_APPLICATION_NAME};
pub use archive::{ArchiveResult, ArchivedChat, DigestRecipient};
pub use chat_list::{ChatListItem, ChatPage};
pub use chat_list_entries::ChatListEntry;
pub use chats::{BusyBehavior, ChatCreation, KeyedChat, SendOptions, SendOutcome};
pub(crate) use constraints::classify as classify_constraint;
pub use debug_runs::{DebugRun, DebugStep, NewDebugStep};
pub use diff_statuses::{DueDiffStatus, GithubBackoffReason, RefreshedPr};
pub use edits::{EditError, Rewrite};
pub use files::LinkedFiles;
pub use identity::ChatAccess;
pub use instructions::{InstructionSources, SkillListing};
pub use interrupts::InterruptOutcome;
pub use kept_connections::KeptCount;
pub use mcp_servers::{
    McpAuthType, McpAvailability, McpServerListing, McpServerRecord, McpServerView, McpServerWrite,
    McpTransport,
};
pub use model_contexts::{
    EffectiveModel, ModelAvailability, ModelContexts, UserModelOverrides, WorkContext,
};
pub use notifications::{NewNotification, OutboxEmail};
pub use operator_view::{ChatInError, LatestTick, RecoveredTurn};
pub use pg_text::{pg_json, pg_text, scrub as scrub_nul};
pub use pins::MAX_PINNED_CHATS;
pub use plan_mode::{ChatSettings, MAX_LISTED_FILES, PLAN_MODE_SOURCE, SettingsUpdate};
pub use providers::{ModelView, ProviderChanges, ProviderView, ResolvedModel};
pub use recovery::{FailedTurn, Recovered, RecoveryLimits};
pub use retention::PURGE_BATCH;
pub use scheduler_ticks::TickLease;
pub use secret_rotation::{RotationCount, SEALED_COLUMNS, SealedTable};
pub use site_config::{SiteConfig, SiteConfigCache, SiteConfigChanges};
pub use skills::{Skill, SkillChanges, SkillSummary, SkillWrite};
pub use spend_limits::{LimitSource, SpendLimitOverride, SpendLimits, UsageStatus, format_dollars};
pub use subagents::{ChildChat, NewSubagent, Spawned, SubagentModels, WaitState};
pub use summaries::NewSummary;
pub use titles::{AnswerTitle, MAX_TITLE_ATTEMPTS, TITLE_CLAIM_TTL, TitleWork};
pub use tool_calls::{FanIn, NewToolCall, ToolResultInput, ToolResultsError, ToolStep};
pub use turns::{Completion, TakenTurn, TurnOutcome};
pub use usage_report::{ChatUsage, ModelUsage, UsageReport, UserUsage};
pub use user_provider_keys::{ModelForUser, SealedUserKey, UserProviderKeyStatus};
pub use user_tokens::{
    LockedUserToken, MAX_PENDING_FLOWS_PER_USER, OAuthFlow, OidcClient, StoredTokens, UserTokenKey,
};

use sqlx::PgPool;

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// The connections a turn's statements keep between uses, shared by every clone.
    kept: std::sync::Arc<kept_connections::KeptConnections>,
}

impl Store {
    /// Wraps a pool (see `db::connect_migrated`).
    pub fn new(pool: PgPool) -> Self {
        let kept = kept_connections::KeptConnections::new(pool.clone());
        Self { pool, kept }
    }

    /// The pool, for readiness probes.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, then gives back the connections this store keeps (the pool's own
    /// `close` has them given back too, by `store::kept_connections`'s sweep, within
    /// moments): waits for every connection still in use, as `PgPool::close` does.
    pub async fn close(&self) {
        // `close` marks the pool closed when called, before its future waits: from then on
        // nothing is kept.
        let closing = self.pool.close();
        self.kept.give_back();
        closing.await;
    }

    /// How many connections a turn's statements may keep out of the pool between uses
    /// (`store::kept_connections`), and how many they keep now.
    pub fn kept_connections(&self) -> KeptCount {
        self.kept.count()
    }

    /// Cheap liveness query for `/readyz`.
    pub async fn ping(&self) -> Result<(), crate::StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The columns of `domain::Message`, in one place for every query that returns messages.
pub(crate) const MESSAGE_COLUMNS: &str = "id, chat_id, turn_id, role, step, content, model, usage, cost_micros, interrupted, kind, compacted_through, created_at, superseded_at";

/// `Ok` when a write changed a row, [`StoreError::NotFound`] when it matched none: the
/// answer of an update or delete addressed by id.
pub(crate) fn changed_one(done: sqlx::postgres::PgQueryResult) -> Result<(), crate::StoreError> {
    if done.rows_affected() == 0 {
        return Err(crate::StoreError::NotFound);
    }
    Ok(())
}

/// Takes the chat row lock that orders every change to a chat's turns and queue (sending,
/// finishing, interrupting, recovering), always before any turn row. With `owner`, a chat
/// of someone else is [`StoreError::NotFound`]. A subagent's root is locked first, in the
/// same statement (`r`, which the chat's filter reads before the chat row is locked): see
/// [`lock_root_of`].
pub(crate) async fn lock_chat(
    tx: &mut sqlx::PgConnection,
    chat_id: uuid::Uuid,
    owner: Option<uuid::Uuid>,
) -> Result<(), crate::StoreError> {
    let found: Option<i32> = sqlx::query_scalar(
        "WITH r AS (
            SELECT id FROM chats WHERE id = (SELECT root_chat_id FROM chats WHERE id = $1) FOR UPDATE
         )
         SELECT 1 FROM chats WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)
                AND (SELECT count(*) FROM r) >= 0
         FOR UPDATE",
    )
    .bind(chat_id)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    found.map(|_| ()).ok_or(crate::StoreError::NotFound)
}

/// Takes the row lock of the chat's root when the chat is a subagent (nothing for a root
/// chat), as the first lock of a failing turn's transaction (`Store::fail_turn`): a finish
/// moves the child's `last_activity_at`, and a trigger the root's, so it and a transaction
/// that locks the root, then its children (archive, spawn) wait for each other instead of
/// deadlocking (ARCHITECTURE.md §5). A completing turn takes the same lock in the
/// statement that stores its answer (`r` in `turns::end_step_sql`, run by `turns::COMPLETE_TURN`), a new turn in
/// [`lock_chat`].
pub(crate) async fn lock_root_of(
    tx: &mut sqlx::PgConnection,
    chat_id: uuid::Uuid,
) -> Result<(), crate::StoreError> {
    sqlx::query(
        "SELECT 1 FROM chats WHERE id = (SELECT root_chat_id FROM chats WHERE id = $1) FOR UPDATE",
    )
    .bind(chat_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Most queued messages a chat may hold (ARCHITECTURE.md §3); the next one is a 409.
pub const MAX_QUEUED_MESSAGES: i64 = 20;
