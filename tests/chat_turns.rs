//! A chat's life as an API client sees it: create, stream, resume, queue, duplicates.

mod support;

use std::time::Duration;

use agentq_core::queue::RunTurn;
use reqwest::StatusCode;
use serde_json::json;
use support::{
    app::TestApp,
    fake_openai::answer_to,
    sse::{is_status, read_until},
};

#[sqlx::test]
async fn creating_a_chat_streams_the_answer_and_persists_it(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.set_chunk_delay(Duration::from_millis(20));
    let chat = app.create_chat("fix the flaky build").await;

    let events = app
        .events_until(chat, Duration::from_secs(10), |e| is_status(e, "waiting"))
        .await;

    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"status"), "{names:?}");
    assert!(events.iter().any(|e| is_status(e, "running")), "{names:?}");
    let streamed: String = events
        .iter()
        .filter(|e| e.event == "message_part")
        .map(|e| e.data["part"]["text"].as_str().unwrap())
        .collect();
    let expected = answer_to("fix the flaky build");
    assert_eq!(streamed, expected);
    assert!(
        events.iter().filter(|e| e.event == "message_part").count() > 1,
        "the answer streamed in pieces"
    );
    let persisted = events
        .iter()
        .find(|e| e.event == "message" && e.data["message"]["role"] == "assistant");
    assert!(
        persisted.is_some(),
        "a `message` event carries the persisted answer: {names:?}"
    );

    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(5))
        .await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"][0]["text"], "fix the flaky build");
    let answer = &messages[1];
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["content"][0]["text"], expected);
    assert_eq!(answer["model"], "fake-gpt");
    assert_eq!(answer["usage"]["input_tokens"], 4);
    assert_eq!(answer["usage"]["output_tokens"], 5);

    let received = app.fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].authorization.as_deref(),
        Some("Bearer sk-test-secret")
    );
    assert_eq!(received[0].body["model"], "fake-gpt");
    assert_eq!(
        received[0].body["messages"][0]["content"],
        "fix the flaky build"
    );
    app.stop().await;
}

#[sqlx::test]
async fn reconnecting_with_last_event_id_resumes_without_repeats(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let chat = app.create_chat("one two three four five").await;
    let url = app.stream_url(chat);
    let all = read_until(
        &app.client,
        &url,
        &app.token,
        None,
        Duration::from_secs(10),
        |e| is_status(e, "waiting"),
    )
    .await;
    assert!(all.len() > 6, "{all:?}");

    // The client lost its connection after the third event and reconnects.
    let resume_from = &all[2].id;
    let resumed = read_until(
        &app.client,
        &url,
        &app.token,
        Some(resume_from),
        Duration::from_secs(10),
        |e| is_status(e, "waiting"),
    )
    .await;
    let expected: Vec<&str> = all[3..].iter().map(|e| e.id.as_str()).collect();
    let got: Vec<&str> = resumed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        got, expected,
        "resumes right after the given id, nothing repeated or missed"
    );

    // A later message's events arrive live on a stream resumed at the end.
    let last = all.last().unwrap().id.clone();
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let live = read_until(
        &app.client,
        &url,
        &app.token,
        Some(&last),
        Duration::from_secs(10),
        |e| is_status(e, "waiting"),
    )
    .await;
    assert!(live.iter().all(|e| e.id > last));
    let text: String = live
        .iter()
        .filter(|e| e.event == "message_part")
        .map(|e| e.data["part"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, answer_to("again"));
    app.stop().await;
}

#[sqlx::test]
async fn a_message_sent_while_a_turn_runs_is_queued_and_answered_after_it_in_order(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    // Slow enough that the follow-ups arrive while the first answer streams.
    app.fake.set_chunk_delay(Duration::from_millis(150));
    let chat = app.create_chat("first").await;
    support::eventually(Duration::from_secs(5), "the first turn to run", || async {
        let (_, c) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (c["status"] == "running").then_some(())
    })
    .await;

    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "second"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["position"], 1);
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "third"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["position"], 2);

    app.fake.set_chunk_delay(Duration::from_millis(5));
    let messages = app
        .wait_until_answered(chat, 6, Duration::from_secs(15))
        .await;
    let transcript: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"][0]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |r: &str, t: &str| (r.to_owned(), t.to_owned());
    assert_eq!(
        transcript,
        vec![
            expect("user", "first"),
            expect("assistant", &answer_to("first")),
            expect("user", "second"),
            expect("assistant", &answer_to("second")),
            expect("user", "third"),
            expect("assistant", &answer_to("third")),
        ]
    );
    app.stop().await;
}

#[sqlx::test]
async fn the_twenty_first_queued_message_is_refused_with_409(pool: sqlx::PgPool) {
    // No worker: the first turn never starts, so every later message queues.
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("start").await;
    for i in 1..=20 {
        let (status, body) = app
            .post(
                &format!("/api/v1/chats/{chat}/messages"),
                json!({"message": format!("m{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "message {i}: {body}");
        assert_eq!(body["position"], i);
    }
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "one too many"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("20 queued messages"),
        "{body}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn the_same_run_turn_delivered_twice_produces_one_answer(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("only once please").await;
    let (turn_id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM chat_turns WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(app.services.store.pool())
        .await
        .unwrap();
    // The API enqueued it once; deliver it twice more, as a replay or a retry would.
    app.services
        .producer
        .enqueue_many(&[RunTurn { turn_id }, RunTurn { turn_id }])
        .await
        .unwrap();
    app.start_worker().await;
    app.start_worker().await;

    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    // Let any straggling duplicate finish before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages_after = app.messages(chat).await;
    assert_eq!(messages_after.len(), 2, "{messages:?}");
    assert_eq!(
        messages_after
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count(),
        1,
        "one assistant message"
    );
    assert_eq!(app.fake.received().len(), 1, "the provider was called once");
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_messages_start_one_turn_and_queue_the_rest_in_order(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let chat = app.create_chat("first").await;
    app.wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    // The turn the burst starts streams slowly, so the whole burst arrives while it runs.
    app.fake.set_chunk_delay(Duration::from_millis(300));
    let url = format!("/api/v1/chats/{chat}/messages");
    let sends = (0..25).map(|i| {
        let app = &app;
        let url = url.clone();
        async move {
            app.post(&url, json!({"message": format!("burst {i}")}))
                .await
        }
    });
    let results = futures::future::join_all(sends).await;
    app.fake.set_chunk_delay(Duration::from_millis(1));

    let count = |code: StatusCode| results.iter().filter(|(s, _)| *s == code).count();
    assert_eq!(
        count(StatusCode::CREATED),
        1,
        "exactly one message starts a turn: {results:?}"
    );
    assert_eq!(
        count(StatusCode::ACCEPTED),
        20,
        "twenty wait in the queue: {results:?}"
    );
    assert_eq!(
        count(StatusCode::CONFLICT),
        4,
        "the rest are refused: {results:?}"
    );
    let mut positions: Vec<i64> = results
        .iter()
        .filter_map(|(_, b)| b["position"].as_i64())
        .collect();
    positions.sort();
    assert_eq!(positions, (1..=20).collect::<Vec<_>>());

    // Every accepted message is answered, queued ones in the order they were queued.
    let messages = app
        .wait_until_answered(chat, 2 + 2 * 21, Duration::from_secs(60))
        .await;
    let users: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"][0]["text"].as_str().unwrap())
        .collect();
    let started = results
        .iter()
        .find(|(s, _)| *s == StatusCode::CREATED)
        .unwrap();
    assert_eq!(
        users[1],
        started.1["message"]["content"][0]["text"].as_str().unwrap()
    );
    let mut queued: Vec<(i64, usize)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, (_, b))| b["position"].as_i64().map(|p| (p, i)))
        .collect();
    queued.sort();
    let expected: Vec<String> = queued.iter().map(|(_, i)| format!("burst {i}")).collect();
    assert_eq!(
        users[2..],
        expected.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    for pair in messages.chunks(2) {
        let asked = pair[0]["content"][0]["text"].as_str().unwrap();
        assert_eq!(
            pair[1]["content"][0]["text"],
            answer_to(asked),
            "each answer follows its question"
        );
    }
    app.stop().await;
}

#[sqlx::test]
async fn shutting_down_ends_open_streams(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let chat = app.create_chat("hi").await;
    app.wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    let (client, url, token) = (app.client.clone(), app.stream_url(chat), app.token.clone());
    let reader = tokio::spawn(async move {
        let started = std::time::Instant::now();
        read_until(&client, &url, &token, None, Duration::from_secs(30), |_| {
            false
        })
        .await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.begin_shutdown();
    let open_for = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ended")
        .unwrap();
    assert!(
        open_for < Duration::from_secs(5),
        "stream ended {open_for:?} after opening"
    );
    app.stop().await;
}
