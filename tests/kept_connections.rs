//! A turn's statements (the chat's insert, the acquisition, the finish) keep a few
//! connections between uses instead of giving each back to sqlx's pool, which checks every
//! connection given back with a round trip (`store::kept_connections`). What that must not
//! change: a statement cancelled mid-way leaves its connection to the pool, so it holds up
//! no other chat's turn; a connection PostgreSQL closed in a restart is not used once it
//! has waited longer than a pooled connection goes unchecked; kept connections go back to
//! the pool when turns stop, and when clients leave mid-request; closing the pool returns.

mod support;

use std::time::Duration;

use agentq_core::store::AnswerTitle;
use support::{app::TestApp, postgres_server::PrivatePostgres};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

/// A chat made through the API, its turn taken and answered through the store as a worker
/// would: the three statements of a turn. Returns the chat.
async fn answered_chat(app: &TestApp, message: &str) -> Uuid {
    let store = &app.services.store;
    let chat = app.create_chat(message).await;
    let turn = app.latest_turn(chat).await;
    store
        .acquire_turn(turn, "w/1", LEASE)
        .await
        .unwrap()
        .expect("the chat's turn is queued");
    let done = store
        .complete_turn(
            turn,
            chat,
            0,
            "w/1",
            &support::text_completion("m", message),
            AnswerTitle::Keep,
        )
        .await
        .unwrap();
    assert!(done.is_some(), "the answer of {message:?} commits");
    chat
}

#[sqlx::test]
async fn a_statement_cancelled_while_it_waits_holds_up_no_other_chats_turn(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    answered_chat(&app, "warm up").await;
    let (cap, kept) = store.kept_connections();
    assert!(
        cap > 0 && kept > 0,
        "a turn keeps its connections: {kept} of {cap}"
    );

    // Another transaction holds a chat's lock; the acquisition of its turn waits for it,
    // and is given up (a cancelled job): its connection still has the statement running.
    let stuck = app.create_chat("behind a lock").await;
    let stuck_turn = app.latest_turn(stuck).await;
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE")
        .bind(stuck)
        .execute(&mut *holder)
        .await
        .unwrap();
    let given_up = tokio::time::timeout(
        Duration::from_millis(300),
        store.acquire_turn(stuck_turn, "w/2", LEASE),
    )
    .await;
    assert!(
        given_up.is_err(),
        "the acquisition waits for the chat's lock"
    );

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
    assert!(store.kept_connections().1 > 0, "the turns kept connections");
    // The pool's own close (as `#[sqlx::test]` closes it, with the API still running)
    // waits for every connection out of it, kept ones included.
    tokio::time::timeout(Duration::from_secs(5), store.pool().close())
        .await
        .expect("the pool closes");
    assert_eq!(store.kept_connections().1, 0, "nothing is kept after");
    app.stop().await;
}

#[sqlx::test]
async fn kept_connections_go_back_to_the_pool_when_turns_stop(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    answered_chat(&app, "the last turn for a while").await;
    assert!(store.kept_connections().1 > 0, "the turn kept connections");
    // A kept connection unused for a second goes back to the pool (which checks it),
    // whether or not another turn comes: the quiet app holds none out of it.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(store.kept_connections().1, 0, "nothing stays kept");
    let (size, idle) = (store.pool().size(), store.pool().num_idle());
    assert_eq!(
        usize::try_from(size).unwrap(),
        idle,
        "every connection of the pool is idle in it"
    );
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
    // every connection is the pool's again, and turns run as before.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (size, idle) = (store.pool().size(), store.pool().num_idle());
    assert_eq!(
        usize::try_from(size).unwrap(),
        idle,
        "every connection is idle in the pool"
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
    let store = app.services.store.clone();
    answered_chat(&app, "before the restart").await;
    assert!(store.kept_connections().1 > 0, "the turn kept connections");

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
    let chat = answered_chat(&app, "after the restart").await;
    let answers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chat_messages WHERE chat_id = $1 AND role = 'assistant'",
    )
    .bind(chat)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(answers, 1);
    app.stop().await;
}
