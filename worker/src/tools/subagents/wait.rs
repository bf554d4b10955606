//! `wait_agent`: completes when the child is idle (`waiting` or `error`) with its last
//! answer, or with `timed_out` after `timeout_seconds`. Until then the call is parked, not
//! run: `Store::wait_for_child` moves it to `waiting`, and the child's finished turn (or
//! recovery, past the deadline or after a lost nudge) sends its job again.

use std::time::Duration;

use agentq_core::{StoreError, domain::ToolCallRow, store::WaitState};
use serde_json::{Value, json};

use super::{MAX_ANSWER_BYTES, MAX_WAIT_SECS, ToolContext, chat_id_arg, not_a_child, reply};
use crate::tools::Execution;

/// `timeout_seconds` when the model gives none.
const DEFAULT_WAIT_SECS: u64 = 300;

/// Runs one `wait_agent` call: its result, or [`Execution::Waiting`] when it parked.
pub async fn run(ctx: &ToolContext<'_>, call: &ToolCallRow) -> Result<Execution, StoreError> {
    let done = |output| Ok(Execution::Done(output));
    let child_id = match chat_id_arg(&call.arguments) {
        Ok(id) => id,
        Err(e) => return done(Err(e)),
    };
    let timeout = match call.arguments.get("timeout_seconds") {
        None | Some(Value::Null) => DEFAULT_WAIT_SECS,
        Some(v) => match v.as_u64().filter(|&s| s <= MAX_WAIT_SECS) {
            Some(secs) => secs,
            None => {
                return done(Err(format!(
                    "`timeout_seconds` must be a whole number from 0 to {MAX_WAIT_SECS}"
                )));
            }
        },
    };
    let state = ctx
        .store
        .wait_for_child(
            call.id,
            ctx.lease_owner,
            call.chat_id,
            child_id,
            Duration::from_secs(timeout),
        )
        .await?;
    match state {
        WaitState::Finished(child) => {
            let answer = ctx.store.last_answer(child.id, MAX_ANSWER_BYTES).await?;
            let (text, truncated) = answer.unwrap_or_default();
            let mut extra = json!({ "result": text, "truncated": truncated });
            if let Some(error) = &child.last_error {
                extra["error"] = json!(error.message);
            }
            done(Ok(reply::child(&child, extra)))
        }
        WaitState::TimedOut(child) => done(Ok(reply::child(
            &child,
            json!({
                "timed_out": true,
                "note": format!("The subagent is still working after {timeout} s; wait again or close it.")
            }),
        ))),
        WaitState::Parked | WaitState::LeaseLost => Ok(Execution::Waiting),
        WaitState::NotAChild => done(Err(not_a_child(child_id))),
    }
}
