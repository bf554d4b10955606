//! `POST /api/v1/chats` with an `Idempotency-Key`: a retried create answers with the chat
//! its first try made and makes nothing (api/src/idempotency_key.rs). The fault suite
//! relies on it for creates whose answer a crash cut off; these tests show each rule.

mod support;

use std::time::Duration;

use reqwest::{StatusCode, header::HeaderValue};
use serde_json::{Value, json};
use support::app::{TestApp, create_user};
use uuid::Uuid;

/// `POST /api/v1/chats` as `token` with the key (if any): the status, whether the answer
/// says it replayed an earlier try, and the body.
async fn create(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, bool, Value) {
    let keys: Vec<HeaderValue> = key
        .map(|k| HeaderValue::from_str(k).unwrap())
        .into_iter()
        .collect();
    create_with_keys(app, token, &keys, body).await
}

/// [`create`] with any number of `Idempotency-Key` headers, of any bytes.
async fn create_with_keys(
    app: &TestApp,
    token: &str,
    keys: &[HeaderValue],
    body: Value,
) -> (StatusCode, bool, Value) {
    let mut request = app
        .client
        .post(format!("{}/api/v1/chats", app.base))
        .bearer_auth(token)
        .json(&body);
    for key in keys {
        request = request.header("Idempotency-Key", key.clone());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let replayed = match response.headers().get("idempotent-replayed") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
    };
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn id(body: &Value) -> Uuid {
    body["id"].as_str().unwrap().parse().unwrap()
}

/// The chat's turns and messages, counted in PostgreSQL.
async fn rows_of(app: &TestApp, chat: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM chat_turns WHERE chat_id = $1),
                (SELECT count(*) FROM chat_messages WHERE chat_id = $1)",
    )
    .bind(chat)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_create_sent_again_with_its_key_answers_with_the_same_chat_and_runs_one_turn(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let body = json!({"message": "what time is it?", "labels": {"team": "infra"}});

    let (status, replayed, first) = create(&app, &app.token, Some("create-1"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(!replayed, "a first try is not a replay");
    let chat = id(&first);
    app.wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;

    // The same request again (its answer lost, say): the same chat, as it is now.
    let (status, replayed, again) = create(&app, &app.token, Some("create-1"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(
        replayed,
        "the second try is answered from the first: {again}"
    );
    assert_eq!(id(&again), chat);
    assert_eq!(again["status"], "waiting", "{again}");
    assert_eq!(again["labels"]["team"], "infra");

    // Nothing was made twice: one chat, one turn, one user message and one answer.
    let (_, list) = app.get("/api/v1/chats").await;
    assert_eq!(list["chats"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(rows_of(&app, chat).await.0, 1, "one turn");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let roles: Vec<String> = app
        .messages(chat)
        .await
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, ["user", "assistant"]);

    // The same request written another way (spacing, the order of fields and labels) is
    // the same request.
    let rewritten = app
        .client
        .post(format!("{}/api/v1/chats", app.base))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", "create-1")
        .header("content-type", "application/json")
        .body(r#"{ "labels" : { "team" : "infra" } , "message" : "what time is it?" }"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rewritten.status(), StatusCode::CREATED);
    assert_eq!(rewritten.headers()["idempotent-replayed"], "true");
    let rewritten: Value = rewritten.json().await.unwrap();
    assert_eq!(id(&rewritten), chat);

    // The key with another body is refused, naming the header; nothing is made.
    let (status, _, refused) = create(
        &app,
        &app.token,
        Some("create-1"),
        json!({"message": "something else entirely"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["validations"][0]["field"], "Idempotency-Key");
    // Keys are the owner's: another user's same key makes their own chat.
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let (status, replayed, bobs) = create(&app, &bob, Some("create-1"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{bobs}");
    assert!(!replayed);
    assert_ne!(id(&bobs), chat);

    // A new key, a new chat; no key, a new chat every time.
    let (_, replayed, other) = create(&app, &app.token, Some("create-2"), body.clone()).await;
    assert!(!replayed);
    assert_ne!(id(&other), chat);
    let (_, _, plain_a) = create(&app, &app.token, None, body.clone()).await;
    let (_, _, plain_b) = create(&app, &app.token, None, body.clone()).await;
    assert_ne!(id(&plain_a), id(&plain_b));

    // Deleting the chat frees its key.
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{chat}"))
            .await,
        StatusCode::NO_CONTENT
    );
    let (status, replayed, remade) = create(&app, &app.token, Some("create-1"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{remade}");
    assert!(!replayed);
    assert_ne!(id(&remade), chat);
}

#[sqlx::test]
async fn tries_at_once_with_one_key_make_one_chat_with_its_files_linked_once(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let upload = app
        .client
        .post(format!("{}/api/v1/files?name=notes.txt", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("remember the milk")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let file: Value = upload.json().await.unwrap();

    for (key, body) in [
        ("plain", json!({"message": "all at once"})),
        (
            "with-a-file",
            json!({"message": "all at once, with notes", "file_ids": [file["id"]]}),
        ),
    ] {
        let tries: Vec<_> = (0..12)
            .map(|_| create(&app, &app.token, Some(key), body.clone()))
            .collect();
        let answers = futures::future::join_all(tries).await;
        let chat = id(&answers[0].2);
        for (status, _, answer) in &answers {
            assert_eq!(*status, StatusCode::CREATED, "{answer}");
            assert_eq!(id(answer), chat, "every try answers with the one chat");
        }
        let made = answers.iter().filter(|(_, replayed, _)| !replayed).count();
        assert_eq!(made, 1, "exactly one try made the chat");
        assert_eq!(rows_of(&app, chat).await, (1, 1), "one turn, one message");
    }
    let file_id: Uuid = file["id"].as_str().unwrap().parse().unwrap();
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_file_links WHERE file_id = $1")
        .bind(file_id)
        .fetch_one(app.services.store.pool())
        .await
        .unwrap();
    assert_eq!(links, 1);
    let (_, list) = app.get("/api/v1/chats").await;
    assert_eq!(list["chats"].as_array().unwrap().len(), 2, "{list}");
}

#[sqlx::test]
async fn a_malformed_key_is_a_400_naming_the_header(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let body = json!({"message": "hi"});
    let long = "k".repeat(256);
    for bad in ["", "has space", long.as_str(), "tab\there"] {
        let (status, _, answer) = create(&app, &app.token, Some(bad), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {answer}");
        assert_eq!(
            answer["validations"][0]["field"], "Idempotency-Key",
            "{answer}"
        );
    }
    let not_ascii = HeaderValue::from_bytes("clé".as_bytes()).unwrap();
    let twice = [
        HeaderValue::from_static("one"),
        HeaderValue::from_static("two"),
    ];
    for keys in [std::slice::from_ref(&not_ascii), &twice[..]] {
        let (status, _, answer) = create_with_keys(&app, &app.token, keys, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{keys:?}: {answer}");
        assert_eq!(
            answer["validations"][0]["field"], "Idempotency-Key",
            "{answer}"
        );
    }

    // The longest key, and a UUID, are fine; nothing above made a chat.
    let (_, list) = app.get("/api/v1/chats").await;
    assert_eq!(list["chats"].as_array().unwrap().len(), 0, "{list}");
    let longest = "k".repeat(255);
    let uuid = Uuid::new_v4().to_string();
    for good in [longest.as_str(), uuid.as_str()] {
        let (status, _, answer) = create(&app, &app.token, Some(good), body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
}

/// Two different requests racing under one key: the store's insert, not the API's look-up
/// ahead of it, finds the key taken, and says the request was not the same.
#[sqlx::test]
async fn the_store_makes_one_chat_a_key_and_tells_a_different_request_from_a_retry(
    pool: sqlx::PgPool,
) {
    use agentq_core::{
        domain::{IdempotencyKey, NewChat},
        store::{ChatCreation, Store},
    };

    let store = Store::new(pool);
    let org = store.ensure_organization("acme").await.unwrap();
    let owner = store.ensure_user("dora@example.com", false).await.unwrap();
    let new = |text: &str, fingerprint: u8| NewChat {
        idempotency: Some(IdempotencyKey {
            key: "k-1".into(),
            fingerprint: [fingerprint; 32],
        }),
        ..support::app::new_chat(owner, org, text)
    };
    let (a, b) = tokio::join!(
        store.create_chat(new("first", 1)),
        store.create_chat(new("second", 2))
    );
    let (made, other) = match (a.unwrap(), b.unwrap()) {
        (ChatCreation::Created { chat, .. }, ChatCreation::Replayed(found))
        | (ChatCreation::Replayed(found), ChatCreation::Created { chat, .. }) => (chat, found),
        other => panic!("one create makes the chat, the other finds it: {other:?}"),
    };
    assert_eq!(other.chat.id, made.id);
    assert!(
        !other.same_request,
        "a different fingerprint is a different request"
    );
    match store.create_chat(new("first", 1)).await.unwrap() {
        ChatCreation::Replayed(found) => {
            assert_eq!(found.chat.id, made.id);
            assert_eq!(
                found.same_request,
                made.title == "first",
                "the same fingerprint as the one that made it is the same request"
            );
        }
        created => panic!("a third try makes nothing: {created:?}"),
    }
    let chats: i64 = sqlx::query_scalar("SELECT count(*) FROM chats")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(chats, 1);
}

/// A retry whose first try made the chat gets it even after the caller went over their
/// spend limit: the limit refuses new chats, not the one already made.
#[sqlx::test]
async fn a_retry_after_the_spend_limit_is_reached_still_gets_its_chat(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = support::app::create_owner(&app.services, "root@example.com").await;
    let body = json!({"message": "an expensive question"});
    let (status, _, first) = create(&app, &app.token, Some("spend-1"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let chat = id(&first);
    // The chat's answer cost 5,000 micro-dollars; the limit becomes 1,000.
    sqlx::query(
        "INSERT INTO chat_messages (id, chat_id, role, content, model, cost_micros)
         VALUES ($1, $2, 'assistant', '[]', 'fake-gpt', 5000)",
    )
    .bind(Uuid::now_v7())
    .bind(chat)
    .execute(app.services.store.pool())
    .await
    .unwrap();
    app.access_change(async {
        let (status, limits) = app
            .put_as(
                &owner,
                "/api/v1/admin/spend-limits",
                json!({"period": "day", "default_limit_micros": 1_000}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{limits}");
    })
    .await;

    let (status, _, refused) = create(&app, &app.token, Some("spend-2"), body.clone()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a new chat is refused: {refused}"
    );
    let (status, replayed, again) = create(&app, &app.token, Some("spend-1"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(replayed);
    assert_eq!(id(&again), chat);
}
