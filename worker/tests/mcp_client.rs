//! The MCP client against a real MCP server (rmcp's streamable HTTP service mounted in an
//! axum app on 127.0.0.1): tools are listed with their schemas and `readOnlyHint`, calls
//! return their content, each auth type sends exactly its headers, and a server that is
//! down, slow, failing or too talkative gives a clear `McpError` instead of a hang.

#[path = "../../tests/support/mcp_server.rs"]
mod mcp_server;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use agentq_core::{
    secrets::SecretBox,
    store::{McpAuthType, McpAvailability, McpServerRecord, McpTransport},
};
use agentq_worker::tools::mcp::{McpAuth, McpClient, McpError, McpLimits};
use mcp_server::{McpTestServer, SeenHeaders, TOOLS};
use serde_json::{Value, json};
use uuid::Uuid;

/// The test server on a random port: its URL and the non-transport headers of each request.
async fn start_server() -> (String, SeenHeaders) {
    let server = McpTestServer::start().await;
    (server.url, server.headers)
}

fn record(url: &str) -> McpServerRecord {
    McpServerRecord {
        id: Uuid::now_v7(),
        slug: "test".into(),
        display_name: "Test".into(),
        description: String::new(),
        url: url.into(),
        transport: McpTransport::StreamableHttp,
        auth_type: McpAuthType::None,
        api_key_header: None,
        api_key_ciphertext: None,
        custom_headers_ciphertext: None,
        oauth_client_id: None,
        oauth_client_secret_ciphertext: None,
        oauth_authorize_url: None,
        oauth_token_url: None,
        oauth_scopes: vec![],
        availability: McpAvailability::DefaultOn,
        enabled: true,
        tool_allow_list: vec![],
        tool_deny_list: vec![],
        allow_in_plan_mode: false,
        organization_id: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

fn limits() -> McpLimits {
    McpLimits {
        connect_timeout: Duration::from_secs(2),
        list_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_millis(800),
        max_result_bytes: 4 * 1024,
        max_list_bytes: 64 * 1024,
        tools_cache_ttl: Duration::from_secs(60),
    }
}

fn args(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn tools_are_listed_with_schemas_and_hints_and_calls_return_content() {
    let (url, seen) = start_server().await;
    let client = McpClient::new(limits());
    let server = record(&url);
    let auth = McpAuth::default();

    let tools = client.list_tools(&server, &auth).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TOOLS);
    assert_eq!(tools[0].description, "Repeats the text");
    assert_eq!(tools[0].input_schema["required"], json!(["text"]));
    assert!(tools[0].read_only);
    assert!(!tools[1].read_only, "no annotation: not read-only");

    let echoed = client
        .call_tool(&server, &auth, "echo", args(json!({"text": "hello mcp"})))
        .await
        .unwrap();
    assert_eq!(echoed.text, "hello mcp");
    assert!(!echoed.is_error);
    assert_eq!(echoed.content[0]["type"], "text");
    let sum = client
        .call_tool(&server, &auth, "add", args(json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!(sum.text, "42");
    let oops = client
        .call_tool(&server, &auth, "oops", args(json!({})))
        .await
        .unwrap();
    assert!(oops.is_error, "a tool-level error is an answer, flagged");
    assert_eq!(oops.text, "the tool broke");

    // The list is cached: no new requests until the config changes.
    let before = seen.lock().unwrap().len();
    client.list_tools(&server, &auth).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), before, "served from the cache");
    let mut changed = server.clone();
    changed.updated_at += chrono::Duration::microseconds(1);
    client.list_tools(&changed, &auth).await.unwrap();
    assert!(
        seen.lock().unwrap().len() > before,
        "a config change asks again"
    );
}

#[tokio::test]
async fn mcp_errors_hidden_tools_timeouts_and_oversize_results_are_clear_errors() {
    let (url, _) = start_server().await;
    let client = McpClient::new(limits());
    let mut server = record(&url);
    let auth = McpAuth::default();

    let failed = client
        .call_tool(&server, &auth, "fail", args(json!({})))
        .await;
    assert!(
        matches!(&failed, Err(McpError::Protocol { detail, .. }) if detail.contains("no such thing")),
        "{failed:?}"
    );

    let started = Instant::now();
    let slow = client
        .call_tool(&server, &auth, "slow", args(json!({})))
        .await;
    assert!(matches!(slow, Err(McpError::Timeout { .. })), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Over the cap: refused once read.
    let big = client
        .call_tool(&server, &auth, "big", args(json!({})))
        .await;
    assert!(
        matches!(big, Err(McpError::TooLarge { limit: 4096, .. })),
        "{big:?}"
    );
    // Far over it: the transport stops reading, and the error says why it may have.
    let huge = client
        .call_tool(&server, &auth, "huge", args(json!({})))
        .await;
    assert!(
        matches!(&huge, Err(McpError::Unreachable { detail, .. }) if detail.contains("larger than")),
        "{huge:?}"
    );

    // Deny wins over allow; a hidden tool is refused without a request.
    server.tool_allow_list = vec!["echo".into(), "add".into()];
    server.tool_deny_list = vec!["add".into()];
    assert!(server.offers_tool("echo"));
    assert!(!server.offers_tool("add"));
    assert!(!server.offers_tool("big"));
    let hidden = client
        .call_tool(&server, &auth, "add", args(json!({"a": 1, "b": 1})))
        .await;
    assert!(
        matches!(hidden, Err(McpError::Protocol { .. })),
        "{hidden:?}"
    );
}

#[tokio::test]
async fn a_server_that_is_down_fails_fast_and_clearly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = McpClient::new(limits());
    let server = record(&format!("http://127.0.0.1:{port}/mcp"));
    let started = Instant::now();
    let listed = client.list_tools(&server, &McpAuth::default()).await;
    let called = client
        .call_tool(
            &server,
            &McpAuth::default(),
            "echo",
            args(json!({"text": "x"})),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for outcome in [listed.map(|_| ()), called.map(|_| ())] {
        let e = outcome.unwrap_err();
        assert!(matches!(e, McpError::Unreachable { .. }), "{e:?}");
        assert!(e.to_string().contains("`test` is unreachable"), "{e}");
        assert!(e.retryable());
    }
}

#[tokio::test]
async fn each_auth_type_sends_exactly_its_headers() {
    let secrets = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let headers = serde_json::to_string(&json!({"x-team": "blue", "x-tenant": "t-9"})).unwrap();
    let cases: Vec<(McpAuthType, Option<&str>, BTreeMap<String, String>)> = vec![
        (McpAuthType::None, Some("ignored"), BTreeMap::new()),
        (
            McpAuthType::ApiKey,
            None,
            BTreeMap::from([("x-api-key".into(), "key-123".into())]),
        ),
        (
            McpAuthType::CustomHeaders,
            None,
            BTreeMap::from([
                ("x-team".into(), "blue".into()),
                ("x-tenant".into(), "t-9".into()),
            ]),
        ),
        (
            McpAuthType::Oauth2,
            Some("oauth-token"),
            BTreeMap::from([("authorization".into(), "Bearer oauth-token".into())]),
        ),
        (
            McpAuthType::UserOidc,
            Some("oidc-token"),
            BTreeMap::from([("authorization".into(), "Bearer oidc-token".into())]),
        ),
        (McpAuthType::UserOidc, None, BTreeMap::new()),
    ];
    for (auth_type, token, expected) in cases {
        let (url, seen) = start_server().await;
        let client = McpClient::new(limits());
        let mut server = record(&url);
        server.auth_type = auth_type;
        match auth_type {
            McpAuthType::ApiKey => {
                server.api_key_header = Some("x-api-key".into());
                server.api_key_ciphertext = Some(secrets.seal("key-123"));
            }
            McpAuthType::CustomHeaders => {
                server.custom_headers_ciphertext = Some(secrets.seal(&headers));
            }
            _ => {}
        }
        let auth = McpAuth::for_server(&server, Some(&secrets), token).unwrap();
        assert!(
            !format!("{auth:?}").contains("key-123"),
            "Debug hides secrets"
        );
        client.list_tools(&server, &auth).await.unwrap();
        client
            .call_tool(&server, &auth, "echo", args(json!({"text": "hi"})))
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty());
        for request in seen.iter() {
            assert_eq!(request, &expected, "{auth_type:?}");
        }
    }
}
