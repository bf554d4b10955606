//! agentq on a real three-node Redis Cluster (issue #16, item 4): turns run by worker
//! processes, a worker killed mid-turn and taken over, SSE with resume, the process
//! registry, and a dead letter retried through the admin API; then the same again after
//! every slot of the node holding the turns queue moved to another node while agentq ran.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use agentq_core::{
    queue::{QueueKeys, QueueName, RunToolCall},
    shutdown::CancellationToken,
};
use agentq_scheduler::SchedulerConfig;
use reqwest::{Method, StatusCode};
use support::{
    app::{TestApp, create_owner},
    eventually,
    fake_openai::answer_to,
    flaky_tools::flaky_tools_consumer,
    process::WorkerProcess,
    redis_cluster::RedisCluster,
    sse::{is_status, read_until},
};

#[sqlx::test]
async fn agentq_runs_on_a_redis_cluster_and_keeps_running_while_its_slots_move(pool: sqlx::PgPool) {
    let cluster = RedisCluster::start().await;
    let app = TestApp::start_api_on(pool, cluster.url(), |_| {}).await;
    assert!(app.services.redis.is_cluster());
    let owner = create_owner(&app.services, "ops@example.com").await;
    app.start_recovery(SchedulerConfig {
        interval_secs: 1,
        stale_secs: 30,
        batch: 100,
        max_attempts: 3,
        maintenance_cron: "0 0 1 1 *".parse().unwrap(),
        diff_refresh: agentq_core::config::defaults(),
    });
    exercise(&app, &owner, "first").await;

    // Everything the node holding the turns queue holds moves to another node: the queue's
    // stream with its consumer group and pending entries, and whatever event shards sit there.
    let turns = QueueKeys::new(&app.prefix, QueueName::Turns).stream;
    let from = cluster.owner_of(&turns).await;
    let to = *cluster.ports.iter().find(|p| **p != from).unwrap();
    cluster.move_all_slots(from, to).await;
    assert_eq!(cluster.owner_of(&turns).await, to, "the queue's slot moved");
    exercise(&app, &owner, "second").await;
    app.stop().await;
}

/// One round of what agentq does on Redis, named `round` in its prompts.
async fn exercise(app: &TestApp, owner: &str, round: &str) {
    // A worker process dies in the middle of a turn; another takes the turn over.
    app.fake.set_chunk_delay(Duration::from_millis(200));
    let mut doomed = WorkerProcess::worker(app, &[]);
    let question = format!("{round} one two three four five six seven eight nine ten eleven");
    let chat = app.create_chat(&question).await;
    eventually(Duration::from_secs(20), "the answer to start", || async {
        let (_, c) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (c["status"] == "running").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    doomed.kill();
    app.fake.set_chunk_delay(Duration::from_millis(5));
    let survivor = WorkerProcess::worker(app, &[]);
    app.wait_until_answered(chat, 2, Duration::from_secs(40))
        .await;
    let messages = app.messages(chat).await;
    assert_eq!(messages.len(), 2, "nothing doubled: {messages:?}");
    assert_eq!(messages[1]["content"][0]["text"], answer_to(&question));

    // The registry lists the survivor as a live process.
    let processes = eventually(Duration::from_secs(10), "the survivor listed", || async {
        let (status, body) = app.get_as(owner, "/api/v1/admin/processes").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let workers = body["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "worker")
            .count();
        (workers >= 1).then_some(body)
    })
    .await;
    assert!(
        processes["processes"].as_array().unwrap().len() >= 2,
        "{processes}"
    );

    // A chat's stream, then the same stream resumed after its third event.
    let chat = app
        .create_chat(&format!("{round} alpha beta gamma delta"))
        .await;
    let url = app.stream_url(chat);
    let all = read_until(
        &app.client,
        &url,
        &app.token,
        None,
        Duration::from_secs(20),
        |e| is_status(e, "waiting"),
    )
    .await;
    assert!(all.len() > 6, "{all:?}");
    assert!(all.iter().any(|e| e.event == "message_part"), "{all:?}");
    let resumed = read_until(
        &app.client,
        &url,
        &app.token,
        Some(&all[2].id),
        Duration::from_secs(20),
        |e| is_status(e, "waiting"),
    )
    .await;
    let expected: Vec<&str> = all[3..].iter().map(|e| e.id.as_str()).collect();
    let got: Vec<&str> = resumed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, expected, "resumed right after the given id");

    // The dead-letter consumer below must be the tools queue's only one.
    drop(survivor);
    dead_letter_retried(app, owner).await;
}

/// A tools job that fails twice is dead-lettered, shown by the admin API, retried through
/// it, and runs.
async fn dead_letter_retried(app: &TestApp, owner: &str) {
    let healthy = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let runner = flaky_tools_consumer(app, healthy.clone(), runs.clone(), stop.clone());
    let job = RunToolCall {
        tool_call_id: uuid::Uuid::now_v7(),
    };
    app.services.producer.enqueue(&job).await.unwrap();
    let letters = eventually(Duration::from_secs(20), "the dead letter", || async {
        let (status, body) = app
            .get_as(owner, "/api/v1/admin/queues/tools/dead-letters")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
        letters
            .into_iter()
            .find(|l| l["job"]["tool_call_id"] == job.tool_call_id.to_string())
    })
    .await;
    let (status, queues) = app.get_as(owner, "/api/v1/admin/queues").await;
    assert_eq!(status, StatusCode::OK, "{queues}");
    healthy.store(true, Ordering::SeqCst);
    let id = letters["id"].as_str().unwrap();
    let retry = format!("/api/v1/admin/queues/tools/dead-letters/{id}/retry");
    let (status, _) = app.send(Method::POST, owner, &retry, None).await;
    assert_eq!(status, StatusCode::OK);
    eventually(
        Duration::from_secs(20),
        "the retried job to run",
        || async { (runs.load(Ordering::SeqCst) == 3).then_some(()) },
    )
    .await;
    stop.cancel();
    runner.await.unwrap();
}
