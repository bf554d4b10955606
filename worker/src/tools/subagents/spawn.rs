//! `spawn_subagent`: one transaction creates the child chat with its first message and
//! queued turn (`Store::spawn_subagent`, idempotent per call), then `TurnStarted` on the
//! child's chat enqueues its turn like any new chat's.

use agentq_core::{
    StoreError,
    domain::ToolCallRow,
    outcome::ChatOutcome,
    store::{NewSubagent, Spawned},
};
use serde_json::{Value, json};

use super::{
    MAX_LIVE_SUBAGENTS, MAX_SUBAGENTS_PER_CHAT, ToolContext, announce, reply, string_arg, text_arg,
};
use crate::tools::ToolOutput;

/// Runs one `spawn_subagent` call.
pub async fn run(
    ctx: &ToolContext<'_>,
    call: &ToolCallRow,
    explore_only: bool,
) -> Result<ToolOutput, StoreError> {
    let args = &call.arguments;
    let subagent_type = match string_arg(args, "subagent_type") {
        Ok(t @ ("general" | "explore")) => t,
        Ok(other) => {
            return Ok(Err(format!(
                "`subagent_type` must be `general` or `explore`, not `{other}`"
            )));
        }
        Err(e) => return Ok(Err(e)),
    };
    if explore_only && subagent_type != "explore" {
        return Ok(Err(
            "in plan mode only `explore` subagents may be spawned (they change nothing)".into(),
        ));
    }
    let prompt = match text_arg(args, "prompt") {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let title = match args.get("title") {
        None | Some(Value::Null) => "",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Ok(Err("`title` must be a string".into())),
    };
    let spawned = ctx
        .store
        .spawn_subagent(&NewSubagent {
            parent_chat_id: call.chat_id,
            call_id: call.id,
            subagent_type,
            prompt,
            title,
            max_live: MAX_LIVE_SUBAGENTS,
            max_total: MAX_SUBAGENTS_PER_CHAT,
        })
        .await?;
    Ok(match spawned {
        Spawned::Created {
            child,
            message,
            turn_id,
            list_entry,
        } => {
            tracing::info!(child.id = %child.id, subagent_type, "spawned a subagent");
            announce(
                ctx,
                ChatOutcome::Created {
                    chat_id: child.id,
                    message: *message,
                    turn_id,
                    list_entry,
                },
            )
            .await;
            Ok(reply::child(
                &child,
                json!({ "note": "The subagent is working; call wait_agent with its chat_id for its answer." }),
            ))
        }
        Spawned::Existing(child) => Ok(reply::child(&child, json!({}))),
        Spawned::Refused(why) => Err(why),
    })
}
