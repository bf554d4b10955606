//! AWS Bedrock providers (issue #15 item 5) against a fake Converse-stream endpoint on
//! 127.0.0.1 (`tests/support/fake_bedrock.rs`), through the real API and workers: a worker
//! signs with AWS credentials from its environment, a stored bearer token goes without
//! signing, text and tool use stream back, and Bedrock's errors become `ChatError`s that
//! are retried like the other providers'. A provider without a key is refused for kinds
//! that cannot call without one.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    eventually,
    fake_bedrock::{self, Auth, FakeBedrock, Reply},
    process::AgentqProcess,
};
use uuid::Uuid;

/// A Bedrock model id as AWS names them (the colon goes escaped in the path).
const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// Creates the provider `provider` (a bedrock one) and the default model on it.
async fn bedrock_default_model(app: &TestApp, owner: &str, provider: Value) -> Value {
    let (status, created) = app
        .post_as(owner, "/api/v1/admin/providers", provider)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, model) = app
        .post_as(
            owner,
            "/api/v1/admin/models",
            json!({"provider_id": created["id"], "name": MODEL, "is_default": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    created
}

async fn last_error(app: &TestApp, chat: Uuid) -> Value {
    eventually(Duration::from_secs(30), "the turn to fail", || async {
        let (_, chat) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (chat["status"] == "error").then(|| chat["last_error"].clone())
    })
    .await
}

#[sqlx::test]
async fn a_worker_signs_with_aws_credentials_from_its_environment(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let bedrock = FakeBedrock::start().await;
    // No key and no region: the worker's AWS chain supplies both.
    let provider = bedrock_default_model(
        &app,
        &owner,
        json!({"name": "Bedrock", "kind": "bedrock", "base_url": bedrock.base_url}),
    )
    .await;
    assert_eq!(provider["has_api_key"], false);
    assert_eq!(provider["region"], Value::Null);
    // Only this process has the credentials; no profile file or instance role is read.
    let _worker = AgentqProcess::worker_with_env(
        &app,
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", fake_bedrock::ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", fake_bedrock::SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", fake_bedrock::SESSION_TOKEN),
            ("AWS_REGION", "eu-west-3"),
            ("AWS_CONFIG_FILE", "/nonexistent/agentq-tests/aws/config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/agentq-tests/aws/credentials",
            ),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    bedrock.script([
        Reply::ToolUse("tooluse_clock1".into(), "current_time".into(), json!({})),
        Reply::Text("It is noon somewhere.".into()),
    ]);

    let chat = app.create_chat("what time is it?").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(60))
        .await;
    let call = messages[1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "tool_call")
        .cloned()
        .unwrap_or_else(|| panic!("a tool call in {}", messages[1]));
    assert_eq!(call["name"], "current_time");
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[3]["content"][0]["text"], "It is noon somewhere.");

    assert!(bedrock.refused().is_empty(), "{:?}", bedrock.refused());
    let received = bedrock.received();
    assert_eq!(received.len(), 2, "two steps");
    for request in &received {
        assert_eq!(request.model, MODEL);
        let Auth::SigV4 {
            region,
            service,
            signed_headers,
            session_token,
        } = &request.auth
        else {
            panic!("signed with SigV4: {:?}", request.auth);
        };
        assert_eq!(region, "eu-west-3", "the region of the worker's chain");
        assert_eq!(service, "bedrock");
        assert!(signed_headers.contains("host"), "{signed_headers}");
        assert_eq!(session_token.as_deref(), Some(fake_bedrock::SESSION_TOKEN));
    }
    // The second step sends the tool use and its result back in Converse's shape.
    let second = &received[1].body;
    assert!(
        second["toolConfig"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["toolSpec"]["name"] == "current_time"),
        "{second}"
    );
    let messages = second["messages"].as_array().unwrap();
    let use_block = &messages[1]["content"];
    assert!(
        use_block
            .to_string()
            .contains(r#""toolUseId":"tooluse_clock1""#),
        "{second}"
    );
    let result = &messages[2]["content"][0]["toolResult"];
    assert_eq!(result["toolUseId"], "tooluse_clock1", "{second}");
    assert_eq!(result["status"], "success");
    app.stop().await;
}

#[sqlx::test]
async fn a_stored_bearer_token_is_sent_without_signing(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let bedrock = FakeBedrock::start().await;
    let provider = bedrock_default_model(
        &app,
        &owner,
        json!({"name": "Bedrock key", "kind": "bedrock", "base_url": bedrock.base_url,
               "region": "us-west-2", "api_key": fake_bedrock::BEARER_TOKEN}),
    )
    .await;
    assert_eq!(provider["has_api_key"], true);
    assert_eq!(provider["region"], "us-west-2");
    assert!(!provider.to_string().contains(fake_bedrock::BEARER_TOKEN));

    let chat = app.create_chat("hello").await;
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    assert_eq!(messages[1]["content"][0]["text"], fake_bedrock::ANSWER);
    let received = bedrock.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].auth,
        Auth::Bearer(fake_bedrock::BEARER_TOKEN.into())
    );
    assert_eq!(
        received[0].body["messages"],
        json!([{"role": "user", "content": [{"text": "hello"}]}])
    );
    // The answer's usage was read from the stream's metadata.
    assert_eq!(messages[1]["usage"]["output_tokens"], 7, "{}", messages[1]);
    assert_eq!(messages[1]["usage"]["input_tokens"], 12, "{}", messages[1]);
    app.stop().await;
}

#[sqlx::test]
async fn throttling_is_retried_and_other_errors_fail_the_chat_with_their_kind(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.provider_max_attempts = 3;
    app.worker.provider_max_backoff_secs = 1;
    app.start_worker().await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let bedrock = FakeBedrock::start().await;
    bedrock_default_model(
        &app,
        &owner,
        json!({"name": "Bedrock", "kind": "bedrock", "base_url": bedrock.base_url,
               "api_key": fake_bedrock::BEARER_TOKEN}),
    )
    .await;

    // Throttled as an HTTP 429, then in the middle of the stream: both retried.
    bedrock.script([
        Reply::Http(
            429,
            "ThrottlingException".into(),
            "Too many requests".into(),
        ),
        Reply::Exception("throttlingException".into(), "Rate exceeded".into()),
        Reply::Text("Finally through.".into()),
    ]);
    let chat = app.create_chat("hello").await;
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(30))
        .await;
    assert_eq!(messages[1]["content"][0]["text"], "Finally through.");
    assert_eq!(bedrock.received().len(), 3);

    // Refused credentials are not retried.
    bedrock.script([Reply::Http(
        403,
        "AccessDeniedException".into(),
        "You don't have access to the model".into(),
    )]);
    let chat = app.create_chat("again").await;
    let error = last_error(&app, chat).await;
    assert_eq!(error["kind"], "auth", "{error}");
    assert_eq!(error["status_code"], 403);
    assert_eq!(error["provider"], "Bedrock");
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|d| d.contains("access to the model")),
        "{error}"
    );
    assert_eq!(bedrock.received().len(), 4, "one attempt");

    // A validation exception in the stream: the request is wrong, not retried.
    bedrock.script([Reply::Exception(
        "validationException".into(),
        "messages.0: bad block".into(),
    )]);
    let chat = app.create_chat("and again").await;
    let error = last_error(&app, chat).await;
    assert_eq!(error["kind"], "generic", "{error}");
    assert_eq!(error["retryable"], false, "{error}");
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|d| d.contains("validationException")),
        "{error}"
    );
    assert!(!error.to_string().contains("127.0.0.1"), "{error}");
    assert_eq!(bedrock.received().len(), 5, "one attempt");
    app.stop().await;
}

#[sqlx::test]
async fn a_provider_without_a_key_is_refused_unless_its_kind_allows_none(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let path = "/api/v1/admin/providers";
    for (body, field) in [
        (json!({"name": "o", "kind": "openai"}), "api_key"),
        (
            json!({"name": "a", "kind": "anthropic", "api_key": null}),
            "api_key",
        ),
        (json!({"name": "r", "kind": "openrouter"}), "api_key"),
        (
            json!({"name": "o", "kind": "openai", "api_key": "sk-x", "region": "us-east-1"}),
            "region",
        ),
        (
            json!({"name": "b", "kind": "bedrock", "region": "US East 1"}),
            "region",
        ),
    ] {
        let (status, error) = app.post_as(&owner, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {error}");
        assert_eq!(error["validations"][0]["field"], field, "{error}");
    }
    // Kinds that may call without a stored key.
    let (status, compat) = app
        .post_as(
            &owner,
            path,
            json!({"name": "local", "kind": "openai-compat", "base_url": "http://127.0.0.1:1/v1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{compat}");
    let (status, bedrock) = app
        .post_as(
            &owner,
            path,
            json!({"name": "aws", "kind": "bedrock", "region": "eu-central-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bedrock}");
    assert_eq!(bedrock["base_url"], "", "the regional endpoint");
    assert_eq!(bedrock["region"], "eu-central-1");
    assert_eq!(bedrock["has_api_key"], false);

    // The database refuses a keyless row of a kind that needs a key, whatever the route.
    let (status, error) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{path}/{}", bedrock["id"].as_str().unwrap()),
            Some(json!({"kind": "anthropic"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["validations"][0]["field"], "api_key", "{error}");
    let (status, openai) = app
        .post_as(
            &owner,
            path,
            json!({"name": "openai", "kind": "openai", "api_key": "sk-123456"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{openai}");
    let (status, error) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{path}/{}", openai["id"].as_str().unwrap()),
            Some(json!({"api_key": null})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["validations"][0]["field"], "api_key", "{error}");
    // Clearing a Bedrock provider's region hands it to the worker's chain.
    let (status, patched) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{path}/{}", bedrock["id"].as_str().unwrap()),
            Some(json!({"region": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["region"], Value::Null);
    app.stop().await;
}
