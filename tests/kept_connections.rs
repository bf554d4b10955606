//! A turn's statements (the chat's insert, the acquisition, the finish) keep a few
//! connections between uses instead of giving each back to sqlx's pool, which checks every
//! connection given back with a round trip (`store::kept_connections`). What that must not
//! change: a statement cancelled mid-way leaves its connection to the pool, so it holds up
//! no other chat's turn; a connection PostgreSQL closed in a restart is not used once it
//! has waited longer than a pooled connection goes unchecked; kept connections go back to
//! the pool when turns stop, and when clients leave mid-request; closing the pool returns.

mod support;

use std::time::Duration;

use agentq_core::{
    StoreError,
    store::{AnswerTitle, Store, TurnOutcome},
};
use support::{app::TestApp, postgres_server::PrivatePostgres};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

/// The queued turn of `chat` taken and answered through `store` as a worker would: the
/// acquisition and the finish. `Ok(None)`: the answer did not commit.
async fn answer_turn(
    store: &Store,
    app: &TestApp,
    chat: Uuid,
    text: &str,
) -> Result<Option<TurnOutcome>, StoreError> {
    let turn = app.latest_turn(chat).await;
    store
        .acquire_turn(turn, "w/1", LEASE)
        .await?
        .expect("the chat's turn is queued");
    store
        .complete_turn(
            turn,
            chat,
            0,
            "w/1",
            &support::text_completion("m", text),
            AnswerTitle::Keep,
        )
        .await
}

/// A chat made through the API, its turn answered through the app's store
/// ([`answer_turn`]): the three statements of a turn. Returns the chat.
async fn answered_chat(app: &TestApp, message: &str) -> Uuid {
    let chat = app.create_chat(message).await;
    let done = answer_turn(&app.services.store, app, chat, message)
        .await
        .unwrap();
    assert!(done.is_some(), "the answer of {message:?} commits");
    chat
}

/// Waits (at most 5 s) until the store keeps no connection and every connection of its
/// pool is idle in it.
async fn all_idle_in_the_pool(store: &Store) {
    support::eventually(
        Duration::from_secs(5),
        "every connection idle in the pool",
        || async {
            let (size, idle) = (store.pool().size(), store.pool().num_idle());
            (store.kept_connections().parked == 0 && usize::try_from(size).unwrap() == idle)
                .then_some(())
        },
    )
    .await;
}

#[sqlx::test]
async fn a_statement_cancelled_while_it_waits_holds_up_no_other_chats_turn(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    answered_chat(&app, "warm up").await;
    let kept = store.kept_connections();
    assert!(
        kept.cap > 0 && kept.parked > 0,
        "a turn keeps its connections: {kept:?}"
    );

    // Another transaction holds a chat's lock; the acquisition of its turn waits for it,
    // and is given up (a cancelled job) while PostgreSQL runs it: its connection still has
    // the statement running.
    let stuck = app.create_chat("behind a lock").await;
    let stuck_turn = app.latest_turn(stuck).await;
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE")
        .bind(stuck)
        .execute(&mut *holder)
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.acquire_turn(stuck_turn, "w/2", LEASE).await }
    });
    support::eventually(
        Duration::from_secs(5),
        "the acquisition waiting for the chat's lock",
        || async {
            let waits: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            (waits > 0).then_some(())
        },
    )
    .await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());

    // Other chats' turns run meanwhile: none gets the connection that still waits.
    for i in 0..3 {
        tokio::time::timeout(
            Duration::from_secs(5),
            answered_chat(&app, &format!("beside the lock {i}")),
        )
        .await
        .unwrap_or_else(|_| panic!("turn {i} beside a held lock finishes"));
    }
    holder.rollback().await.unwrap();
    app.stop().await;
}

#[sqlx::test]
async fn closing_the_pool_returns_with_connections_kept(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    for i in 0..3 {
        answered_chat(&app, &format!("turn {i}")).await;
    }
    assert!(
        store.kept_connections().parked > 0,
        "the turns kept connections"
    );
    // The pool's own close (as `#[sqlx::test]` closes it, with the API still running)
    // waits for every connection out of it, kept ones included.
    tokio::time::timeout(Duration::from_secs(5), store.pool().close())
        .await
        .expect("the pool closes");
    assert_eq!(store.kept_connections().parked, 0, "nothing is kept after");
    app.stop().await;
}

#[sqlx::test]
async fn kept_connections_go_back_to_the_pool_when_turns_stop(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    answered_chat(&app, "the last turn for a while").await;
    assert!(
        store.kept_connections().parked > 0,
        "the turn kept connections"
    );
    // A kept connection unused for a second goes back to the pool (which checks it),
    // whether or not another turn comes: the quiet app holds none out of it.
    all_idle_in_the_pool(&store).await;
    app.stop().await;
}

#[sqlx::test]
async fn creates_whose_clients_leave_mid_request_leave_every_connection_to_the_pool(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    app.lift_rate_limits().await;
    let store = app.services.store.clone();
    answered_chat(&app, "before the crowd").await;
    // Clients that give up after a few milliseconds: the server drops each request's
    // future wherever it is, the insert's statement included.
    // Ten at a time, each wave's clients leaving after 1 to 37 ms, so that some leave
    // before their create reaches the database, some during its insert, some after.
    let client = reqwest::Client::new();
    for wave in 0..20u64 {
        let mut left = Vec::new();
        for i in 0..10u64 {
            let request = client
                .post(format!("{}/api/v1/chats", app.base))
                .bearer_auth(&app.token)
                .json(&serde_json::json!({ "message": format!("leaving {wave}/{i}") }))
                .timeout(Duration::from_millis(1 + i * 4))
                .send();
            left.push(tokio::spawn(request));
        }
        for request in left {
            let _ = request.await.unwrap();
        }
    }
    // Once the dropped statements' connections were checked and the kept ones swept,
    // every connection is the pool's again, none of them in a statement or a transaction,
    // and turns run as before.
    all_idle_in_the_pool(&store).await;
    let busy: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
            AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        busy, 0,
        "no connection is left in a statement or a transaction"
    );
    for i in 0..3 {
        answered_chat(&app, &format!("after the crowd {i}")).await;
    }
    let broken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chats c WHERE NOT EXISTS (SELECT 1 FROM chat_turns t WHERE t.chat_id = c.id)
            OR NOT EXISTS (SELECT 1 FROM chat_messages m WHERE m.chat_id = c.id AND m.role = 'user')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(broken, 0, "a chat is made whole or not at all");
    app.stop().await;
}

#[tokio::test]
async fn after_a_postgresql_restart_a_turn_runs_on_new_connections() {
    let postgres = std::sync::Arc::new(PrivatePostgres::start());
    let app = TestApp::start_api_on_database(postgres.url(), support::redis_url()).await;
    // A worker's store: its pool checks a connection it hands out only when it sat idle
    // for over a second (`db::Plans::Generic`), so a parked connection is not checked when
    // taken either; eight connections, two of them kept.
    let mut config: agentq_core::config::DatabaseConfig = agentq_core::config::defaults();
    config.url = postgres.url().as_str().into();
    config.max_connections = 8;
    let worker = Store::new(
        agentq_core::db::connect_planning(&config, agentq_core::db::Plans::Generic)
            .await
            .unwrap(),
    );
    let before = app.create_chat("before the restart").await;
    assert!(
        answer_turn(&worker, &app, before, "before")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        worker.kept_connections().parked > 0,
        "the worker kept connections"
    );

    let pg = postgres.clone();
    tokio::task::spawn_blocking(move || {
        pg.stop();
        pg.start_again();
    })
    .await
    .unwrap();
    // Every kept connection was cut. One kept longer than a pooled connection goes
    // unchecked (a second) goes back to the pool, which finds it closed, instead of
    // failing a statement.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = app.create_chat("after the restart").await;
    let done = answer_turn(&worker, &app, after, "after")
        .await
        .expect("the turn runs on new connections");
    assert!(done.is_some(), "its answer commits");
    let answers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chat_messages WHERE chat_id = $1 AND role = 'assistant'",
    )
    .bind(after)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(answers, 1);
    app.stop().await;
}
