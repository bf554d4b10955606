//! The HTTP server protects itself: slow or stalled clients are disconnected, stuck
//! requests end with a 503, load past the concurrency limit is shed with a 503, probes say
//! only up or down, and PostgreSQL or Redis being unreachable is a 503 with a JSON body,
//! never a 500.

mod support;

use std::time::{Duration, Instant};

use agentq_core::{
    config::{self, ApiConfig},
    services::Services,
    shutdown::CancellationToken,
};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner, serve_api},
    redis_server::PrivateRedis,
    redis_url, unique_prefix,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn api_config(edit: impl FnOnce(&mut ApiConfig)) -> ApiConfig {
    let mut api: ApiConfig = config::defaults();
    api.sse_keepalive_secs = 1;
    edit(&mut api);
    api
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[sqlx::test]
async fn a_client_that_stalls_mid_header_is_disconnected_after_the_header_read_timeout(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let stop = CancellationToken::new();
    let base = serve_api(
        &app.services,
        api_config(|api| api.header_read_timeout_secs = 1),
        stop.clone(),
    )
    .await;
    let address = base.trim_start_matches("http://").to_owned();

    // Half a header line, then nothing (slowloris).
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: appl")
        .await
        .unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received)).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "the connection is still open after 10 s");
    assert!(
        received.is_empty(),
        "half a request gets no answer: {}",
        String::from_utf8_lossy(&received)
    );
    eprintln!("stalled header: disconnected after {took:?} (timeout 1 s)");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A client that sends its request in time is served; its keep-alive connection, idle
    // afterwards, is closed by the same timeout.
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received))
        .await
        .expect("an idle keep-alive connection is closed")
        .unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with(r#"{"status":"ok"}"#), "{text}");
    eprintln!("idle keep-alive connection: closed {took:?} after its request (timeout 1 s)");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    stop.cancel();
    app.stop().await;
}

#[sqlx::test]
async fn a_request_stuck_behind_a_lock_gets_503_at_the_timeout_while_a_stream_lives_on(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool.clone()).await;
    let stop = CancellationToken::new();
    let base = serve_api(
        &app.services,
        api_config(|api| api.request_timeout_secs = 1),
        stop.clone(),
    )
    .await;
    let chat = app.create_chat("start").await;
    let stream = app
        .client
        .get(format!("{base}/api/v1/chats/{chat}/stream"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let stream_opened = Instant::now();

    // Another session holds the chat's row (a long transaction, an operator's psql), so
    // sending a message, which locks it, waits.
    let holder = support::hold_chat(&pool, chat).await;
    let send = || {
        app.client
            .post(format!("{base}/api/v1/chats/{chat}/messages"))
            .bearer_auth(&app.token)
            .json(&json!({"message": "are you there?"}))
            .timeout(Duration::from_secs(10))
            .send()
    };
    let started = Instant::now();
    let (status, retry_after, body) = json_of(send().await.unwrap()).await;
    let took = started.elapsed();
    eprintln!("request behind a lock: 503 after {took:?} (timeout 1 s)");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({
            "message": "the request did not finish within 1 s; try again shortly",
            "retry_after_secs": 1
        })
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
        "{took:?}"
    );

    // The stream opened before keeps flowing (keep-alives every second) well past the
    // request timeout.
    let mut frames = stream.bytes_stream();
    let mut last_frame = stream_opened.elapsed();
    while stream_opened.elapsed() < Duration::from_millis(3500) {
        match tokio::time::timeout(Duration::from_secs(3), frames.next()).await {
            Ok(Some(Ok(_))) => last_frame = stream_opened.elapsed(),
            other => panic!(
                "the stream ended after {:?}: {other:?}",
                stream_opened.elapsed()
            ),
        }
    }
    eprintln!("stream: still sending {last_frame:?} after it opened");
    assert!(last_frame >= Duration::from_secs(3), "{last_frame:?}");

    holder.rollback().await.unwrap();
    let (status, _, body) = json_of(send().await.unwrap()).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "once the lock is gone: {body}"
    );
    stop.cancel();
    app.stop().await;
}

#[sqlx::test]
async fn requests_past_the_concurrency_limit_are_shed_with_503_and_none_fails(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    let stop = CancellationToken::new();
    let base = serve_api(
        &app.services,
        api_config(|api| api.max_concurrent_requests = 2),
        stop.clone(),
    )
    .await;
    let chat = app.create_chat("start").await;
    let holder = support::hold_chat(&pool, chat).await;

    // Six at once against a limit of two: two wait on the lock, four are shed.
    let (done, mut results) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..6 {
        let request = app
            .client
            .post(format!("{base}/api/v1/chats/{chat}/messages"))
            .bearer_auth(&app.token)
            .json(&json!({"message": format!("message {i}")}));
        let done = done.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = json_of(request.send().await.unwrap()).await;
            let _ = done.send((outcome, started.elapsed()));
        });
    }
    drop(done);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(10), results.recv())
            .await
            .expect("the requests over the limit are answered at once");
        seen.push(next.unwrap());
    }
    // Probes are never shed: an orchestrator still sees the process alive and ready.
    for probe in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{base}{probe}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe} while saturated");
    }
    holder.rollback().await.unwrap();
    while let Some(next) = results.recv().await {
        seen.push(next);
    }

    let shed: Vec<_> = seen
        .iter()
        .filter(|((status, ..), _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let accepted = seen
        .iter()
        .filter(|((status, ..), _)| *status == StatusCode::ACCEPTED)
        .count();
    assert_eq!((accepted, shed.len()), (2, 4), "{seen:?}");
    for ((_, retry_after, body), took) in shed {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(
            body,
            &json!({
                "message": "the server is busy (2 requests in progress); try again shortly",
                "retry_after_secs": 1
            })
        );
        assert!(
            *took < Duration::from_secs(1),
            "shed at once, not queued: {took:?}"
        );
    }
    stop.cancel();
    app.stop().await;
}

#[sqlx::test]
async fn readiness_tells_anonymous_callers_only_up_or_down(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    let redis = PrivateRedis::start().await;
    let services = Services::new(pool, &redis.url(), &unique_prefix(), 0).unwrap();
    let stop = CancellationToken::new();
    let base = serve_api(&services, api_config(|_| {}), stop.clone()).await;

    let response = app
        .client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"status":"ok"}"#);

    drop(redis);
    let started = Instant::now();
    let response = app
        .client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap();
    eprintln!(
        "/readyz with Redis down answered in {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"message":"not ready"}"#,
        "which dependency failed, and its address, stay in the log"
    );
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn with_postgresql_unreachable_requests_get_503_with_json_not_500() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(closed_port)
        .username("postgres")
        .database("agentq");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options);
    let prefix = unique_prefix();
    let services = Services::new(pool, &redis_url(), &prefix, 0).unwrap();
    let stop = CancellationToken::new();
    let base = serve_api(&services, api_config(|_| {}), stop.clone()).await;
    let client = reqwest::Client::new();

    let token = "aq_0123456789abcdef0123456789abcdef";
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/chats"),
        (reqwest::Method::POST, "/api/v1/chats"),
        (reqwest::Method::GET, "/api/v1/admin/config"),
    ] {
        let started = Instant::now();
        let response = client
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(token)
            .json(&json!({"message": "hello"}))
            .send()
            .await
            .unwrap();
        let (status, _, body) = json_of(response).await;
        eprintln!(
            "{method} {path} with PostgreSQL down: {status} after {:?}",
            started.elapsed()
        );
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {body}"
        );
        assert_eq!(
            body,
            json!({"message": "the database is not reachable; try again shortly"}),
            "{method} {path}"
        );
    }
    let response = client.get(format!("{base}/readyz")).send().await.unwrap();
    let (status, _, body) = json_of(response).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "not ready"})
        )
    );
    stop.cancel();
    support::delete_keys(&redis_url(), &prefix).await;
}

#[sqlx::test]
async fn with_redis_unreachable_queue_admin_gets_503_and_rate_limits_let_requests_through(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool.clone()).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let mut redis = PrivateRedis::start().await;
    let services = Services::new(pool, &redis.url(), &unique_prefix(), 0).unwrap();
    let stop = CancellationToken::new();
    let base = serve_api(&services, api_config(|_| {}), stop.clone()).await;
    let request = |method: reqwest::Method, token: &str, path: &str| {
        app.client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token)
    };
    let create_chat = || {
        request(reqwest::Method::POST, &app.token, "/api/v1/chats")
            .json(&json!({"message": "hello"}))
            .send()
    };

    let response = request(reqwest::Method::PUT, &owner, "/api/v1/admin/config")
        .json(&json!({"chats_per_minute": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, ..) = json_of(create_chat().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = json_of(create_chat().await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    redis.kill();
    let response = request(reqwest::Method::GET, &owner, "/api/v1/admin/queues")
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "Redis is not reachable; try again shortly"})
        ),
        "the queue admin needs Redis"
    );

    // Creating a chat does not need Redis (recovery enqueues its turn later), and the
    // limiter fails open rather than refusing everyone while Redis is away.
    for i in 0..3 {
        let started = Instant::now();
        let (status, _, body) = json_of(create_chat().await.unwrap()).await;
        eprintln!(
            "POST /api/v1/chats with Redis down: {status} after {:?}",
            started.elapsed()
        );
        assert_eq!(
            status,
            StatusCode::CREATED,
            "chat {i} with Redis down: {body}"
        );
    }
    stop.cancel();
    app.stop().await;
}
