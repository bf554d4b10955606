//! Every provider attempt is bounded, whatever the provider does: a stream without end stops
//! at the attempt deadline, an error body that never ends is cut off, an answer past the
//! byte cap fails the turn once, a redirect is refused before any key reaches the other
//! host, a `Retry-After` too large to represent is clamped, and the errors a chat's owner
//! sees are short and name no internal address. Real API, worker, PostgreSQL and Redis; the
//! misbehaving providers are real HTTP servers on 127.0.0.1.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::TestApp,
    eventually,
    fake_openai::{Reply, RequestSink, answer_to},
    sse::is_status,
};
use uuid::Uuid;

/// Waits until the chat is in `error` and returns its `last_error`.
async fn last_error(app: &TestApp, chat: Uuid, limit: Duration) -> Value {
    eventually(limit, "the turn to fail", || async {
        let (_, chat) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (chat["status"] == "error").then(|| chat["last_error"].clone())
    })
    .await
}

/// Asserts what a chat owner sees of an error holds no loopback address and stays short.
fn assert_safe_to_show(error: &Value) {
    let text = error.to_string();
    assert!(
        !text.contains("127.0.0.1"),
        "an internal address leaks: {text}"
    );
    assert!(
        !text.contains("10.1.2.3"),
        "an internal address leaks: {text}"
    );
    assert!(
        !text.contains("localhost:"),
        "an internal address leaks: {text}"
    );
    for field in ["message", "detail"] {
        let len = error[field].as_str().map_or(0, str::len);
        assert!(len <= 2048 + 3, "{field} is {len} bytes");
    }
}

#[sqlx::test]
async fn a_provider_that_streams_without_end_is_stopped_at_the_attempt_deadline(
    pool: sqlx::PgPool,
) {
    let mut app = TestApp::start_api_only(pool).await;
    app.tune_provider = Arc::new(|p| p.attempt_deadline_secs = 2);
    app.start_worker().await;
    app.fake.script([Reply::Endless("again ".into())]);

    let started = Instant::now();
    let chat = app.create_chat("tell me everything").await;
    let error = last_error(&app, chat, Duration::from_secs(20)).await;
    let took = started.elapsed();
    eprintln!("endless stream: the step ended after {took:?}");

    assert_eq!(error["kind"], "timeout", "{error}");
    assert_eq!(error["retryable"], false, "{error}");
    assert_eq!(error["provider"], "OpenAI");
    assert_eq!(
        error["message"],
        "OpenAI was still answering after 2 s, the longest one attempt may take \
         (AGENTQ_PROVIDER_ATTEMPT_DEADLINE_SECS)."
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(app.fake.received().len(), 1, "the attempt is not retried");
    app.stop().await;
}

#[sqlx::test]
async fn an_error_body_that_never_ends_is_cut_off(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.tune_provider = Arc::new(|p| p.error_body_timeout_secs = 1);
    app.worker.provider_max_attempts = 2;
    app.worker.provider_max_backoff_secs = 1;
    app.start_worker().await;
    app.fake
        .script([Reply::EndlessErrorBody(500), Reply::EndlessErrorBody(500)]);

    let started = Instant::now();
    let chat = app.create_chat("hello").await;
    let error = last_error(&app, chat, Duration::from_secs(20)).await;
    let took = started.elapsed();
    eprintln!("endless error body, 2 attempts: the step ended after {took:?}");

    assert_eq!(error["kind"], "generic", "{error}");
    assert_eq!(error["status_code"], 500);
    assert_eq!(error["message"], "OpenAI failed (HTTP 500).");
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|d| d.contains("still failing")),
        "what arrived of the body is kept: {error}"
    );
    assert_safe_to_show(&error);
    // Two attempts of about a second each, and one second of backoff between them.
    assert!(took < Duration::from_secs(9), "{took:?}");
    assert_eq!(app.fake.received().len(), 2);
    app.stop().await;
}

#[sqlx::test]
async fn an_answer_past_the_byte_cap_fails_the_turn_once(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.tune_provider = Arc::new(|p| p.max_answer_bytes = 16 * 1024);
    app.start_worker().await;
    // 33,000 bytes of text, streamed in deltas of 1,000.
    app.fake
        .script([Reply::Text(format!("{} ", "x".repeat(999)).repeat(33))]);

    let started = Instant::now();
    let chat = app.create_chat("write a novel").await;
    let error = last_error(&app, chat, Duration::from_secs(30)).await;
    eprintln!(
        "answer past the cap: the step ended after {:?}",
        started.elapsed()
    );

    let expected = "OpenAI sent an answer longer than 16384 bytes, the most agentq accepts \
                    (text, reasoning and tool calls together; AGENTQ_PROVIDER_MAX_ANSWER_BYTES).";
    assert_eq!(error["message"], expected);
    assert_eq!(error["kind"], "generic");
    assert_eq!(error["retryable"], false);
    assert_eq!(app.fake.received().len(), 1, "not retried");

    // Tool-call arguments count too: 40,000 bytes of them fail the next turn the same way.
    app.fake.script([Reply::ToolCalls(vec![(
        "call_big".into(),
        "current_time".into(),
        json!({ "pad": "x".repeat(40_000) }),
    )])]);
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "now with tools"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let error = eventually(Duration::from_secs(20), "the second failure", || async {
        let (_, c) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (c["status"] == "error" && app.fake.received().len() == 2).then(|| c["last_error"].clone())
    })
    .await;
    assert_eq!(error["message"], expected);
    let (_, chat_json) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(chat_json["status"], "error");
    assert_eq!(app.fake.received().len(), 2, "not retried");
    app.stop().await;
}

#[sqlx::test]
async fn a_redirect_is_refused_and_the_other_host_sees_no_request(pool: sqlx::PgPool) {
    let sink = RequestSink::start().await;
    let mut app = TestApp::start_api_only(pool).await;
    app.tune_provider = Arc::new(|p| {
        p.provider_headers = vec!["X-Gateway-Key: gateway-secret".into()];
    });
    app.start_worker().await;
    app.fake.script([Reply::Redirect {
        code: 307,
        location: format!("{}/v1/chat/completions", sink.base_url),
    }]);

    let started = Instant::now();
    let chat = app.create_chat("hello").await;
    let events = app
        .events_until(chat, Duration::from_secs(15), |e| is_status(e, "error"))
        .await;
    eprintln!("redirect: the step ended after {:?}", started.elapsed());

    assert!(
        sink.received().is_empty(),
        "the other host got a request: {:?}",
        sink.received()
    );
    assert!(!events.iter().any(|e| e.event == "retry"), "{events:?}");
    let error = &events
        .iter()
        .find(|e| e.event == "error")
        .expect("an error event")
        .data["error"];
    assert_eq!(error["kind"], "config", "{error}");
    assert_eq!(error["status_code"], 307);
    assert_eq!(error["retryable"], false);
    assert_eq!(
        error["message"],
        "OpenAI answered with a redirect (HTTP 307), which agentq does not follow so that \
         keys and headers never reach another host; check the provider's base URL."
    );
    assert_safe_to_show(error);
    let received = app.fake.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-gateway-key" && v == "gateway-secret"),
        "the provider itself got the header"
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_unreachable_provider_is_named_without_its_address(pool: sqlx::PgPool) {
    // A provider nobody listens on: the port of a listener that was closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut app = TestApp::start_api_only(pool).await;
    app.tune_provider = Arc::new(move |p| {
        p.openai_base_url = format!("http://127.0.0.1:{closed}/v1");
    });
    app.worker.provider_max_attempts = 1;
    app.start_worker().await;

    let started = Instant::now();
    let chat = app.create_chat("hello").await;
    let error = last_error(&app, chat, Duration::from_secs(15)).await;
    eprintln!(
        "refused connection: the step ended after {:?}",
        started.elapsed()
    );

    assert_eq!(error["message"], "OpenAI could not be reached.", "{error}");
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|d| d.to_ascii_lowercase().contains("connection refused")),
        "the detail says why: {error}"
    );
    assert!(!error.to_string().contains(&closed.to_string()), "{error}");
    assert_safe_to_show(&error);
    app.stop().await;
}

#[sqlx::test]
async fn a_long_provider_error_is_shortened_and_names_no_internal_address(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.provider_max_attempts = 1;
    app.start_worker().await;
    let long = format!(
        "upstream http://127.0.0.1:9999/internal/v1 (10.1.2.3:8080) refused: {}",
        "blah ".repeat(4_000)
    );
    app.fake.script([Reply::Status {
        code: 400,
        retry_after: None,
        body: json!({"error": {"message": long}}).to_string(),
    }]);

    let chat = app.create_chat("hello").await;
    let error = last_error(&app, chat, Duration::from_secs(15)).await;

    assert_eq!(error["message"], "OpenAI rejected the request (HTTP 400).");
    let detail = error["detail"].as_str().unwrap();
    assert!(detail.starts_with("upstream "), "{detail}");
    assert!(detail.contains("refused: blah"), "{detail}");
    assert!(detail.ends_with('…'), "marked as shortened: {detail}");
    assert_safe_to_show(&error);
    app.stop().await;
}

#[sqlx::test]
async fn a_retry_after_too_large_to_represent_is_clamped(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.provider_max_backoff_secs = 1;
    app.start_worker().await;
    app.fake.script([Reply::Status {
        code: 429,
        retry_after: Some("1e20".into()),
        body: r#"{"error":{"message":"slow down"}}"#.into(),
    }]);
    let started = Instant::now();
    let chat = app.create_chat("first").await;
    let events = app
        .events_until(chat, Duration::from_secs(15), |e| {
            is_status(e, "waiting") || is_status(e, "error")
        })
        .await;
    let retry = &events
        .iter()
        .find(|e| e.event == "retry")
        .expect("a retry event")
        .data;
    assert_eq!(retry["delay_ms"], 1000, "clamped to the longest backoff");
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    assert_eq!(messages[1]["content"][0]["text"], answer_to("first"));
    eprintln!("Retry-After: 1e20: answered after {:?}", started.elapsed());

    // The worker keeps running: the next turn is answered too.
    let next = app.create_chat("second").await;
    let messages = app
        .wait_until_answered(next, 2, Duration::from_secs(10))
        .await;
    assert_eq!(messages[1]["content"][0]["text"], answer_to("second"));
    app.stop().await;
}

#[sqlx::test]
async fn a_tool_call_at_a_huge_index_is_one_call(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.script([Reply::ToolCallAtIndex(4_294_967_295)]);
    let chat = app.create_chat("what time is it").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(15))
        .await;
    let calls: Vec<&Value> = messages
        .iter()
        .flat_map(|m| m["content"].as_array().unwrap())
        .filter(|p| p["type"] == "tool_call")
        .collect();
    assert_eq!(calls.len(), 1, "{messages:?}");
    assert_eq!(calls[0]["name"], "current_time");
    assert_eq!(
        messages.last().unwrap()["content"][0]["text"],
        answer_to("what time is it")
    );
    app.stop().await;
}
