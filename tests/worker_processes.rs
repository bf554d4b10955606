//! Real worker processes: several share a turn's tool calls; one killed mid-turn loses
//! nothing.

mod support;

use std::time::Duration;

use agentq_core::domain::TurnStatus;
use agentq_scheduler::SchedulerConfig;
use serde_json::{Value, json};
use support::{
    app::TestApp,
    eventually,
    fake_openai::{Reply, answer_to},
    process::WorkerProcess,
};

#[sqlx::test]
async fn two_worker_processes_share_five_parallel_tool_calls_and_the_next_step_runs_once(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let _a = WorkerProcess::worker(&app, &["--concurrency", "2"]);
    let _b = WorkerProcess::worker(&app, &["--concurrency", "2"]);
    let calls: Vec<(String, String, Value)> = (0..5)
        .map(|i| {
            (
                format!("call_{i}"),
                "sleep".to_owned(),
                json!({"seconds": 0.3}),
            )
        })
        .collect();
    app.fake.script([
        Reply::ToolCalls(calls),
        Reply::Text("All five naps done.".into()),
    ]);
    let chat = app.create_chat("take five naps").await;

    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "assistant"],
        "one assistant message per step"
    );
    let calls_part: Vec<&Value> = messages[1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "tool_call")
        .collect();
    assert_eq!(calls_part.len(), 5);
    let results = messages[2]["content"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result["tool_call_id"],
            format!("call_{i}"),
            "results in call order"
        );
        assert_eq!(result["output"]["slept_seconds"], 0.3);
        assert_eq!(result["is_error"], false);
    }
    assert_eq!(messages[3]["content"][0]["text"], "All five naps done.");

    let rows: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT status, attempt, lease_owner FROM tool_calls WHERE chat_id = $1")
            .bind(chat)
            .fetch_all(app.services.store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter().all(|(s, a, _)| s == "succeeded" && *a == 1),
        "{rows:?}"
    );
    let owners: std::collections::HashSet<_> =
        // Lease owners are `<worker process>/<acquisition>`: count the processes.
        rows.iter()
            .filter_map(|(_, _, o)| o.as_deref()?.split_once('/').map(|(p, _)| p.to_owned()))
            .collect();
    assert_eq!(owners.len(), 2, "both workers ran calls: {owners:?}");
    let (step, attempt): (i32, i32) =
        sqlx::query_as("SELECT step, attempt FROM chat_turns WHERE chat_id = $1")
            .bind(chat)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert_eq!((step, attempt), (1, 1), "each step counts its own attempts");
    let requests = app.fake.received();
    assert_eq!(requests.len(), 2, "the follow-up step ran exactly once");
    let second = &requests[1].body["messages"];
    assert_eq!(second[1]["tool_calls"].as_array().unwrap().len(), 5);
    assert_eq!(second[2]["role"], "tool");
    assert!(
        requests[0].body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "sleep")
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_worker_killed_mid_turn_loses_and_doubles_nothing(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    app.fake.set_chunk_delay(Duration::from_millis(250));
    let mut doomed = WorkerProcess::worker(&app, &[]);
    let chat = app
        .create_chat("one two three four five six seven eight nine ten eleven twelve")
        .await;
    eventually(
        Duration::from_secs(10),
        "the answer to start streaming",
        || async {
            let (_, c) = app.get(&format!("/api/v1/chats/{chat}")).await;
            (c["status"] == "running").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    doomed.kill();
    app.fake.set_chunk_delay(Duration::from_millis(5));

    let _survivor = WorkerProcess::worker(&app, &[]);
    app.start_recovery(SchedulerConfig {
        interval_secs: 1,
        stale_secs: 30,
        batch: 100,
        max_attempts: 3,
        maintenance_cron: "0 0 1 1 *".parse().unwrap(),
        diff_refresh: agentq_core::config::defaults(),
    });
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages_after = app.messages(chat).await;
    assert_eq!(messages_after.len(), 2, "nothing doubled: {messages:?}");
    assert_eq!(
        messages_after[1]["content"][0]["text"],
        answer_to("one two three four five six seven eight nine ten eleven twelve"),
        "the whole answer, from the second worker"
    );
    let (attempt, status): (i32, TurnStatus) =
        sqlx::query_as("SELECT attempt, status FROM chat_turns WHERE chat_id = $1")
            .bind(chat)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert_eq!((attempt, status), (2, TurnStatus::Completed));
    assert_eq!(app.fake.received().len(), 2);
    app.stop().await;
}

#[sqlx::test]
async fn sigterm_drains_finishes_what_it_can_and_hands_back_the_rest(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    app.fake.set_chunk_delay(Duration::from_millis(150));
    let long_answer = "word ".repeat(40);
    let mut first = WorkerProcess::worker(&app, &["--drain-secs", "3"]);
    // The long answer is scripted first so the first chat gets it.
    app.fake.script([Reply::Text(long_answer.clone())]);
    let long = app.create_chat("the long one").await;
    // The long turn takes the scripted reply before the short chat exists.
    eventually(
        Duration::from_secs(10),
        "the long turn to stream",
        || async { (!app.fake.received().is_empty()).then_some(()) },
    )
    .await;
    let short = app.create_chat("hi").await;
    eventually(Duration::from_secs(10), "both turns to run", || async {
        let a = app.get(&format!("/api/v1/chats/{long}")).await.1;
        let b = app.get(&format!("/api/v1/chats/{short}")).await.1;
        (a["status"] == "running" && b["status"] == "running").then_some(())
    })
    .await;

    let exit = tokio::task::spawn_blocking(move || {
        let status = first.terminate();
        (first, status)
    });
    let (_first, status) = exit.await.unwrap();
    assert!(status.success(), "a drained worker exits 0, got {status:?}");

    // The short turn finished inside the drain; the long one was handed back.
    let short_messages = app.messages(short).await;
    assert_eq!(
        short_messages.len(),
        2,
        "finished during the drain: {short_messages:?}"
    );
    assert_eq!(short_messages[1]["content"][0]["text"], answer_to("hi"));
    let (status,): (TurnStatus,) =
        sqlx::query_as("SELECT status FROM chat_turns WHERE chat_id = $1")
            .bind(long)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert_eq!(
        status,
        TurnStatus::Queued,
        "handed back, not left running until its lease ends"
    );

    app.fake.set_chunk_delay(Duration::from_millis(2));
    let _second = WorkerProcess::worker(&app, &[]);
    let messages = app
        .wait_until_answered(long, 2, Duration::from_secs(20))
        .await;
    assert_eq!(messages.len(), 2, "nothing doubled");
    assert_eq!(messages[1]["content"][0]["text"], answer_to("the long one"));
    app.stop().await;
}

/// With default settings (10 s turn lease, recovery every 2 s) a killed worker's step runs
/// again elsewhere within 15 s, and a client reading the stream from the start sees a
/// `retry` marker of kind `worker_lost` between the lost attempt's deltas and the new ones,
/// then the final message once.
#[sqlx::test]
async fn a_killed_workers_step_resumes_within_15_s_behind_a_retry_marker(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    app.fake.set_chunk_delay(Duration::from_millis(250));
    let mut doomed = WorkerProcess::worker_with_default_leases(&app, &[]);
    let question = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu";
    let chat = app.create_chat(question).await;
    let stream = tokio::spawn({
        let (client, url, token) = (app.client.clone(), app.stream_url(chat), app.token.clone());
        async move {
            support::sse::read_until(&client, &url, &token, None, Duration::from_secs(60), |e| {
                support::sse::is_status(e, "waiting")
            })
            .await
        }
    });
    eventually(Duration::from_secs(10), "the first deltas", || async {
        (app.fake.received().len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    doomed.kill();
    let killed_at = std::time::Instant::now();
    app.fake.set_chunk_delay(Duration::from_millis(5));
    let _survivor = WorkerProcess::worker_with_default_leases(&app, &[]);
    app.start_recovery(SchedulerConfig {
        interval_secs: 2,
        stale_secs: 30,
        batch: 100,
        max_attempts: 3,
        maintenance_cron: "0 0 1 1 *".parse().unwrap(),
        diff_refresh: agentq_core::config::defaults(),
    });
    eventually(Duration::from_secs(20), "the step to run again", || async {
        (app.fake.received().len() == 2).then_some(())
    })
    .await;
    let resumed_after = killed_at.elapsed();
    assert!(
        resumed_after < Duration::from_secs(15),
        "resumed {resumed_after:?} after the kill"
    );
    let events = stream.await.unwrap();
    let marker = events
        .iter()
        .position(|e| e.event == "retry" && e.data["kind"] == "worker_lost")
        .unwrap_or_else(|| panic!("no worker_lost marker in {events:?}"));
    let is_delta = |e: &&support::sse::Received| e.event == "message_part";
    let before = events[..marker].iter().filter(is_delta).count();
    let after = events[marker..].iter().filter(is_delta).count();
    assert!(before > 0, "the lost attempt streamed before the kill");
    assert!(after > 0, "the new attempt streams after the marker");
    let finals: Vec<_> = events
        .iter()
        .filter(|e| e.event == "message" && e.data["message"]["role"] == "assistant")
        .collect();
    assert_eq!(finals.len(), 1, "the final message once: {finals:?}");
    let messages = app.messages(chat).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["content"][0]["text"], answer_to(question));
    println!("resumed {resumed_after:?} after SIGKILL with default leases");
    app.stop().await;
}
