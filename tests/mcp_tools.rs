//! MCP tools as a model sees them (issue #12, items 1 and 4; ARCHITECTURE.md §7), against
//! real MCP servers (rmcp's streamable HTTP service on 127.0.0.1, `support::mcp_server`):
//! the chat's servers' tools are offered as `<slug>__<tool>` with their schemas, a call
//! reaches the server and its result reaches the model's next request; each server gets
//! exactly its own credentials; allow and deny lists decide the offer and a forged call to
//! a hidden tool never reaches a server; a server that is down, a tool that fails or is
//! too slow, a server disabled before its call runs: each costs an error result, and the
//! turn still finishes.

mod support;

use std::{collections::BTreeMap, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    eventually,
    fake_openai::{Reply, offered},
    mcp_server::{McpTestServer, down_url},
};
use uuid::Uuid;

/// The offered tools whose name has the `<slug>__` prefix.
fn offered_of(body: &Value, slug: &str) -> Vec<String> {
    let prefix = format!("{slug}__");
    offered(body)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The `role: tool` messages of a request: call id to content (parsed as JSON when it is).
fn tool_results(body: &Value) -> BTreeMap<String, Value> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let content = m["content"].as_str().unwrap();
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                serde_json::from_str(content).unwrap_or(Value::String(content.into())),
            )
        })
        .collect()
}

/// The error message of a result, or a panic naming what it was instead.
fn error_of(result: &Value) -> String {
    result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error result: {result}"))
        .to_owned()
}

/// The system message of a request.
fn system_of(body: &Value) -> String {
    body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Creates an MCP server as a site owner; its id.
async fn add_server(app: &TestApp, owner: &str, body: Value) -> Uuid {
    let (status, server) = app.post_as(owner, "/api/v1/admin/mcp-servers", body).await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    server["id"].as_str().unwrap().parse().unwrap()
}

fn call(id: &str, name: &str, arguments: Value) -> (String, String, Value) {
    (id.into(), name.into(), arguments)
}

#[sqlx::test]
async fn a_chat_calls_mcp_tools_and_the_next_request_carries_their_results(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let docs = McpTestServer::start().await;
    add_server(
        &app,
        &owner,
        json!({"slug": "docs", "display_name": "Docs", "url": docs.url, "availability": "default_on"}),
    )
    .await;
    app.fake.script([
        Reply::ToolCalls(vec![
            call("call_1", "docs__echo", json!({"text": "hello from mcp"})),
            call("call_2", "docs__add", json!({"a": 2, "b": 40})),
            call("call_3", "docs__fail", json!({})),
            call("call_4", "docs__oops", json!({})),
        ]),
        Reply::Text("The server says hello, and 42.".into()),
    ]);
    let chat = app.create_chat("use the docs server").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(
        messages[3]["content"][0]["text"],
        "The server says hello, and 42."
    );

    let received = app.fake.received();
    assert_eq!(received.len(), 2);
    // The server's `bad name` and `array_args` are not offered: no provider accepts them.
    assert_eq!(
        offered(&received[0].body),
        [
            "current_time",
            "sleep",
            "docs__echo",
            "docs__add",
            "docs__fail",
            "docs__oops",
            "docs__slow",
            "docs__big",
            "docs__huge",
            "spawn_subagent",
            "wait_agent",
            "message_agent",
            "close_agent"
        ]
    );
    let echo = &received[0].body["tools"][2]["function"];
    assert_eq!(echo["description"], "Repeats the text");
    assert_eq!(echo["parameters"]["required"], json!(["text"]));

    let results = tool_results(&received[1].body);
    assert_eq!(results["call_1"], "hello from mcp");
    assert_eq!(results["call_2"], json!(42), "the text `42`");
    let failed = error_of(&results["call_3"]);
    assert!(
        failed.contains("`docs`") && failed.contains("no such thing"),
        "{failed}"
    );
    assert_eq!(error_of(&results["call_4"]), "the tool broke");

    let sources: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT provider_call_id, source, status FROM tool_calls WHERE chat_id = $1 ORDER BY provider_call_id",
    )
    .bind(chat)
    .fetch_all(app.services.store.pool())
    .await
    .unwrap();
    let expected = [
        ("call_1", "mcp", "succeeded"),
        ("call_2", "mcp", "succeeded"),
        ("call_3", "mcp", "failed"),
        ("call_4", "mcp", "failed"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(sources, expected);
    let mut called = docs.called();
    called.sort();
    assert_eq!(called, ["add", "echo", "fail", "oops"]);
    app.stop().await;
}

#[sqlx::test]
async fn each_server_sees_exactly_its_own_credentials(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let plain = McpTestServer::start().await;
    let keyed = McpTestServer::start().await;
    let custom = McpTestServer::start().await;
    add_server(
        &app,
        &owner,
        json!({"slug": "plain", "display_name": "Plain", "url": plain.url, "availability": "default_on"}),
    )
    .await;
    add_server(
        &app,
        &owner,
        json!({"slug": "keyed", "display_name": "Keyed", "url": keyed.url, "availability": "default_on",
               "auth_type": "api_key", "api_key_header": "x-api-key", "api_key": "key-123"}),
    )
    .await;
    add_server(
        &app,
        &owner,
        json!({"slug": "custom", "display_name": "Custom", "url": custom.url, "availability": "default_on",
               "auth_type": "custom_headers", "custom_headers": {"x-team": "blue", "x-tenant": "t-9"}}),
    )
    .await;
    app.fake.script([
        Reply::ToolCalls(vec![
            call("call_1", "plain__echo", json!({"text": "p"})),
            call("call_2", "keyed__echo", json!({"text": "k"})),
            call("call_3", "custom__echo", json!({"text": "c"})),
        ]),
        Reply::Text("All three answered.".into()),
    ]);
    let chat = app.create_chat("call every server").await;
    app.wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    let results = tool_results(&app.fake.received()[1].body);
    assert_eq!(
        [&results["call_1"], &results["call_2"], &results["call_3"]],
        ["p", "k", "c"]
    );

    // Every request (list and call) carried exactly the server's own headers.
    let header = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(plain.distinct_headers(), [header(&[])]);
    assert_eq!(
        keyed.distinct_headers(),
        [header(&[("x-api-key", "key-123")])]
    );
    assert_eq!(
        custom.distinct_headers(),
        [header(&[("x-team", "blue"), ("x-tenant", "t-9")])]
    );
    for server in [&plain, &keyed, &custom] {
        assert_eq!(server.called(), ["echo"]);
    }
    app.stop().await;
}

#[sqlx::test]
async fn allow_and_deny_lists_decide_the_offer_and_hidden_tools_never_run(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let docs = McpTestServer::start().await;
    let other = McpTestServer::start().await;
    let docs_id = add_server(
        &app,
        &owner,
        json!({"slug": "docs", "display_name": "Docs", "url": docs.url, "availability": "default_on",
               "tool_allow_list": ["echo", "add", "fail"], "tool_deny_list": ["add"]}),
    )
    .await;
    // Not chosen by the chat: none of its tools are offered.
    add_server(
        &app,
        &owner,
        json!({"slug": "other", "display_name": "Other", "url": other.url, "availability": "default_off"}),
    )
    .await;
    app.fake.script([
        Reply::ToolCalls(vec![
            call("call_1", "docs__add", json!({"a": 1, "b": 1})),
            call("call_2", "other__echo", json!({"text": "sneaky"})),
            call("call_3", "docs__big", json!({})),
            call("call_4", "docs__echo", json!({"text": "allowed"})),
        ]),
        Reply::Text("Only echo worked.".into()),
    ]);
    let chat = app.create_chat("try every tool").await;
    app.wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    let received = app.fake.received();
    assert_eq!(
        offered_of(&received[0].body, "docs"),
        ["docs__echo", "docs__fail"]
    );
    assert!(offered_of(&received[0].body, "other").is_empty());
    let results = tool_results(&received[1].body);
    for id in ["call_1", "call_2", "call_3"] {
        let error = error_of(&results[id]);
        assert!(
            error.contains("is not a tool offered in this step"),
            "{id}: {error}"
        );
    }
    assert_eq!(results["call_4"], "allowed");
    assert_eq!(
        docs.called(),
        ["echo"],
        "hidden tools never reach the server"
    );
    assert!(other.called().is_empty());
    assert!(
        other.headers.lock().unwrap().is_empty(),
        "a server the chat did not choose is not even listed"
    );

    // A change of the lists applies to the next step at once (the worker's cached list
    // is keyed by the server's version).
    let (status, body) = app
        .patch_as(
            &owner,
            &format!("/api/v1/admin/mcp-servers/{docs_id}"),
            json!({"tool_allow_list": [], "tool_deny_list": ["echo", "slow", "big", "huge"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.fake.script([Reply::Text("ok".into())]);
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "and now?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.wait_until_answered(chat, 6, Duration::from_secs(20))
        .await;
    let received = app.fake.received();
    assert_eq!(
        offered_of(&received[2].body, "docs"),
        ["docs__add", "docs__fail", "docs__oops"]
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_server_that_is_down_is_named_unavailable_and_its_calls_get_errors(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let docs = McpTestServer::start().await;
    add_server(
        &app,
        &owner,
        json!({"slug": "docs", "display_name": "Docs", "url": docs.url, "availability": "default_on"}),
    )
    .await;
    add_server(
        &app,
        &owner,
        // A secret in the URL's query: chat members never see the URL.
        json!({"slug": "wiki", "display_name": "Wiki", "url": format!("{}?api_key=QUERYSECRET", down_url()), "availability": "default_on"}),
    )
    .await;
    app.fake.script([
        Reply::ToolCalls(vec![
            call("call_1", "wiki__echo", json!({"text": "x"})),
            call("call_2", "docs__echo", json!({"text": "still here"})),
        ]),
        Reply::Text("The wiki is down.".into()),
    ]);
    let chat = app.create_chat("search the wiki").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(messages[3]["content"][0]["text"], "The wiki is down.");
    let received = app.fake.received();
    assert!(offered_of(&received[0].body, "wiki").is_empty());
    assert_eq!(offered_of(&received[0].body, "docs").len(), 7);
    let system = system_of(&received[0].body);
    assert!(
        system.contains("MCP server `wiki` is unavailable") && system.contains("unreachable"),
        "{system}"
    );
    assert!(!system.contains("`docs` is unavailable"), "{system}");
    let results = tool_results(&received[1].body);
    assert!(error_of(&results["call_1"]).contains("`wiki__echo`"));
    assert_eq!(results["call_2"], "still here");
    for request in &received {
        assert!(
            !request.body.to_string().contains("QUERYSECRET"),
            "{}",
            request.body
        );
    }
    assert!(!format!("{messages:?}").contains("QUERYSECRET"));
    app.stop().await;
}

#[sqlx::test]
async fn a_slow_tool_times_out_into_an_error_result(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.mcp_call_timeout_secs = 2;
    app.start_worker().await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let docs = McpTestServer::start().await;
    add_server(
        &app,
        &owner,
        json!({"slug": "docs", "display_name": "Docs", "url": docs.url, "availability": "default_on"}),
    )
    .await;
    app.fake.script([
        Reply::ToolCalls(vec![call("call_1", "docs__slow", json!({}))]),
        Reply::Text("It was too slow.".into()),
    ]);
    let chat = app.create_chat("run the slow tool").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(messages[3]["content"][0]["text"], "It was too slow.");
    let results = tool_results(&app.fake.received()[1].body);
    let error = error_of(&results["call_1"]);
    assert!(
        error.contains("`docs` did not answer within 2s") && error.contains("tried again"),
        "{error}"
    );
    assert_eq!(docs.called(), ["slow"], "the call did reach the server");
    app.stop().await;
}

#[sqlx::test]
async fn a_call_to_a_server_disabled_after_the_offer_runs_nothing(pool: sqlx::PgPool) {
    // Turns only at first: the call waits in the tools queue while the server is disabled.
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.queues = vec!["turns".into()];
    app.start_worker().await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let docs = McpTestServer::start().await;
    let docs_id = add_server(
        &app,
        &owner,
        json!({"slug": "docs", "display_name": "Docs", "url": docs.url, "availability": "default_on"}),
    )
    .await;
    app.fake.script([
        Reply::ToolCalls(vec![call("call_1", "docs__echo", json!({"text": "x"}))]),
        Reply::Text("The server went away.".into()),
    ]);
    let chat = app.create_chat("echo something").await;
    eventually(Duration::from_secs(20), "the call to be stored", || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tool_calls WHERE chat_id = $1")
            .bind(chat)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
        (count == 1).then_some(())
    })
    .await;
    let (status, body) = app
        .patch_as(
            &owner,
            &format!("/api/v1/admin/mcp-servers/{docs_id}"),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.worker.queues = vec!["tools".into()];
    app.start_worker().await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(messages[3]["content"][0]["text"], "The server went away.");
    let results = tool_results(&app.fake.received()[1].body);
    let error = error_of(&results["call_1"]);
    assert!(
        error.contains("MCP server `docs` is no longer available to this chat"),
        "{error}"
    );
    assert!(docs.called().is_empty(), "nothing reached the server");
    app.stop().await;
}
