//! Models by context (issue #13 item 4; README "Models by context"): one resolution order,
//! message > chat > user > site context > site default, each row shown by the model name
//! a real provider on 127.0.0.1 receives; subagents resolve through their own context; a
//! model that is disabled, or whose provider is, is a 400 naming the field wherever it is
//! chosen.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    fake_openai::{LAST_RESULT_CHAT_ID, Reply},
};
use uuid::Uuid;

/// Creates a provider on the test's fake and one model per name; returns the provider id
/// and the model ids by name.
async fn models(app: &TestApp, owner: &str, names: &[&str]) -> (String, Vec<String>) {
    let (status, provider) = app
        .post_as(
            owner,
            "/api/v1/admin/providers",
            json!({"name": "Gateway", "kind": "openai-compat", "base_url": app.fake.base_url, "api_key": "sk-db"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let provider_id = provider["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for name in names {
        let (status, model) = app
            .post_as(
                owner,
                "/api/v1/admin/models",
                json!({"provider_id": provider_id, "name": name, "is_default": *name == "site-default"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{model}");
        ids.push(model["id"].as_str().unwrap().to_owned());
    }
    (provider_id, ids)
}

/// The model name the provider received for the last request of the conversation whose
/// first user message is `key`.
fn model_for(app: &TestApp, key: &str) -> String {
    app.fake
        .received_for(key)
        .last()
        .map(|r| r.body["model"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no request for {key:?}"))
}

async fn answered(app: &TestApp, chat: Uuid, messages: usize) {
    app.wait_until_answered(chat, messages, Duration::from_secs(15))
        .await;
}

async fn chat_with(app: &TestApp, body: Value) -> Uuid {
    let (status, chat) = app.post("/api/v1/chats", body).await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let id = chat["id"].as_str().unwrap().parse().unwrap();
    answered(app, id, 2).await;
    id
}

async fn effective(app: &TestApp, chat: Uuid) -> Value {
    let (status, body) = app.get(&format!("/api/v1/chats/{chat}/model")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[sqlx::test]
async fn every_row_of_the_resolution_order_picks_the_model_the_provider_receives(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let (_, ids) = models(
        &app,
        &owner,
        &[
            "site-default",
            "site-root",
            "user-root",
            "chat-model",
            "message-model",
        ],
    )
    .await;
    let [default, site_root, user_root, chat_model, message_model] =
        <[String; 5]>::try_from(ids).unwrap();

    // Row 5: only a default model: it answers.
    let a = chat_with(&app, json!({"message": "row default"})).await;
    assert_eq!(model_for(&app, "row default"), "site-default");
    assert_eq!(
        effective(&app, a).await,
        json!({"model_id": default, "source": "site_default"})
    );

    // Row 4: the site's model for root chats beats the default, from the next step of
    // every chat on (the chat created above included).
    let (status, body) = app
        .put_as(
            &owner,
            "/api/v1/admin/model-contexts",
            json!({"root": site_root}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["root"], site_root.as_str());
    assert_eq!(body["title"], Value::Null);
    chat_with(&app, json!({"message": "row site context"})).await;
    assert_eq!(model_for(&app, "row site context"), "site-root");
    assert_eq!(effective(&app, a).await["source"], "site_context");

    // Row 3: the user's own override beats the site's context model.
    let (status, body) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/model-overrides",
            json!({"root": user_root}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = app
        .get_as(&app.token, "/api/v1/users/me/model-overrides")
        .await;
    assert_eq!(body, json!({"root": user_root}));
    chat_with(&app, json!({"message": "row user"})).await;
    assert_eq!(model_for(&app, "row user"), "user-root");
    // Another user's chats are not touched by it.
    let bob = support::app::create_user(&app.services, "bob@example.com", "acme").await;
    let (status, created) = app
        .post_as(&bob, "/api/v1/chats", json!({"message": "row bob"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    support::eventually(Duration::from_secs(15), "bob's answer", || async {
        (!app.fake.received_for("row bob").is_empty()).then_some(())
    })
    .await;
    assert_eq!(model_for(&app, "row bob"), "site-root");

    // Row 2: a chat that names its model beats the user's override.
    let chat = chat_with(
        &app,
        json!({"message": "row chat", "model_config_id": chat_model}),
    )
    .await;
    assert_eq!(model_for(&app, "row chat"), "chat-model");
    assert_eq!(
        effective(&app, chat).await,
        json!({"model_id": chat_model, "source": "chat"})
    );

    // Row 1: a message switches the chat's model from its turn on.
    let (status, sent) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "switch please", "model_config_id": message_model}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    answered(&app, chat, 4).await;
    assert_eq!(model_for(&app, "row chat"), "message-model");
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "and after"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    answered(&app, chat, 6).await;
    assert_eq!(
        model_for(&app, "row chat"),
        "message-model",
        "the switch lasts"
    );

    // PATCH null hands the choice back to the order: the user's override.
    let (status, patched) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}"),
            json!({"model_config_id": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["model_config_id"], Value::Null);
    assert_eq!(
        effective(&app, chat).await,
        json!({"model_id": user_root, "source": "user"})
    );
    app.post(
        &format!("/api/v1/chats/{chat}/messages"),
        json!({"message": "back to mine"}),
    )
    .await;
    answered(&app, chat, 8).await;
    assert_eq!(model_for(&app, "row chat"), "user-root");
    app.stop().await;
}

#[sqlx::test]
async fn a_message_queued_behind_a_turn_switches_the_model_when_it_is_promoted(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let (_, ids) = models(&app, &owner, &["site-default", "later-model"]).await;
    // The first answer takes a while, so the next message waits in the queue.
    app.fake.script([Reply::Hang(Duration::from_millis(800))]);
    let (status, chat) = app
        .post("/api/v1/chats", json!({"message": "queued switch"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let chat: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    let (status, sent) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "next one", "model_config_id": ids[1]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    answered(&app, chat, 4).await;
    let models: Vec<String> = app
        .fake
        .received_for("queued switch")
        .iter()
        .map(|r| r.body["model"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(models, ["site-default", "later-model"]);
    app.stop().await;
}

#[sqlx::test]
async fn subagents_resolve_through_their_type_else_the_model_their_parent_runs_on(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let (_, ids) = models(&app, &owner, &["site-default", "user-root", "explorer"]).await;
    app.put_as(
        &app.token,
        "/api/v1/users/me/model-overrides",
        json!({"root": ids[1]}),
    )
    .await;
    let spawn = |id: &str, prompt: &str, kind: &str| {
        Reply::ToolCalls(vec![(
            id.into(),
            "spawn_subagent".into(),
            json!({"prompt": prompt, "title": prompt, "subagent_type": kind}),
        )])
    };
    let wait = |id: &str| {
        Reply::ToolCalls(vec![(
            id.into(),
            "wait_agent".into(),
            json!({"chat_id": LAST_RESULT_CHAT_ID}),
        )])
    };
    app.fake.script_for(
        "parent of general",
        [
            spawn("c1", "general child", "general"),
            wait("c2"),
            Reply::Text("done".into()),
        ],
    );
    let parent = chat_with(&app, json!({"message": "parent of general"})).await;
    answered(&app, parent, 6).await;
    // No site model for `general`: the child runs on what its parent runs on (the
    // owner's override), not the default.
    assert_eq!(model_for(&app, "parent of general"), "user-root");
    assert_eq!(model_for(&app, "general child"), "user-root");

    let (status, body) = app
        .put_as(
            &owner,
            "/api/v1/admin/model-contexts",
            json!({"subagent_explore": ids[2]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same setting as the older subagent-models route.
    let (_, legacy) = app.get_as(&owner, "/api/v1/admin/subagent-models").await;
    assert_eq!(legacy, json!({"general": null, "explore": ids[2]}));
    app.fake.script_for(
        "parent of explore",
        [
            spawn("e1", "explore child", "explore"),
            wait("e2"),
            Reply::Text("done".into()),
        ],
    );
    let parent = chat_with(&app, json!({"message": "parent of explore"})).await;
    answered(&app, parent, 6).await;
    assert_eq!(model_for(&app, "explore child"), "explorer");
    assert_eq!(model_for(&app, "parent of explore"), "user-root");
    app.stop().await;
}

#[sqlx::test]
async fn a_disabled_or_unavailable_model_is_a_400_naming_the_field_wherever_it_is_chosen(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "owner@example.com").await;
    let (provider_id, ids) = models(&app, &owner, &["site-default", "retired"]).await;
    let (status, _) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("/api/v1/admin/models/{}", ids[1]),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, chat) = app.post("/api/v1/chats", json!({"message": "hi"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let chat = chat["id"].as_str().unwrap().to_owned();

    let retired = ids[1].as_str();
    let unknown = Uuid::now_v7().to_string();
    let cases: Vec<(Method, &str, String, Value, &str)> = vec![
        (
            Method::POST,
            &app.token,
            "/api/v1/chats".into(),
            json!({"message": "x", "model_config_id": retired}),
            "model_config_id",
        ),
        (
            Method::POST,
            &app.token,
            format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "x", "model_config_id": retired}),
            "model_config_id",
        ),
        (
            Method::PATCH,
            &app.token,
            format!("/api/v1/chats/{chat}"),
            json!({"model_config_id": unknown}),
            "model_config_id",
        ),
        (
            Method::PUT,
            &app.token,
            "/api/v1/users/me/model-overrides".into(),
            json!({"root": retired}),
            "root",
        ),
        (
            Method::PUT,
            &owner,
            "/api/v1/admin/model-contexts".into(),
            json!({"title": retired}),
            "title",
        ),
        (
            Method::PUT,
            &owner,
            "/api/v1/admin/model-contexts".into(),
            json!({"compaction": unknown}),
            "compaction",
        ),
        (
            Method::PUT,
            &owner,
            "/api/v1/admin/model-contexts".into(),
            json!({"tittle": ids[0]}),
            "tittle",
        ),
    ];
    for (method, token, path, body, field) in cases {
        let (status, error) = app.send(method.clone(), token, &path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {error}");
        assert_eq!(
            error["validations"][0]["field"], field,
            "{method} {path}: {error}"
        );
    }
    // A disabled provider makes its enabled models unavailable too.
    app.send(
        Method::PATCH,
        &owner,
        &format!("/api/v1/admin/providers/{provider_id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    let (status, error) = app
        .post(
            "/api/v1/chats",
            json!({"message": "x", "model_config_id": ids[0]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["validations"][0]["field"], "model_config_id");
    assert!(
        error["validations"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("site-default"),
        "the message names the model: {error}"
    );
    // Only site owners set the site's contexts.
    let (status, _) = app
        .put_as(&app.token, "/api/v1/admin/model-contexts", json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
