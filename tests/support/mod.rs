//! Shared scaffolding for the black-box tests: the real app on a random port over a fresh
//! database (from `#[sqlx::test]`) and a unique Redis key prefix, a fake OpenAI server that
//! streams chunk by chunk, an SSE client, and private Redis servers for tests that restart
//! one. Each test binary uses part of it.
#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod captured_logs;
pub mod fake_anthropic;
pub mod fake_bedrock;
pub mod fake_github;
pub mod fake_openai;
pub mod flaky_tools;
pub mod mcp_server;
pub mod metrics;
pub mod postgres_server;
pub mod process;
pub mod redis_cluster;
pub mod redis_server;
pub mod silent_proxy;
pub mod smtp;
pub mod sse;

use std::time::Duration;

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Redis the tests share (each test under its own prefix).
pub fn redis_url() -> String {
    std::env::var("AGENTQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Deletes every key under `prefix` (plain and hash-tagged).
pub async fn delete_keys(redis_url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    for pattern in [format!("{prefix}:*"), format!("{{{prefix}:*")] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
    }
}

/// What a step answering `text` with `model` hands the store (no usage, no cost): the
/// answer tests commit through `Store::complete_turn` and friends.
pub fn text_completion(model: &str, text: &str) -> agentq_core::store::Completion {
    agentq_core::store::Completion {
        content: vec![agentq_core::domain::MessagePart::Text {
            text: text.to_owned(),
        }],
        model: model.to_owned(),
        usage: agentq_core::domain::Usage::default(),
        cost_micros: None,
    }
}

/// Another session holding the chat's row lock (a long transaction, an operator's psql)
/// until the returned transaction ends: whatever locks the chat waits meanwhile.
pub async fn hold_chat(
    pool: &sqlx::PgPool,
    chat_id: uuid::Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE")
        .bind(chat_id)
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}
