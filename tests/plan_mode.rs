//! Plan mode as a user and a model see it (issue #12, item 5; ARCHITECTURE.md §4.1, §7): a
//! chat in plan mode is offered only tools that change nothing plus `ask_user_question`
//! and `propose_plan`; a forged call to anything else runs nothing; a question or a plan
//! puts the chat in `requires_action` until the user answers with a message, which starts
//! the next turn with the question or plan and the answer in the transcript; a plan is a
//! file of kind `plan` linked to the chat; `plan_mode` is set on create, by PATCH and per
//! message, and bad values are 400s naming it.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::TestApp,
    eventually,
    fake_openai::{Reply, offered},
};
use uuid::Uuid;

/// The request's messages of `role`.
fn of_role<'a>(body: &'a Value, role: &str) -> Vec<&'a Value> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == role)
        .collect()
}

/// The `role: tool` results of a request, their content parsed as JSON.
fn tool_results(body: &Value) -> Vec<Value> {
    of_role(body, "tool")
        .into_iter()
        .map(|m| {
            let content = m["content"].as_str().unwrap();
            serde_json::from_str(content).unwrap_or(Value::String(content.into()))
        })
        .collect()
}

/// `(provider_call_id, source, status)` of each tool call of the chat.
async fn calls(app: &TestApp, chat: Uuid) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT provider_call_id, source, status FROM tool_calls WHERE chat_id = $1 ORDER BY provider_call_id",
    )
    .bind(chat)
    .fetch_all(app.services.store.pool())
    .await
    .unwrap()
}

/// Creates a chat from `body` (a `message` and more), asserting it worked.
async fn create(app: &TestApp, body: Value) -> Uuid {
    let (status, chat) = app.post("/api/v1/chats", body).await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    chat["id"].as_str().unwrap().parse().unwrap()
}

/// Waits until the chat is `requires_action` with `count` messages; returns them.
async fn wait_for_the_user(app: &TestApp, chat: Uuid, count: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(20),
        "the chat to wait for the user",
        || async {
            let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
            if body["status"] != "requires_action" {
                return None;
            }
            let messages = app.messages(chat).await;
            (messages.len() >= count).then_some(messages)
        },
    )
    .await
}

fn question(options: Value) -> Value {
    json!({"questions": [{"header": "Database", "question": "Which database should the service use?", "options": options}]})
}

fn client_tool(name: &str) -> Value {
    json!({"name": name, "description": "Writes a file on the user's machine.", "input_schema": {"type": "object"}})
}

#[sqlx::test]
async fn a_plan_turn_is_offered_only_tools_that_change_nothing(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let (status, _) = app
        .post(
            "/api/v1/users/me/skills",
            json!({"name": "planning", "body": "Plan in small steps."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The model forges a call to the client's tool, which a plan step does not offer.
    app.fake.script([
        Reply::ToolCalls(vec![
            ("call_1".into(), "write_file".into(), json!({"path": "x"})),
            ("call_2".into(), "current_time".into(), json!({})),
        ]),
        Reply::Text("I only looked.".into()),
    ]);
    let (status, body) = app
        .post(
            "/api/v1/chats",
            json!({"message": "plan the migration", "plan_mode": "plan", "dynamic_tools": [client_tool("write_file")]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["plan_mode"], "plan");
    let chat: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(messages[3]["content"][0]["text"], "I only looked.");

    let received = app.fake.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        offered(&received[0].body),
        [
            "current_time",
            "sleep",
            "read_skill",
            // Plan mode may start explore subagents and wait for them.
            "spawn_subagent",
            "wait_agent",
            "ask_user_question",
            "propose_plan"
        ]
    );
    let system = received[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("You are in plan mode"), "{system}");
    // The forged call ran nothing: refused with an error result, never handed to the
    // client (the chat did not wait for it), and the turn went on.
    let results = tool_results(&received[1].body);
    let error = results[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`write_file` is not a tool offered in this step"),
        "{results:?}"
    );
    assert!(results[1]["utc"].is_string(), "{results:?}");
    assert_eq!(
        calls(&app, chat).await,
        [
            ("call_1".into(), "not_offered".into(), "failed".into()),
            ("call_2".into(), "builtin".into(), "succeeded".into()),
        ]
    );
    let handed_to_the_client: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tool_calls WHERE chat_id = $1 AND kind = 'dynamic'",
    )
    .bind(chat)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(handed_to_the_client, 0);

    // Leaving plan mode (PATCH) gives the next turn the client's tool back, and no plan tools.
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}"),
            json!({"plan_mode": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plan_mode"], Value::Null);
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "now do it"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.wait_until_answered(chat, 6, Duration::from_secs(20))
        .await;
    assert_eq!(
        offered(&app.fake.received()[2].body),
        [
            "current_time",
            "sleep",
            "read_skill",
            "spawn_subagent",
            "wait_agent",
            "message_agent",
            "close_agent",
            "write_file"
        ]
    );
    app.stop().await;
}

#[sqlx::test]
async fn bad_questions_and_plans_are_tool_errors_and_the_turn_goes_on(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([
        Reply::ToolCalls(vec![
            (
                "call_1".into(),
                "ask_user_question".into(),
                question(json!([{"label": "PostgreSQL", "description": "One server."}])),
            ),
            (
                "call_2".into(),
                "propose_plan".into(),
                json!({"content": "x".repeat(32 * 1024 + 1)}),
            ),
        ]),
        Reply::Text("Let me try again later.".into()),
    ]);
    let chat = create(
        &app,
        json!({"message": "plan the storage", "plan_mode": "plan"}),
    )
    .await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(messages[3]["content"][0]["text"], "Let me try again later.");
    let results = tool_results(&app.fake.received()[1].body);
    let error = results[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`questions[0].options` must hold 2 to 4 options (it holds 1)"),
        "{results:?}"
    );
    let error = results[1]["error"].as_str().unwrap_or_default();
    assert!(error.contains("at most 32768 bytes"), "{results:?}");
    assert_eq!(messages[2]["content"][0]["is_error"], true);
    assert_eq!(messages[2]["content"][1]["is_error"], true);
    assert_eq!(
        calls(&app, chat).await,
        [
            ("call_1".into(), "plan_mode".into(), "failed".into()),
            ("call_2".into(), "plan_mode".into(), "failed".into()),
        ]
    );
    let (_, files) = app.get(&format!("/api/v1/chats/{chat}/files")).await;
    assert_eq!(files["files"], json!([]), "no plan was stored");
    app.stop().await;
}

#[sqlx::test]
async fn a_question_waits_for_the_users_answer(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let options = json!([
        {"label": "PostgreSQL", "description": "One server, transactions."},
        {"label": "SQLite", "description": "A file, no server."}
    ]);
    app.fake.script([
        Reply::ToolCalls(vec![(
            "call_q".into(),
            "ask_user_question".into(),
            question(options),
        )]),
        Reply::Text("PostgreSQL it is; here is the plan.".into()),
    ]);
    let chat = create(
        &app,
        json!({"message": "plan the storage", "plan_mode": "plan"}),
    )
    .await;
    let messages = wait_for_the_user(&app, chat, 3).await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[1]["content"][0]["name"], "ask_user_question");
    assert_eq!(
        messages[2]["content"][0]["output"]["status"],
        "awaiting_user"
    );
    assert_eq!(
        calls(&app, chat).await,
        [("call_q".into(), "plan_mode".into(), "succeeded".into())]
    );
    let turn_status: String = sqlx::query_scalar(
        "SELECT status FROM chat_turns WHERE chat_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(chat)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(turn_status, "completed");
    // Clients learn it from the stream: the tool result, then `requires_action`.
    let events = app
        .events_until(chat, Duration::from_secs(15), |e| {
            e.event == "status" && e.data["status"] == "requires_action"
        })
        .await;
    let last_message = events.iter().rev().find(|e| e.event == "message").unwrap();
    assert_eq!(last_message.data["message"]["role"], "tool", "{events:?}");
    // The model is not asked again until the user answers.
    assert_eq!(app.fake.received().len(), 1);

    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "PostgreSQL"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let messages = app
        .wait_until_answered(chat, 5, Duration::from_secs(20))
        .await;
    assert_eq!(
        messages[4]["content"][0]["text"],
        "PostgreSQL it is; here is the plan."
    );
    // The next request holds the question (the call and its result) and the answer.
    let received = app.fake.received();
    assert_eq!(received.len(), 2);
    let next = &received[1].body;
    let assistant = of_role(next, "assistant");
    let call = &assistant[0]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "ask_user_question");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        arguments["questions"][0]["question"],
        "Which database should the service use?"
    );
    let results = tool_results(next);
    assert_eq!(results[0]["questions"][0]["options"][1]["label"], "SQLite");
    let users = of_role(next, "user");
    assert_eq!(users.last().unwrap()["content"], "PostgreSQL");
    // Still in plan mode: the answer did not say otherwise.
    assert!(offered(next).contains(&"propose_plan".to_owned()));
    app.stop().await;
}

#[sqlx::test]
async fn a_proposed_plan_is_a_file_of_the_chat_and_the_answer_can_leave_plan_mode(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let plan = "# Move to PostgreSQL\n\n1. Add the schema.\n2. Copy the data.\n";
    app.fake.script([
        Reply::ToolCalls(vec![(
            "call_p".into(),
            "propose_plan".into(),
            json!({"title": "Storage plan", "content": plan}),
        )]),
        Reply::Text("Done: schema added.".into()),
    ]);
    let chat = create(
        &app,
        json!({"message": "plan the storage", "plan_mode": "plan"}),
    )
    .await;
    let messages = wait_for_the_user(&app, chat, 3).await;
    let result = &messages[2]["content"][0]["output"];
    assert_eq!(result["kind"], "plan", "{result}");
    let file_id = result["file_id"].as_str().unwrap().to_owned();

    // The plan is a file of kind `plan` linked to the chat; only its owner reads it.
    let (status, files) = app.get(&format!("/api/v1/chats/{chat}/files")).await;
    assert_eq!(status, StatusCode::OK, "{files}");
    assert_eq!(files["files"].as_array().unwrap().len(), 1, "{files}");
    assert_eq!(files["files"][0]["id"], file_id.as_str());
    assert_eq!(files["files"][0]["kind"], "plan");
    assert_eq!(files["files"][0]["name"], "Storage plan");
    assert_eq!(files["files"][0]["size_bytes"], plan.len());
    assert!(files["files"][0].get("content").is_none());
    let path = format!("/api/v1/chats/{chat}/files/{file_id}");
    let (status, file) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["content"], plan);
    assert_eq!(file["media_type"], "text/markdown");
    let bob = support::app::create_user(&app.services, "bob@example.com", "acme").await;
    let (status, _) = app.get_as(&bob, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get(&format!("/api/v1/chats/{chat}/files/{}", Uuid::now_v7()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .get(&format!("/api/v1/chats/{chat}/files/not-a-uuid"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["validations"][0]["field"], "file_id");
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chat_file_links l JOIN files f ON f.id = l.file_id
         WHERE l.chat_id = $1 AND f.kind = 'plan'",
    )
    .bind(chat)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(linked, 1);
    // A second run of the same call (its worker lost after storing) stores no second plan.
    let call_id: Uuid = sqlx::query_scalar(
        "SELECT id FROM tool_calls WHERE chat_id = $1 AND provider_call_id = 'call_p'",
    )
    .bind(chat)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    let again = app
        .services
        .store
        .store_plan(call_id, chat, "Storage plan", plan)
        .await
        .unwrap();
    assert_eq!(again.id.to_string(), file_id);
    let (_, files) = app.get(&format!("/api/v1/chats/{chat}/files")).await;
    assert_eq!(files["files"].as_array().unwrap().len(), 1, "{files}");

    // The answer leaves plan mode and resumes the chat with the plan in the transcript.
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "Go ahead", "plan_mode": null}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let messages = app
        .wait_until_answered(chat, 5, Duration::from_secs(20))
        .await;
    assert_eq!(messages[4]["content"][0]["text"], "Done: schema added.");
    let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(body["plan_mode"], Value::Null);
    let next = &app.fake.received()[1].body;
    let call = &of_role(next, "assistant")[0]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "propose_plan");
    assert!(
        call["arguments"]
            .as_str()
            .unwrap()
            .contains("Copy the data.")
    );
    assert_eq!(tool_results(next)[0]["file_id"], file_id.as_str());
    assert_eq!(of_role(next, "user").last().unwrap()["content"], "Go ahead");
    assert!(!offered(next).contains(&"propose_plan".to_owned()));
    app.stop().await;
}

#[sqlx::test]
async fn plan_mode_and_instructions_are_set_on_create_by_patch_and_per_message(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = create(&app, json!({"message": "hello"})).await;
    let path = format!("/api/v1/chats/{chat}");
    let (_, body) = app.get(&path).await;
    assert_eq!(body["plan_mode"], Value::Null);

    // Bad values are 400s naming the field, wherever they are sent.
    let (status, body) = app
        .post(
            "/api/v1/chats",
            json!({"message": "x", "plan_mode": "build"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["validations"][0]["field"], "plan_mode", "{body}");
    for bad in [json!("Plan"), json!(1), json!(true)] {
        let (status, body) = app
            .patch_as(&app.token, &path, json!({"plan_mode": bad}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["validations"][0]["field"], "plan_mode", "{body}");
    }
    let (status, body) = app
        .post(
            &format!("{path}/messages"),
            json!({"message": "x", "plan_mode": "yes"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["validations"][0]["field"], "plan_mode", "{body}");
    let (status, body) = app
        .patch_as(
            &app.token,
            &path,
            json!({"instructions": "x".repeat(32 * 1024 + 1)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["validations"][0]["field"], "instructions", "{body}");
    let (status, _) = app.patch_as(&app.token, &path, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = app.get(&path).await;
    assert_eq!(
        (body["plan_mode"].clone(), body["instructions"].clone()),
        (Value::Null, Value::Null),
        "refused changes change nothing"
    );

    // PATCH enters plan mode and sets instructions; null clears them.
    let (status, body) = app
        .patch_as(
            &app.token,
            &path,
            json!({"plan_mode": "plan", "instructions": "Answer in French."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plan_mode"], "plan");
    assert_eq!(body["instructions"], "Answer in French.");
    let (status, body) = app
        .patch_as(&app.token, &path, json!({"instructions": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["instructions"], Value::Null);
    assert_eq!(body["plan_mode"], "plan", "absent: unchanged");

    // Per message: `null` leaves plan mode, `plan` enters it, absent leaves it as it is.
    for (sent, expected) in [
        (json!({"message": "a", "plan_mode": null}), Value::Null),
        (json!({"message": "b"}), Value::Null),
        (json!({"message": "c", "plan_mode": "plan"}), json!("plan")),
        (json!({"message": "d"}), json!("plan")),
    ] {
        let (status, body) = app.post(&format!("{path}/messages"), sent).await;
        assert!(status.is_success(), "{body}");
        let (_, chat) = app.get(&path).await;
        assert_eq!(chat["plan_mode"], expected);
    }

    // Someone else's chat is a 404, whatever the body.
    let bob = support::app::create_user(&app.services, "bob@example.com", "acme").await;
    let (status, _) = app
        .patch_as(&bob, &path, json!({"plan_mode": "plan"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get_as(&bob, &format!("{path}/files")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}
