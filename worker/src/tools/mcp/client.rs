//! Talking to one MCP server: list its tools, call one. See the module page (`mcp`) for
//! the session-per-operation choice and the limits.

use std::{sync::Arc, time::Duration};

use agentq_core::store::McpServerRecord;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ClientConfig},
    service::ServiceError,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde::Serialize;

use super::{McpAuth, McpError, McpLimits, cache::ToolsCache};

/// One tool a server offers, as the registry shows it to the model (under
/// `<slug>__<name>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McpTool {
    /// The server's name for it.
    pub name: String,
    /// What it does ('' when the server says nothing).
    pub description: String,
    /// JSON Schema of its arguments (an object schema), shared with every offer of it.
    #[serde(serialize_with = "crate::providers::shared_json")]
    pub input_schema: Arc<serde_json::Value>,
    /// The server's `readOnlyHint` annotation (false when absent): what `explore`
    /// subagents may use. A hint from the server, not a guarantee.
    pub read_only: bool,
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McpCallOutput {
    /// The MCP content blocks, as JSON (`[{"type": "text", "text": ...}, ...]`).
    pub content: serde_json::Value,
    /// The text blocks joined by newlines: what most models need.
    pub text: String,
    /// Structured content, when the server sent any.
    pub structured_content: Option<serde_json::Value>,
    /// The tool itself reported a failure (`isError`): still an answer for the model.
    pub is_error: bool,
}

/// The MCP client of one worker: an HTTP connection pool, the limits and the tools-list
/// cache. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct McpClient {
    http: reqwest::Client,
    limits: McpLimits,
    cache: ToolsCache,
}

impl McpClient {
    /// A client with `limits`.
    pub fn new(limits: McpLimits) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            // A configured URL is the endpoint; a redirect elsewhere would carry the
            // credentials to a host nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("building an HTTP client with these settings cannot fail");
        Self {
            http,
            limits,
            cache: ToolsCache::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &McpLimits {
        &self.limits
    }

    /// Every tool `server` lists, unfiltered (the registry applies
    /// [`McpServerRecord::offers_tool`] and plan mode). Served from the per-worker cache
    /// for the same credentials (`auth`: per user on per-user servers) while the config's
    /// `updated_at` is unchanged and the entry is younger than
    /// [`McpLimits::tools_cache_ttl`]; a failure is remembered for at most 15 s (see
    /// `cache.rs`).
    pub async fn list_tools(
        &self,
        server: &McpServerRecord,
        auth: &McpAuth,
    ) -> Result<Arc<Vec<McpTool>>, McpError> {
        let key = self.cache.key(server.id, auth);
        if let Some(tools) = self
            .cache
            .get(key, server.updated_at, self.limits.tools_cache_ttl)
        {
            return Ok(tools);
        }
        let ttl = self.limits.tools_cache_ttl;
        if let Some(error) = self.cache.failure(key, server.updated_at, ttl) {
            return Err(error);
        }
        let max = self.limits.max_list_bytes;
        let tools = match self
            .session(
                server,
                auth,
                self.limits.list_timeout,
                max,
                |client| async move { client.list_all_tools().await },
            )
            .await
        {
            Ok(tools) => tools,
            Err(error) => {
                self.cache
                    .put_failure(key, server.updated_at, error.clone());
                return Err(error);
            }
        };
        let tools: Arc<Vec<McpTool>> = Arc::new(
            tools
                .into_iter()
                .map(|t| McpTool {
                    name: t.name.into_owned(),
                    description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                    input_schema: Arc::new(serde_json::Value::Object((*t.input_schema).clone())),
                    read_only: t
                        .annotations
                        .as_ref()
                        .and_then(|a| a.read_only_hint)
                        .unwrap_or(false),
                })
                .collect(),
        );
        self.cache.put(key, server.updated_at, Arc::clone(&tools));
        Ok(tools)
    }

    /// Calls `tool` (the server's name, without the slug) with `arguments`. A tool the
    /// server's lists hide is refused without contacting it.
    pub async fn call_tool(
        &self,
        server: &McpServerRecord,
        auth: &McpAuth,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<McpCallOutput, McpError> {
        if !server.offers_tool(tool) {
            return Err(McpError::Protocol {
                server: server.slug.clone(),
                detail: format!("the tool `{tool}` is not offered by this server's configuration"),
            });
        }
        let limit = self.limits.max_result_bytes;
        // The transport refuses bodies past twice the cap (a bound on memory); the exact
        // cap applies to the content below.
        let transport_cap = limit.saturating_mul(2).saturating_add(64 * 1024);
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let result = self
            .session(
                server,
                auth,
                self.limits.call_timeout,
                transport_cap,
                |client| async move { client.call_tool(params).await },
            )
            .await?;
        call_output(result, &server.slug, limit)
    }

    /// Opens a session to `server`, runs `op` on it and closes it, all within `timeout`.
    async fn session<T, F, Fut>(
        &self,
        server: &McpServerRecord,
        auth: &McpAuth,
        timeout: Duration,
        max_bytes: usize,
        op: F,
    ) -> Result<T, McpError>
    where
        F: FnOnce(Arc<rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let slug = server.slug.clone();
        let mut config = StreamableHttpClientTransportConfig::with_uri(server.url.clone())
            .custom_headers(auth.headers.clone())
            .max_json_response_size(max_bytes)
            .max_sse_event_size(max_bytes)
            .reinit_on_expired_session(false);
        if let Some(token) = &auth.bearer {
            // rmcp adds the `Bearer ` itself.
            config = config.auth_header(token.clone());
        }
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let work = async {
            let client = ClientConfig::default()
                .serve(transport)
                .await
                .map_err(|e| classify(&slug, &e, max_bytes))?;
            let client = Arc::new(client);
            let outcome = op(Arc::clone(&client)).await;
            if let Ok(client) = Arc::try_unwrap(client) {
                let _ = client.cancel().await;
            }
            outcome.map_err(|e| match e {
                ServiceError::McpError(data) => McpError::Protocol {
                    server: slug.clone(),
                    detail: data.message.into_owned(),
                },
                ServiceError::Timeout { timeout } => McpError::Timeout {
                    server: slug.clone(),
                    after: timeout,
                },
                // The session was up a moment ago; rmcp closes the transport without a
                // cause when an answer passes its size cap, so say that it may have.
                ServiceError::TransportClosed => McpError::Unreachable {
                    server: slug.clone(),
                    detail: format!(
                        "the connection closed before the answer arrived (an answer larger than {max_bytes} bytes is cut off this way)"
                    ),
                },
                other => classify(&slug, &other, max_bytes),
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(McpError::Timeout {
                server: slug,
                after: timeout,
            }),
        }
    }
}

/// Sorts a transport failure by what its chain of causes says: rmcp reports HTTP status,
/// size limits and connection failures as nested errors, not as one enum we could match.
fn classify(slug: &str, e: &(dyn std::error::Error + 'static), max_bytes: usize) -> McpError {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    let lower = chain.to_ascii_lowercase();
    let server = slug.to_owned();
    // A status is a number standing alone, outside the server's address: the port of
    // `http://127.0.0.1:45401/mcp` holds "401" and is no answer from the server.
    let words: Vec<&str> = lower
        .split_whitespace()
        .filter(|w| !w.contains("://"))
        .flat_map(|w| w.split(|c: char| !c.is_ascii_alphanumeric()))
        .collect();
    let status = |code: &str| words.contains(&code);
    if lower.contains("exceeded the maximum size") || lower.contains("too large") {
        McpError::TooLarge {
            server,
            limit: max_bytes,
        }
    } else if lower.contains("auth required")
        || status("401")
        || status("403")
        || lower.contains("insufficient scope")
    {
        McpError::Unauthorized {
            server,
            detail: short(&chain),
        }
    } else {
        McpError::Unreachable {
            server,
            detail: short(&chain),
        }
    }
}

/// At most 300 characters of an error chain, for a message the model reads.
fn short(text: &str) -> String {
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// What a call's result becomes: its content blocks as JSON and their text joined, or
/// [`McpError::TooLarge`] when the content and structured content take more than `limit`
/// bytes as JSON (the transport already refused bodies past about twice that).
fn call_output(
    result: CallToolResult,
    slug: &str,
    limit: usize,
) -> Result<McpCallOutput, McpError> {
    let content = serde_json::to_value(&result.content).unwrap_or_default();
    let size = serde_json::to_vec(&content).map(|v| v.len()).unwrap_or(0)
        + result
            .structured_content
            .as_ref()
            .and_then(|s| serde_json::to_vec(s).ok())
            .map_or(0, |v| v.len());
    if size > limit {
        return Err(McpError::TooLarge {
            server: slug.to_owned(),
            limit,
        });
    }
    let text = content
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    Ok(McpCallOutput {
        content,
        text,
        structured_content: result.structured_content,
        is_error: result.is_error.unwrap_or(false),
    })
}

/// How a failure's text is sorted: an HTTP status counts only as a word of its own.
#[cfg(test)]
mod classified {
    use super::*;

    fn classified(text: &str) -> McpError {
        classify("test", &std::io::Error::other(text.to_owned()), 10)
    }

    #[test]
    fn a_port_holding_401_or_403_is_not_a_status() {
        for text in [
            "Client error: error sending request for url (http://127.0.0.1:45401/mcp), when send initialize request",
            "error sending request for url (http://127.0.0.1:403/mcp): connection refused",
        ] {
            assert!(
                matches!(classified(text), McpError::Unreachable { .. }),
                "{text}"
            );
        }
    }

    #[test]
    fn a_401_or_403_answer_is_unauthorized() {
        for text in [
            "Auth required",
            "unexpected server response: 401 Unauthorized",
            "HTTP status client error (403 Forbidden) for url (http://127.0.0.1:45401/mcp)",
        ] {
            assert!(
                matches!(classified(text), McpError::Unauthorized { .. }),
                "{text}"
            );
        }
    }
}

/// Hostile tool results (docs/fuzzing.md): whatever JSON a server sends as a
/// `tools/call` result, what reaches the model is within the result cap.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::fuzzing::config as fuzz_config;

    /// JSON of any shape: U+0000, numbers past `u64` and `f64`, nesting past serde_json's
    /// depth limit.
    fn any_json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("1e400".to_owned()),
            Just("-123456789012345678901234567890".to_owned()),
            Just("18446744073709551616".to_owned()),
            any::<String>().prop_map(|s| Value::String(s).to_string()),
            Just("\"\\u0000\\ud800\"".to_owned()),
        ];
        let nested = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec(("[a-z]{1,4}", inner), 0..6).prop_map(|fields| {
                    let fields: Vec<String> = fields
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        });
        prop_oneof![
            8 => nested,
            1 => (100usize..3000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        ]
    }

    /// A content block of each kind MCP defines, and kinds it does not.
    fn block() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => any::<String>().prop_map(|t| json!({"type": "text", "text": t}).to_string()),
            1 => Just(json!({"type": "image", "data": "aGk=", "mimeType": "image/png"}).to_string()),
            1 => Just(json!({"type": "audio", "data": "aGk=", "mimeType": "audio/wav"}).to_string()),
            1 => any::<String>().prop_map(|t| json!({"type": "resource", "resource": {"uri": "file:///a", "text": t}}).to_string()),
            1 => Just(json!({"type": "resource_link", "uri": "file:///a", "name": "a"}).to_string()),
            1 => any_json().prop_map(|v| format!(r#"{{"type": "text", "text": "x", "annotations": {v}}}"#)),
            1 => any_json(),
        ]
    }

    /// A `tools/call` result as a server might send it.
    fn result() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(block(), 0..8),
            proptest::option::of(any_json()),
            proptest::option::of(prop_oneof![
                Just("true"),
                Just("false"),
                Just("null"),
                Just("1")
            ]),
        )
            .prop_map(|(blocks, structured, is_error)| {
                let mut fields = vec![format!("\"content\":[{}]", blocks.join(","))];
                if let Some(s) = structured {
                    fields.push(format!("\"structuredContent\":{s}"));
                }
                if let Some(e) = is_error {
                    fields.push(format!("\"isError\":{e}"));
                }
                format!("{{{}}}", fields.join(","))
            })
    }

    proptest! {
        #![proptest_config(fuzz_config(1000))]

        /// A result the client reads becomes a tool result for the model no larger than
        /// the cap (plus the JSON around content and structured content), or the
        /// too-large error.
        #[test]
        fn fuzz_any_tool_result_maps_within_the_cap(
            document in result(),
            limit in prop_oneof![Just(64usize), Just(1024), Just(1 << 20)],
        ) {
            let Ok(result) = serde_json::from_str::<CallToolResult>(&document) else {
                return Ok(());
            };
            match call_output(result, "docs", limit) {
                Ok(output) => {
                    prop_assert!(output.text.len() <= document.len());
                    let value = super::super::execute::result_value(output);
                    let shown = value.to_string().len();
                    prop_assert!(shown <= limit + 64, "{} bytes shown for a {}-byte cap", shown, limit);
                }
                Err(McpError::TooLarge { limit: said, .. }) => prop_assert_eq!(said, limit),
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
    }
}
