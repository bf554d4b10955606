//! What can go wrong talking to an MCP server, in terms the registry can turn into a tool
//! error result for the model (and a log line for people). Messages name the server by
//! slug and never carry credentials.

use std::time::Duration;

/// A failed list or call. [`McpError::to_string`] is fit to show the model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McpError {
    /// The server could not be reached (refused, DNS, TLS, connect timeout, HTTP error).
    #[error("MCP server `{server}` is unreachable: {detail}")]
    Unreachable {
        /// The server's slug.
        server: String,
        /// What failed.
        detail: String,
    },
    /// The server did not answer within the limit.
    #[error("MCP server `{server}` did not answer within {}s", after.as_secs_f32())]
    Timeout {
        /// The server's slug.
        server: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// The answer is larger than agentq accepts.
    #[error("MCP server `{server}` returned more than {limit} bytes; the result was refused")]
    TooLarge {
        /// The server's slug.
        server: String,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The server refused the credentials (HTTP 401/403).
    #[error("MCP server `{server}` refused agentq's credentials: {detail}")]
    Unauthorized {
        /// The server's slug.
        server: String,
        /// What it said.
        detail: String,
    },
    /// The server answered with an MCP error (unknown tool, bad arguments, ...).
    #[error("MCP server `{server}` answered with an error: {detail}")]
    Protocol {
        /// The server's slug.
        server: String,
        /// The MCP error's message.
        detail: String,
    },
    /// agentq cannot build the request (a secret that cannot be opened, a bad header).
    #[error("MCP server `{server}` is misconfigured: {detail}")]
    Config {
        /// The server's slug.
        server: String,
        /// What is wrong.
        detail: String,
    },
}

impl McpError {
    /// Whether the same request may succeed later (the registry may say so to the model).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            McpError::Unreachable { .. } | McpError::Timeout { .. }
        )
    }
}
