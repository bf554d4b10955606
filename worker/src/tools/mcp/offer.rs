//! What a step offers of the chat's MCP servers (issue #12, item 4; ARCHITECTURE.md §7):
//! every tool of every server [`Store::effective_mcp_servers`] gives the chat that the
//! server's allow and deny lists let through (deny wins), as `<slug>__<tool>` with the
//! server's description and JSON schema. Tool lists come from the per-worker cache
//! ([`super::McpClient::list_tools`]); servers are asked at the same time, so one slow server
//! costs the step at most the list timeout, not the sum.
//!
//! A server that cannot be listed (down, slow, refusing the credentials) is left out of
//! this step's offer and named in [`McpOffer::unavailable`], which the system message's
//! tool guidance reports, so the model can tell the user instead of calling a tool that is
//! not there. A call to it anyway is `not_offered`: nothing runs, the model gets an error.

use agentq_core::{
    StoreError,
    store::{McpServerRecord, Store},
};
use uuid::Uuid;

use super::{McpTools, qualified_tool_name};
use crate::providers::ToolSpec;

/// One MCP tool a step may offer.
#[derive(Debug, Clone)]
pub struct McpOfferedTool {
    /// What the model is told (`<slug>__<tool>`).
    pub spec: ToolSpec,
    /// Whether its server's tools are offered in plan mode.
    pub allow_in_plan_mode: bool,
    /// The server's `readOnlyHint` for the tool: only such tools are offered to `explore`
    /// subagents.
    pub read_only: bool,
}

/// A server whose tools are not offered this step because it could not be listed.
#[derive(Debug, Clone)]
pub struct UnavailableServer {
    /// Its slug.
    pub slug: String,
    /// Why (an [`super::McpError`] message: no credentials in it).
    pub reason: String,
    /// Whether its tools would be offered in plan mode.
    pub allow_in_plan_mode: bool,
}

/// The MCP part of one step's offer, read before the request is built.
#[derive(Debug, Clone, Default)]
pub struct McpOffer {
    /// The tools, server by server (by slug), each server's in its own order.
    pub tools: Vec<McpOfferedTool>,
    /// Servers that apply to the chat but could not be listed.
    pub unavailable: Vec<UnavailableServer>,
}

impl McpTools {
    /// The MCP tools a step of `chat_id` (owned by `owner`) may offer; a plan step (or a
    /// step of a plan-mode parent's subagent) lists only servers with
    /// `allow_in_plan_mode`.
    /// `Err` only when the database fails; a failing server only lands in
    /// [`McpOffer::unavailable`].
    pub async fn offer(
        &self,
        store: &Store,
        chat_id: Uuid,
        owner: Uuid,
        plan_servers_only: bool,
    ) -> Result<McpOffer, StoreError> {
        let mut servers = store.effective_mcp_servers(chat_id).await?;
        servers.retain(|server| server.allow_in_plan_mode || !plan_servers_only);
        if servers.is_empty() {
            return Ok(McpOffer::default());
        }
        let lists = futures::future::join_all(
            servers
                .iter()
                .map(|server| self.listed(store, server, owner)),
        )
        .await;
        let mut offer = McpOffer::default();
        for (server, listed) in servers.iter().zip(lists) {
            match listed {
                Ok(tools) => offer.tools.extend(tools),
                Err(reason) => {
                    tracing::info!(mcp.server = %server.slug, error = %reason, "MCP server unavailable; its tools are not offered this step");
                    offer.unavailable.push(UnavailableServer {
                        slug: server.slug.clone(),
                        reason,
                        allow_in_plan_mode: server.allow_in_plan_mode,
                    });
                }
            }
        }
        Ok(offer)
    }

    /// `server`'s tools its lists let through, or why it could not be listed.
    async fn listed(
        &self,
        store: &Store,
        server: &McpServerRecord,
        owner: Uuid,
    ) -> Result<Vec<McpOfferedTool>, String> {
        let auth = self
            .auth(store, server, owner)
            .await
            .map_err(|e| super::without_url(server, &e.to_string()))?;
        let tools = self
            .client()
            .list_tools(server, &auth)
            .await
            .map_err(|e| super::without_url(server, &e.to_string()))?;
        Ok(offered(server, &tools))
    }
}

/// Longest tool description sent to the model (characters; the rest is cut).
pub const MAX_TOOL_DESCRIPTION_CHARS: usize = 4096;

/// The specs of `tools` that `server`'s allow and deny lists let through and that a
/// provider accepts: the name as the model sees it is 1-64 letters, digits, `_` or `-`, and
/// the arguments are a JSON Schema object. A server's tool that breaks either would make
/// the provider refuse every step of every chat that has the server, so it is left out
/// (and logged); a description is cut at [`MAX_TOOL_DESCRIPTION_CHARS`].
fn offered(server: &McpServerRecord, tools: &[super::McpTool]) -> Vec<McpOfferedTool> {
    tools
        .iter()
        .filter(|t| server.offers_tool(&t.name))
        .filter_map(|t| {
            let name = qualified_tool_name(&server.slug, &t.name);
            let name_ok = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let schema_ok = t.input_schema.get("type").and_then(|v| v.as_str()) == Some("object");
            if !(name_ok && schema_ok) {
                tracing::info!(
                    mcp.server = %server.slug,
                    tool = %t.name.escape_debug(),
                    "MCP tool left out: its name or argument schema is not one a provider accepts"
                );
                return None;
            }
            Some(McpOfferedTool {
                spec: ToolSpec {
                    name,
                    description: t
                        .description
                        .chars()
                        .take(MAX_TOOL_DESCRIPTION_CHARS)
                        .collect(),
                    input_schema: t.input_schema.clone(),
                },
                allow_in_plan_mode: server.allow_in_plan_mode,
                read_only: t.read_only,
            })
        })
        .collect()
}
