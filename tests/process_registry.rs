//! The process registry (issue #16, item 1; ARCHITECTURE.md §6.1): real api, worker and
//! scheduler processes announce themselves with their busy slots, a killed one leaves
//! within a few beats and its consumer name is pruned from the queues' group, a graceful
//! stop leaves at once, and only site owners see the list.

mod support;

use std::time::{Duration, Instant};

use agentq_core::queue::{
    Announcement, BusySlots, Process, ProcessKind, QueueKeys, QueueName, RunToolCall, RunTurn,
    prune_dead_consumers,
};
use agentq_core::shutdown::CancellationToken;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    eventually,
    fake_openai::Reply,
    process::{AgentqProcess, LogFormat},
};
use uuid::Uuid;

/// The beat of the processes these tests start: their entries live 900 ms.
const BEAT_MS: &str = "300";

/// `GET /api/v1/admin/processes` as the site owner.
async fn processes(app: &TestApp, owner: &str) -> Vec<Value> {
    let (status, body) = app.get_as(owner, "/api/v1/admin/processes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["processes"].as_array().unwrap().clone()
}

/// The live entry of the process with `pid`, if listed.
async fn entry_of(app: &TestApp, owner: &str, pid: u32) -> Option<Value> {
    processes(app, owner)
        .await
        .into_iter()
        .find(|p| p["pid"] == pid)
}

/// One queue of `GET /api/v1/admin/queues`.
async fn queue_view(app: &TestApp, owner: &str, queue: &str) -> Value {
    let (status, body) = app.get_as(owner, "/api/v1/admin/queues").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == queue)
        .unwrap()
        .clone()
}

/// The names in a queue view's `consumers` (the group's names, `XINFO CONSUMERS`).
fn consumer_names(view: &Value) -> Vec<String> {
    view["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn a_worker_is_listed_with_its_busy_slots_says_it_is_stopping_and_leaves_when_it_exits(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "ops@example.com").await;
    let worker = AgentqProcess::worker(&app, &["--process-beat-ms", BEAT_MS, "--concurrency", "4"]);
    let pid = worker.pid();

    let entry = eventually(Duration::from_secs(20), "the worker's entry", || {
        entry_of(&app, &owner, pid)
    })
    .await;
    let id = entry["id"].as_str().unwrap().to_owned();
    assert_eq!(entry["kind"], "worker", "{entry}");
    assert!(id.starts_with("worker-"), "{entry}");
    assert!(
        id.contains(&format!("-{pid}-")),
        "host, pid and a random part: {entry}"
    );
    assert_eq!(entry["queues"], json!(["turns", "tools"]));
    assert_eq!(entry["concurrency"], 4);
    assert_eq!(entry["busy_slots"], json!({"turns": 0, "tools": 0}));
    assert_eq!(entry["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(entry["beat_ms"], 300);
    assert_eq!(entry["stopping"], false);
    assert!(!entry["hostname"].as_str().unwrap().is_empty());
    assert!(entry["started_at"].as_str().unwrap() <= entry["last_beat"].as_str().unwrap());
    let (status, _) = app.get_as(&app.token, "/api/v1/admin/processes").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "members may not list processes"
    );

    // A tool call that naps: the worker's `tools` slot is busy while it runs.
    app.fake.script([
        Reply::ToolCalls(vec![(
            "call_1".into(),
            "sleep".into(),
            json!({"seconds": 3}),
        )]),
        Reply::Text("Rested.".into()),
    ]);
    app.create_chat("take a nap").await;
    // The turn's job returns just after the tool call it fanned out starts: wait for the
    // beat that shows only the nap.
    eventually(
        Duration::from_secs(20),
        "a busy tools slot only",
        || async {
            entry_of(&app, &owner, pid)
                .await
                .filter(|e| e["busy_slots"]["tools"] == 1 && e["busy_slots"]["turns"] == 0)
        },
    )
    .await;
    let tools = queue_view(&app, &owner, "tools").await;
    let live = tools["live_consumers"].as_array().unwrap();
    assert_eq!(live.len(), 1, "{tools}");
    assert_eq!(live[0]["name"], id.as_str());
    assert_eq!(live[0]["busy_slots"], 1);
    assert_eq!(live[0]["concurrency"], 4);
    let name = tools["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("the worker's consumer name: {tools}"));
    assert_eq!(name["live"], true);
    assert_eq!(name["pending"], 1);

    // SIGTERM while the nap runs: the worker drains, and says so.
    worker.sigterm();
    let draining = eventually(
        Duration::from_secs(5),
        "the entry to say stopping",
        || async {
            entry_of(&app, &owner, pid)
                .await
                .filter(|e| e["stopping"] == true)
        },
    )
    .await;
    assert_eq!(draining["busy_slots"]["tools"], 1, "{draining}");
    let mut worker = worker;
    let (status, stopped_at) = tokio::task::spawn_blocking(move || {
        let status = worker.wait();
        (status, Instant::now())
    })
    .await
    .unwrap();
    assert!(status.success(), "exit 0 after the drain: {status:?}");
    assert_eq!(
        entry_of(&app, &owner, pid).await,
        None,
        "gone as soon as it exited ({:?} later), not three beats later",
        stopped_at.elapsed()
    );
}

#[sqlx::test]
async fn a_killed_worker_leaves_within_three_beats_and_its_consumer_name_is_pruned(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "ops@example.com").await;
    let beat = ["--process-beat-ms", BEAT_MS];
    let mut doomed = AgentqProcess::worker(&app, &beat);
    // Redis adds a name to the group when it first delivers to it: the doomed worker runs
    // one (duplicate, so skipped) job of each queue before the others start.
    app.services
        .producer
        .enqueue(&RunTurn {
            turn_id: Uuid::new_v4(),
        })
        .await
        .unwrap();
    app.services
        .producer
        .enqueue(&RunToolCall {
            tool_call_id: Uuid::new_v4(),
        })
        .await
        .unwrap();
    let doomed_id = eventually(Duration::from_secs(20), "the doomed worker", || async {
        entry_of(&app, &owner, doomed.pid())
            .await
            .map(|e| e["id"].as_str().unwrap().to_owned())
    })
    .await;
    for queue in ["turns", "tools"] {
        eventually(Duration::from_secs(10), "its consumer name", || async {
            consumer_names(&queue_view(&app, &owner, queue).await)
                .contains(&doomed_id)
                .then_some(())
        })
        .await;
    }
    let _survivor = AgentqProcess::worker(&app, &beat);
    let mut api = AgentqProcess::api(&app, LogFormat::Human);
    let mut scheduler = AgentqProcess::spawn(
        &app,
        "scheduler",
        &[
            "--process-beat-ms",
            BEAT_MS,
            "--recovery-interval-secs",
            "1",
        ],
    );

    let listed = eventually(Duration::from_secs(30), "four processes", || async {
        let listed = processes(&app, &owner).await;
        (listed.len() == 4).then_some(listed)
    })
    .await;
    let kinds: Vec<&str> = listed.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["api", "worker", "worker", "scheduler"],
        "by kind: {listed:?}"
    );

    doomed.kill();
    let killed_at = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the killed worker to leave",
        || async {
            entry_of(&app, &owner, doomed.pid())
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    let gone_after = killed_at.elapsed();
    println!("a killed worker left the registry {gone_after:?} after SIGKILL (beat 300 ms)");
    assert!(
        gone_after < Duration::from_millis(900 + 1_000),
        "within three beats and some slack: {gone_after:?}"
    );
    for queue in ["turns", "tools"] {
        let view = eventually(
            Duration::from_secs(15),
            "the dead name to be pruned",
            || async {
                let view = queue_view(&app, &owner, queue).await;
                (!consumer_names(&view).contains(&doomed_id)).then_some(view)
            },
        )
        .await;
        assert_eq!(
            view["live_consumers"].as_array().unwrap().len(),
            1,
            "{view}"
        );
        let consumers = view["consumers"].as_array().unwrap();
        assert!(
            consumers.iter().all(|c| c["live"] == true),
            "only the survivor's name is left: {view}"
        );
    }
    println!(
        "its consumer name was pruned {:?} after SIGKILL",
        killed_at.elapsed()
    );

    // API and scheduler leave at once on a graceful stop, too.
    let (api_pid, scheduler_pid) = (api.pid(), scheduler.pid());
    assert!(api.terminate().success());
    assert!(scheduler.terminate().success());
    let left: Vec<Value> = processes(&app, &owner).await;
    assert!(
        left.iter()
            .all(|p| p["pid"] != api_pid && p["pid"] != scheduler_pid),
        "{left:?}"
    );
    assert_eq!(left.len(), 1, "the survivor: {left:?}");
}

#[sqlx::test]
async fn a_dead_consumer_name_is_removed_only_once_it_holds_no_entries(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let mut conn = app.services.redis_conn.clone();
    let keys = QueueKeys::new(&app.prefix, QueueName::Tools);
    let job = RunToolCall {
        tool_call_id: Uuid::new_v4(),
    };
    app.services.producer.enqueue(&job).await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    // A dead worker that held an entry, one that held none, and a live one (idle).
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&keys.group)
        .arg("dead-holding")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&keys.stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    for name in ["dead-idle", "live-idle"] {
        let _: i64 = redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&keys.stream)
            .arg(&keys.group)
            .arg(name)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let live = Announcement::start(
        conn.clone(),
        &app.prefix,
        Process {
            id: "live-idle".into(),
            kind: ProcessKind::Worker,
            queues: vec![(QueueName::Tools, BusySlots::default())],
            concurrency: 1,
        },
        Duration::from_secs(5),
        shutdown.clone(),
    );
    let owner = create_owner(&app.services, "ops@example.com").await;
    eventually(Duration::from_secs(5), "the live entry", || async {
        (processes(&app, &owner).await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let removed = prune_dead_consumers(&mut conn, &app.prefix, QueueName::Tools, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        removed,
        ["dead-idle"],
        "the holder stays until its entry is taken over"
    );
    let view = queue_view(&app, &owner, "tools").await;
    let mut names = consumer_names(&view);
    names.sort();
    assert_eq!(names, ["dead-holding", "live-idle"], "{view}");

    // A live consumer takes the entry over, as the reclaim loop does after the lease.
    let _: redis::Value = redis::cmd("XAUTOCLAIM")
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg("live-idle")
        .arg(0)
        .arg("0-0")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let removed = prune_dead_consumers(&mut conn, &app.prefix, QueueName::Tools, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(removed, ["dead-holding"]);
    let view = queue_view(&app, &owner, "tools").await;
    assert_eq!(consumer_names(&view), ["live-idle"], "{view}");
    assert_eq!(view["consumers"][0]["live"], true);
    assert_eq!(view["consumers"][0]["pending"], 1, "the entry it took over");

    shutdown.cancel();
    live.withdraw().await;
    assert!(
        processes(&app, &owner).await.is_empty(),
        "withdrawn at once"
    );
}
