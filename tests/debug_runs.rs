//! Debug runs: recorded only when the site and the owner switch them on; list, detail and
//! export for the owner; no secret in any of them.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_user},
    fake_openai::{Reply, answer_to},
};

#[sqlx::test]
async fn debug_runs_record_each_attempt_and_export_without_secrets(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;

    // Off by default: nothing is recorded.
    let quiet = app.create_chat("not recorded").await;
    app.wait_until_answered(quiet, 2, Duration::from_secs(10))
        .await;
    let (status, body) = app.get(&format!("/api/v1/chats/{quiet}/debug/runs")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["runs"].as_array().unwrap().len(), 0);

    // The site switch (a site owner's) and the chat owner's.
    let owner = support::app::create_owner(&app.services, "root@example.com").await;
    let response = app
        .client
        .put(format!("{}/api/v1/admin/config", app.base))
        .bearer_auth(&owner)
        .json(&json!({"debug_logging_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .client
        .put(format!("{}/api/v1/users/me/preferences", app.base))
        .bearer_auth(&app.token)
        .json(&json!({"debug_logging_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    app.fake.script([Reply::Status {
        code: 429,
        retry_after: Some("0".into()),
        body: r#"{"error":{"message":"slow down"}}"#.into(),
    }]);
    let chat = app.create_chat("record me").await;
    app.wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;

    let (status, list) = app.get(&format!("/api/v1/chats/{chat}/debug/runs")).await;
    assert_eq!(status, StatusCode::OK);
    let runs = list["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(runs[0]["provider"], "OpenAI");
    assert!(runs[0]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let run_id = runs[0]["id"].as_str().unwrap();

    let (status, detail) = app
        .get(&format!("/api/v1/chats/{chat}/debug/runs/{run_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let steps = detail["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "one step per attempt: {detail}");
    assert_eq!(steps[0]["attempt"], 1);
    assert_eq!(steps[0]["error"]["kind"], "rate_limit");
    assert_eq!(steps[1]["attempt"], 2);
    assert!(steps[1]["error"].is_null());
    assert_eq!(steps[1]["response"]["text"], answer_to("record me"));
    assert_eq!(steps[1]["request"]["model"], "fake-gpt");
    assert_eq!(steps[0]["request"]["messages_from"], 0);
    assert_eq!(
        steps[0]["request"]["messages"][0]["content"][0]["text"],
        "record me"
    );
    // The retry sent the same conversation: its step stores no message again.
    assert_eq!(steps[1]["request"]["messages_from"], 1);
    assert_eq!(steps[1]["request"]["messages"], serde_json::json!([]));
    assert!(steps[1]["first_byte_ms"].as_i64().is_some());
    assert!(steps[1]["duration_ms"].as_i64().is_some());

    let (status, export) = app.get(&format!("/api/v1/chats/{chat}/debug/export")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export["version"], 1);
    assert_eq!(export["scope"], "chat");
    assert_eq!(export["chat_id"], chat.to_string());
    assert_eq!(export["run_count"], 1);
    assert_eq!(export["limited_to_most_recent"], 100);
    assert!(export["exported_at"].as_str().is_some());
    assert_eq!(export["runs"][0]["steps"].as_array().unwrap().len(), 2);
    let text = export.to_string();
    assert!(
        !text.contains("sk-test-secret"),
        "the provider key never appears"
    );
    assert!(!text.contains(&app.token), "the API token never appears");

    // Only the owner may read them.
    let mallory = create_user(&app.services, "mallory@example.com", "evil").await;
    for path in [
        format!("/api/v1/chats/{chat}/debug/runs"),
        format!("/api/v1/chats/{chat}/debug/runs/{run_id}"),
        format!("/api/v1/chats/{chat}/debug/export"),
    ] {
        let (status, _) = app.get_as(&mallory, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, body) = app
        .get(&format!(
            "/api/v1/chats/{chat}/debug/runs/{}",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body): (StatusCode, Value) = app
        .get(&format!("/api/v1/chats/{chat}/debug/runs/nope"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["validations"][0]["field"], "run_id");
    app.stop().await;
}

/// Each recorded step stores only the messages that are new since the chat's previous
/// recorded step, so debug storage grows with the conversation, not with its square.
#[sqlx::test]
async fn debug_steps_store_only_what_is_new_since_the_last_step(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = support::app::create_owner(&app.services, "root@example.com").await;
    app.configure_site(&owner, json!({"debug_logging_enabled": true}))
        .await;
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/preferences",
            json!({"debug_logging_enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let chat = app.create_chat("turn one").await;
    app.wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    for (n, text) in [(4, "turn two"), (6, "turn three")] {
        let (status, body) = app
            .post(
                &format!("/api/v1/chats/{chat}/messages"),
                json!({ "message": text }),
            )
            .await;
        assert!(status.is_success(), "{body}");
        app.wait_until_answered(chat, n, Duration::from_secs(10))
            .await;
    }
    let (_, export) = app.get(&format!("/api/v1/chats/{chat}/debug/export")).await;
    // Newest run first; one step each.
    let requests: Vec<&Value> = export["runs"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|run| &run["steps"][0]["request"])
        .collect();
    assert_eq!(requests.len(), 3);
    let shape: Vec<(u64, Vec<&str>)> = requests
        .iter()
        .map(|r| {
            let texts = r["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["content"][0]["text"].as_str().unwrap())
                .collect();
            (r["messages_from"].as_u64().unwrap(), texts)
        })
        .collect();
    let (one, two) = (answer_to("turn one"), answer_to("turn two"));
    assert_eq!(
        shape,
        [
            (0, vec!["turn one"]),
            (1, vec![one.as_str(), "turn two"]),
            (3, vec![two.as_str(), "turn three"]),
        ]
    );
    app.stop().await;
}

/// `finish_debug_run` moves a run only from `running`: a stale step that reports late
/// cannot overwrite where the run already stands, and the next step's start reopens it.
#[sqlx::test]
async fn a_debug_run_is_finished_only_from_running(pool: sqlx::PgPool) {
    use agentq_core::{
        domain::{DebugRunStatus, NewChat},
        store::{ChatCreation, Store},
    };

    let store = Store::new(pool);
    let org = store.ensure_organization("acme").await.unwrap();
    let owner = store.ensure_user("dora@example.com", false).await.unwrap();
    let ChatCreation::Created { chat, turn_id, .. } = store
        .create_chat(NewChat {
            title: "debug".into(),
            ..support::app::new_chat(owner, org, "hi")
        })
        .await
        .unwrap()
    else {
        panic!("a chat without a key is always made");
    };
    let status = |store: Store, run| async move {
        store.get_debug_run(chat.id, run).await.unwrap().0.status
    };

    let run = store
        .start_debug_run(chat.id, turn_id, "echo", "echo")
        .await
        .unwrap();
    assert_eq!(status(store.clone(), run).await, DebugRunStatus::Running);
    assert!(
        store
            .finish_debug_run(run, DebugRunStatus::AwaitingTools, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_debug_run(run, DebugRunStatus::Failed, None)
            .await
            .unwrap(),
        "a late report finds the run no longer running"
    );
    assert_eq!(
        status(store.clone(), run).await,
        DebugRunStatus::AwaitingTools
    );

    let again = store
        .start_debug_run(chat.id, turn_id, "echo", "echo")
        .await
        .unwrap();
    assert_eq!(again, run, "one run per turn");
    assert!(
        store
            .finish_debug_run(run, DebugRunStatus::Completed, None)
            .await
            .unwrap()
    );
    assert_eq!(status(store.clone(), run).await, DebugRunStatus::Completed);
}
