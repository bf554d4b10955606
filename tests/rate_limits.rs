//! Per-user rate limits as a client meets them: chats created, messages sent and event
//! streams opened per minute, each set in the site config (0 = off). Past a limit the
//! client gets a 429 with `Retry-After` and a JSON body naming the limit; other users are
//! not affected; every API replica counts against one bucket in Redis.

mod support;

use std::time::{Duration, Instant};

use agentq_core::{
    config::{self, ApiConfig},
    rate_limit::{Limit, Rate, RateLimiter},
    shutdown::CancellationToken,
    store::SiteConfigCache,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{TestApp, create_owner, create_user, serve_api};
use uuid::Uuid;

/// One thing a user does that a limit counts.
#[derive(Clone, Copy)]
enum Action {
    CreateChat,
    SendMessage(Uuid),
    OpenStream(Uuid),
}

/// What the client saw.
struct Outcome {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

async fn attempt(client: &reqwest::Client, base: &str, token: &str, action: Action) -> Outcome {
    let request = match action {
        Action::CreateChat => client
            .post(format!("{base}/api/v1/chats"))
            .json(&json!({"message": "hello"})),
        Action::SendMessage(chat) => client
            .post(format!("{base}/api/v1/chats/{chat}/messages"))
            .json(&json!({"message": "and another thing"})),
        Action::OpenStream(chat) => client.get(format!("{base}/api/v1/chats/{chat}/stream")),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse()
            .expect("Retry-After is whole seconds")
    });
    // An open event stream never ends: read its body only when it is an error.
    let body = if status.is_success() && matches!(action, Action::OpenStream(_)) {
        Value::Null
    } else {
        response.json().await.unwrap_or(Value::Null)
    };
    Outcome {
        status,
        retry_after,
        body,
    }
}

fn accepted(action: Action) -> StatusCode {
    match action {
        Action::CreateChat => StatusCode::CREATED,
        // No worker runs, so the first turn stays queued and later messages wait behind it.
        Action::SendMessage(_) => StatusCode::ACCEPTED,
        Action::OpenStream(_) => StatusCode::OK,
    }
}

/// Sets `field` to 3 a minute: three of alice's attempts pass, the fourth is a 429 that
/// names the limit and says when to retry, bob still passes, and 0 turns the limit off.
async fn the_limit_holds_at_its_boundary(
    app: &TestApp,
    field: &str,
    alice: Action,
    (bob_token, bob): (&str, Action),
) {
    let owner = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&owner, json!({ field: 3 })).await;

    for i in 1..=3 {
        let seen = attempt(&app.client, &app.base, &app.token, alice).await;
        assert_eq!(
            seen.status,
            accepted(alice),
            "{field}: attempt {i}: {}",
            seen.body
        );
    }
    let refused = attempt(&app.client, &app.base, &app.token, alice).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{field}: {}",
        refused.body
    );
    // 3 a minute: the next one is due 20 s after the first.
    let retry_after = refused.retry_after.expect("a 429 carries Retry-After");
    assert!(
        (19..=20).contains(&retry_after),
        "{field}: Retry-After {retry_after}"
    );
    assert_eq!(refused.body["limit"], field);
    assert_eq!(refused.body["retry_after_secs"], retry_after);
    let message = refused.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("rate limit exceeded: at most 3 ") && message.contains(field),
        "{message}"
    );

    let seen = attempt(&app.client, &app.base, bob_token, bob).await;
    assert_eq!(
        seen.status,
        accepted(bob),
        "bob has his own bucket: {}",
        seen.body
    );

    app.configure_site(&owner, json!({ field: 0 })).await;
    for i in 1..=5 {
        let seen = attempt(&app.client, &app.base, &app.token, alice).await;
        assert_eq!(
            seen.status,
            accepted(alice),
            "{field} = 0, attempt {i}: {}",
            seen.body
        );
    }
}

async fn create_chat_as(app: &TestApp, token: &str) -> Uuid {
    let (status, body) = app
        .post_as(token, "/api/v1/chats", json!({"message": "start"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

#[sqlx::test]
async fn the_fourth_chat_in_a_minute_is_refused_when_the_limit_is_three(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    the_limit_holds_at_its_boundary(
        &app,
        "chats_per_minute",
        Action::CreateChat,
        (&bob, Action::CreateChat),
    )
    .await;
    app.stop().await;
}

#[sqlx::test]
async fn the_fourth_message_in_a_minute_is_refused_when_the_limit_is_three(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let (alice_chat, bob_chat) = (
        app.create_chat("start").await,
        create_chat_as(&app, &bob).await,
    );
    the_limit_holds_at_its_boundary(
        &app,
        "messages_per_minute",
        Action::SendMessage(alice_chat),
        (&bob, Action::SendMessage(bob_chat)),
    )
    .await;
    app.stop().await;
}

#[sqlx::test]
async fn the_fourth_stream_connect_in_a_minute_is_refused_when_the_limit_is_three(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let (alice_chat, bob_chat) = (
        app.create_chat("start").await,
        create_chat_as(&app, &bob).await,
    );
    the_limit_holds_at_its_boundary(
        &app,
        "stream_connects_per_minute",
        Action::OpenStream(alice_chat),
        (&bob, Action::OpenStream(bob_chat)),
    )
    .await;
    app.stop().await;
}

#[sqlx::test]
async fn two_api_replicas_count_against_one_limit(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&owner, json!({"chats_per_minute": 4}))
        .await;
    // A second replica: its own connections and settings cache, the same database and prefix.
    let replica =
        agentq_core::services::Services::new(pool, &support::redis_url(), &app.prefix, 0).unwrap();
    let stop = CancellationToken::new();
    let second = serve_api(&replica, config::defaults(), stop.clone()).await;

    let replicas = [app.base.as_str(), second.as_str()];
    for i in 0..4 {
        let seen = attempt(&app.client, replicas[i % 2], &app.token, Action::CreateChat).await;
        assert_eq!(seen.status, StatusCode::CREATED, "chat {i}: {}", seen.body);
    }
    for base in replicas {
        let seen = attempt(&app.client, base, &app.token, Action::CreateChat).await;
        assert_eq!(
            (seen.status, seen.body["limit"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("chats_per_minute")),
            "the fifth chat, through {base}: {}",
            seen.body
        );
    }
    stop.cancel();
    app.stop().await;
}

#[sqlx::test]
async fn a_refused_user_gets_through_once_the_retry_after_has_passed(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let limiter = limiter(&app);
    let user = Uuid::now_v7();
    // 600 a minute: one every 100 ms, two back to back.
    let rate = Rate {
        per_minute: 600,
        burst: 2,
    };
    for _ in 0..2 {
        assert_eq!(
            limiter.acquire(Limit::Messages, user, rate).await.unwrap(),
            None
        );
    }
    let wait = limiter
        .acquire(Limit::Messages, user, rate)
        .await
        .unwrap()
        .expect("the third is refused");
    assert!(wait <= Duration::from_millis(100), "{wait:?}");
    tokio::time::sleep(wait).await;
    assert_eq!(
        limiter.acquire(Limit::Messages, user, rate).await.unwrap(),
        None
    );
    assert!(
        limiter
            .acquire(Limit::Messages, user, rate)
            .await
            .unwrap()
            .is_some(),
        "one request per emission interval"
    );
    assert_eq!(
        limiter.acquire(Limit::Chats, user, rate).await.unwrap(),
        None,
        "each limit has its own bucket"
    );
    app.stop().await;
}

/// One check is one Redis round trip (EVALSHA); this measures what it adds to a request.
#[sqlx::test]
async fn a_limit_check_costs_one_redis_round_trip(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    // One stream a minute: each user's bucket key then lives 60 s, so every key written
    // below is still there when they are counted, however slow the machine (at the
    // default 120 a minute a key lives 0.5 s, and the first ones expired on a loaded one).
    app.services
        .store
        .update_site_config(&agentq_core::store::SiteConfigChanges {
            stream_connects_per_minute: Some(1),
            stream_connects_burst: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let limiter = limiter(&app);
    let user = Uuid::now_v7();
    limiter.check(Limit::Messages, user).await.unwrap();
    let mut took = Vec::new();
    for _ in 0..2000 {
        let started = Instant::now();
        let _ = limiter.check(Limit::StreamConnects, Uuid::now_v7()).await;
        took.push(started.elapsed());
    }
    took.sort();
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    let p99 = took[took.len() * 99 / 100];
    eprintln!(
        "rate-limit check over Redis: mean {mean:?}, p50 {:?}, p99 {p99:?}",
        took[took.len() / 2]
    );
    assert!(mean < Duration::from_millis(5), "mean {mean:?}");
    let mut conn = app.services.redis_conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:ratelimit:*", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2001, "every check reached Redis");
    app.stop().await;
}

fn limiter(app: &TestApp) -> RateLimiter {
    let api: ApiConfig = config::defaults();
    RateLimiter::new(
        app.services.redis_conn.clone(),
        &app.prefix,
        SiteConfigCache::new(app.services.store.clone(), Duration::from_secs(5)),
        Duration::from_millis(api.rate_limit_timeout_ms),
    )
}

#[sqlx::test]
async fn limits_have_defaults_and_out_of_range_values_are_400s_naming_the_field(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let (status, defaults) = app.get("/api/v1/admin/config").await;
    assert_eq!(status, StatusCode::OK);
    for (field, value) in [
        ("chats_per_minute", 60),
        ("chats_burst", 30),
        ("messages_per_minute", 60),
        ("messages_burst", 30),
        ("stream_connects_per_minute", 120),
        ("stream_connects_burst", 60),
    ] {
        assert_eq!(defaults[field], value, "default of {field}");
    }
    for (body, field, detail) in [
        (
            json!({"chats_per_minute": -1}),
            "chats_per_minute",
            "must be between 0 and 100000 (0 turns the limit off)",
        ),
        (
            json!({"messages_per_minute": 100_001}),
            "messages_per_minute",
            "must be between 0 and 100000 (0 turns the limit off)",
        ),
        (
            json!({"stream_connects_per_minute": "lots"}),
            "stream_connects_per_minute",
            "",
        ),
        (
            json!({"chats_burst": 0}),
            "chats_burst",
            "must be between 1 and 10000",
        ),
        (
            json!({"messages_burst": 10_001}),
            "messages_burst",
            "must be between 1 and 10000",
        ),
        (
            json!({"stream_connects_burst": 0}),
            "stream_connects_burst",
            "must be between 1 and 10000",
        ),
    ] {
        let (status, error) = app
            .put_as(&owner, "/api/v1/admin/config", body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["validations"][0]["field"], field, "{body} -> {error}");
        if !detail.is_empty() {
            assert_eq!(error["validations"][0]["detail"], detail, "{body}");
        }
    }
    let (status, updated) = app
        .put_as(
            &owner,
            "/api/v1/admin/config",
            json!({"messages_per_minute": 0, "messages_burst": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (
            updated["messages_per_minute"].as_i64(),
            updated["messages_burst"].as_i64()
        ),
        (Some(0), Some(5))
    );
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/admin/config",
            json!({"messages_per_minute": 0}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "members may not lift their own limits"
    );
    app.stop().await;
}
