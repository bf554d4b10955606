//! A real MCP server for the tests: rmcp's streamable HTTP service mounted in an axum app on
//! 127.0.0.1, with a tool per behaviour a client must handle. It records the headers of
//! every request (minus the transport's own) and the name of every tool called, so a test
//! can check exactly what the server saw. Shared by the black-box tests and the worker's
//! MCP client tests (`worker/tests/mcp_client.rs` includes this file by path).
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::Request, middleware::Next, response::Response};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};

/// How long the `slow` tool takes.
pub const SLOW_TOOL: Duration = Duration::from_secs(5);

/// The names of the tools the server lists, in order (the last two are ones no provider
/// accepts, which agentq never offers).
pub const TOOLS: [&str; 9] = [
    "echo",
    "add",
    "fail",
    "oops",
    "slow",
    "big",
    "huge",
    "bad name",
    "array_args",
];

/// Headers every MCP request carries whatever the auth type (framing, negotiation, session).
const TRANSPORT_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "accept",
    "accept-encoding",
    "user-agent",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "cache-control",
];

/// The non-transport headers of each request, in arrival order.
pub type SeenHeaders = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// A running test server.
pub struct McpTestServer {
    /// Its endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    /// The non-transport headers of each request.
    pub headers: SeenHeaders,
    /// The tools called, in order, with their arguments.
    pub calls: Arc<Mutex<Vec<(String, Value)>>>,
}

impl McpTestServer {
    /// Starts a server on a free port.
    pub async fn start() -> Self {
        let headers: SeenHeaders = Arc::default();
        let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let handler = Handler {
            calls: Arc::clone(&calls),
        };
        let service: StreamableHttpService<Handler, LocalSessionManager> =
            StreamableHttpService::new(
                move || Ok(handler.clone()),
                Default::default(),
                StreamableHttpServerConfig::default().with_sse_keep_alive(None),
            );
        let capture = {
            let seen = Arc::clone(&headers);
            move |request: Request, next: Next| {
                let seen = Arc::clone(&seen);
                async move {
                    let headers = request
                        .headers()
                        .iter()
                        .filter(|(name, _)| !TRANSPORT_HEADERS.contains(&name.as_str()))
                        .map(|(name, value)| {
                            (
                                name.as_str().to_owned(),
                                value.to_str().unwrap_or("?").to_owned(),
                            )
                        })
                        .collect();
                    seen.lock().unwrap().push(headers);
                    let response: Response = next.run(request).await;
                    response
                }
            }
        };
        let app = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(capture));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/mcp"),
            headers,
            calls,
        }
    }

    /// The names of the tools called so far.
    pub fn called(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The distinct non-transport header sets the server saw.
    pub fn distinct_headers(&self) -> Vec<BTreeMap<String, String>> {
        let mut seen = self.headers.lock().unwrap().clone();
        seen.sort();
        seen.dedup();
        seen
    }
}

/// A URL on 127.0.0.1 where nothing listens: a server that is down.
pub fn down_url() -> String {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    format!("http://127.0.0.1:{port}/mcp")
}

#[derive(Clone)]
struct Handler {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

fn schema(value: Value) -> Arc<serde_json::Map<String, Value>> {
    Arc::new(value.as_object().unwrap().clone())
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let text_arg = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new("echo", "Repeats the text", schema(text_arg))
                .annotate(ToolAnnotations::new().read_only(true)),
            Tool::new(
                "add",
                "Adds two numbers",
                schema(
                    json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}),
                ),
            ),
            Tool::new(
                "fail",
                "Always an MCP error",
                schema(json!({"type": "object"})),
            ),
            Tool::new(
                "oops",
                "A tool-level error result",
                schema(json!({"type": "object"})),
            ),
            Tool::new("slow", "Takes 5 s", schema(json!({"type": "object"}))),
            Tool::new("big", "Answers 8 KiB", schema(json!({"type": "object"}))),
            Tool::new("huge", "Answers 512 KiB", schema(json!({"type": "object"}))),
            // Two tools no provider accepts: agentq lists them but never offers them.
            Tool::new(
                "bad name",
                "Spaces in the name",
                schema(json!({"type": "object"})),
            ),
            Tool::new(
                "array_args",
                "Not an object schema",
                schema(json!({"type": "array"})),
            ),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push((request.name.to_string(), Value::Object(args.clone())));
        let text = match request.name.as_ref() {
            "echo" => args["text"].as_str().unwrap_or_default().to_owned(),
            "add" => {
                (args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0)).to_string()
            }
            "fail" => return Err(ErrorData::invalid_params("no such thing", None)),
            "oops" => {
                return Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                    ContentBlock::text("the tool broke"),
                ])));
            }
            "slow" => {
                tokio::time::sleep(SLOW_TOOL).await;
                "late".to_owned()
            }
            "big" => "x".repeat(8 * 1024),
            "huge" => "x".repeat(512 * 1024),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other}"),
                    None,
                ));
            }
        };
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(text),
        ])))
    }
}
