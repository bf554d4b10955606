//! Reasoning options sent (issue #13, item 3; ARCHITECTURE.md §7), seen from the providers'
//! side: a model's `reasoning_effort` reaches OpenAI-style providers as `reasoning_effort`
//! and Anthropic as `thinking` with the level's budget (and `max_tokens` raised by it); a
//! chat's own level overrides the model's, `null` gives it back, and with neither nothing
//! is sent. Anthropic's signed thinking goes back with the tool step it belongs to.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    fake_anthropic::{self, FakeAnthropic},
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// Creates a provider of `kind` at `base_url` and a model of it; returns the model's id.
async fn model(app: &TestApp, owner: &str, kind: &str, base_url: &str, model: Value) -> Value {
    let post = reqwest::Method::POST;
    let (status, provider) = app
        .send(
            post.clone(),
            owner,
            "/api/v1/admin/providers",
            Some(json!({"name": format!("{kind} provider"), "kind": kind, "base_url": base_url, "api_key": "sk-db"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let mut body = model;
    body["provider_id"] = provider["id"].clone();
    let (status, created) = app
        .send(post, owner, "/api/v1/admin/models", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].clone()
}

/// Creates a chat with `body` (its `message` set) and waits for `count` messages.
async fn answered_chat(app: &TestApp, body: Value, count: usize) -> Uuid {
    let (status, created) = app.post("/api/v1/chats", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let chat: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(chat, count, WAIT).await;
    chat
}

/// Patches the chat's settings (asserts it worked); returns the chat.
async fn patch_chat(app: &TestApp, chat: Uuid, body: Value) -> Value {
    let (status, changed) = app
        .patch_as(&app.token, &format!("/api/v1/chats/{chat}"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    changed
}

#[sqlx::test]
async fn openai_style_providers_get_the_models_effort_or_the_chats_or_none(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let fake = app.fake.base_url.clone();
    let openai = model(
        &app,
        &owner,
        "openai",
        &fake,
        json!({"name": "o-model", "reasoning_effort": "medium", "max_output_tokens": 900}),
    )
    .await;
    let compat = model(
        &app,
        &owner,
        "openai-compat",
        &fake,
        json!({"name": "compat-model", "reasoning_effort": "low", "max_output_tokens": 900}),
    )
    .await;
    let plain = model(
        &app,
        &owner,
        "openrouter",
        &fake,
        json!({"name": "plain-model"}),
    )
    .await;

    // The model's option.
    answered_chat(
        &app,
        json!({"message": "model effort", "model_config_id": openai}),
        2,
    )
    .await;
    let sent = &app.fake.received_for("model effort")[0].body;
    assert_eq!(sent["reasoning_effort"], "medium", "{sent}");
    // OpenAI's reasoning models take the cap as `max_completion_tokens`.
    assert_eq!(sent["max_completion_tokens"], 900, "{sent}");
    assert!(sent.get("max_tokens").is_none(), "{sent}");

    // A compatible server gets the field too, and keeps `max_tokens`.
    answered_chat(
        &app,
        json!({"message": "compat effort", "model_config_id": compat}),
        2,
    )
    .await;
    let sent = &app.fake.received_for("compat effort")[0].body;
    assert_eq!(sent["reasoning_effort"], "low", "{sent}");
    assert_eq!(sent["max_tokens"], 900, "{sent}");

    // A chat's own level wins; `null` gives the model's back.
    let chat = answered_chat(
        &app,
        json!({"message": "chat override", "model_config_id": openai, "reasoning_effort": "high"}),
        2,
    )
    .await;
    let (_, shown) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(shown["reasoning_effort"], "high");
    let sent = &app.fake.received_for("chat override")[0].body;
    assert_eq!(sent["reasoning_effort"], "high", "{sent}");
    let changed = patch_chat(&app, chat, json!({"reasoning_effort": "low"})).await;
    assert_eq!(changed["reasoning_effort"], "low");
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "now low"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.wait_until_answered(chat, 4, WAIT).await;
    let changed = patch_chat(&app, chat, json!({"reasoning_effort": null})).await;
    assert_eq!(changed["reasoning_effort"], Value::Null);
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "model's again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.wait_until_answered(chat, 6, WAIT).await;
    let sent: Vec<Value> = app
        .fake
        .received_for("chat override")
        .into_iter()
        .map(|r| r.body["reasoning_effort"].clone())
        .collect();
    assert_eq!(sent, [json!("high"), json!("low"), json!("medium")]);

    // Neither the model nor the chat sets one: nothing is sent.
    answered_chat(
        &app,
        json!({"message": "no effort", "model_config_id": plain}),
        2,
    )
    .await;
    let sent = &app.fake.received_for("no effort")[0].body;
    assert!(sent.get("reasoning_effort").is_none(), "{sent}");
    assert!(sent.get("max_completion_tokens").is_none(), "{sent}");
    // A chat's own level applies whatever its model, the default model included.
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            &owner,
            &format!("/api/v1/admin/models/{}", plain.as_str().unwrap()),
            Some(json!({"is_default": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    answered_chat(
        &app,
        json!({"message": "default with chat level", "reasoning_effort": "medium"}),
        2,
    )
    .await;
    let sent = &app.fake.received_for("default with chat level")[0].body;
    assert_eq!(sent["model"], "plain-model");
    assert_eq!(sent["reasoning_effort"], "medium", "{sent}");
    app.stop().await;
}

#[sqlx::test]
async fn bad_levels_are_a_400_naming_the_field(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    for bad in [json!("extreme"), json!(3), json!("")] {
        let (status, body) = app
            .post(
                "/api/v1/chats",
                json!({"message": "hi", "reasoning_effort": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["validations"][0]["field"], "reasoning_effort",
            "{body}"
        );
    }
    let chat = app.create_chat("hi").await;
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}"),
            json!({"reasoning_effort": "max"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["validations"][0]["field"], "reasoning_effort",
        "{body}"
    );
    let (_, shown) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(shown["reasoning_effort"], Value::Null, "unchanged: {shown}");

    let (status, provider) = app
        .send(
            reqwest::Method::POST,
            &owner,
            "/api/v1/admin/providers",
            Some(json!({"name": "P", "kind": "openai-compat", "base_url": app.fake.base_url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            &owner,
            "/api/v1/admin/models",
            Some(
                json!({"provider_id": provider["id"], "name": "m", "reasoning_effort": "extreme"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["validations"][0]["field"], "reasoning_effort",
        "{body}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn anthropic_thinks_with_the_levels_budget_and_gets_its_signed_thinking_back(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let anthropic = FakeAnthropic::start().await;
    let claude = model(
        &app,
        &owner,
        "anthropic",
        &anthropic.base_url,
        json!({"name": "claude-x", "is_default": true, "reasoning_effort": "low",
               "max_output_tokens": 2000, "prompt_caching": false}),
    )
    .await;

    // A step that thinks, then calls a tool; the next step answers.
    anthropic.script([
        fake_anthropic::Reply::Thinking {
            thinking: "The user wants the time.".into(),
            signature: "sig-abc".into(),
            then: Box::new(fake_anthropic::Reply::ToolUse(
                "toolu_1".into(),
                "current_time".into(),
                json!({}),
            )),
        },
        fake_anthropic::Reply::Text("It is noon.".into()),
    ]);
    let chat = answered_chat(&app, json!({"message": "what time is it?"}), 4).await;
    let received = anthropic.received();
    assert_eq!(received.len(), 2);
    for body in &received {
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 1024}),
            "{body}"
        );
        assert_eq!(body["max_tokens"], 2000 + 1024, "the answer keeps its cap");
        assert!(body.get("temperature").is_none());
    }
    // The tool step goes back with its thinking block first, signed, as received.
    let step = &received[1]["messages"][1];
    assert_eq!(step["role"], "assistant");
    assert_eq!(
        step["content"][0],
        json!({"type": "thinking", "thinking": "The user wants the time.", "signature": "sig-abc"})
    );
    assert_eq!(step["content"][1]["type"], "tool_use");
    // The message keeps the reasoning and its signature.
    let messages = app.messages(chat).await;
    assert_eq!(messages[1]["content"][0]["type"], "reasoning");
    assert_eq!(messages[1]["content"][0]["signature"], "sig-abc");
    assert_eq!(messages[3]["content"][0]["text"], "It is noon.");

    // The chat's own level: the high budget.
    let other = answered_chat(
        &app,
        json!({"message": "think hard", "reasoning_effort": "high"}),
        2,
    )
    .await;
    let body = anthropic.received().pop().unwrap();
    assert_eq!(body["thinking"]["budget_tokens"], 16_384, "{body}");
    assert_eq!(body["max_tokens"], 2000 + 16_384);

    // No level anywhere: no thinking, the plain cap, and the stored thinking is not sent.
    let (status, changed) = app
        .send(
            reqwest::Method::PATCH,
            &owner,
            &format!("/api/v1/admin/models/{}", claude.as_str().unwrap()),
            Some(json!({"reasoning_effort": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "and now?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.wait_until_answered(chat, 6, WAIT).await;
    let body = anthropic.received().pop().unwrap();
    assert!(body.get("thinking").is_none(), "{body}");
    assert_eq!(body["max_tokens"], 2000);
    assert!(!body.to_string().contains("sig-abc"), "{body}");
    assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
    // The chat with its own level still thinks.
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{other}/messages"),
            json!({"message": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.wait_until_answered(other, 4, WAIT).await;
    let body = anthropic.received().pop().unwrap();
    assert_eq!(body["thinking"]["budget_tokens"], 16_384, "{body}");
    app.stop().await;
}
