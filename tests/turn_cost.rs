//! A turn's cost is bounded whatever the model, the worker or the database does: bytes
//! PostgreSQL refuses are replaced instead of failing the save (and re-running the paid
//! call), a step that keeps dying (or cannot read its conversation) is started a bounded
//! number of times, and a panicking
//! job neither keeps its lease alive nor blocks an interrupt.

mod support;

use std::time::Duration;

use agentq_core::domain::TurnStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{app::TestApp, eventually, fake_openai::Reply};

async fn chat(app: &TestApp, chat: uuid::Uuid) -> Value {
    app.get(&format!("/api/v1/chats/{chat}")).await.1
}

async fn settled(app: &TestApp, chat_id: uuid::Uuid, status: &str) -> Value {
    eventually(Duration::from_secs(30), status, || async {
        let c = chat(app, chat_id).await;
        (c["status"] == status).then_some(c)
    })
    .await
}

/// Waits until the chat fails with `worker_lost`, its step started `starts` times.
async fn lost_after_starts(app: &TestApp, chat_id: uuid::Uuid, starts: u32) {
    let failed = settled(app, chat_id, "error").await;
    assert_eq!(failed["last_error"]["kind"], "worker_lost", "{failed}");
    assert!(
        failed["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("started {starts} times")),
        "{failed}"
    );
}

#[sqlx::test]
async fn an_answer_holding_nul_characters_is_saved_once_with_replacement_characters(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    app.fake
        .script([Reply::Text("before\u{0}after \u{0}\u{0} end".into())]);
    let chat = app.create_chat("say something odd").await;
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    assert_eq!(
        messages[1]["content"][0]["text"],
        "before\u{FFFD}after \u{FFFD}\u{FFFD} end"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.fake.received().len(), 1, "the provider was called once");
    app.stop().await;
}

#[sqlx::test]
async fn tool_arguments_and_client_text_holding_nul_are_saved(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([Reply::ToolCalls(vec![(
        "call_1".into(),
        "open_file".into(),
        json!({"path": "a\u{0}b", "k\u{0}ey": ["\u{0}"]}),
    )])]);
    let (status, created) = app
        .post(
            "/api/v1/chats",
            json!({
                "message": "open it\u{0} please",
                "dynamic_tools": [{
                    "name": "open_file",
                    "description": "Reads\u{0} a file",
                    "input_schema": {"type": "object"}
                }]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let chat_id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    settled(&app, chat_id, "requires_action").await;
    let messages = app.messages(chat_id).await;
    assert_eq!(messages[0]["content"][0]["text"], "open it\u{FFFD} please");
    let call = &messages[1]["content"][0];
    assert_eq!(call["type"], "tool_call");
    assert_eq!(
        call["arguments"],
        json!({"path": "a\u{FFFD}b", "k\u{FFFD}ey": ["\u{FFFD}"]})
    );
    // The client reads what waits for it, whole, from the API.
    let (status, waiting) = app
        .get(&format!("/api/v1/chats/{chat_id}/tool-calls"))
        .await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    let calls = waiting["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{waiting}");
    assert_eq!(calls[0]["tool_name"], "open_file");
    assert_eq!(calls[0]["args"]["path"], "a\u{FFFD}b");
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat_id}/tool-results"),
            json!({"results": [{"tool_call_id": calls[0]["tool_call_id"], "output": "line\u{0}one"}]}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let messages = app
        .wait_until_answered(chat_id, 4, Duration::from_secs(20))
        .await;
    assert_eq!(messages[2]["content"][0]["output"], "line\u{FFFD}one");
    let (_, waiting) = app
        .get(&format!("/api/v1/chats/{chat_id}/tool-calls"))
        .await;
    assert_eq!(waiting["tool_calls"], json!([]), "nothing waits any more");
    assert_eq!(app.fake.received().len(), 2, "one call per step");
    app.stop().await;
}

/// A step that panics mid-answer every time: each panic hands the turn back at once (no
/// lease left renewing), each retry counts, and after `turn_max_attempts` starts the turn
/// fails with `worker_lost` without another model call.
#[sqlx::test]
async fn a_step_that_keeps_panicking_is_started_a_bounded_number_of_times(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.turn_max_attempts = 2;
    app.start_worker().await;
    fail::cfg("turn-streaming", "panic").unwrap();
    let chat_id = app.create_chat("crash please").await;
    lost_after_starts(&app, chat_id, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        app.fake.received().len(),
        2,
        "one model call per start, then none"
    );
    let (status, owner, expires): (
        String,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "SELECT status, lease_owner, lease_expires_at FROM chat_turns WHERE chat_id = $1",
    )
    .bind(chat_id)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), owner, expires),
        ("failed", None, None),
        "no lease outlives the panics"
    );
    fail::remove("turn-streaming");
    app.stop().await;
}

/// A conversation holding a message this build cannot read (a kind of part a newer version
/// wrote): each step that decodes it fails before any model call and hands the turn back,
/// each start counts, and past `turn_max_attempts` the turn fails with `worker_lost`
/// instead of being retried for ever.
#[sqlx::test]
async fn a_message_this_build_cannot_read_fails_the_turn_after_its_attempts(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.turn_max_attempts = 2;
    let chat_id = app.create_chat("read this").await;
    app.add_unreadable_message(chat_id).await;
    app.start_worker().await;
    lost_after_starts(&app, chat_id, 2).await;
    assert!(app.fake.received().is_empty(), "no model call");
    app.stop().await;
}

/// A job that panicked left nothing running: its lease is not renewed (the row shows no
/// lease a moment later) and interrupting the turn completes at once.
#[sqlx::test]
async fn interrupting_a_turn_whose_job_panicked_completes(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.turn_max_attempts = 50;
    app.queue.max_attempts = 50;
    app.start_worker().await;
    fail::cfg("turn-streaming", "panic").unwrap();
    let chat_id = app.create_chat("crash, then stop").await;
    eventually(Duration::from_secs(10), "the first crash", || async {
        (!app.fake.received().is_empty()).then_some(())
    })
    .await;
    // Handed back by the panic: queued, nobody's lease on it.
    eventually(Duration::from_secs(5), "the turn handed back", || async {
        let row: (String, Option<String>) =
            sqlx::query_as("SELECT status, lease_owner FROM chat_turns WHERE chat_id = $1")
                .bind(chat_id)
                .fetch_one(app.services.store.pool())
                .await
                .unwrap();
        (row.0 == "queued" && row.1.is_none()).then_some(())
    })
    .await;
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat_id}/interrupt"), json!({}))
        .await;
    assert!(status.is_success(), "{status} {body}");
    let stopped = settled(&app, chat_id, "waiting").await;
    assert!(stopped["last_error"].is_null(), "{stopped}");
    let calls = app.fake.received().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.fake.received().len(),
        calls,
        "no model call after the interrupt"
    );
    let (turn_status,): (TurnStatus,) =
        sqlx::query_as("SELECT status FROM chat_turns WHERE chat_id = $1")
            .bind(chat_id)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert_eq!(turn_status, TurnStatus::Interrupted);
    fail::remove("turn-streaming");
    app.stop().await;
}

/// A conversation larger than `max_conversation_bytes` fails with `context_length` before
/// any provider call.
#[sqlx::test]
async fn a_conversation_over_the_size_cap_fails_without_a_model_call(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.max_conversation_bytes = 10_000;
    app.start_worker().await;
    let chat_id = app.create_chat(&"x".repeat(9_000)).await;
    app.wait_until_answered(chat_id, 2, Duration::from_secs(20))
        .await;
    // The second message pushes the conversation past the cap.
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat_id}/messages"),
            json!({"message": "y".repeat(2_000)}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let failed = settled(&app, chat_id, "error").await;
    assert_eq!(failed["last_error"]["kind"], "context_length", "{failed}");
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("10000 bytes"), "{message}");
    assert_eq!(
        app.fake.received().len(),
        1,
        "only the first turn reached the model"
    );
    app.stop().await;
}

/// A step that asks for more tool calls than `max_tool_calls_per_step` fails with a clear
/// error: nothing floods the shared tools queue.
#[sqlx::test]
async fn a_step_asking_for_too_many_tool_calls_fails_without_queueing_them(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.max_tool_calls_per_step = 3;
    app.start_worker().await;
    let calls = (0..5)
        .map(|i| (format!("c{i}"), "current_time".to_owned(), json!({})))
        .collect();
    app.fake.script([Reply::ToolCalls(calls)]);
    let chat_id = app.create_chat("flood the queue").await;
    let failed = settled(&app, chat_id, "error").await;
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("more than 3 tool calls"), "{message}");
    let (queued,): (i64,) = sqlx::query_as("SELECT count(*) FROM tool_calls WHERE chat_id = $1")
        .bind(chat_id)
        .fetch_one(app.services.store.pool())
        .await
        .unwrap();
    assert_eq!(queued, 0, "no call was queued");
    assert_eq!(app.fake.received().len(), 1, "not retried");
    app.stop().await;
}
