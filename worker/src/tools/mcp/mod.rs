//! The MCP client (issue #12, item 4; ARCHITECTURE.md §7): lists a configured server's
//! tools and calls one, over MCP's streamable HTTP transport (the `rmcp` crate). The tool
//! registry decides which servers and tools a turn offers (allow/deny lists, plan mode);
//! this module only talks to a server and turns every way that can fail into an
//! [`McpError`] the registry answers the model with, so a broken server costs a tool error,
//! never the turn.
//!
//! ```text
//!   registry ──McpAuth::for_server(record, secrets, user_token)──▶ headers to send
//!            ──McpClient::list_tools(record, auth)──▶ [McpTool] (cached per worker)
//!            ──McpClient::call_tool(record, auth, name, args)──▶ McpCallOutput | McpError
//! ```
//!
//! Each list or call opens its own MCP session (initialize, request, close): a tool call is
//! a job that may run on any worker, so there is no session worth keeping between them.
//! Every operation is bounded by [`McpLimits`] (worker flags `--mcp-*`): a connect
//! timeout, a timeout for the whole list or call, and a cap on the result's size.
//!
//! [`McpTools`] is the registry's MCP source: what a step offers ([`offer`]) and how a
//! stored call runs ([`execute`]), with the credentials of each server ([`user_token`] for
//! the per-user types).

mod auth;
mod cache;
mod client;
mod error;
mod execute;
mod offer;
mod user_token;

use std::time::Duration;

use agentq_core::{
    config::WorkerConfig,
    secrets::SecretBox,
    store::{McpAuthType, McpServerRecord, Store},
};
use uuid::Uuid;

pub use auth::McpAuth;
pub use client::{McpCallOutput, McpClient, McpTool};
pub use error::McpError;
pub use offer::{McpOffer, McpOfferedTool, UnavailableServer};
pub use user_token::user_token;

/// The MCP tool source of one worker: the client (its connection pool and tools-list
/// cache, shared by every turn and call of the process) and the key that opens stored
/// credentials.
pub struct McpTools {
    client: McpClient,
    secrets: Option<SecretBox>,
}

impl std::fmt::Debug for McpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTools")
            .field("client", &self.client)
            .field("secrets", &self.secrets.as_ref().map(|_| "***"))
            .finish()
    }
}

impl McpTools {
    /// The source over `client`, opening credentials with `secrets`.
    pub fn new(client: McpClient, secrets: Option<SecretBox>) -> Self {
        Self { client, secrets }
    }

    /// The client.
    pub fn client(&self) -> &McpClient {
        &self.client
    }

    /// The headers a request of `user` (the chat's owner) to `server` carries.
    pub async fn auth(
        &self,
        store: &Store,
        server: &McpServerRecord,
        user: Uuid,
    ) -> Result<McpAuth, McpError> {
        let token = match server.auth_type {
            McpAuthType::Oauth2 | McpAuthType::UserOidc => {
                user_token(store, self.secrets.as_ref(), server, user).await?
            }
            McpAuthType::None | McpAuthType::ApiKey | McpAuthType::CustomHeaders => None,
        };
        McpAuth::for_server(server, self.secrets.as_ref(), token.as_deref())
    }
}

/// The knobs of the MCP client; [`McpLimits::default`] holds the documented defaults.
#[derive(Debug, Clone, Copy)]
pub struct McpLimits {
    /// Longest wait for a TCP/TLS connection to a server (default 5 s): a server that is
    /// down fails fast instead of eating the call's timeout.
    pub connect_timeout: Duration,
    /// Longest a `tools/list`, session set-up included, may take (default 15 s).
    pub list_timeout: Duration,
    /// Longest a `tools/call`, session set-up included, may take (default 60 s).
    pub call_timeout: Duration,
    /// Largest tool result accepted, in bytes of its JSON content (default 256 KiB): the
    /// result goes into the conversation and is sent to the model on every later step.
    pub max_result_bytes: usize,
    /// Largest `tools/list` answer accepted, in bytes (default 1 MiB).
    pub max_list_bytes: usize,
    /// How long a server's tool list is reused before it is asked again (default 60 s);
    /// a change of the server's config invalidates it at once.
    pub tools_cache_ttl: Duration,
}

impl Default for McpLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            list_timeout: Duration::from_secs(15),
            call_timeout: Duration::from_secs(60),
            max_result_bytes: 256 * 1024,
            max_list_bytes: 1024 * 1024,
            tools_cache_ttl: Duration::from_secs(60),
        }
    }
}

impl McpLimits {
    /// The limits a worker's flags set (`--mcp-connect-timeout-secs`, ...).
    pub fn from_config(worker: &WorkerConfig) -> Self {
        Self {
            connect_timeout: Duration::from_secs(worker.mcp_connect_timeout_secs.max(1)),
            list_timeout: Duration::from_secs(worker.mcp_list_timeout_secs.max(1)),
            call_timeout: Duration::from_secs(worker.mcp_call_timeout_secs.max(1)),
            max_result_bytes: worker.mcp_max_result_bytes,
            max_list_bytes: worker.mcp_max_list_bytes,
            tools_cache_ttl: Duration::from_millis(worker.mcp_tools_cache_ms),
        }
    }
}

/// The name the model sees for `tool` of the server with `slug`: `<slug>__<tool>`.
pub fn qualified_tool_name(slug: &str, tool: &str) -> String {
    format!("{slug}{SLUG_SEPARATOR}{tool}")
}

/// `text` (an error about `server`) without the server's URL: the URL may carry a secret
/// in its query, and chat members who see the error are not shown URLs
/// (`GET /api/v1/mcp-servers` hides them). Both the URL as configured and as parsed (how
/// HTTP errors print it) are replaced.
pub fn without_url(server: &McpServerRecord, text: &str) -> String {
    let mut text = text.replace(&server.url, "<the server's URL>");
    if let Ok(parsed) = url::Url::parse(&server.url) {
        text = text.replace(parsed.as_str(), "<the server's URL>");
    }
    text
}

/// The slug and the server's tool name in a name the model called, if it has the
/// `<slug>__<tool>` shape. A slug never holds `_` (`migrations/20261202000400_mcp_servers.sql`),
/// so the first `__` ends it even when the tool's own name holds `__`.
pub fn split_tool_name(name: &str) -> Option<(&str, &str)> {
    let (slug, tool) = name.split_once(SLUG_SEPARATOR)?;
    (!slug.is_empty() && !tool.is_empty()).then_some((slug, tool))
}

/// Between a server's slug and its tool's name.
pub const SLUG_SEPARATOR: &str = "__";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_defaults_are_the_documented_limits() {
        let worker: WorkerConfig = agentq_core::config::defaults();
        let (flags, documented) = (McpLimits::from_config(&worker), McpLimits::default());
        assert_eq!(flags.connect_timeout, documented.connect_timeout);
        assert_eq!(flags.list_timeout, documented.list_timeout);
        assert_eq!(flags.call_timeout, documented.call_timeout);
        assert_eq!(flags.max_result_bytes, documented.max_result_bytes);
        assert_eq!(flags.max_list_bytes, documented.max_list_bytes);
        assert_eq!(flags.tools_cache_ttl, documented.tools_cache_ttl);
    }

    #[test]
    fn tool_names_round_trip_even_when_the_tool_holds_the_separator() {
        assert_eq!(qualified_tool_name("docs", "search"), "docs__search");
        assert_eq!(split_tool_name("docs__search"), Some(("docs", "search")));
        assert_eq!(split_tool_name("my-docs__a__b"), Some(("my-docs", "a__b")));
        assert_eq!(split_tool_name("current_time"), None);
        assert_eq!(split_tool_name("__x"), None);
        assert_eq!(split_tool_name("x__"), None);
    }
}

/// Tool names as models send them back (docs/fuzzing.md).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::config as fuzz_config;

    proptest! {
        #![proptest_config(fuzz_config(2000))]

        /// Every slug the API accepts and every non-empty tool name split back from their
        /// qualified name, whatever the tool name holds.
        #[test]
        fn fuzz_a_qualified_tool_name_splits_back(
            slug in "[a-z0-9]{1,6}(-[a-z0-9]{1,6}){0,3}",
            tool in "[a-z_]{0,3}(__)?[^\u{0}]{0,8}",
        ) {
            prop_assume!(!tool.is_empty());
            let name = qualified_tool_name(&slug, &tool);
            prop_assert_eq!(split_tool_name(&name), Some((slug.as_str(), tool.as_str())));
        }

        /// Any name a model sends: no panic, and a split is a real split of it.
        #[test]
        fn fuzz_any_name_splits_into_what_it_holds(name in any::<String>()) {
            if let Some((slug, tool)) = split_tool_name(&name) {
                prop_assert_eq!(qualified_tool_name(slug, tool), name.clone());
                prop_assert!(!slug.contains(SLUG_SEPARATOR));
            }
        }
    }
}
