//! A worker takes the turns of the jobs it starts together in one statement
//! (`Store::acquire_turns`, batched by `worker::turn::acquisitions`). Each turn is taken as
//! a lone acquisition would take it: once, under its own lease owner, never when it is not
//! `queued`; the batch locks a subagent's root before the subagent whatever their ids; and
//! a turn whose acquisition fails does not fail the others of its batch.

mod support;

use std::time::Duration;

use agentq_worker::turn::Acquisitions;
use reqwest::StatusCode;
use serde_json::json;
use support::app::TestApp;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

/// The chat's latest turn (queued, in these tests).
async fn queued_turn_of(app: &TestApp, chat: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT id FROM chat_turns WHERE chat_id = $1 ORDER BY seq DESC LIMIT 1")
        .bind(chat)
        .fetch_one(app.services.store.pool())
        .await
        .unwrap()
}

/// (status, attempt, lease owner) of a turn, and its chat's status.
async fn state_of(app: &TestApp, turn: Uuid) -> (String, i32, Option<String>, String) {
    sqlx::query_as(
        "SELECT t.status, t.attempt, t.lease_owner, c.status
         FROM chat_turns t JOIN chats c ON c.id = t.chat_id WHERE t.id = $1",
    )
    .bind(turn)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap()
}

/// The API, with no per-user rate limits: these tests create many chats at once.
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

#[sqlx::test]
async fn a_batch_takes_each_queued_turn_once_under_its_own_owner(pool: sqlx::PgPool) {
    let app = app_without_rate_limits(pool).await;
    let store = app.services.store.clone();
    let mut turns = Vec::new();
    for i in 0..4 {
        let chat = app.create_chat(&format!("batch {i}")).await;
        turns.push(queued_turn_of(&app, chat).await);
    }
    // The last one is running already: another worker took it.
    let taken = store
        .acquire_turn(turns[3], "other/1", LEASE)
        .await
        .unwrap()
        .expect("a queued turn is taken");
    assert_eq!(taken.attempt, 1);

    // Turn 0 twice (a duplicate delivery in the same batch), 1 and 2 once, 3 running.
    let asked: Vec<(Uuid, String)> = vec![
        (turns[0], "w/a".into()),
        (turns[1], "w/b".into()),
        (turns[0], "w/c".into()),
        (turns[2], "w/d".into()),
        (turns[3], "w/e".into()),
    ];
    let got = store.acquire_turns(&asked, LEASE).await.unwrap();
    let mut got_ids: Vec<Uuid> = got.iter().map(|t| t.id).collect();
    got_ids.sort();
    let mut want = vec![turns[0], turns[1], turns[2]];
    want.sort();
    assert_eq!(got_ids, want, "each queued turn once, the running one not");
    for t in &got {
        let asked_by: Vec<&str> = asked
            .iter()
            .filter(|(id, _)| *id == t.id)
            .map(|(_, o)| o.as_str())
            .collect();
        assert!(
            asked_by.contains(&t.lease_owner.as_str()),
            "turn {} went to {}, which did not ask for it",
            t.id,
            t.lease_owner
        );
        let (status, attempt, owner, chat) = state_of(&app, t.id).await;
        assert_eq!(
            (status.as_str(), attempt, owner.as_deref(), chat.as_str()),
            ("running", 1, Some(t.lease_owner.as_str()), "running"),
            "turn {} as stored",
            t.id
        );
        assert_eq!(t.attempt, 1);
    }
    let (status, attempt, owner, _) = state_of(&app, turns[3]).await;
    assert_eq!(
        (status.as_str(), attempt, owner.as_deref()),
        ("running", 1, Some("other/1")),
        "the running turn is left to its worker"
    );
    app.stop().await;
}

/// A root chat whose id sorts after any new one, with a queued turn, and a subagent of it
/// whose turn is queued too: (root, root's turn, child, child's turn). Seeded roots get
/// random (version 4) ids; of eight, the greatest sorts after a new time-ordered id but
/// with odds of 1 in 10^16.
async fn family_whose_child_sorts_first(app: &TestApp) -> (Uuid, Uuid, Uuid, Uuid) {
    let store = &app.services.store;
    let model = app.create_chat("owner of the family").await;
    let (owner, org): (Uuid, Uuid) =
        sqlx::query_as("SELECT owner_id, organization_id FROM chats WHERE id = $1")
            .bind(model)
            .fetch_one(store.pool())
            .await
            .unwrap();
    let seeded = store
        .seed_root_chats(owner, org, 8, chrono::Utc::now())
        .await
        .unwrap();
    let root = *seeded.iter().max().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{root}/messages"),
            json!({"message": "plan"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let root_turn = queued_turn_of(app, root).await;
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
    assert!(child.id < root, "the child's id sorts before its root's");
    let child_turn = queued_turn_of(app, child.id).await;
    (root, root_turn, child.id, child_turn)
}

/// Every writer of a family locks its root before a child (`lock_chat`, a completing
/// subagent step, deleting a family). A batch holding the child while it waits for the
/// root would deadlock with one of them; so while another transaction holds the root,
/// the batch waits holding neither the child's chat row nor its turn, and goes on once
/// the root is free, however the ids sort.
#[sqlx::test]
async fn a_batch_locks_a_subagents_root_before_the_subagent_whatever_their_ids(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    let (root, root_turn, child, child_turn) = family_whose_child_sorts_first(&app).await;

    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE")
        .bind(root)
        .execute(&mut *holder)
        .await
        .unwrap();
    let batch = {
        let store = store.clone();
        let asked = vec![(child_turn, "w/child".into()), (root_turn, "w/root".into())];
        tokio::spawn(async move { store.acquire_turns(&asked, LEASE).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !batch.is_finished(),
        "the batch did not wait for the root's lock"
    );
    let mut probe = store.pool().begin().await.unwrap();
    for (table, id) in [("chats", child), ("chat_turns", child_turn)] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE NOWAIT"
        )))
        .bind(id)
        .execute(&mut *probe)
        .await
        .unwrap_or_else(|e| panic!("the waiting batch holds the child's {table} row: {e}"));
    }
    probe.rollback().await.unwrap();
    holder.commit().await.unwrap();
    let taken = tokio::time::timeout(Duration::from_secs(10), batch)
        .await
        .expect("the batch goes on once the root is free")
        .unwrap()
        .unwrap();
    let mut ids: Vec<Uuid> = taken.iter().map(|t| t.id).collect();
    ids.sort();
    let mut want = vec![root_turn, child_turn];
    want.sort();
    assert_eq!(ids, want, "both turns are taken");
    app.stop().await;
}

/// Jobs that start together share a statement, and each gets its own turn; a turn whose
/// acquisition PostgreSQL refuses (a lease owner with U+0000: owners are made by the
/// worker, so only a test can send one) fails alone, the others of its batch are taken.
#[sqlx::test]
async fn acquisitions_started_together_share_a_statement_and_fail_alone(pool: sqlx::PgPool) {
    const TURNS: usize = 16;
    let app = app_without_rate_limits(pool).await;
    let store = app.services.store.clone();
    let metrics = agentq_core::metrics::install();
    let counter = |name: &str| -> u64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let acquisitions = Acquisitions::start(store.clone(), LEASE);
    let mut turns = Vec::new();
    for i in 0..TURNS + 1 {
        let chat = app.create_chat(&format!("together {i}")).await;
        turns.push(queued_turn_of(&app, chat).await);
    }

    let statements_before = counter("agentq_turn_acquisition_statements_total");
    let asks = turns[..TURNS].iter().enumerate().map(|(i, turn)| {
        let acquisitions = acquisitions.clone();
        let (turn, owner) = (*turn, format!("w/{i}"));
        async move {
            (
                turn,
                owner.clone(),
                acquisitions.acquire(turn, &owner).await,
            )
        }
    });
    let answers = futures::future::join_all(asks).await;
    for (turn, owner, answer) in &answers {
        let got = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("turn {turn}: {e}"))
            .as_ref()
            .unwrap_or_else(|| panic!("turn {turn} was not taken"));
        assert_eq!((got.id, got.lease_owner.as_str()), (*turn, owner.as_str()));
    }
    let statements = counter("agentq_turn_acquisition_statements_total") - statements_before;
    assert!(
        statements < TURNS as u64,
        "{TURNS} acquisitions started together took {statements} statements"
    );

    // One poisoned request among good ones: its batch fails, each is tried alone.
    let poisoned = turns[TURNS];
    let mut fresh = Vec::new();
    for i in 0..4 {
        let chat = app.create_chat(&format!("beside the poison {i}")).await;
        fresh.push(queued_turn_of(&app, chat).await);
    }
    let mut asks = vec![(poisoned, "w/\u{0}".to_owned())];
    asks.extend(
        fresh
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, format!("w/ok{i}"))),
    );
    let statements_before = counter("agentq_turn_acquisition_statements_total");
    let answers = futures::future::join_all(asks.iter().map(|(turn, owner)| {
        let acquisitions = acquisitions.clone();
        async move { acquisitions.acquire(*turn, owner).await }
    }))
    .await;
    assert!(answers[0].is_err(), "the poisoned acquisition fails");
    for ((turn, owner), answer) in asks.iter().zip(&answers).skip(1) {
        let got = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("turn {turn} failed beside the poisoned one: {e}"))
            .as_ref()
            .unwrap_or_else(|| panic!("turn {turn} was not taken"));
        assert_eq!(&got.lease_owner, owner);
    }
    // The test's runtime runs one task at a time: the five requests are all waiting when
    // the batching task runs, so they share a statement, which fails; then one each.
    assert_eq!(
        counter("agentq_turn_acquisition_statements_total") - statements_before,
        1 + asks.len() as u64,
        "the failed batch's turns were tried one by one"
    );
    let (status, attempt, _, _) = state_of(&app, poisoned).await;
    assert_eq!(
        (status.as_str(), attempt),
        ("queued", 0),
        "the poisoned turn is untouched"
    );
    app.stop().await;
}
