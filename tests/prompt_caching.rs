//! Prompt caching (issue #19; ARCHITECTURE.md §7) seen from the providers' side: Anthropic
//! requests mark breakpoints on the system prompt, the tools and the last message, and each
//! step's request extends the previous one, so the cache covers it; cache reads are priced
//! at the model's cache-read price; a model can turn caching off; OpenAI requests carry one
//! `prompt_cache_key` per chat, and only OpenAI's.

mod support;

use std::{sync::Arc, time::Duration};

use agentq_core::config::ProviderKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    fake_anthropic::{self, FakeAnthropic},
    fake_openai,
};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    app.send(method, token, path, Some(body)).await
}

/// Every `cache_control` in a request body.
fn breakpoints(body: &Value) -> usize {
    body.to_string().matches("\"cache_control\"").count()
}

/// The messages with their `cache_control` marks removed.
fn unmarked(messages: &Value) -> Value {
    let mut messages = messages.clone();
    for message in messages.as_array_mut().unwrap() {
        for block in message["content"].as_array_mut().unwrap() {
            block.as_object_mut().unwrap().remove("cache_control");
        }
    }
    messages
}

/// The last block of the last message.
fn last_block(body: &Value) -> &Value {
    let messages = body["messages"].as_array().unwrap();
    let content = messages.last().unwrap()["content"].as_array().unwrap();
    content.last().unwrap()
}

#[sqlx::test]
async fn anthropic_steps_mark_breakpoints_and_extend_the_previous_request(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    let anthropic = FakeAnthropic::start().await;
    let base_url = anthropic.base_url.clone();
    // The flag-configured model (no model row) caches.
    app.tune_provider = Arc::new(move |provider| {
        provider.kind = ProviderKind::Anthropic;
        provider.anthropic_base_url = base_url.clone();
        provider.anthropic_api_key = Some("sk-ant-test".into());
        provider.model = "claude-fake".into();
    });
    app.start_worker().await;
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/instructions",
            json!({"instructions": "Be brief."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    anthropic.script([
        fake_anthropic::Reply::ToolUse("toolu_1".into(), "current_time".into(), json!({})),
        fake_anthropic::Reply::ToolUse("toolu_2".into(), "current_time".into(), json!({})),
        fake_anthropic::Reply::Text("It is late.".into()),
    ]);
    let chat = app.create_chat("what time is it?").await;
    let messages = app
        .wait_until_answered(chat, 6, Duration::from_secs(20))
        .await;
    assert_eq!(messages[5]["content"][0]["text"], "It is late.");

    let received = anthropic.received();
    assert_eq!(received.len(), 3, "three steps");
    let ephemeral = json!({"type": "ephemeral"});
    for (step, body) in received.iter().enumerate() {
        let system = body["system"].as_array().expect("system as blocks");
        assert_eq!(system[0]["text"], "Be brief.");
        assert_eq!(system.last().unwrap()["cache_control"], ephemeral, "{step}");
        let tools = body["tools"].as_array().unwrap();
        assert!(!tools.is_empty());
        assert_eq!(tools.last().unwrap()["cache_control"], ephemeral, "{step}");
        assert_eq!(last_block(body)["cache_control"], ephemeral, "{step}");
        assert_eq!(breakpoints(body), 3, "system, tools, last message: {body}");
        assert!(breakpoints(body) <= 4, "Anthropic's limit");
    }
    // Each step's request is the previous one plus what the step added: the system prompt
    // and tools byte for byte, the messages as a prefix (only the last block's mark moves).
    for pair in received.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert_eq!(before["system"], after["system"]);
        assert_eq!(before["tools"], after["tools"]);
        let old = unmarked(&before["messages"]);
        let new = unmarked(&after["messages"]);
        let (old, new) = (old.as_array().unwrap(), new.as_array().unwrap());
        assert_eq!(new.len(), old.len() + 2, "the tool call and its result");
        assert_eq!(&new[..old.len()], old.as_slice());
        assert_eq!(new[old.len()]["content"][0]["type"], "tool_use");
        assert_eq!(new[old.len() + 1]["content"][0]["type"], "tool_result");
    }
    app.stop().await;
}

#[sqlx::test]
async fn cache_reads_are_priced_at_the_cache_read_price_and_models_can_turn_caching_off(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let post = reqwest::Method::POST;
    let patch = reqwest::Method::PATCH;
    let anthropic = FakeAnthropic::start().await;
    let (status, provider) = send(
        &app,
        post.clone(),
        &owner,
        "/api/v1/admin/providers",
        json!({"name": "Claude", "kind": "anthropic", "base_url": anthropic.base_url, "api_key": "sk-ant-db"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    // $3 input, $15 output, $0.30 cache read, $3.75 cache write per million tokens.
    let (status, model) = send(
        &app,
        post.clone(),
        &owner,
        "/api/v1/admin/models",
        json!({"provider_id": provider["id"], "name": "claude-db", "is_default": true,
               "input_price_micros": 3_000_000, "output_price_micros": 15_000_000,
               "cache_read_price_micros": 300_000, "cache_write_price_micros": 3_750_000}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    assert_eq!(model["prompt_caching"], true, "on by default");
    assert_eq!(model["cache_ttl"], "5m");
    let model_path = format!("/api/v1/admin/models/{}", model["id"].as_str().unwrap());

    // Debug runs, to see the cache per step.
    let (status, _) = app
        .put_as(
            &owner,
            "/api/v1/admin/config",
            json!({"debug_logging_enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/preferences",
            json!({"debug_logging_enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    anthropic.report_usage(json!({"input_tokens": 100, "output_tokens": 1,
        "cache_read_input_tokens": 2_000, "cache_creation_input_tokens": 300}));
    let chat = app.create_chat("price the cache").await;
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    let answer = &messages[1];
    assert_eq!(answer["usage"]["input_tokens"], 2_400, "{answer}");
    assert_eq!(answer["usage"]["cache_read_tokens"], 2_000);
    assert_eq!(answer["usage"]["cache_write_tokens"], 300);
    assert_eq!(answer["usage"]["output_tokens"], 6);
    // 100 x $3 + 6 x $15 + 2,000 x $0.30 + 300 x $3.75 per million
    // = 300 + 90 + 600 + 1,125 micro-dollars.
    assert_eq!(answer["cost_micros"], 2_115, "{answer}");
    let (_, runs) = app.get(&format!("/api/v1/chats/{chat}/debug/runs")).await;
    let run_id = runs["runs"][0]["id"].as_str().unwrap();
    let (_, run) = app
        .get(&format!("/api/v1/chats/{chat}/debug/runs/{run_id}"))
        .await;
    let step_usage = &run["steps"][0]["usage"];
    assert_eq!(step_usage["cache_read_tokens"], 2_000, "{run}");
    assert_eq!(step_usage["cache_write_tokens"], 300, "{run}");
    let first = &anthropic.received()[0];
    assert_eq!(
        last_block(first)["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert!((1..=4).contains(&breakpoints(first)), "{first}");

    // The hour-long TTL.
    let (status, changed) = send(
        &app,
        patch.clone(),
        &owner,
        &model_path,
        json!({"cache_ttl": "1h"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["cache_ttl"], "1h");
    let (status, error) = send(
        &app,
        patch.clone(),
        &owner,
        &model_path,
        json!({"cache_ttl": "2h"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["validations"][0]["field"], "cache_ttl");
    let chat = app.create_chat("an hour").await;
    app.wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    let received = anthropic.received();
    assert_eq!(
        last_block(&received[1])["cache_control"],
        json!({"type": "ephemeral", "ttl": "1h"})
    );

    // The switch off: no breakpoint anywhere.
    let (status, changed) = send(
        &app,
        patch,
        &owner,
        &model_path,
        json!({"prompt_caching": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["prompt_caching"], false);
    let (_, listed) = send(
        &app,
        reqwest::Method::GET,
        &owner,
        "/api/v1/admin/models",
        json!({}),
    )
    .await;
    assert_eq!(listed["models"][0]["prompt_caching"], false);
    let chat = app.create_chat("no cache").await;
    app.wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    let received = anthropic.received();
    assert_eq!(received.len(), 3);
    assert_eq!(breakpoints(&received[2]), 0, "{}", received[2]);
    app.stop().await;
}

#[sqlx::test]
async fn openai_gets_one_prompt_cache_key_per_chat_and_compatible_servers_none(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let post = reqwest::Method::POST;
    let mut model_ids = Vec::new();
    for (name, kind) in [("OpenAI", "openai"), ("Gateway", "openai-compat")] {
        let (status, provider) = send(
            &app,
            post.clone(),
            &owner,
            "/api/v1/admin/providers",
            json!({"name": name, "kind": kind, "base_url": app.fake.base_url, "api_key": "sk-db"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{provider}");
        let (status, model) = send(
            &app,
            post.clone(),
            &owner,
            "/api/v1/admin/models",
            json!({"provider_id": provider["id"], "name": format!("{kind}-model")}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{model}");
        model_ids.push(model["id"].clone());
    }

    app.fake.script([
        fake_openai::Reply::ToolCalls(vec![("call_1".into(), "current_time".into(), json!({}))]),
        fake_openai::Reply::Text("done".into()),
        fake_openai::Reply::ToolCalls(vec![("call_2".into(), "current_time".into(), json!({}))]),
        fake_openai::Reply::Text("done".into()),
    ]);
    let mut chats = Vec::new();
    for model_id in &model_ids {
        let (status, created) = app
            .post(
                "/api/v1/chats",
                json!({"message": "what time is it?", "model_config_id": model_id}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let chat: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        app.wait_until_answered(chat, 4, Duration::from_secs(20))
            .await;
        chats.push(chat);
    }
    let received = app.fake.received();
    assert_eq!(received.len(), 4);
    let openai: Vec<&Value> = received[..2].iter().map(|r| &r.body).collect();
    assert!(openai.iter().all(|b| b["model"] == "openai-model"));
    assert_eq!(openai[0]["prompt_cache_key"], chats[0].to_string());
    assert_eq!(
        openai[1]["prompt_cache_key"],
        chats[0].to_string(),
        "stable across steps"
    );
    for request in &received[2..] {
        assert_eq!(request.body["model"], "openai-compat-model");
        assert!(
            request.body.get("prompt_cache_key").is_none(),
            "{}",
            request.body
        );
    }
    app.stop().await;
}
