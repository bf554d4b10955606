//! OpenTelemetry export: a real `agentq api` process with `--otlp-endpoint` sends its
//! request spans, with their request ids, to an OTLP/HTTP collector on 127.0.0.1, and
//! flushes the last ones when it stops.

mod support;

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};

/// What the fake collector received: (content type, body) per export request.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP collector that records every export and answers 200.
async fn start_collector() -> (String, Received) {
    async fn traces(State(received): State<Received>, headers: HeaderMap, body: Bytes) {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        received.lock().unwrap().push((content_type, body.to_vec()));
    }
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[sqlx::test]
async fn request_spans_reach_the_collector_with_their_request_ids(pool: sqlx::PgPool) {
    let (collector, received) = start_collector().await;
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let database_url = format!("{}/{database}", server.rsplit_once('/').unwrap().0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = support::unique_prefix();
    let mut api = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(["api", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &database_url])
        .args([
            "--redis-url",
            &support::redis_url(),
            "--redis-prefix",
            &prefix,
        ])
        .args(["--otlp-endpoint", &collector])
        .env("AGENTQ_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agentq api starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    support::eventually(Duration::from_secs(20), "the API to answer", || async {
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let response = client
        .get(format!("{base}/api/v1/chats"))
        .header("x-request-id", "trace-me-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(api.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = tokio::task::spawn_blocking(move || api.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}");

    // Shutdown flushed the batch: the span is at the collector now, not after a timer.
    let exports = received.lock().unwrap().clone();
    assert!(!exports.is_empty(), "no traces exported");
    assert!(
        exports
            .iter()
            .all(|(content_type, _)| content_type == "application/x-protobuf")
    );
    let body: Vec<u8> = exports.into_iter().flat_map(|(_, body)| body).collect();
    assert!(contains(&body, "agentq-api"), "service.name");
    assert!(contains(&body, "request"), "the request span");
    assert!(contains(&body, "trace-me-7f3a"), "its request id");
    assert!(contains(&body, "/api/v1/chats"), "its path");
    support::delete_keys(&support::redis_url(), &prefix).await;
}
