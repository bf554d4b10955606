//! What an operator reads at the default log level (issue #16, item 3): a real `agentq api`
//! writes one line per request and a real `agentq worker` one line per job, with the ids as
//! fields, in JSON and in the human format alike. Probes and metric scrapes stay out of the
//! `info` log.

mod support;

use std::{collections::HashMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    app::TestApp,
    eventually,
    fake_openai::Reply,
    process::{AgentqProcess, LogFormat},
};
use uuid::Uuid;

/// Sends a request to a process with a request id of the test's choosing.
async fn request(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    request_id: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("x-request-id", request_id);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The JSON lines a process wrote with `target`.
fn json_lines(process: &AgentqProcess, target: &str) -> Vec<Value> {
    process
        .log_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == target)
        .collect()
}

/// The `key=value` fields of a human-format line (quotes around strings dropped).
fn human_fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
        .collect()
}

/// The ids of a chat's turns and tool calls, oldest first.
async fn turns_and_calls(app: &TestApp, chat: Uuid) -> (Vec<Uuid>, Vec<Uuid>) {
    let pool = app.services.store.pool();
    let turns = sqlx::query_scalar("SELECT id FROM chat_turns WHERE chat_id = $1 ORDER BY id")
        .bind(chat)
        .fetch_all(pool)
        .await
        .unwrap();
    let calls = sqlx::query_scalar("SELECT id FROM tool_calls WHERE chat_id = $1 ORDER BY id")
        .bind(chat)
        .fetch_all(pool)
        .await
        .unwrap();
    (turns, calls)
}

#[sqlx::test]
async fn json_logs_carry_each_requests_route_status_and_ids_and_each_jobs_ids_and_outcome(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let user = app.user_id("alice@example.com").await;
    let api = AgentqProcess::api(&app, LogFormat::Json);
    let worker = AgentqProcess::worker_logged(&app, &[], LogFormat::Json);
    api.serving().await;
    app.fake.script([
        Reply::ToolCalls(vec![("call_1".into(), "current_time".into(), json!({}))]),
        Reply::Text("It is now.".into()),
    ]);

    let base = api.base_url();
    let (status, chat) = request(
        base,
        Method::POST,
        "/api/v1/chats",
        Some(&app.token),
        "ops-create-1",
        Some(json!({"message": "what time is it?"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(chat, 4, Duration::from_secs(30))
        .await;
    let path = format!("/api/v1/chats/{chat}");
    let (status, _) = request(
        base,
        Method::GET,
        &path,
        Some(&app.token),
        "ops-read-2",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = request(base, Method::GET, &path, None, "ops-anonymous-3", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = request(
        base,
        Method::GET,
        "/no/such/route",
        None,
        "ops-lost-4",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for i in 0..5 {
        for probe in ["/healthz", "/readyz", "/metrics"] {
            let _ = request(base, Method::GET, probe, None, &format!("probe-{i}"), None).await;
        }
    }

    // The API's lines, one per request, in the order they finished.
    let access = eventually(Duration::from_secs(10), "the 404's access line", || {
        let lines = json_lines(&api, "agentq::access");
        async move {
            lines
                .iter()
                .any(|l| l["request_id"] == "ops-lost-4")
                .then_some(lines)
        }
    })
    .await;
    let line = |id: &str| {
        let found: Vec<&Value> = access.iter().filter(|l| l["request_id"] == id).collect();
        assert_eq!(found.len(), 1, "one line for {id}: {access:?}");
        found[0].clone()
    };
    let create = line("ops-create-1");
    assert_eq!(create["level"], "INFO");
    assert_eq!(create["method"], "POST");
    assert_eq!(create["route"], "/api/v1/chats");
    assert_eq!(create["status"], 201);
    assert_eq!(create["user.id"], user.to_string());
    assert!(create["latency_ms"].as_f64().unwrap() > 0.0, "{create}");
    let read = line("ops-read-2");
    assert_eq!(
        read["route"], "/api/v1/chats/{chat_id}",
        "the template, not the id"
    );
    assert_eq!(read["status"], 200);
    assert_eq!(read["user.id"], user.to_string());
    let anonymous = line("ops-anonymous-3");
    assert_eq!(anonymous["status"], 401);
    assert!(anonymous.get("user.id").is_none(), "{anonymous}");
    let lost = line("ops-lost-4");
    assert_eq!(lost["status"], 404);
    assert_eq!(lost["path"], "/no/such/route");
    assert!(lost.get("route").is_none(), "{lost}");
    assert!(
        access.iter().all(|l| !l["request_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("probe-")),
        "15 probes and scrapes, no line at info: {access:?}"
    );
    assert_eq!(
        access.len(),
        4,
        "one line per request (and none for the in-process test API's): {access:?}"
    );

    // The worker's lines: two turn steps and one tool call, each with its ids.
    let (turns, calls) = turns_and_calls(&app, chat).await;
    let (turn, call) = (turns[0], calls[0]);
    let jobs = eventually(Duration::from_secs(10), "three job lines", || {
        let lines = json_lines(&worker, "agentq::jobs");
        async move { (lines.len() >= 3).then_some(lines) }
    })
    .await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    for job in &jobs {
        assert_eq!(job["level"], "INFO", "{job}");
        assert_eq!(job["message"], "job finished");
        assert_eq!(job["chat.id"], chat.to_string(), "{job}");
        assert_eq!(job["attempt"], 1, "{job}");
        assert!(job["duration_ms"].as_f64().unwrap() > 0.0, "{job}");
        let id = job["job.id"].as_str().unwrap();
        assert!(
            id.split_once('-')
                .is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok()),
            "a stream entry id: {job}"
        );
    }
    let of = |queue: &str| -> Vec<&Value> { jobs.iter().filter(|j| j["queue"] == queue).collect() };
    let steps = of("turns");
    assert_eq!(steps.len(), 2, "{jobs:?}");
    assert!(steps.iter().all(|s| s["turn.id"] == turn.to_string()));
    // The first step's line may come second: a job logs when it returns, and the step its
    // tool call resumes can finish first.
    let mut outcomes: Vec<&str> = steps
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["completed", "tool_step"], "{jobs:?}");
    let tools = of("tools");
    assert_eq!(tools.len(), 1, "{jobs:?}");
    assert_eq!(tools[0]["tool_call.id"], call.to_string());
    assert_eq!(tools[0]["outcome"], "succeeded");
    assert!(tools[0].get("turn.id").is_none(), "{}", tools[0]);
}

#[sqlx::test]
async fn human_logs_carry_the_same_fields_as_key_value_pairs(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let user = app.user_id("alice@example.com").await;
    let api = AgentqProcess::api(&app, LogFormat::Human);
    let worker = AgentqProcess::worker_logged(&app, &[], LogFormat::Human);
    api.serving().await;

    let base = api.base_url();
    let (status, chat) = request(
        base,
        Method::POST,
        "/api/v1/chats",
        Some(&app.token),
        "human-create-1",
        Some(json!({"message": "hello"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(chat, 2, Duration::from_secs(30))
        .await;
    let _ = request(base, Method::GET, "/healthz", None, "human-probe", None).await;

    let access = eventually(Duration::from_secs(10), "the access line", || {
        let line = api
            .log_lines()
            .into_iter()
            .find(|l| l.contains("human-create-1"));
        async move { line }
    })
    .await;
    assert!(access.contains(" INFO "), "{access}");
    assert!(
        !access.contains('\u{1b}'),
        "no colour codes in a pipe: {access:?}"
    );
    let fields = human_fields(&access);
    assert_eq!(fields["method"], "POST", "{access}");
    assert_eq!(fields["route"], "/api/v1/chats", "{access}");
    assert_eq!(fields["status"], "201", "{access}");
    assert_eq!(fields["request_id"], "human-create-1", "{access}");
    assert_eq!(fields["user.id"], user.to_string(), "{access}");
    assert!(fields["latency_ms"].parse::<f64>().is_ok(), "{access}");
    assert!(
        !api.log_lines().iter().any(|l| l.contains("human-probe")),
        "no probe line at info"
    );

    let (turns, _) = turns_and_calls(&app, chat).await;
    let job = eventually(Duration::from_secs(10), "the job line", || {
        let line = worker
            .log_lines()
            .into_iter()
            .find(|l| l.contains("job finished"));
        async move { line }
    })
    .await;
    assert!(!job.contains('\u{1b}'), "{job:?}");
    let fields = human_fields(&job);
    assert_eq!(fields["queue"], "turns", "{job}");
    assert_eq!(fields["turn.id"], turns[0].to_string(), "{job}");
    assert_eq!(fields["chat.id"], chat.to_string(), "{job}");
    assert_eq!(fields["outcome"], "completed", "{job}");
    assert!(fields["job.id"].contains('-'), "{job}");
    assert!(fields["duration_ms"].parse::<f64>().is_ok(), "{job}");
}
