//! What the model is told about each subagent tool: names, descriptions, JSON schemas.

use serde_json::json;

use super::{MAX_SUBAGENT_PROMPT_BYTES, MAX_WAIT_SECS};
use crate::providers::ToolSpec;

/// `spawn_subagent`.
pub const SPAWN: &str = "spawn_subagent";
/// `wait_agent`.
pub const WAIT: &str = "wait_agent";
/// `message_agent`.
pub const MESSAGE: &str = "message_agent";
/// `close_agent`.
pub const CLOSE: &str = "close_agent";

fn chat_id() -> serde_json::Value {
    json!({ "type": "string", "description": "The subagent's chat_id, as spawn_subagent returned it." })
}

/// `spawn_subagent`; `explore_only` in plan mode.
pub fn spawn(explore_only: bool) -> ToolSpec {
    let types: &[&str] = if explore_only {
        &["explore"]
    } else {
        &["general", "explore"]
    };
    ToolSpec {
        name: SPAWN.into(),
        description: format!(
            "Starts a subagent: a new chat that works on `prompt` on its own and answers once. \
             `explore` subagents can only read (no tool that changes anything); `general` ones \
             get the usual tools. Returns its chat_id at once; call {WAIT} for its answer."
        ),
        input_schema: std::sync::Arc::new(json!({
            "type": "object",
            "properties": {
                "subagent_type": { "type": "string", "enum": types },
                "prompt": {
                    "type": "string",
                    "description": format!("The whole task: the subagent sees nothing else (at most {MAX_SUBAGENT_PROMPT_BYTES} bytes).")
                },
                "title": { "type": "string", "description": "A short title for the subagent's chat." }
            },
            "required": ["subagent_type", "prompt"]
        })),
    }
}

/// `wait_agent`.
pub fn wait() -> ToolSpec {
    ToolSpec {
        name: WAIT.into(),
        description: "Waits until a subagent has answered (or failed) and returns its last \
                      answer; returns `timed_out` if it is still working after timeout_seconds."
            .into(),
        input_schema: std::sync::Arc::new(json!({
            "type": "object",
            "properties": {
                "chat_id": chat_id(),
                "timeout_seconds": { "type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECS, "default": 300 }
            },
            "required": ["chat_id"]
        })),
    }
}

/// `message_agent`.
pub fn message() -> ToolSpec {
    ToolSpec {
        name: MESSAGE.into(),
        description: format!(
            "Sends a subagent another message: it starts at once if the subagent is idle, else \
             it waits for the running turn (or interrupts it with `interrupt`). Call {WAIT} for \
             the answer."
        ),
        input_schema: std::sync::Arc::new(json!({
            "type": "object",
            "properties": {
                "chat_id": chat_id(),
                "message": { "type": "string" },
                "interrupt": { "type": "boolean", "default": false }
            },
            "required": ["chat_id", "message"]
        })),
    }
}

/// `close_agent`.
pub fn close() -> ToolSpec {
    ToolSpec {
        name: CLOSE.into(),
        description: "Stops a subagent if it is working and closes it: it takes no more \
                      messages, and frees its place among this chat's open subagents."
            .into(),
        input_schema: std::sync::Arc::new(json!({
            "type": "object",
            "properties": { "chat_id": chat_id() },
            "required": ["chat_id"]
        })),
    }
}
