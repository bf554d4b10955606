//! The tool registry as a model sees it (issue #12, items 1 and 7; ARCHITECTURE.md §7):
//! a chat whose owner has a skill is offered `read_skill`, the model reads the skill and
//! the turn goes on with its body; calls to tools the step did not offer (a hallucinated
//! name, `read_skill` for a user without skills, a builtin's name in another case) are
//! answered with error results, run nothing, and the turn still finishes.

mod support;

use std::time::Duration;

use agentq_core::{
    domain::{MessagePart, Usage},
    store::{Completion, NewToolCall},
};
use agentq_scheduler::SchedulerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::TestApp,
    fake_openai::{Reply, offered},
};

/// The `role: tool` messages of a request, by call id: their content parsed as JSON.
fn tool_results(body: &Value) -> Vec<(String, Value)> {
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

/// The stored `source` of each tool call of the chat, by provider call id.
async fn sources(app: &TestApp, chat: uuid::Uuid) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT provider_call_id, source, status FROM tool_calls WHERE chat_id = $1 ORDER BY provider_call_id",
    )
    .bind(chat)
    .fetch_all(app.services.store.pool())
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_model_reads_a_skill_it_was_offered(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let (status, skill) = app
        .post(
            "/api/v1/users/me/skills",
            json!({"name": "pdf-forms", "description": "Fill in PDF forms.", "body": "Open the form with the form tool, then fill every field."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{skill}");
    app.fake.script([
        Reply::ToolCalls(vec![
            (
                "call_1".into(),
                "read_skill".into(),
                json!({"name": "pdf-forms"}),
            ),
            (
                "call_2".into(),
                "read_skill".into(),
                json!({"name": "tax-returns"}),
            ),
        ]),
        Reply::Text("Done, following the skill.".into()),
    ]);
    let chat = app.create_chat("fill in my PDF form").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(15))
        .await;
    assert_eq!(
        messages[3]["content"][0]["text"],
        "Done, following the skill."
    );

    let received = app.fake.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        offered(&received[0].body),
        [
            "current_time",
            "sleep",
            "read_skill",
            "spawn_subagent",
            "wait_agent",
            "message_agent",
            "close_agent"
        ]
    );
    let system = received[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("# Tools\n\n- `read_skill`"), "{system}");

    let results = tool_results(&received[1].body);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].0, "call_1");
    assert_eq!(
        results[0].1,
        json!({
            "name": "pdf-forms",
            "description": "Fill in PDF forms.",
            "body": "Open the form with the form tool, then fill every field."
        })
    );
    // An unknown skill is an error result that lists the skills there are.
    assert_eq!(results[1].0, "call_2");
    let error = results[1].1["error"].as_str().unwrap();
    assert!(error.contains("`tax-returns`"), "{error}");
    assert!(error.contains("`pdf-forms`"), "{error}");
    assert_eq!(messages[2]["content"][1]["is_error"], true, "{messages:?}");
    assert_eq!(
        sources(&app, chat).await,
        [
            ("call_1".into(), "skill".into(), "succeeded".into()),
            ("call_2".into(), "skill".into(), "failed".into()),
        ]
    );
    app.stop().await;
}

#[sqlx::test]
async fn calls_to_tools_that_were_not_offered_get_error_results(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([
        Reply::ToolCalls(vec![
            ("call_1".into(), "read_skill".into(), json!({"name": "x"})),
            ("call_2".into(), "not_a_tool".into(), json!({})),
            ("call_3".into(), "Current_Time".into(), json!({})),
            ("call_4".into(), "current_time".into(), json!({})),
        ]),
        Reply::Text("Sorry, I only have the clock.".into()),
    ]);
    let chat = app.create_chat("what can you do?").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(15))
        .await;
    assert_eq!(
        messages[3]["content"][0]["text"],
        "Sorry, I only have the clock."
    );

    let received = app.fake.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        offered(&received[0].body),
        [
            "current_time",
            "sleep",
            "spawn_subagent",
            "wait_agent",
            "message_agent",
            "close_agent"
        ],
        "no skills, no read_skill"
    );
    let results = tool_results(&received[1].body);
    assert_eq!(results.len(), 4, "{results:?}");
    for (i, name) in ["read_skill", "not_a_tool", "Current_Time"]
        .iter()
        .enumerate()
    {
        let error = results[i].1["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("`{name}` is not a tool offered in this step")),
            "{name}: {:?}",
            results[i]
        );
        assert_eq!(messages[2]["content"][i]["is_error"], true);
    }
    assert!(results[3].1["utc"].is_string(), "{:?}", results[3]);
    assert_eq!(messages[2]["content"][3]["is_error"], false);
    assert_eq!(
        sources(&app, chat).await,
        [
            ("call_1".into(), "not_offered".into(), "failed".into()),
            ("call_2".into(), "not_offered".into(), "failed".into()),
            ("call_3".into(), "not_offered".into(), "failed".into()),
            ("call_4".into(), "builtin".into(), "succeeded".into()),
        ]
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_call_recorded_by_a_worker_that_died_runs_from_its_recorded_source(pool: sqlx::PgPool) {
    // A worker records a tool step (its offer decided each call's source) and dies before
    // sending the jobs; another worker, which would offer `sleep` today, runs the calls
    // from what was recorded: the skill is read, and `sleep`, recorded as not offered in
    // that step, is refused without running.
    let mut app = TestApp::start_api_only(pool).await;
    let (status, _) = app
        .post(
            "/api/v1/users/me/skills",
            json!({"name": "changelog", "body": "Read CHANGES.md first."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let chat = app.create_chat("release notes please").await;
    let store = app.services.store.clone();
    let turn = store
        .acquire_queued_turn(chat, "dead-worker/1", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the queued turn is acquired");
    let calls = [
        (
            "call_1",
            "read_skill",
            json!({"name": "changelog"}),
            "skill",
        ),
        ("call_2", "sleep", json!({"seconds": 0}), "not_offered"),
    ]
    .map(|(id, name, arguments, source)| NewToolCall {
        provider_call_id: id.into(),
        name: name.into(),
        arguments,
        dynamic: false,
        source: source.into(),
    });
    let completion = Completion {
        content: calls
            .iter()
            .map(|c| MessagePart::ToolCall {
                tool_call_id: c.provider_call_id.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            })
            .collect(),
        model: "fake-gpt".into(),
        usage: Usage::default(),
        cost_micros: None,
    };
    store
        .record_tool_step(
            &turn,
            &turn.lease_owner,
            &completion,
            &calls,
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .expect("the lease is held");
    // The jobs were never sent: recovery finds the calls stale and sends them.
    store
        .backdate_tool_call_jobs(chat, chrono::Utc::now() - chrono::Duration::days(1))
        .await
        .unwrap();
    app.fake.script([Reply::Text("ok".into())]);
    app.start_worker().await;
    app.start_recovery(SchedulerConfig {
        interval_secs: 1,
        stale_secs: 30,
        batch: 100,
        max_attempts: 3,
        maintenance_cron: "0 0 1 1 *".parse().unwrap(),
        diff_refresh: agentq_core::config::defaults(),
    });
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(15))
        .await;
    assert_eq!(messages[3]["content"][0]["text"], "ok");

    let results = tool_results(&app.fake.received()[0].body);
    assert_eq!(
        results[0].1["body"], "Read CHANGES.md first.",
        "{results:?}"
    );
    let error = results[1].1["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`sleep` is not a tool offered in this step"),
        "{results:?}"
    );
    assert_eq!(
        sources(&app, chat).await,
        [
            ("call_1".into(), "skill".into(), "succeeded".into()),
            ("call_2".into(), "not_offered".into(), "failed".into()),
        ]
    );
    app.stop().await;
}
