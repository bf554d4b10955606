//! One lock order for every transition that touches a chat and its turn or tool calls:
//! the chat row, then the turn, then the tool calls (`core::store` documents it). Races
//! of an interrupt against acquire, fan-in and posted tool results, repeated hundreds of
//! times on a real PostgreSQL, end without a deadlock (`40P01`) and without a 5xx.

mod support;

use std::time::Duration;

use agentq_core::{
    StoreError,
    domain::MessagePart,
    store::{Completion, NewToolCall},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::TestApp;
use uuid::Uuid;

const ROUNDS: usize = 200;
const LEASE: Duration = Duration::from_secs(30);

fn completion() -> Completion {
    support::text_completion("fake-gpt", "calling tools")
}

fn call(id: &str, name: &str, dynamic: bool) -> NewToolCall {
    NewToolCall {
        provider_call_id: id.into(),
        name: name.into(),
        arguments: json!({}),
        dynamic,
        source: if dynamic { "client" } else { "builtin" }.into(),
    }
}

/// `turn`'s final answer (the test's completion), finished by `store`.
async fn answer(
    store: &agentq_core::store::Store,
    turn: &agentq_core::domain::AcquiredTurn,
) -> Result<Option<agentq_core::store::TurnOutcome>, StoreError> {
    store
        .complete_turn(
            turn.id,
            turn.chat_id,
            turn.step,
            &turn.lease_owner,
            &completion(),
            agentq_core::store::AnswerTitle::Keep,
        )
        .await
}

/// How many versions of the finish's function (`store::sql_functions`) the database holds.
async fn complete_turn_functions(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'agentq_complete_turn_%'")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Notes a store result: deadlocks are counted, anything else unexpected is collected.
fn check<T>(
    result: Result<T, StoreError>,
    what: &str,
    deadlocks: &mut usize,
    odd: &mut Vec<String>,
) {
    if let Err(e) = result {
        let deadlock = matches!(&e, StoreError::Database(sqlx::Error::Database(d)) if d.code().as_deref() == Some("40P01"));
        if deadlock {
            *deadlocks += 1;
        } else if !matches!(e, StoreError::Conflict(_)) {
            odd.push(format!("{what}: {e}"));
        }
    }
}

/// The chat's latest turn, acquired by `worker`: it must be free to take.
async fn acquired_turn_of(
    app: &TestApp,
    chat: Uuid,
    worker: &str,
) -> agentq_core::domain::AcquiredTurn {
    let turn = app.latest_turn(chat).await;
    app.services
        .store
        .acquire_turn(turn, worker, LEASE)
        .await
        .unwrap()
        .expect("a fresh turn is acquired")
}

/// The API, with no per-user rate limits: one user creates hundreds of chats in these
/// tests, and the limits are not under test.
async fn app_without_rate_limits(pool: sqlx::PgPool) -> TestApp {
    let app = TestApp::start_api_only(pool).await;
    let owner = support::app::create_owner(&app.services, "root@example.com").await;
    app.configure_site(
        &owner,
        json!({"chats_per_minute": 0, "messages_per_minute": 0}),
    )
    .await;
    app
}

/// Records `calls` as the step of `acquired` (worker `worker-a`), then acquires each of
/// its builtin calls as `worker-b`: the step, and the builtin calls running.
async fn tool_step_running(
    store: &agentq_core::store::Store,
    acquired: &agentq_core::domain::AcquiredTurn,
    calls: &[NewToolCall],
) -> (
    agentq_core::store::ToolStep,
    Vec<agentq_core::domain::ToolCallRow>,
) {
    let step = store
        .record_tool_step(
            acquired,
            "worker-a",
            &completion(),
            calls,
            Duration::from_secs(300),
        )
        .await
        .unwrap()
        .expect("the step is recorded");
    let mut running = Vec::new();
    for c in &step.builtin {
        running.push(
            store
                .acquire_tool_call(c.id, "worker-b", LEASE)
                .await
                .unwrap()
                .expect("a queued call is acquired"),
        );
    }
    (step, running)
}

/// A root chat with a subagent whose queued turn `w/1` has acquired: (root, child, turn).
async fn subagent_running_its_turn(
    app: &TestApp,
) -> (Uuid, Uuid, agentq_core::domain::AcquiredTurn) {
    let store = &app.services.store;
    let (status, root) = app.post("/api/v1/chats", json!({"message": "plan"})).await;
    assert_eq!(status, StatusCode::CREATED, "{root}");
    let root: Uuid = root["id"].as_str().unwrap().parse().unwrap();
    let spawned = store
        .spawn_subagent(&agentq_core::store::NewSubagent {
            parent_chat_id: root,
            call_id: Uuid::now_v7(),
            subagent_type: "general",
            prompt: "look around",
            title: "",
            max_live: 5,
            max_total: 5,
        })
        .await
        .unwrap();
    let agentq_core::store::Spawned::Created { child, .. } = spawned else {
        panic!("no child was created: {spawned:?}");
    };
    let turn = store
        .acquire_queued_turn(child.id, "w/1", LEASE)
        .await
        .unwrap()
        .expect("the child's queued turn");
    (root, child.id, turn)
}

/// Runs `work` (a `what` of the child: its answer, a tool call's finish) while another
/// transaction holds the root's row lock, and returns its result. Panics unless it waits
/// for that lock holding neither the child's chat row nor its turn's (a transaction that
/// locks the root, then the child, would deadlock with it otherwise), or does not go on
/// within 10 s once the root is free.
async fn waits_for_the_root<T: Send + 'static>(
    store: &agentq_core::store::Store,
    root: Uuid,
    child: Uuid,
    turn: Uuid,
    what: &str,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let holder = support::hold_chat(store.pool(), root).await;
    let waiting = tokio::spawn(work);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the {what} did not wait for the root's lock"
    );
    let mut probe = store.pool().begin().await.unwrap();
    for (table, id) in [("chats", child), ("chat_turns", turn)] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE NOWAIT"
        )))
        .bind(id)
        .execute(&mut *probe)
        .await
        .unwrap_or_else(|e| panic!("the waiting {what} holds its {table} row: {e}"));
    }
    probe.rollback().await.unwrap();
    holder.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap_or_else(|_| panic!("the {what} did not go on once the root was free"))
        .unwrap()
}

#[sqlx::test]
async fn interrupts_racing_acquire_fan_in_and_tool_results_never_deadlock(pool: sqlx::PgPool) {
    let app = app_without_rate_limits(pool).await;
    let store = app.services.store.clone();
    let interrupt = |chat: Uuid| {
        let url = format!("{}/api/v1/chats/{chat}/interrupt", app.base);
        let request = app
            .client
            .post(url)
            .bearer_auth(&app.token)
            .json(&json!({}));
        async move { request.send().await.unwrap().status() }
    };
    let alice: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'alice@example.com'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let (mut deadlocks, mut odd, mut server_errors) = (0, Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // An interrupt (the store's, so both reach PostgreSQL together) against a worker
        // acquiring the turn.
        let chat = app.create_chat("race one").await;
        let turn = app.latest_turn(chat).await;
        let (acquired, interrupted) = tokio::join!(
            store.acquire_turn(turn, "worker-a/1", LEASE),
            store.request_interrupt(chat, alice)
        );
        check(acquired, "acquire", &mut deadlocks, &mut odd);
        check(interrupted, "interrupt", &mut deadlocks, &mut odd);

        // An interrupt against a worker handing the turn back, and one over HTTP.
        let chat = app.create_chat("race one b").await;
        let turn = acquired_turn_of(&app, chat, "worker-a/2").await.id;
        let (released, interrupted, status) = tokio::join!(
            store.release_turn(turn, "worker-a/2"),
            store.request_interrupt(chat, alice),
            interrupt(chat)
        );
        check(released, "release", &mut deadlocks, &mut odd);
        check(interrupted, "interrupt", &mut deadlocks, &mut odd);
        if status.is_server_error() {
            server_errors.push(format!("round {round}: interrupt {status}"));
        }

        // An interrupt against two tool calls fanning in and the client's results.
        let (code, created) = app
            .post(
                "/api/v1/chats",
                json!({
                    "message": "race two",
                    "dynamic_tools": [{"name": "ask_client", "description": "d", "input_schema": {"type": "object"}}]
                }),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{created}");
        let chat: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        let acquired = acquired_turn_of(&app, chat, "worker-a").await;
        let (step, running) = tool_step_running(
            &store,
            &acquired,
            &[
                call("c1", "current_time", false),
                call("c2", "current_time", false),
                call("c3", "ask_client", true),
            ],
        )
        .await;
        let results_url = format!("{}/api/v1/chats/{chat}/tool-results", app.base);
        let results = app
            .client
            .post(results_url)
            .bearer_auth(&app.token)
            .json(&json!({"results": [{"tool_call_id": step.dynamic[0].id, "output": "ok"}]}))
            .send();
        let output: Value = json!({"now": "noon"});
        let (first, second, posted, status) = tokio::join!(
            store.finish_tool_call(&running[0], "worker-b", &output, false),
            store.finish_tool_call(&running[1], "worker-b", &output, false),
            results,
            interrupt(chat),
        );
        check(first, "finish c1", &mut deadlocks, &mut odd);
        check(second, "finish c2", &mut deadlocks, &mut odd);
        let posted = posted.unwrap().status();
        for (what, s) in [("tool-results", posted), ("interrupt", status)] {
            if s.is_server_error() {
                server_errors.push(format!("round {round}: {what} {s}"));
            }
        }
    }
    assert_eq!(deadlocks, 0, "deadlocks in {ROUNDS} rounds");
    assert!(odd.is_empty(), "unexpected store errors: {odd:?}");
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    app.stop().await;
}

/// A subagent's final answer takes its root's lock before its own chat row and turn (in
/// the statement that stores the answer, `r` before `c`): while another transaction holds
/// the root, the finishing child waits holding nothing, so a transaction that locks the
/// root, then the child (archive, spawn) cannot deadlock with it.
#[sqlx::test]
async fn a_subagents_final_answer_takes_its_roots_lock_before_its_own(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    let (root, child, turn) = subagent_running_its_turn(&app).await;

    let answer = {
        let (store, turn) = (store.clone(), turn.clone());
        async move { answer(&store, &turn).await }
    };
    let outcome = waits_for_the_root(&store, root, child, turn.id, "answer", answer)
        .await
        .unwrap()
        .expect("the lease was still held");
    assert!(outcome.message.is_some(), "the answer was stored");
}

/// Parallel builtin calls of one step finishing at the same instant fan in exactly once:
/// each finish locks the chat and the turn in one statement, then reads the step's other
/// calls in the next one (the snapshot of a statement that waited for the lock would miss
/// a call finished meanwhile, and no call would fan in), and only once every call is
/// finished (each result is its call's output, none missing). Eight calls finished together
/// (as many at once as the test pool's connections allow), fifty times over.
#[sqlx::test]
async fn parallel_tool_calls_finishing_at_once_fan_in_exactly_once(pool: sqlx::PgPool) {
    const CALLS: usize = 8;
    const TIMES: usize = 50;
    let app = app_without_rate_limits(pool).await;
    let store = app.services.store.clone();
    let output: Value = json!({"now": "noon"});
    for round in 0..TIMES {
        let chat = app.create_chat("many tools").await;
        let acquired = acquired_turn_of(&app, chat, "worker-a").await;
        let turn = acquired.id;
        let calls: Vec<NewToolCall> = (0..CALLS)
            .map(|i| call(&format!("c{i}"), "current_time", false))
            .collect();
        let (_, running) = tool_step_running(&store, &acquired, &calls).await;
        let finishes = running
            .iter()
            .map(|c| store.finish_tool_call(c, "worker-b", &output, false));
        let fanned: Vec<_> = futures::future::join_all(finishes)
            .await
            .into_iter()
            .filter_map(|r| r.expect("a finish succeeds"))
            .collect();
        assert_eq!(fanned.len(), 1, "round {round}: fan-ins of one step");
        let results = &fanned[0].results;
        assert_eq!(
            results.content.len(),
            CALLS,
            "round {round}: one result a call"
        );
        for part in &results.content {
            match part {
                MessagePart::ToolResult {
                    output: got,
                    is_error,
                    ..
                } => assert!(
                    got == &output && !is_error,
                    "round {round}: a fan-in before every call finished: {part:?}"
                ),
                other => panic!("round {round}: not a tool result: {other:?}"),
            }
        }
        let (status, step_now, tool_messages): (String, i32, i64) = sqlx::query_as(
            "SELECT t.status, t.step,
                    (SELECT count(*) FROM chat_messages WHERE turn_id = t.id AND role = 'tool')
             FROM chat_turns t WHERE t.id = $1",
        )
        .bind(turn)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(
            (status.as_str(), step_now, tool_messages),
            ("queued", acquired.step + 1, 1),
            "round {round}: the turn goes on at the next step with one tool message"
        );
    }
}

/// A subagent's tool call finishing takes its root's lock before its own chat row and
/// turn, as every transition of a subagent does: while another transaction holds the
/// root, the finish waits holding nothing.
#[sqlx::test]
async fn a_subagents_tool_call_finish_takes_its_roots_lock_first(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    let (root, child, turn) = subagent_running_its_turn(&app).await;
    let step = store
        .record_tool_step(
            &turn,
            "w/1",
            &completion(),
            &[call("c1", "current_time", false)],
            Duration::from_secs(300),
        )
        .await
        .unwrap()
        .expect("the step is recorded");
    let running = store
        .acquire_tool_call(step.builtin[0].id, "w/2", LEASE)
        .await
        .unwrap()
        .expect("the call is acquired");

    let finish = {
        let store = store.clone();
        async move {
            store
                .finish_tool_call(&running, "w/2", &json!({"now": "noon"}), false)
                .await
        }
    };
    let fanned = waits_for_the_root(&store, root, child, turn.id, "finish", finish)
        .await
        .unwrap();
    assert!(fanned.is_some(), "the step's only call fanned in");
}

/// A final answer reads the chat's queue after it holds the chat's lock: a message that
/// the lock's last holder queued (a `POST /messages` while the turn ran) is promoted with
/// a new turn, not left behind in a chat that went `waiting`. The answer's statements run
/// in one call of a PL/pgSQL function (`store::sql_functions`), one snapshot each:
/// were the promotion read with the snapshot taken before the lock was waited for, this
/// message would be missed.
#[sqlx::test]
async fn an_answer_that_waited_for_its_chat_promotes_what_the_holder_queued(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    for round in 0..3 {
        let chat = app.create_chat(&format!("round {round}")).await;
        let turn = acquired_turn_of(&app, chat, "w/1").await;
        let mut holder = support::hold_chat(store.pool(), chat).await;
        let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *holder)
            .await
            .unwrap();
        let answer = {
            let (store, turn) = (store.clone(), turn.clone());
            tokio::spawn(async move { answer(&store, &turn).await })
        };
        // The answer is blocked by the holder's lock before the holder queues anything.
        let mut blocked = false;
        for _ in 0..200 {
            if answer.is_finished() {
                panic!("the answer did not wait for the chat: {:?}", answer.await);
            }
            blocked = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))",
            )
            .bind(holder_pid)
            .fetch_one(store.pool())
            .await
            .unwrap();
            if blocked {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(blocked, "the answer never waited for the chat's lock");
        let sent = format!("sent while the answer waited, round {round}");
        sqlx::query("INSERT INTO chat_queued_messages (id, chat_id, content) VALUES ($1, $2, $3)")
            .bind(Uuid::now_v7())
            .bind(chat)
            .bind(json!([{ "type": "text", "text": sent }]))
            .execute(&mut *holder)
            .await
            .unwrap();
        holder.commit().await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("the answer went on once the chat was free")
            .unwrap()
            .unwrap()
            .expect("the lease was still held");

        let answered = outcome.message.expect("the answer is stored");
        assert_eq!(answered.content, completion().content);
        let promoted = outcome.promoted.expect("the queued message is promoted");
        assert_eq!(
            promoted.content,
            vec![MessagePart::Text { text: sent.clone() }]
        );
        let next = outcome.next_turn_id.expect("a new turn for it");
        assert_eq!(outcome.status, agentq_core::domain::ChatStatus::Pending);
        let (status, queued, next_status): (String, i64, String) = sqlx::query_as(
            "SELECT c.status,
                    (SELECT count(*) FROM chat_queued_messages q WHERE q.chat_id = c.id),
                    (SELECT t.status FROM chat_turns t WHERE t.id = $2)
             FROM chats c WHERE c.id = $1",
        )
        .bind(chat)
        .bind(next)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(
            (status.as_str(), queued, next_status.as_str()),
            ("pending", 0, "queued"),
            "the chat waits for the promoted message's turn, its queue empty"
        );
        let texts: Vec<String> = app
            .messages(chat)
            .await
            .iter()
            .map(|m| {
                m["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            &texts[1..],
            &["calling tools".to_owned(), sent],
            "the answer, then the promoted message"
        );
    }
    let functions = complete_turn_functions(store.pool()).await;
    assert_eq!(functions, 1, "the answers went through the function");
}

/// A worker whose database role may not create functions (no `CREATE` on the schema)
/// still finishes its turns: the finish then runs its statements as a transaction
/// (`store::sql_functions`), with the same outcome, a queued message promoted included.
/// The role may write the tables and nothing more (the test's login acts as it); it is
/// dropped at the end. (What a process found it may not define holds for the process:
/// the function's own path is `an_answer_that_waited_for_its_chat_promotes_what_the_holder_queued`.)
#[sqlx::test]
async fn a_role_that_may_not_create_functions_still_finishes_turns(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    let role = format!("agentq_writer_{}", Uuid::now_v7().simple());
    execute_all(
        &pool,
        [
            format!("CREATE ROLE {role} NOLOGIN"),
            format!("GRANT {role} TO current_user"),
            format!("REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}"),
            format!("GRANT USAGE ON SCHEMA public TO {role}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
            ),
        ],
    )
    .await;
    // The test's login, acting as the role on each connection of the worker's pool.
    let set_role = format!("SET ROLE {role}");
    let limited = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            let set_role = set_role.clone();
            Box::pin(async move {
                sqlx::query(sqlx::AssertSqlSafe(set_role))
                    .execute(conn)
                    .await
                    .map(drop)
            })
        })
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let worker = agentq_core::store::Store::new(limited.clone());

    // A first finish finds it may not define the function; a second goes straight to the
    // statements.
    let chat = app.create_chat("a limited worker").await;
    let turn = acquired_turn_of(&app, chat, "w/1").await;
    let outcome = answer(&worker, &turn)
        .await
        .expect("the finish runs without the function")
        .expect("the lease was still held");
    assert_eq!(outcome.status, agentq_core::domain::ChatStatus::Waiting);

    let chat = app.create_chat("a limited worker, again").await;
    let turn = acquired_turn_of(&app, chat, "w/1").await;
    sqlx::query("INSERT INTO chat_queued_messages (id, chat_id, content) VALUES ($1, $2, $3)")
        .bind(Uuid::now_v7())
        .bind(chat)
        .bind(json!([{ "type": "text", "text": "queued meanwhile" }]))
        .execute(&pool)
        .await
        .unwrap();
    let outcome = answer(&worker, &turn)
        .await
        .expect("the finish runs without the function")
        .expect("the lease was still held");
    assert!(outcome.message.is_some(), "the answer is stored");
    let promoted = outcome.promoted.expect("the queued message is promoted");
    assert_eq!(
        promoted.content,
        vec![MessagePart::Text {
            text: "queued meanwhile".into()
        }]
    );
    assert_eq!(outcome.status, agentq_core::domain::ChatStatus::Pending);
    let functions = complete_turn_functions(&pool).await;
    assert_eq!(functions, 0, "the limited role defined no function");
    let answers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chat_messages WHERE role = 'assistant' AND chat_id = $1",
    )
    .bind(chat)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(answers, 1, "one answer stored");

    limited.close().await;
    execute_all(
        &pool,
        [
            format!("REVOKE {role} FROM current_user"),
            format!("DROP OWNED BY {role}"),
            format!("DROP ROLE {role}"),
        ],
    )
    .await;
}

/// Runs each statement in order on `pool`.
async fn execute_all(pool: &sqlx::PgPool, statements: impl IntoIterator<Item = String>) {
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await
            .unwrap();
    }
}
