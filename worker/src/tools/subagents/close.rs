//! `close_agent`: the child is closed (`closed_at`) with its queue dropped (`Store::close_child_chat`),
//! then its unfinished turn is interrupted, so it stops and starts nothing after. A closed
//! child stays readable (its messages, the parent's children list) and frees its place
//! among the parent's open subagents. Closing twice is harmless.

use agentq_core::{StoreError, domain::ToolCallRow};
use serde_json::json;

use super::{ToolContext, chat_id_arg, message::stop_turn, not_a_child, reply};
use crate::tools::ToolOutput;

/// Runs one `close_agent` call.
pub async fn run(ctx: &ToolContext<'_>, call: &ToolCallRow) -> Result<ToolOutput, StoreError> {
    let child_id = match chat_id_arg(&call.arguments) {
        Ok(id) => id,
        Err(e) => return Ok(Err(e)),
    };
    let Some(child) = ctx.store.close_child_chat(call.chat_id, child_id).await? else {
        return Ok(Err(not_a_child(child_id)));
    };
    stop_turn(ctx, child.id, child.owner_id).await?;
    let child = ctx
        .store
        .child_chat(call.chat_id, child_id)
        .await?
        .unwrap_or(child);
    Ok(Ok(reply::child(&child, json!({}))))
}
