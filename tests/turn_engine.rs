//! The turn engine under what real providers and clusters do: tool fan-out and fan-in,
//! retries, final errors, interrupts, client-defined tools, lost workers.

mod support;

use std::time::{Duration, Instant};

use agentq_core::domain::TurnStatus;
use agentq_scheduler::SchedulerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::TestApp,
    eventually,
    fake_openai::{Reply, answer_to},
    sse::{is_status, read_until},
};

fn recovery(interval_secs: u64) -> SchedulerConfig {
    SchedulerConfig {
        interval_secs,
        stale_secs: 30,
        batch: 100,
        max_attempts: 3,
        maintenance_cron: "0 0 1 1 *".parse().unwrap(),
        diff_refresh: agentq_core::config::defaults(),
    }
}

async fn chat_status(app: &TestApp, chat: uuid::Uuid) -> Value {
    app.get(&format!("/api/v1/chats/{chat}")).await.1
}

#[sqlx::test]
async fn retryable_errors_are_retried_with_backoff_and_announced(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([
        Reply::Status {
            code: 429,
            retry_after: Some("1".into()),
            body: r#"{"error":{"message":"slow down"}}"#.into(),
        },
        Reply::Status {
            code: 500,
            retry_after: None,
            body: "upstream exploded".into(),
        },
        Reply::CutAfter(2),
    ]);
    let started = Instant::now();
    let chat = app.create_chat("persist please").await;
    let events = app
        .events_until(chat, Duration::from_secs(30), |e| {
            is_status(e, "waiting") || is_status(e, "error")
        })
        .await;
    let retries: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "retry")
        .map(|e| &e.data)
        .collect();
    assert_eq!(retries.len(), 3, "{events:?}");
    assert_eq!(retries[0]["attempt"], 1);
    assert_eq!(retries[0]["kind"], "rate_limit");
    assert_eq!(retries[0]["status_code"], 429);
    assert_eq!(retries[0]["delay_ms"], 1000, "Retry-After is honoured");
    assert_eq!(retries[0]["provider"], "OpenAI");
    assert!(retries[0]["retrying_at"].as_str().is_some());
    assert_eq!(retries[1]["kind"], "generic");
    assert_eq!(retries[1]["status_code"], 500);
    let second_delay = retries[1]["delay_ms"].as_u64().unwrap();
    assert!(
        (1600..=2400).contains(&second_delay),
        "1 s * 2^1 with jitter: {second_delay}"
    );
    assert_eq!(retries[2]["attempt"], 3);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "backoff was waited"
    );

    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    assert_eq!(
        messages[1]["content"][0]["text"],
        answer_to("persist please")
    );
    assert_eq!(app.fake.received().len(), 4);
    app.stop().await;
}

#[sqlx::test]
async fn a_provider_that_sends_no_first_byte_times_out_and_is_retried(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.provider_startup_timeout_secs = 1;
    app.start_worker().await;
    app.fake.script([Reply::Hang(Duration::from_secs(3))]);
    let chat = app.create_chat("anyone there").await;
    let events = app
        .events_until(chat, Duration::from_secs(15), |e| is_status(e, "waiting"))
        .await;
    let retry = &events
        .iter()
        .find(|e| e.event == "retry")
        .expect("a retry event")
        .data;
    assert_eq!(retry["kind"], "startup_timeout");
    assert_eq!(retry["attempt"], 1);
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(5))
        .await;
    assert_eq!(messages[1]["content"][0]["text"], answer_to("anyone there"));
    app.stop().await;
}

#[sqlx::test]
async fn final_errors_fail_the_turn_with_a_structured_error(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([Reply::Status {
        code: 401,
        retry_after: None,
        body: r#"{"error":{"message":"Incorrect API key provided"}}"#.into(),
    }]);
    let chat = app.create_chat("hello").await;
    let events = app
        .events_until(chat, Duration::from_secs(10), |e| is_status(e, "error"))
        .await;
    assert!(
        !events.iter().any(|e| e.event == "retry"),
        "auth errors are not retried"
    );
    let error = &events
        .iter()
        .find(|e| e.event == "error")
        .expect("an error event")
        .data["error"];
    assert_eq!(error["kind"], "auth");
    assert_eq!(error["retryable"], false);
    assert_eq!(error["status_code"], 401);
    assert_eq!(error["provider"], "OpenAI");
    assert_eq!(error["detail"], "Incorrect API key provided");
    let chat_json = chat_status(&app, chat).await;
    assert_eq!(chat_json["status"], "error");
    assert_eq!(chat_json["last_error"]["kind"], "auth");
    assert!(
        chat_json["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("OpenAI rejected the API key")
    );

    // Context length: final, and the chat accepts a new message afterwards.
    app.fake.script([Reply::Status {
        code: 400,
        retry_after: None,
        body: r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#.into(),
    }]);
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let chat_json = eventually(Duration::from_secs(10), "the second failure", || async {
        let c = chat_status(&app, chat).await;
        (c["status"] == "error" && c["last_error"]["kind"] == "context_length").then_some(c)
    })
    .await;
    assert_eq!(chat_json["last_error"]["retryable"], false);
    app.stop().await;
}

#[sqlx::test]
async fn exhausted_retries_fail_the_turn(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.provider_max_attempts = 2;
    app.start_worker().await;
    let overloaded = || Reply::Status {
        code: 503,
        retry_after: Some("0".into()),
        body: "busy".into(),
    };
    app.fake.script([overloaded(), overloaded()]);
    let chat = app.create_chat("hello").await;
    let chat_json = eventually(Duration::from_secs(10), "the turn to fail", || async {
        let c = chat_status(&app, chat).await;
        (c["status"] == "error").then_some(c)
    })
    .await;
    assert_eq!(chat_json["last_error"]["kind"], "overloaded");
    assert_eq!(chat_json["last_error"]["retryable"], true);
    assert_eq!(app.fake.received().len(), 2);
    app.stop().await;
}

#[sqlx::test]
async fn interrupt_stops_a_long_stream_within_a_second_and_keeps_the_partial_text(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    app.fake.set_chunk_delay(Duration::from_millis(200));
    let long = "word ".repeat(60);
    app.fake.script([Reply::Text(long)]);
    let chat = app.create_chat("tell me a long story").await;
    let url = app.stream_url(chat);
    let first = read_until(
        &app.client,
        &url,
        &app.token,
        None,
        Duration::from_secs(10),
        |e| e.event == "message_part",
    )
    .await;
    let resume = first.last().unwrap().id.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/interrupt"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "interrupting");
    let rest = read_until(
        &app.client,
        &url,
        &app.token,
        Some(&resume),
        Duration::from_secs(10),
        |e| is_status(e, "waiting"),
    )
    .await;
    let stopped_after = asked.elapsed();
    assert!(
        stopped_after < Duration::from_secs(1),
        "stopped {stopped_after:?} after the request"
    );

    let streamed: String = first
        .iter()
        .chain(rest.iter())
        .filter(|e| e.event == "message_part")
        .map(|e| e.data["part"]["text"].as_str().unwrap())
        .collect();
    let messages = app.messages(chat).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["interrupted"], true);
    assert_eq!(
        messages[1]["content"][0]["text"], streamed,
        "what streamed is what is kept"
    );
    assert!(streamed.len() < 300 && !streamed.is_empty());
    let turn_status: TurnStatus =
        sqlx::query_scalar("SELECT status FROM chat_turns WHERE chat_id = $1")
            .bind(chat)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert_eq!(turn_status, TurnStatus::Interrupted);

    // Nothing runs now: a second interrupt is a 409.
    let (status, _) = app
        .post(&format!("/api/v1/chats/{chat}/interrupt"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.stop().await;
}

#[sqlx::test]
async fn a_message_with_busy_behavior_interrupt_replaces_the_running_turn(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.set_chunk_delay(Duration::from_millis(200));
    app.fake.script([Reply::Text("word ".repeat(60))]);
    let chat = app.create_chat("first question").await;
    // Interrupt only once words stream: a chat that reads `running` may not have called
    // the provider yet, and a turn stopped before its first word leaves no message.
    let streamed = app
        .events_until(chat, Duration::from_secs(10), |e| e.event == "message_part")
        .await;
    assert!(
        streamed.iter().any(|e| e.event == "message_part"),
        "the first answer never streamed"
    );
    app.fake.set_chunk_delay(Duration::from_millis(1));
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "never mind, this instead", "busy_behavior": "interrupt"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(10))
        .await;
    assert_eq!(messages[1]["interrupted"], true);
    assert_eq!(
        messages[2]["content"][0]["text"],
        "never mind, this instead"
    );
    assert_eq!(
        messages[3]["content"][0]["text"],
        answer_to("never mind, this instead")
    );
    app.stop().await;
}

#[sqlx::test]
async fn client_tools_round_trip_through_requires_action(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([
        Reply::ToolCalls(vec![
            (
                "call_a".into(),
                "open_file".into(),
                json!({"path": "src/main.rs"}),
            ),
            (
                "call_b".into(),
                "open_file".into(),
                json!({"path": "Cargo.toml"}),
            ),
        ]),
        Reply::Text("Both files look fine.".into()),
    ]);
    let (status, created) = app
        .post(
            "/api/v1/chats",
            json!({
                "message": "check my files",
                "dynamic_tools": [{
                    "name": "open_file",
                    "description": "Reads a file in the user's editor",
                    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
                }]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let chat: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let events = app
        .events_until(chat, Duration::from_secs(10), |e| {
            is_status(e, "requires_action")
        })
        .await;
    let action = &events
        .iter()
        .find(|e| e.event == "action_required")
        .expect("action_required")
        .data;
    let calls = action["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["tool_name"], "open_file");
    assert_eq!(calls[0]["args"]["path"], "src/main.rs");
    let id_a = calls[0]["tool_call_id"].as_str().unwrap().to_owned();
    let id_b = calls[1]["tool_call_id"].as_str().unwrap().to_owned();
    assert_eq!(chat_status(&app, chat).await["status"], "requires_action");

    let url = format!("/api/v1/chats/{chat}/tool-results");
    let result = |id: &str| json!({"tool_call_id": id, "output": format!("contents of {id}")});
    let stranger = uuid::Uuid::now_v7().to_string();
    let bad = [
        (json!({"results": []}), "results"),
        (json!({"results": [result(&id_a)]}), &id_b as &str),
        (
            json!({"results": [result(&id_a), result(&id_a), result(&id_b)]}),
            "duplicate",
        ),
        (
            json!({"results": [result(&id_a), result(&id_b), result(&stranger)]}),
            &stranger as &str,
        ),
        (
            json!({"results": [{"tool_call_id": "nope", "output": 1}]}),
            "results[0].tool_call_id",
        ),
        (json!({"outputs": []}), "outputs"),
    ];
    for (body, named) in bad {
        let (status, error) = app.post(&url, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {error}");
        assert!(
            error.to_string().contains(named),
            "{body}: the error names {named}: {error}"
        );
    }
    let (status, body) = app.post(&url, json!({"results": [result(&id_a), {"tool_call_id": id_b, "output": {"error": "no such file"}, "is_error": true}]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = app.post(&url, json!({"results": [result(&id_a)]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing waits any more");

    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(10))
        .await;
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["content"][1]["is_error"], true);
    assert_eq!(messages[3]["content"][0]["text"], "Both files look fine.");
    let second = &app.fake.received()[1].body;
    let tool_messages: Vec<&Value> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_messages.len(), 2);
    assert_eq!(tool_messages[0]["tool_call_id"], "call_a");
    assert!(
        tool_messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("contents of")
    );
    assert!(
        second["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "open_file")
    );
    app.stop().await;
}

#[sqlx::test]
async fn bad_dynamic_tool_definitions_are_400s(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let tool = |name: &str, schema: Value| json!({"name": name, "description": "x", "input_schema": schema});
    let object = json!({"type": "object"});
    for (tools, field) in [
        (
            json!([tool("has space", object.clone())]),
            "dynamic_tools[0].name",
        ),
        (
            json!([tool("a", object.clone()), tool("a", object.clone())]),
            "dynamic_tools[1].name",
        ),
        (
            json!([tool("a", json!({"type": "string"}))]),
            "dynamic_tools[0].input_schema",
        ),
        (json!([{"name": "a"}]), "dynamic_tools[0]"),
        (
            json!([tool("sleep", object.clone())]),
            "dynamic_tools[0].name",
        ),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/chats",
                json!({"message": "hi", "dynamic_tools": tools}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["validations"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{field}: {body}"
        );
    }
    app.stop().await;
}

#[sqlx::test]
async fn client_tool_results_that_never_come_expire_into_an_error(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.client_tool_deadline_secs = 1;
    app.start_worker().await;
    app.start_recovery(recovery(1));
    app.fake.script([Reply::ToolCalls(vec![(
        "call_x".into(),
        "ask_user".into(),
        json!({}),
    )])]);
    let (_, created) = app
        .post("/api/v1/chats", json!({"message": "hi", "dynamic_tools": [{"name": "ask_user", "input_schema": {"type": "object"}}]}))
        .await;
    let chat: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let chat_json = eventually(
        Duration::from_secs(10),
        "the deadline to fail the turn",
        || async {
            let c = chat_status(&app, chat).await;
            (c["status"] == "error").then_some(c)
        },
    )
    .await;
    assert_eq!(chat_json["last_error"]["kind"], "timeout");
    assert!(
        chat_json["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("ask_user")
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_turn_that_keeps_losing_its_worker_fails_with_worker_lost(pool: sqlx::PgPool) {
    // The turn is made to look like its worker died on the third start; recovery puts it
    // back and the next worker to start it fails it, without calling the model.
    let mut app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("doomed").await;
    app.services
        .store
        .strand_queued_turn(chat, "gone/1", 3)
        .await
        .unwrap();
    app.worker.turn_max_attempts = 3;
    app.start_worker().await;
    app.start_recovery(recovery(1));
    let chat_json = eventually(
        Duration::from_secs(10),
        "the turn to be given up",
        || async {
            let c = chat_status(&app, chat).await;
            (c["status"] == "error").then_some(c)
        },
    )
    .await;
    assert_eq!(chat_json["last_error"]["kind"], "worker_lost");
    assert!(app.fake.received().is_empty(), "no model call for it");
    app.stop().await;
}

#[sqlx::test]
async fn client_results_posted_while_builtin_calls_run_wait_for_them(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([
        Reply::ToolCalls(vec![
            ("call_nap".into(), "sleep".into(), json!({"seconds": 1.5})),
            (
                "call_ask".into(),
                "ask_user".into(),
                json!({"question": "ok?"}),
            ),
        ]),
        Reply::Text("Both done.".into()),
    ]);
    let (_, created) = app
        .post("/api/v1/chats", json!({"message": "mixed", "dynamic_tools": [{"name": "ask_user", "input_schema": {"type": "object"}}]}))
        .await;
    let chat: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let events = app
        .events_until(chat, Duration::from_secs(10), |e| {
            e.event == "action_required"
        })
        .await;
    let id = events.last().unwrap().data["tool_calls"][0]["tool_call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/tool-results"),
            json!({"results": [{"tool_call_id": id, "output": "yes"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "accepted", "the builtin nap still runs");
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(15))
        .await;
    let results = messages[2]["content"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["tool_call_id"], "call_nap");
    assert_eq!(results[1]["output"], "yes");
    assert_eq!(messages[3]["content"][0]["text"], "Both done.");
    app.stop().await;
}

#[sqlx::test]
async fn a_chat_interrupted_while_its_calls_wait_goes_on_with_error_results_for_them(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    app.fake.script([
        Reply::ToolCalls(vec![(
            "call_open".into(),
            "open_file".into(),
            json!({"path": "a.rs"}),
        )]),
        Reply::Text("Fine, something else then.".into()),
    ]);
    let (status, created) = app
        .post(
            "/api/v1/chats",
            json!({
                "message": "open a.rs",
                "dynamic_tools": [{"name": "open_file", "input_schema": {"type": "object"}}]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let chat: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    app.events_until(chat, Duration::from_secs(10), |e| {
        is_status(e, "requires_action")
    })
    .await;
    // The user gives up on the client tool and writes again.
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/interrupt"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "never mind"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(10))
        .await;
    assert_eq!(
        messages[3]["content"][0]["text"],
        "Fine, something else then."
    );

    // The provider got the call answered (an error result) before the next user message,
    // as both wire formats require.
    let sent = app.fake.received()[1].body["messages"].clone();
    let roles: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "user"], "{sent}");
    assert_eq!(sent[2]["tool_call_id"], "call_open", "{sent}");
    assert!(
        sent[2]["content"].as_str().unwrap().contains("interrupted"),
        "{sent}"
    );
    app.stop().await;
}
