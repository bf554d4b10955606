//! Subagents (issue #12 item 6; ARCHITECTURE.md §7): a chat's model spawns child chats,
//! waits for their answers without holding a worker, messages and closes them; the
//! parent's turn goes on exactly once per finished child, across worker processes and a
//! killed worker; children cannot spawn, and `explore` children only read.

mod support;

use std::time::Duration;

use agentq_core::domain::ToolCallStatus;
use agentq_scheduler::SchedulerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::TestApp,
    eventually,
    fake_openai::{LAST_RESULT_CHAT_ID, Reply, answer_to, offered},
    mcp_server::McpTestServer,
    process::WorkerProcess,
};
use uuid::Uuid;

const SUBAGENT_TOOLS: [&str; 4] = [
    "spawn_subagent",
    "wait_agent",
    "message_agent",
    "close_agent",
];

fn call(id: &str, name: &str, arguments: Value) -> Reply {
    Reply::ToolCalls(vec![(id.into(), name.into(), arguments)])
}

/// The output of every tool result in the chat's messages, in order.
fn tool_outputs(messages: &[Value]) -> Vec<(Value, bool)> {
    messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .flat_map(|m| m["content"].as_array().unwrap().clone())
        .map(|p| (p["output"].clone(), p["is_error"] == true))
        .collect()
}

fn recovery_every_second() -> SchedulerConfig {
    SchedulerConfig {
        interval_secs: 1,
        stale_secs: 5,
        batch: 100,
        max_attempts: 3,
        maintenance_cron: "0 0 1 1 *".parse().unwrap(),
        diff_refresh: agentq_core::config::defaults(),
    }
}

#[sqlx::test]
async fn a_parent_spawns_waits_for_messages_and_closes_a_subagent_across_two_worker_processes(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let _a = WorkerProcess::worker(&app, &["--concurrency", "2"]);
    let _b = WorkerProcess::worker(&app, &["--concurrency", "2"]);
    app.fake.script_for(
        "PARENT",
        [
            call(
                "c1",
                "spawn_subagent",
                json!({"subagent_type": "general", "prompt": "CHILD task one", "title": "Helper"}),
            ),
            call("c2", "wait_agent", json!({"chat_id": LAST_RESULT_CHAT_ID})),
            call(
                "c3",
                "message_agent",
                json!({"chat_id": LAST_RESULT_CHAT_ID, "message": "more work please"}),
            ),
            call(
                "c4",
                "wait_agent",
                json!({"chat_id": LAST_RESULT_CHAT_ID, "timeout_seconds": 120}),
            ),
            call("c5", "close_agent", json!({"chat_id": LAST_RESULT_CHAT_ID})),
            Reply::Text("All done.".into()),
        ],
    );
    let parent = app.create_chat("PARENT: get help").await;

    let messages = app
        .wait_until_answered(parent, 12, Duration::from_secs(60))
        .await;
    assert_eq!(messages.len(), 12, "six steps, one message each way");
    assert_eq!(messages[11]["content"][0]["text"], "All done.");
    let outputs = tool_outputs(&messages);
    assert_eq!(outputs.len(), 5);
    assert!(outputs.iter().all(|(_, error)| !error), "{outputs:?}");
    let child: Uuid = outputs[0].0["chat_id"].as_str().unwrap().parse().unwrap();
    for (output, _) in &outputs {
        assert_eq!(
            output["chat_id"],
            child.to_string(),
            "every answer names the child"
        );
        assert_eq!(output["subagent_type"], "general");
        assert!(output["status"].is_string());
    }
    assert_eq!(outputs[0].0["title"], "Helper");
    assert_eq!(outputs[1].0["status"], "waiting");
    assert_eq!(outputs[1].0["result"], answer_to("CHILD task one"));
    assert_eq!(outputs[2].0["delivered"], "started");
    assert_eq!(outputs[3].0["result"], answer_to("more work please"));
    assert_eq!(outputs[4].0["closed"], true);

    // The parent went on exactly once per step: six requests, however the nudges raced.
    assert_eq!(app.fake.received_for("PARENT").len(), 6);
    let child_requests = app.fake.received_for("CHILD task one");
    assert_eq!(child_requests.len(), 2);
    for request in &child_requests {
        let tools = offered(&request.body);
        assert!(
            SUBAGENT_TOOLS
                .iter()
                .all(|t| !tools.contains(&t.to_string())),
            "a subagent is offered no subagent tools: {tools:?}"
        );
    }

    let (status, chat) = app.get(&format!("/api/v1/chats/{child}")).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    assert_eq!(chat["parent_chat_id"], parent.to_string());
    assert_eq!(chat["root_chat_id"], parent.to_string());
    // A child lives in its parent's organization (ARCHITECTURE.md §11.2).
    let (_, parent_chat) = app.get(&format!("/api/v1/chats/{parent}")).await;
    assert_eq!(chat["organization_id"], parent_chat["organization_id"]);
    assert!(chat["organization_id"].is_string(), "{chat}");
    assert_eq!(app.messages(child).await.len(), 4);
    let (status, children) = app.get(&format!("/api/v1/chats/{parent}/children")).await;
    assert_eq!(status, StatusCode::OK, "{children}");
    let children = children["children"].as_array().unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0]["id"], child.to_string());
    assert_eq!(children[0]["subagent_type"], "general");
    assert_eq!(children[0]["closed"], true);
    assert_eq!(children[0]["status"], "waiting");

    // Someone else cannot list them.
    let other = support::app::create_user(&app.services, "mallory@example.com", "evil").await;
    let (status, _) = app
        .get_as(&other, &format!("/api/v1/chats/{parent}/children"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[sqlx::test]
async fn an_explore_subagent_is_offered_only_tools_that_change_nothing_and_cannot_spawn(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    // A server every chat gets: its `echo` is marked `readOnlyHint`, its `add` is not.
    let owner = support::app::create_owner(&app.services, "owner@example.com").await;
    let docs = McpTestServer::start().await;
    let (status, server) = app
        .post_as(
            &owner,
            "/api/v1/admin/mcp-servers",
            json!({"slug": "docs", "display_name": "Docs", "url": docs.url, "availability": "force_on"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    app.fake.script_for(
        "PARENT",
        [
            call(
                "c1",
                "spawn_subagent",
                json!({"subagent_type": "explore", "prompt": "CHILD explore the code"}),
            ),
            call("c2", "wait_agent", json!({"chat_id": LAST_RESULT_CHAT_ID})),
            Reply::Text("Thanks.".into()),
        ],
    );
    app.fake.script_for(
        "CHILD explore",
        [
            call(
                "g1",
                "spawn_subagent",
                json!({"subagent_type": "general", "prompt": "GRANDCHILD"}),
            ),
            Reply::Text("Looked around.".into()),
        ],
    );
    let parent = app.create_chat("PARENT: explore for me").await;
    let messages = app
        .wait_until_answered(parent, 6, Duration::from_secs(30))
        .await;
    let outputs = tool_outputs(&messages);
    assert_eq!(outputs[1].0["subagent_type"], "explore");
    assert_eq!(outputs[1].0["result"], "Looked around.");

    let parent_tools = offered(&app.fake.received_for("PARENT")[0].body);
    for tool in SUBAGENT_TOOLS.iter().chain(&["docs__echo", "docs__add"]) {
        assert!(parent_tools.contains(&tool.to_string()), "{parent_tools:?}");
    }
    let child_requests = app.fake.received_for("CHILD explore");
    assert_eq!(child_requests.len(), 2);
    for request in &child_requests {
        let tools = offered(&request.body);
        assert!(tools.contains(&"docs__echo".to_owned()), "{tools:?}");
        for tool in tools {
            assert!(
                ["current_time", "sleep", "read_skill", "docs__echo"].contains(&tool.as_str()),
                "an explore subagent was offered `{tool}`"
            );
        }
    }
    // The child's spawn was refused, and nothing was spawned.
    let child: Uuid = outputs[0].0["chat_id"].as_str().unwrap().parse().unwrap();
    let child_outputs = tool_outputs(&app.messages(child).await);
    assert_eq!(child_outputs.len(), 1);
    assert!(child_outputs[0].1, "an error result: {child_outputs:?}");
    assert!(
        child_outputs[0].0["error"]
            .as_str()
            .unwrap()
            .contains("not a tool offered")
    );
    let chats: i64 = sqlx::query_scalar("SELECT count(*) FROM chats")
        .fetch_one(app.services.store.pool())
        .await
        .unwrap();
    assert_eq!(chats, 2, "no grandchild");
    assert!(app.fake.received_for("GRANDCHILD").is_empty());
    app.stop().await;
}

#[sqlx::test]
async fn a_worker_killed_while_its_parent_waits_loses_nothing(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let mut doomed = WorkerProcess::worker(&app, &[]);
    app.fake.script_for(
        "PARENT",
        [
            call(
                "c1",
                "spawn_subagent",
                json!({"subagent_type": "general", "prompt": "CHILD slow"}),
            ),
            call("c2", "wait_agent", json!({"chat_id": LAST_RESULT_CHAT_ID})),
            Reply::Text("Parent done.".into()),
        ],
    );
    // The child's first answer never comes: its worker dies while the parent waits.
    app.fake
        .script_for("CHILD slow", [Reply::Hang(Duration::from_secs(120))]);
    let parent = app.create_chat("PARENT: wait for a slow child").await;

    // The parent's wait is parked (no worker holds it) while the child's turn runs.
    let pool = app.services.store.pool().clone();
    eventually(Duration::from_secs(20), "the parent's wait to park", || {
        let pool = pool.clone();
        async move {
            let parked: Option<(String,)> = sqlx::query_as(
                "SELECT t.status FROM tool_calls c JOIN chat_turns t ON t.chat_id = c.waits_for_chat_id
                 WHERE c.chat_id = $1 AND c.name = 'wait_agent' AND c.status = $2
                   AND c.lease_owner IS NULL",
            )
            .bind(parent)
            .bind(ToolCallStatus::Waiting)
            .fetch_optional(&pool)
            .await
            .unwrap();
            (parked.map(|(s,)| s).as_deref() == Some("running")).then_some(())
        }
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "the child's request to hang",
        || async { (!app.fake.received_for("CHILD slow").is_empty()).then_some(()) },
    )
    .await;
    doomed.kill();

    let _survivor = WorkerProcess::worker(&app, &[]);
    app.start_recovery(recovery_every_second());
    let messages = app
        .wait_until_answered(parent, 6, Duration::from_secs(60))
        .await;
    assert_eq!(messages[5]["content"][0]["text"], "Parent done.");
    let outputs = tool_outputs(&messages);
    assert_eq!(outputs[1].0["result"], answer_to("CHILD slow"));
    // Exactly once: nothing doubled after a few more recovery ticks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.messages(parent).await.len(), 6);
    assert_eq!(app.fake.received_for("PARENT").len(), 3);
    assert_eq!(
        app.fake.received_for("CHILD slow").len(),
        2,
        "the child's step ran again once"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_wait_times_out_and_a_closed_subagent_stops(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.start_recovery(recovery_every_second());
    app.fake.script_for(
        "PARENT",
        [
            call(
                "c1",
                "spawn_subagent",
                json!({"subagent_type": "general", "prompt": "CHILD endless"}),
            ),
            call(
                "c2",
                "wait_agent",
                json!({"chat_id": LAST_RESULT_CHAT_ID, "timeout_seconds": 1}),
            ),
            call("c3", "close_agent", json!({"chat_id": LAST_RESULT_CHAT_ID})),
            Reply::Text("Gave up.".into()),
        ],
    );
    app.fake
        .script_for("CHILD endless", [Reply::Endless("more ".into())]);
    let parent = app.create_chat("PARENT: impatient").await;
    let messages = app
        .wait_until_answered(parent, 8, Duration::from_secs(30))
        .await;
    let outputs = tool_outputs(&messages);
    assert_eq!(outputs[1].0["timed_out"], true, "{outputs:?}");
    assert_ne!(outputs[1].0["status"], "waiting");
    assert_eq!(outputs[2].0["closed"], true);
    let child: Uuid = outputs[0].0["chat_id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(child, 2, Duration::from_secs(20))
        .await;
    // A closed subagent takes no more messages from its parent.
    app.fake.script_for(
        "PARENT",
        [
            call(
                "c4",
                "message_agent",
                json!({"chat_id": child.to_string(), "message": "still there?"}),
            ),
            Reply::Text("Ok.".into()),
        ],
    );
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{parent}/messages"),
            json!({"message": "try again"}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let messages = app
        .wait_until_answered(parent, 12, Duration::from_secs(30))
        .await;
    let outputs = tool_outputs(&messages);
    assert!(outputs[3].1, "{outputs:?}");
    assert!(outputs[3].0["error"].as_str().unwrap().contains("closed"));
    // Nor from its owner through the API: a closed child stays closed.
    let before = app.messages(child).await.len();
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{child}/messages"),
            json!({"message": "wake up"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("closed"),
        "{body}"
    );
    assert_eq!(app.messages(child).await.len(), before);
    app.stop().await;
}

#[sqlx::test]
async fn site_owners_pick_the_model_each_subagent_type_runs_on(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = support::app::create_owner(&app.services, "owner@example.com").await;
    let path = "/api/v1/admin/subagent-models";
    let (status, provider) = app
        .post_as(
            &owner,
            "/api/v1/admin/providers",
            json!({"name": "Gateway", "kind": "openai-compat", "base_url": app.fake.base_url, "api_key": "sk-db"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let mut models = Vec::new();
    for name in ["explorer-model", "retired-model"] {
        let (status, model) = app
            .post_as(
                &owner,
                "/api/v1/admin/models",
                json!({"provider_id": provider["id"], "name": name}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{model}");
        models.push(model["id"].as_str().unwrap().to_owned());
    }
    let (status, _) = app
        .send(
            reqwest::Method::PATCH,
            &owner,
            &format!("/api/v1/admin/models/{}", models[1]),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Nothing chosen: children run on their parent's model.
    let (status, body) = app.get_as(&owner, path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"general": null, "explore": null}));
    // Bad choices are 400s naming the type; only site owners choose.
    for (body, field) in [
        (json!({"explore": Uuid::now_v7()}), "explore"),
        (json!({"general": models[1]}), "general"),
        (json!({"general": "gpt"}), "general"),
        (json!({"explorer": models[0]}), "explorer"),
    ] {
        let (status, answer) = app.put_as(&owner, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.to_string().contains(field), "{body}: {answer}");
    }
    let (status, _) = app
        .put_as(&app.token, path, json!({"explore": models[0]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .put_as(&owner, path, json!({"explore": models[0]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"general": null, "explore": models[0]}));

    // An explore child runs on the chosen model, a general one on its parent's.
    app.fake.script_for(
        "PARENT",
        [
            call(
                "c1",
                "spawn_subagent",
                json!({"subagent_type": "explore", "prompt": "CHILD explore"}),
            ),
            call("c2", "wait_agent", json!({"chat_id": LAST_RESULT_CHAT_ID})),
            call(
                "c3",
                "spawn_subagent",
                json!({"subagent_type": "general", "prompt": "CHILD general"}),
            ),
            call("c4", "wait_agent", json!({"chat_id": LAST_RESULT_CHAT_ID})),
            Reply::Text("Both answered.".into()),
        ],
    );
    app.fake
        .script_for("CHILD explore", [Reply::Text("Explored.".into())]);
    app.fake
        .script_for("CHILD general", [Reply::Text("Done.".into())]);
    let parent = app.create_chat("PARENT: two children").await;
    app.wait_until_answered(parent, 10, Duration::from_secs(30))
        .await;
    let model_of = |key: &str| app.fake.received_for(key)[0].body["model"].clone();
    assert_eq!(model_of("CHILD explore"), "explorer-model");
    assert_eq!(model_of("CHILD general"), model_of("PARENT"));
    assert_ne!(model_of("PARENT"), "explorer-model");
    app.stop().await;
}

#[sqlx::test]
async fn a_child_keeps_its_parents_servers_and_plan_limits_and_never_enters_plan_mode(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    // A default_on server not allowed in plan mode; its `echo` is marked read-only.
    let owner = support::app::create_owner(&app.services, "owner@example.com").await;
    let docs = McpTestServer::start().await;
    let (status, server) = app
        .post_as(
            &owner,
            "/api/v1/admin/mcp-servers",
            json!({"slug": "docs", "display_name": "Docs", "url": docs.url, "availability": "default_on"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    let spawn = |kind: &str, prompt: &str| {
        call(
            "s",
            "spawn_subagent",
            json!({"subagent_type": kind, "prompt": prompt}),
        )
    };
    let wait = || call("w", "wait_agent", json!({"chat_id": LAST_RESULT_CHAT_ID}));
    app.fake.script_for(
        "OPTED OUT",
        [
            spawn("general", "CHILD general"),
            wait(),
            Reply::Text("ok".into()),
        ],
    );
    app.fake.script_for(
        "PLANNING",
        [
            spawn("explore", "CHILD explore"),
            wait(),
            Reply::Text("ok".into()),
        ],
    );
    app.fake
        .script_for("CHILD general", [Reply::Text("general done".into())]);
    app.fake
        .script_for("CHILD explore", [Reply::Text("explore done".into())]);

    // A parent that opted out of every server: its child has none either.
    let (status, body) = app
        .post(
            "/api/v1/chats",
            json!({"message": "OPTED OUT: spawn", "mcp_server_ids": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let opted_out: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let messages = app
        .wait_until_answered(opted_out, 6, Duration::from_secs(30))
        .await;
    let child: Uuid = tool_outputs(&messages)[0].0["chat_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let docs_tools = |key: &str| -> Vec<String> {
        app.fake
            .received_for(key)
            .iter()
            .flat_map(|r| offered(&r.body))
            .filter(|t| t.starts_with("docs__"))
            .collect()
    };
    assert_eq!(docs_tools("CHILD general"), Vec::<String>::new());

    // A plan-mode parent: neither it nor its explore child sees a server not allowed in
    // plan mode, read-only tools included.
    let (status, body) = app
        .post(
            "/api/v1/chats",
            json!({"message": "PLANNING: spawn", "plan_mode": "plan"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let planning: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(planning, 6, Duration::from_secs(30))
        .await;
    assert_eq!(docs_tools("PLANNING"), Vec::<String>::new());
    assert_eq!(docs_tools("CHILD explore"), Vec::<String>::new());
    assert!(docs.called().is_empty());

    // A child never enters plan mode (its parent waits for it to be idle), and a refused
    // PATCH changes nothing, whatever else it carried.
    let path = format!("/api/v1/chats/{child}");
    for body in [
        json!({"plan_mode": "plan"}),
        json!({"plan_mode": "plan", "instructions": "be brief"}),
        json!({"instructions": "be brief", "archived": true}),
    ] {
        let (status, answer) = app
            .send(
                reqwest::Method::PATCH,
                &app.token,
                &path,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}: {answer}");
    }
    let (status, answer) = app
        .post(
            &format!("{path}/messages"),
            json!({"message": "plan now", "plan_mode": "plan"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (_, chat) = app.get(&path).await;
    assert_eq!(chat["plan_mode"], Value::Null, "{chat}");
    assert_eq!(chat["instructions"], Value::Null, "{chat}");
    assert_eq!(chat["archived"], false, "{chat}");
    assert_eq!(
        app.messages(child).await.len(),
        2,
        "the refused message was not stored"
    );
    app.stop().await;
}
