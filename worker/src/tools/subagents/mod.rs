//! The subagent tools (issue #12 item 6; ARCHITECTURE.md §7): a root chat's model hands a
//! self-contained task to a child chat and collects its answer.
//!
//! - `spawn_subagent {subagent_type, prompt, title?}` creates the child (`spawn.rs`);
//! - `wait_agent {chat_id, timeout_seconds}` completes when the child is idle (`wait.rs`);
//! - `message_agent {chat_id, message, interrupt?}` sends it another message (`message.rs`);
//! - `close_agent {chat_id}` stops and closes it (`close.rs`).
//!
//! Every answer names the child's `chat_id`, `subagent_type` and `status` (`reply.rs`).
//! A child is a chat of its own, run by the same turn engine; it is offered no subagent
//! tools (one level of children, and the store refuses a child's spawn anyway), and an
//! `explore` child only tools that change nothing (`Builtins::changes_nothing`, `read_skill`,
//! MCP tools whose `readOnlyHint` annotation is true).
//!
//! `wait_agent` never holds a worker while the child works: its call parks as `waiting` and
//! the child's finished turn re-sends its job (`agentq_core::store` module `subagents`).
//!
//! Each call runs as a `RunToolCall` job, possibly again after a lost worker: a spawn finds
//! the child its call created, a wait and a close repeat harmlessly; a `message_agent` re-run
//! after a lost worker may deliver its message twice.

mod close;
mod message;
mod reply;
mod spawn;
mod specs;
mod wait;

use agentq_core::{StoreError, domain::ToolCallRow, outcome::ChatOutcome};
use serde_json::Value;
use uuid::Uuid;

use super::{Execution, ToolContext, ToolSource};
use crate::providers::ToolSpec;

/// Most children of one chat that are not closed at once (`close_agent` frees a place).
pub const MAX_LIVE_SUBAGENTS: i64 = 5;
/// Most children one chat ever spawns, so its family (and its children list) is bounded.
pub const MAX_SUBAGENTS_PER_CHAT: i64 = 50;
/// Largest `prompt` or `message` a subagent tool accepts.
pub const MAX_SUBAGENT_PROMPT_BYTES: usize = 32 * 1024;
/// Longest `wait_agent` timeout (`timeout_seconds` defaults to 300).
pub const MAX_WAIT_SECS: u64 = 3600;
/// Most bytes of a child's answer `wait_agent` returns (the rest is in the child chat).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Which subagent tools a step offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubagentTools {
    /// None: the chat is a subagent itself.
    #[default]
    None,
    /// A root chat: all four, `spawn_subagent` of either type.
    All,
    /// Plan mode: `spawn_subagent` of type `explore` only, and `wait_agent`.
    ExploreOnly,
}

impl SubagentTools {
    /// What a chat gets: nothing for a subagent (`parent_chat_id` set); in plan mode
    /// `explore` children only; else all.
    pub fn for_chat(parent_chat_id: Option<Uuid>, plan_mode: bool) -> Self {
        match (parent_chat_id, plan_mode) {
            (Some(_), _) => Self::None,
            (None, true) => Self::ExploreOnly,
            (None, false) => Self::All,
        }
    }
}

/// The specs a step offers, with the source each is recorded under.
pub(super) fn specs(tools: SubagentTools) -> Vec<(ToolSpec, ToolSource)> {
    match tools {
        SubagentTools::None => Vec::new(),
        SubagentTools::All => [
            specs::spawn(false),
            specs::wait(),
            specs::message(),
            specs::close(),
        ]
        .into_iter()
        .map(|s| (s, ToolSource::Subagent))
        .collect(),
        SubagentTools::ExploreOnly => [specs::spawn(true), specs::wait()]
            .into_iter()
            .map(|s| (s, ToolSource::ExploreSubagent))
            .collect(),
    }
}

/// Runs a subagent call (`explore_only`: recorded from a plan-mode offer).
pub(super) async fn execute(
    ctx: &ToolContext<'_>,
    call: &ToolCallRow,
    explore_only: bool,
) -> Result<Execution, StoreError> {
    let done = |output| Ok(Execution::Done(output));
    match call.name.as_str() {
        specs::SPAWN => done(spawn::run(ctx, call, explore_only).await?),
        specs::WAIT => wait::run(ctx, call).await,
        specs::MESSAGE if !explore_only => done(message::run(ctx, call).await?),
        specs::CLOSE if !explore_only => done(close::run(ctx, call).await?),
        name => done(Err(format!(
            "`{name}` is not a subagent tool offered in this step; nothing was run"
        ))),
    }
}

/// Publishes a child's committed change and enqueues its jobs. A failed enqueue undoes
/// nothing: the change is committed, and recovery re-sends what waits too long.
async fn announce(ctx: &ToolContext<'_>, outcome: ChatOutcome) {
    if let Err(e) = outcome.announce(ctx.events, ctx.producer).await {
        tracing::warn!(error = %e, "a subagent's job was not enqueued; recovery will send it");
    }
}

/// The argument `name` as a string, or the error result saying what it must be.
fn string_arg<'a>(arguments: &'a Value, name: &str) -> Result<&'a str, String> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{name}` must be a string"))
}

/// `chat_id`: the child a call names.
fn chat_id_arg(arguments: &Value) -> Result<Uuid, String> {
    string_arg(arguments, "chat_id")?
        .trim()
        .parse()
        .map_err(|_| "`chat_id` must be the `chat_id` spawn_subagent returned (a UUID)".to_owned())
}

/// A prompt or message: non-empty, at most [`MAX_SUBAGENT_PROMPT_BYTES`].
fn text_arg<'a>(arguments: &'a Value, name: &str) -> Result<&'a str, String> {
    let text = string_arg(arguments, name)?;
    if text.trim().is_empty() {
        return Err(format!("`{name}` must not be empty"));
    }
    if text.len() > MAX_SUBAGENT_PROMPT_BYTES {
        return Err(format!(
            "`{name}` is {} bytes; at most {MAX_SUBAGENT_PROMPT_BYTES} are accepted",
            text.len()
        ));
    }
    Ok(text)
}

/// The error result for a `chat_id` that is not a child of the calling chat.
fn not_a_child(chat_id: Uuid) -> String {
    format!("no subagent of this chat has chat_id {chat_id}")
}
