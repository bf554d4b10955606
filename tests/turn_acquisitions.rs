//! A worker takes the turns of the jobs it starts together in one statement
//! (`Store::acquire_turns`, batched by `worker::turn::acquisitions`). Each turn is taken as
//! a lone acquisition would take it: once, under its own lease owner, never when it is not
//! `queued`; a batch never waits for a busy chat (the turn is taken alone, waiting); and a
//! turn whose acquisition fails does not fail the others of its batch. Each turn comes with
//! its own chat's conversation.

mod support;

use std::time::Duration;

use agentq_worker::turn::Acquisitions;
use support::{app::TestApp, metrics::counter};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

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
    app.lift_rate_limits().await;
    app
}

#[sqlx::test]
async fn a_batch_takes_each_queued_turn_once_under_its_own_owner(pool: sqlx::PgPool) {
    let app = app_without_rate_limits(pool).await;
    let store = app.services.store.clone();
    let mut turns = Vec::new();
    for i in 0..4 {
        let chat = app.create_chat(&format!("batch {i}")).await;
        turns.push(app.latest_turn(chat).await);
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
    let got: Vec<_> = store
        .acquire_turns(&asked, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.turn.expect("a taken turn reads"))
        .collect();
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

/// A batch holds several chats' locks at once, so it must never wait for another: a
/// transaction holding chat B that then locks chat A would close a cycle with a batch
/// holding A and waiting for B (pinning renumbers an owner's other chats; a family's
/// writers lock a root, then its children). So the batch skips B at once and commits,
/// and B's job takes its turn alone, waiting for B as any acquisition does.
#[sqlx::test]
async fn a_batch_skips_a_busy_chat_and_its_job_takes_the_turn_alone(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    let a = app.create_chat("free").await;
    let b = app.create_chat("busy").await;
    let (turn_a, turn_b) = (app.latest_turn(a).await, app.latest_turn(b).await);

    let mut holder = support::hold_chat(store.pool(), b).await;
    let asked = vec![(turn_a, "w/a".into()), (turn_b, "w/b".into())];
    let taken = tokio::time::timeout(Duration::from_secs(3), store.acquire_turns(&asked, LEASE))
        .await
        .expect("the batch waited for the busy chat")
        .unwrap();
    let ids: Vec<Uuid> = taken.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![turn_a], "the free chat's turn only");
    assert_eq!(
        state_of(&app, turn_b).await.0,
        "queued",
        "the busy chat's turn"
    );
    // The holder goes on to lock A: the batch holds nothing any more.
    sqlx::query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE NOWAIT")
        .bind(a)
        .execute(&mut *holder)
        .await
        .expect("the batch still holds the free chat");

    // B's job, through the process's batching: skipped again, then alone, waiting.
    let acquisitions = Acquisitions::start(store.clone(), LEASE);
    let job = {
        let acquisitions = acquisitions.clone();
        tokio::spawn(async move { acquisitions.acquire(turn_b, "w/b2").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !job.is_finished(),
        "the lone acquisition waits for the busy chat"
    );
    holder.commit().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), job)
        .await
        .expect("the lone acquisition goes on once the chat is free")
        .unwrap()
        .unwrap()
        .expect("the busy chat's turn is taken");
    assert_eq!((got.id, got.lease_owner.as_str()), (turn_b, "w/b2"));
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
    let acquisitions = Acquisitions::start(store.clone(), LEASE);
    let mut turns = Vec::new();
    for i in 0..TURNS + 1 {
        let chat = app.create_chat(&format!("together {i}")).await;
        turns.push(app.latest_turn(chat).await);
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
        fresh.push(app.latest_turn(chat).await);
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
        "the failed batch's turns were tried one by one (nextest runs each test in a process \
         of its own, so no other test adds to the process's counters)"
    );
    let (status, attempt, _, _) = state_of(&app, poisoned).await;
    assert_eq!(
        (status.as_str(), attempt),
        ("queued", 0),
        "the poisoned turn is untouched"
    );
    app.stop().await;
}

/// The texts of a conversation, each with its kind, as a step sends them.
fn texts(history: &[agentq_core::domain::Message]) -> Vec<(String, String)> {
    history
        .iter()
        .map(|m| {
            let text: String = m.content.iter().filter_map(|p| p.as_text()).collect();
            (format!("{:?}", m.kind), text)
        })
        .collect()
}

/// A step's conversation comes with its turn, in the acquisition's statement: each turn
/// of a batch with its own chat's, exactly as `Store::prompt_history` reads it (the latest
/// summary first, then only the messages after what it stands for).
#[sqlx::test]
async fn each_taken_turn_comes_with_its_own_chats_conversation(pool: sqlx::PgPool) {
    use agentq_core::{
        domain::Usage,
        store::{AnswerTitle, NewSummary},
    };
    let app = app_without_rate_limits(pool).await;
    let store = app.services.store.clone();
    let a = app.create_chat("first question").await;
    let mut first = store
        .acquire_turn(app.latest_turn(a).await, "w/1", LEASE)
        .await
        .unwrap()
        .expect("a queued turn is taken");
    assert_eq!(
        texts(&first.take_history().unwrap()),
        [("Message".to_owned(), "first question".to_owned())]
    );
    let answer = support::text_completion("m", "first answer");
    store
        .complete_turn(first.id, a, first.step, "w/1", &answer, AnswerTitle::Keep)
        .await
        .unwrap()
        .expect("the lease is held");
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{a}/messages"),
            serde_json::json!({"message": "second question"}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    // A summary of the first question, written by a run of the second turn that was
    // handed back.
    let second = app.latest_turn(a).await;
    let mut run = store
        .acquire_turn(second, "w/2", LEASE)
        .await
        .unwrap()
        .expect("a queued turn is taken");
    let first_question = run.take_history().unwrap()[0].id;
    store
        .save_summary(&NewSummary {
            chat_id: a,
            turn_id: second,
            step: run.step,
            lease_owner: "w/2",
            text: "the summary",
            compacted_through: first_question,
            model: "m",
            usage: &Usage::default(),
            cost_micros: None,
        })
        .await
        .unwrap()
        .expect("the summary is written");
    assert!(store.release_turn(second, "w/2").await.unwrap());

    let b = app.create_chat("another chat").await;
    let asked = vec![
        (second, "w/3".to_owned()),
        (app.latest_turn(b).await, "w/4".to_owned()),
    ];
    let taken = store.acquire_turns(&asked, LEASE).await.unwrap();
    assert_eq!(taken.len(), 2);
    for t in taken {
        let mut turn = t.turn.expect("a taken turn reads");
        let history = turn.take_history().unwrap();
        let alone = store.prompt_history(turn.chat_id).await.unwrap();
        let ids = |h: &[agentq_core::domain::Message]| h.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&history),
            ids(&alone),
            "the conversation of {}",
            turn.chat_id
        );
        let want: Vec<(&str, &str)> = if turn.chat_id == a {
            vec![
                ("Summary", "the summary"),
                ("Message", "first answer"),
                ("Message", "second question"),
            ]
        } else {
            vec![("Message", "another chat")]
        };
        let got = texts(&history);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, t)| (k.as_str(), t.as_str())).collect();
        assert_eq!(got, want, "the conversation of {}", turn.chat_id);
        assert_eq!(
            history.last().map(|m| m.created_at),
            alone.last().map(|m| m.created_at),
            "timestamps read alike both ways"
        );
    }
    app.stop().await;
}

/// A message this build cannot read (a kind of part a newer version wrote) fails the step
/// that decodes the conversation, which is retried and counts toward the attempt cap; the
/// acquisition, and the other turns of its batch, are not affected.
#[sqlx::test]
async fn an_unreadable_message_fails_its_step_not_the_acquisition(pool: sqlx::PgPool) {
    let app = app_without_rate_limits(pool).await;
    let store = app.services.store.clone();
    let odd = app.create_chat("odd").await;
    let plain = app.create_chat("plain").await;
    app.add_unreadable_message(odd).await;
    let asked = vec![
        (app.latest_turn(odd).await, "w/1".to_owned()),
        (app.latest_turn(plain).await, "w/2".to_owned()),
    ];
    let taken = store.acquire_turns(&asked, LEASE).await.unwrap();
    assert_eq!(taken.len(), 2, "both turns are taken");
    for t in taken {
        let mut turn = t.turn.expect("the turn's own row reads");
        let history = turn.take_history();
        if turn.chat_id == odd {
            assert!(history.is_err(), "the odd message cannot be read");
        } else {
            assert_eq!(history.unwrap().len(), 1);
        }
    }
    app.stop().await;
}

/// What taking a turn reads, as this database's statistics count it: heap pages of `chats`,
/// scans of `chat_turns_unfinished_idx`, seq scans of `chat_turns`. Read once `connection`
/// (the one backend of the test still running statements) has reported what it did: the
/// counters are read again until they stand still for a second and a half, at most 15 s.
async fn reads_when_quiet(connection: &sqlx::PgPool) -> (i64, i64, i64) {
    let read = || async {
        sqlx::query("SELECT pg_stat_force_next_flush()")
            .execute(connection)
            .await
            .unwrap();
        let reads: (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0)
                     FROM pg_statio_user_tables WHERE relname = 'chats'),
                    (SELECT idx_scan FROM pg_stat_user_indexes
                     WHERE indexrelname = 'chat_turns_unfinished_idx'),
                    (SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'chat_turns')",
        )
        .fetch_one(connection)
        .await
        .unwrap();
        reads
    };
    let mut last = read().await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let now = read().await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the statistics never stood still: {last:?}");
}

/// A worker's connection plans the acquisition once (`db::Plans::Generic`), when it first
/// runs it: on a new database, while the tables are empty and have no statistics, and where
/// nothing analyzes them (autovacuum off, as on this project's CI machine) it keeps that
/// plan as they grow. The plan must still go from the ids to their rows: once there are
/// thousands of chats, and hundreds of turns that have left `queued`, taking one turn reads
/// a few pages of `chats`, not every chat (a plan that scanned for `status = 'pending'`
/// did), and finds its turn by primary key, not in `chat_turns_unfinished_idx` (whose
/// entries for `queued` include every turn that left it until a vacuum: a plan that
/// scanned it read them all at each acquisition). bench/RESULTS.md, session 21.
#[sqlx::test]
async fn an_acquisition_planned_on_empty_tables_reads_a_few_pages_when_they_are_large(
    pool: sqlx::PgPool,
) {
    const CHATS: i64 = 3_000;
    const TURNS: usize = 400;
    let app = app_without_rate_limits(pool).await;
    // Nothing analyzes the tables or reads them behind the test's back, wherever it runs.
    for table in ["chats", "chat_turns"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        )))
        .execute(app.services.store.pool())
        .await
        .unwrap();
    }
    let mut config: agentq_core::config::DatabaseConfig = agentq_core::config::defaults();
    config.url = app.database_url().as_str().into();
    config.max_connections = 1;
    let connection = agentq_core::db::connect_planning(&config, agentq_core::db::Plans::Generic)
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(&connection)
        .await
        .unwrap();
    assert_eq!(mode, "force_generic_plan", "a worker's connection");
    let worker = agentq_core::store::Store::new(connection.clone());

    let first = app.create_chat("planned while the tables are empty").await;
    let taken = worker
        .acquire_turns(&[(app.latest_turn(first).await, "w/1".into())], LEASE)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the first turn is taken");

    let (owner, organization): (Uuid, Uuid) =
        sqlx::query_as("SELECT owner_id, organization_id FROM chats WHERE id = $1")
            .bind(first)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    app.services
        .store
        .seed_root_chats(owner, organization, CHATS, chrono::Utc::now())
        .await
        .unwrap();
    // Turns that were queued and were taken since.
    let mut started = Vec::new();
    for i in 0..TURNS {
        let chat = app.create_chat(&format!("taken before {i}")).await;
        started.push((app.latest_turn(chat).await, format!("w/{i}")));
    }
    for batch in started.chunks(32) {
        let taken = worker.acquire_turns(batch, LEASE).await.unwrap();
        assert_eq!(taken.len(), batch.len(), "every earlier turn is taken");
    }
    let second = app
        .latest_turn(app.create_chat("taken from large tables").await)
        .await;

    // Every other backend ends, reporting what it read: only the worker's connection reads
    // from here on.
    let api_store = app.services.store.clone();
    app.stop().await;
    api_store.close().await;

    let (chat_pages, turn_pages): (i64, i64) = sqlx::query_as(
        "SELECT pg_relation_size('chats') / current_setting('block_size')::bigint,
                pg_relation_size('chat_turns') / current_setting('block_size')::bigint",
    )
    .fetch_one(&connection)
    .await
    .unwrap();
    assert!(chat_pages >= 60, "the chats fill {chat_pages} pages only");
    assert!(turn_pages >= 9, "the turns fill {turn_pages} pages only");

    let before = reads_when_quiet(&connection).await;
    let taken = worker
        .acquire_turns(&[(second, "w/2".into())], LEASE)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the second turn is taken");
    let after = reads_when_quiet(&connection).await;
    let chat_pages_read = after.0 - before.0;
    assert!(
        chat_pages_read < chat_pages / 4,
        "taking one turn read {chat_pages_read} of {chat_pages} pages of chats"
    );
    assert_eq!(
        (after.1 - before.1, after.2 - before.2),
        (0, 0),
        "scans of chat_turns_unfinished_idx and of chat_turns to take one turn ({turn_pages} pages of turns)"
    );
}
