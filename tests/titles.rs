//! Generated titles (issue #13 item 5; ARCHITECTURE.md §7): after a root chat's first
//! answer the `title` model names the chat; the title is stored and announced as a `title`
//! event, asked for once, cleaned of quotes and punctuation, and never written over a
//! title the user set, before or while it is generated.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::{
    app::{TestApp, create_owner},
    fake_openai::Reply,
};
use uuid::Uuid;

/// The API and a worker that generates titles.
async fn app_with_titles(pool: sqlx::PgPool) -> TestApp {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.generate_titles = true;
    app.start_worker().await;
    app
}

/// One column of the chat's row (a column name of this file, never input).
async fn chat_column<T>(app: &TestApp, chat: Uuid, column: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {column} FROM chats WHERE id = $1"
    )))
    .bind(chat)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap()
}

async fn title_state(app: &TestApp, chat: Uuid) -> Option<String> {
    chat_column(app, chat, "title_generation").await
}

async fn title_attempts(app: &TestApp, chat: Uuid) -> i32 {
    chat_column(app, chat, "title_attempts").await
}

async fn claimed_at(app: &TestApp, chat: Uuid) -> Option<chrono::DateTime<chrono::Utc>> {
    chat_column(app, chat, "title_claimed_at").await
}

async fn requested_at(app: &TestApp, chat: Uuid) -> Option<chrono::DateTime<chrono::Utc>> {
    chat_column(app, chat, "title_requested_at").await
}

/// Ages the chat's title claim past its time to live (its worker died long ago).
async fn expire_claim(app: &TestApp, chat: Uuid) {
    sqlx::query(
        "UPDATE chats SET title_claimed_at = now() - make_interval(secs => $2) - interval '1 second'
         WHERE id = $1",
    )
    .bind(chat)
    .bind(agentq_core::store::TITLE_CLAIM_TTL.as_secs_f64())
    .execute(app.services.store.pool())
    .await
    .unwrap();
}

fn is_title_request(body: &serde_json::Value) -> bool {
    body["messages"][0]["content"]
        .as_str()
        .is_some_and(|s| s.starts_with("You name conversations"))
}

/// A provider's refusal of a (title) request.
fn refused() -> Reply {
    Reply::Status {
        code: 400,
        retry_after: None,
        body: r#"{"error":{"message":"bad request"}}"#.into(),
    }
}

/// How many title requests the conversations with `key` sent the provider.
fn title_requests(app: &TestApp, key: &str) -> usize {
    app.fake
        .received_for(key)
        .iter()
        .filter(|r| is_title_request(&r.body))
        .count()
}

/// Sends `text` to `chat`; the send is accepted.
async fn send(app: &TestApp, chat: Uuid, text: &str) {
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": text}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[sqlx::test]
async fn the_title_models_title_arrives_as_an_event_after_the_first_answer(pool: sqlx::PgPool) {
    let app = app_with_titles(pool).await;
    // The site names a model for titles: the title request goes to it.
    let owner = create_owner(&app.services, "owner@example.com").await;
    let model = app.model_on_fake(&owner, "quick-titler", json!({})).await;
    let (status, body) = app
        .put_as(
            &owner,
            "/api/v1/admin/model-contexts",
            json!({"title": model}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let key = "the login test fails on CI since Tuesday";
    app.fake.script_for(
        key,
        [
            Reply::Text("Let me look at the test.".into()),
            Reply::Text("\"Fix the flaky login test.\"\nIt fails on CI.".into()),
        ],
    );
    let chat = app.create_chat(&format!("Hi! {key}, can you help?")).await;
    let events = app
        .events_until(chat, Duration::from_secs(20), |e| e.event == "title")
        .await;
    let title = events.last().unwrap();
    assert_eq!(title.event, "title", "{events:?}");
    assert_eq!(title.data["title"], "Fix the flaky login test");
    // After the first answer, not before.
    let answered = events
        .iter()
        .position(|e| e.event == "message" && e.data["message"]["role"] == "assistant");
    assert!(answered.is_some_and(|i| i < events.len() - 1), "{events:?}");
    let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(body["title"], "Fix the flaky login test");

    let requests = app.fake.received_for(key);
    let titling: Vec<_> = requests
        .iter()
        .filter(|r| is_title_request(&r.body))
        .collect();
    assert_eq!(titling.len(), 1);
    assert_eq!(titling[0].body["model"], "quick-titler");
    assert!(
        titling[0].body.get("tools").is_none(),
        "no tools for a title"
    );
    assert!(titling[0].body["max_tokens"].as_u64().unwrap() <= 60);

    // The second answer asks for no other title.
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "And the other one?"}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    app.wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let titled = app
        .fake
        .received()
        .iter()
        .filter(|r| is_title_request(&r.body))
        .count();
    assert_eq!(titled, 1, "one title per chat");
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("done"));
    app.stop().await;
}

#[sqlx::test]
async fn a_title_the_user_set_is_never_overwritten(pool: sqlx::PgPool) {
    let app = app_with_titles(pool).await;

    // Set on create: no title is asked for at all.
    let (status, body) = app
        .post(
            "/api/v1/chats",
            json!({"message": "named by hand", "title": "My own title"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let named: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(named, 2, Duration::from_secs(20))
        .await;

    // Set by PATCH while the title model is still thinking: the generated title is dropped.
    let key = "renamed while the title is generated";
    app.fake.script_for(
        key,
        [
            Reply::Text("An answer.".into()),
            Reply::Hang(Duration::from_millis(1_500)),
        ],
    );
    let chat = app.create_chat(key).await;
    support::eventually(Duration::from_secs(20), "the title request", || async {
        app.fake
            .received_for(key)
            .iter()
            .any(|r| is_title_request(&r.body))
            .then_some(())
    })
    .await;
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}"),
            json!({"title": "Chosen meanwhile"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    support::eventually(
        Duration::from_secs(20),
        "the title request to end",
        || async { (title_state(&app, chat).await.as_deref() == Some("done")).then_some(()) },
    )
    .await;

    let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(body["title"], "Chosen meanwhile");
    let (_, body) = app.get(&format!("/api/v1/chats/{named}")).await;
    assert_eq!(body["title"], "My own title");
    assert_eq!(title_state(&app, named).await, None, "never asked for");
    for id in [chat, named] {
        let events = app
            .events_until(id, Duration::from_millis(500), |_| false)
            .await;
        assert!(
            events.iter().all(|e| e.event != "title"),
            "no title event: {events:?}"
        );
    }
    let titled: Vec<_> = app
        .fake
        .received()
        .into_iter()
        .filter(|r| is_title_request(&r.body))
        .collect();
    assert_eq!(
        titled.len(),
        1,
        "only the renamed chat's title was asked for"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_title_that_failed_or_whose_job_was_lost_is_generated_by_a_recovery_nudge(
    pool: sqlx::PgPool,
) {
    let app = app_with_titles(pool).await;
    let key = "a title that fails first";
    app.fake.script_for(
        key,
        [
            Reply::Text("An answer.".into()),
            refused(),
            Reply::Text("Recovered title".into()),
        ],
    );
    let chat = app.create_chat(key).await;
    support::eventually(Duration::from_secs(20), "the failed title call", || async {
        (title_requests(&app, key) == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("pending"));
    let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(body["title"], key, "the first words stay meanwhile");

    // Recovery finds the request waiting and sends the turn's job again.
    eager_recovery(&app);
    let events = app
        .events_until(chat, Duration::from_secs(20), |e| e.event == "title")
        .await;
    assert_eq!(events.last().unwrap().data["title"], "Recovered title");
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("done"));
    assert_eq!(title_attempts(&app, chat).await, 2);
    app.stop().await;
}

/// A worker with titles off settles a chat's title request in the commit of its first
/// answer: the first words stay, nothing waits for recovery to nudge, and no title request
/// reaches the provider, then or after a later answer.
#[sqlx::test]
async fn a_worker_with_titles_off_keeps_the_first_words_and_leaves_nothing_pending(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let key = "keep my first words as the title";
    app.fake.script_for(
        key,
        [
            Reply::Text("An answer.".into()),
            Reply::Text("Another answer.".into()),
        ],
    );
    let chat = app.create_chat(key).await;
    app.wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("done"));
    assert_eq!(
        requested_at(&app, chat).await,
        None,
        "no request was left for recovery to nudge"
    );

    send(&app, chat, "and again").await;
    app.wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("done"));
    let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(body["title"], key);
    assert_eq!(title_requests(&app, key), 0);
    app.stop().await;
}

/// A title attempt that failed is tried again by the chat's next answer, without waiting
/// for recovery: that answer's commit finds the request still pending. A turn that fails
/// meanwhile leaves the request as it is and fails like any other.
#[sqlx::test]
async fn a_failed_title_attempt_is_retried_by_the_next_answer(pool: sqlx::PgPool) {
    let app = app_with_titles(pool).await;
    let key = "a title that the next answer retries";
    app.fake.script_for(
        key,
        [
            Reply::Text("An answer.".into()),
            refused(),
            Reply::Status {
                code: 401,
                retry_after: None,
                body: r#"{"error":{"message":"Incorrect API key provided"}}"#.into(),
            },
            Reply::Text("A third answer.".into()),
            Reply::Text("Retried title".into()),
        ],
    );
    let chat = app.create_chat(key).await;
    support::eventually(Duration::from_secs(20), "the failed title call", || async {
        (title_requests(&app, key) == 1).then_some(())
    })
    .await;
    app.wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("pending"));

    // The next turn fails: the chat goes to `error`, the request stays pending.
    send(&app, chat, "and now?").await;
    support::eventually(Duration::from_secs(20), "the failed turn", || async {
        let (_, chat) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (chat["status"] == "error").then_some(())
    })
    .await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("pending"));

    // The one after it answers, and its commit retries the title.
    send(&app, chat, "try again").await;
    let events = app
        .events_until(chat, Duration::from_secs(20), |e| e.event == "title")
        .await;
    assert_eq!(events.last().unwrap().data["title"], "Retried title");
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("done"));
    assert_eq!(title_requests(&app, key), 2);
    app.stop().await;
}

/// Recovery every second, nudging title requests pending for a second.
fn eager_recovery(app: &TestApp) {
    let mut scheduler: agentq_scheduler::SchedulerConfig = agentq_core::config::defaults();
    scheduler.interval_secs = 1;
    scheduler.stale_secs = 1;
    scheduler.maintenance_cron = "0 0 1 1 *".parse().unwrap();
    app.start_recovery(scheduler);
}

/// A title call in flight holds its request: the chat's next answer and recovery's nudges,
/// all arriving while the title model is still thinking, start no second call; the one
/// call's title is stored, once.
#[sqlx::test]
async fn a_title_call_in_flight_is_not_claimed_again_by_the_next_answer_or_a_nudge(
    pool: sqlx::PgPool,
) {
    let app = app_with_titles(pool).await;
    let key = "a title model that thinks slowly";
    app.fake.script_for(
        key,
        [
            Reply::Text("An answer.".into()),
            Reply::Hang(Duration::from_secs(12)),
            Reply::Text("A second answer.".into()),
            Reply::Text("A second title".into()),
        ],
    );
    let chat = app.create_chat(key).await;
    support::eventually(Duration::from_secs(20), "the title call", || async {
        (title_requests(&app, key) == 1).then_some(())
    })
    .await;
    eager_recovery(&app);
    send(&app, chat, "and the next step?").await;
    app.wait_until_answered(chat, 4, Duration::from_secs(5))
        .await;
    // Past a nudge or two, still within the first call (12 s).
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("pending"));
    assert_eq!(
        title_requests(&app, key),
        1,
        "no second call beside the first"
    );

    let events = app
        .events_until(chat, Duration::from_secs(20), |e| e.event == "title")
        .await;
    let title = events.last().unwrap();
    assert_eq!(title.event, "title", "{events:?}");
    assert_ne!(title.data["title"], "A second title");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("done"));
    assert_eq!(title_requests(&app, key), 1);
    assert_eq!(title_attempts(&app, chat).await, 1);
    let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(body["title"], title.data["title"]);
    app.stop().await;
}

/// A claim whose worker died during its call (stamped, never released) keeps recovery away
/// until it expires; then the nudge generates the title.
#[sqlx::test]
async fn the_claim_of_a_worker_that_died_mid_call_expires_and_recovery_takes_over(
    pool: sqlx::PgPool,
) {
    let app = app_with_titles(pool).await;
    let key = "a title whose worker died";
    app.fake.script_for(
        key,
        [
            Reply::Text("An answer.".into()),
            refused(),
            Reply::Text("Title after the claim expired".into()),
        ],
    );
    let chat = app.create_chat(key).await;
    support::eventually(Duration::from_secs(20), "the failed title call", || async {
        (title_requests(&app, key) == 1).then_some(())
    })
    .await;
    let pool = app.services.store.pool();
    support::eventually(
        Duration::from_secs(20),
        "the failed call's release",
        || async { (claimed_at(&app, chat).await.is_none()).then_some(()) },
    )
    .await;
    // A worker claimed it and died: the stamp stays.
    sqlx::query("UPDATE chats SET title_claimed_at = now() WHERE id = $1")
        .bind(chat)
        .execute(pool)
        .await
        .unwrap();
    let asked = requested_at(&app, chat).await;
    eager_recovery(&app);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        title_requests(&app, key),
        1,
        "no nudge while the claim holds"
    );
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("pending"));
    assert_eq!(
        requested_at(&app, chat).await,
        asked,
        "not even a nudge sent"
    );

    // The claim is older than its time to live: recovery nudges, and the title comes.
    expire_claim(&app, chat).await;
    let events = app
        .events_until(chat, Duration::from_secs(20), |e| e.event == "title")
        .await;
    assert_eq!(
        events.last().unwrap().data["title"],
        "Title after the claim expired"
    );
    assert_eq!(title_attempts(&app, chat).await, 2);
    app.stop().await;
}

/// A worker with titles off leaves a request another worker's call holds: its answers close
/// the request only once the claim is free (expired here).
#[sqlx::test]
async fn a_titles_off_worker_leaves_a_request_claimed_by_a_call_in_flight(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let key = "a request claimed by another worker";
    let chat = app.create_chat(key).await;
    app.wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    // A worker with titles on asked for a title and is calling its model.
    let store = app.services.store.pool();
    sqlx::query(
        "UPDATE chats SET title_generation = 'pending', title_requested_at = now(),
                title_attempts = 1, title_claimed_at = now()
         WHERE id = $1",
    )
    .bind(chat)
    .execute(store)
    .await
    .unwrap();
    send(&app, chat, "while the title is generated").await;
    app.wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("pending"));

    // That worker died; its claim expired: the next answer closes the request.
    expire_claim(&app, chat).await;
    send(&app, chat, "and after it").await;
    app.wait_until_answered(chat, 6, Duration::from_secs(20))
        .await;
    assert_eq!(title_state(&app, chat).await.as_deref(), Some("done"));
    assert_eq!(title_requests(&app, key), 0);
    app.stop().await;
}

/// The last attempt's failure ends the request at once: `failed`, the first words stay, and
/// recovery sends no further job for it.
#[sqlx::test]
async fn a_request_whose_last_attempt_failed_is_failed_at_once(pool: sqlx::PgPool) {
    let app = app_with_titles(pool).await;
    let key = "a title model that always refuses";
    app.fake.script_for(
        key,
        [
            Reply::Text("An answer.".into()),
            refused(),
            refused(),
            refused(),
            Reply::Text("Too late".into()),
        ],
    );
    let chat = app.create_chat(key).await;
    eager_recovery(&app);
    support::eventually(Duration::from_secs(30), "a failed request", || async {
        (title_state(&app, chat).await.as_deref() == Some("failed")).then_some(())
    })
    .await;
    assert_eq!(title_requests(&app, key), 3);
    assert_eq!(title_attempts(&app, chat).await, 3, "no fourth claim");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(title_requests(&app, key), 3);
    let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(body["title"], key);
    app.stop().await;
}
