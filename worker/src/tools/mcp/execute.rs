//! Runs a stored call of source `mcp` (ARCHITECTURE.md §7). The step offered the tool, but
//! the call may run later, on any worker: the server's config is read again first, so a
//! server disabled, deleted or dropped from the chat since, or a tool its deny list now
//! hides, runs nothing and the model gets an error saying so. Then the credentials are
//! opened and the tool is called under the worker's [`super::McpLimits`]; an MCP error, a
//! timeout, an oversize result or a tool that reports failure becomes an error result, and
//! the turn goes on.

use agentq_core::{StoreError, domain::ToolCallRow, store::Store};
use serde_json::{Value, json};

use super::{McpCallOutput, McpTools, split_tool_name};
use crate::tools::ToolOutput;

impl McpTools {
    /// Runs `call` (stored with source `mcp`). `Err` only when the database fails (the job
    /// is retried); every other failure is the call's error result.
    pub async fn execute(
        &self,
        store: &Store,
        call: &ToolCallRow,
    ) -> Result<ToolOutput, StoreError> {
        let name = call.name.as_str();
        let Some((slug, tool)) = split_tool_name(name) else {
            return Ok(Err(format!(
                "`{name}` is not the name of an MCP tool; nothing was run"
            )));
        };
        let Some((server, owner)) = store.effective_mcp_server(call.chat_id, slug).await? else {
            return Ok(Err(format!(
                "MCP server `{slug}` is no longer available to this chat (disabled, removed, or \
                 not chosen for it), so `{name}` was not run"
            )));
        };
        if !server.offers_tool(tool) {
            return Ok(Err(format!(
                "MCP server `{slug}` no longer offers `{tool}` (its tool lists changed), so \
                 `{name}` was not run"
            )));
        }
        let Value::Object(arguments) = &call.arguments else {
            return Ok(Err(format!(
                "the arguments of `{name}` must be a JSON object; nothing was run"
            )));
        };
        let auth = match self.auth(store, &server, owner).await {
            Ok(auth) => auth,
            Err(e) => return Ok(Err(super::without_url(&server, &e.to_string()))),
        };
        Ok(
            match self
                .client()
                .call_tool(&server, &auth, tool, arguments.clone())
                .await
            {
                Ok(output) if output.is_error => Err(if output.text.is_empty() {
                    format!("`{name}` reported a failure without a message")
                } else {
                    output.text
                }),
                Ok(output) => Ok(result_value(output)),
                Err(e) => {
                    let retryable = e.retryable();
                    let e = super::without_url(&server, &e.to_string());
                    tracing::info!(mcp.server = %slug, tool = %tool, error = %e, "MCP call failed");
                    let retry = if retryable {
                        " (it may work if tried again)"
                    } else {
                        ""
                    };
                    Err(format!("{e}{retry}"))
                }
            },
        )
    }
}

/// What the model sees of a successful call: the text when the result is text only (most
/// tools), otherwise the content blocks and structured content as JSON.
pub(super) fn result_value(output: McpCallOutput) -> Value {
    let text_only = output.structured_content.is_none()
        && output
            .content
            .as_array()
            .is_some_and(|blocks| blocks.iter().all(|b| b["type"] == "text"));
    if text_only {
        return Value::String(output.text);
    }
    json!({
        "content": output.content,
        "structured_content": output.structured_content,
    })
}
