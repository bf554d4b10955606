//! What the API keeps of tokens, memberships and spend limits (api/src/access_cache.rs,
//! ARCHITECTURE.md §11.3): a change committed by anyone (another API process, the CLI, an
//! operator's SQL, here a second connection) stops the next request once its notification
//! arrives; a change made through this API process stops the very next one; a token is
//! never accepted past its expiry; and while the connection that listens for changes is
//! down, nothing kept is used.

mod support;

use std::time::{Duration, Instant};

use agentq_core::store::LISTENER_APPLICATION_NAME;
use reqwest::StatusCode;
use serde_json::json;
use support::app::TestApp;

/// How long a change may take to reach the API through its notification.
const TOLD_WITHIN: Duration = Duration::from_secs(2);

/// Polls `GET /api/v1/chats` with `token` until it answers `want`, for [`TOLD_WITHIN`];
/// returns how long that took.
async fn answers_within(app: &TestApp, token: &str, want: StatusCode) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = app.get_as(token, "/api/v1/chats").await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < TOLD_WITHIN,
            "still {status} {:?} after the change, not {want}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the API listens for changes (its listening connection is open, and the
/// cache knows): from then on it keeps what it reads.
async fn listening(app: &TestApp, pool: &sqlx::PgPool) {
    app.access_cache_listening().await;
    let started = Instant::now();
    loop {
        let listeners: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
        )
        .bind(LISTENER_APPLICATION_NAME)
        .fetch_one(pool)
        .await
        .unwrap();
        if listeners == 1 {
            return;
        }
        assert!(started.elapsed() < TOLD_WITHIN, "the API does not listen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Makes `token`'s user known to the cache: two requests, the second answered from it.
async fn kept(app: &TestApp, token: &str) {
    for _ in 0..2 {
        let (status, body) = app.get_as(token, "/api/v1/chats").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[sqlx::test]
async fn a_token_is_read_once_then_kept_until_a_change_is_made(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    listening(&app, &pool).await;
    kept(&app, &app.token).await;
    // Revoked with the triggers off (`session_replication_role = replica`): nobody is
    // told, so only an entry the API kept still answers.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("RESET session_replication_role")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let (status, body) = app.get_as(&app.token, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::OK, "the token was read again: {body}");
    // Requests that change no access leave the cache alone: a refused one on an access
    // route, and a chat (the kept token makes it, which shows it is still kept).
    let refused = app
        .client
        .put(format!("{}/api/v1/admin/spend-limits", app.base))
        .json(&json!({ "period": "month" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .post("/api/v1/chats", json!({ "message": "still kept" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Any change told empties the cache: the token is read again, and refused.
    sqlx::query("UPDATE site_config SET spend_limit_micros = spend_limit_micros")
        .execute(&pool)
        .await
        .unwrap();
    answers_within(&app, &app.token, StatusCode::UNAUTHORIZED).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_token_revoked_elsewhere_stops_working_when_the_change_is_told(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    listening(&app, &pool).await;
    kept(&app, &app.token).await;
    // Not through this API: another process, the CLI or an operator's SQL.
    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let took = answers_within(&app, &app.token, StatusCode::UNAUTHORIZED).await;
    // The cache keeps an entry 10 s by default: a change that was not told would take that.
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[sqlx::test]
async fn a_token_revoked_through_the_api_stops_the_very_next_request(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    listening(&app, &pool).await;
    let (status, created) = app
        .post("/api/v1/users/me/tokens", json!({ "name": "short-lived" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        kept(&app, &secret).await;
    }
    let status = app
        .delete_as(&app.token, &format!("/api/v1/users/me/tokens/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // No wait: the process that made the change emptied its cache before it answered.
    let (status, body) = app.get_as(&secret, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[sqlx::test]
async fn a_kept_token_is_refused_once_it_expires(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    listening(&app, &pool).await;
    // Told before the token is kept (its notification would empty the cache otherwise).
    app.access_change(
        sqlx::query("UPDATE api_tokens SET expires_at = now() + interval '1500 milliseconds'")
            .execute(&pool),
    )
    .await
    .unwrap();
    kept(&app, &app.token).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, body) = app.get_as(&app.token, "/api/v1/chats").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "kept past its expiry: {body}"
    );
}

/// Runs `change` by SQL beside the API, then creates chats until one is refused with
/// `refused` and a message containing `says`, within a second; until then each is created.
async fn next_chat_refused(
    app: &TestApp,
    pool: &sqlx::PgPool,
    change: &'static str,
    refused: StatusCode,
    says: &str,
) {
    sqlx::query(change).execute(pool).await.unwrap();
    let started = Instant::now();
    loop {
        let (status, body) = app
            .post("/api/v1/chats", json!({ "message": "after the change" }))
            .await;
        if status == refused {
            assert!(body["message"].as_str().unwrap().contains(says), "{body}");
            return;
        }
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "`{change}` was not told"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test]
async fn a_removed_role_and_a_new_spend_limit_stop_the_next_chat(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    listening(&app, &pool).await;
    app.lift_rate_limits().await;
    for _ in 0..2 {
        let (status, body) = app
            .post("/api/v1/chats", json!({ "message": "kept" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // A spend limit already spent (0): the next chat is refused.
    next_chat_refused(
        &app,
        &pool,
        "UPDATE site_config SET spend_limit_micros = 0",
        StatusCode::CONFLICT,
        "usage limit",
    )
    .await;
    app.access_change(
        sqlx::query("UPDATE site_config SET spend_limit_micros = NULL").execute(&pool),
    )
    .await
    .unwrap();
    let (status, body) = app
        .post("/api/v1/chats", json!({ "message": "allowed again" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The role goes: the next chat is refused, naming it.
    next_chat_refused(
        &app,
        &pool,
        "UPDATE organization_members SET roles = '{}'",
        StatusCode::FORBIDDEN,
        "agents-access",
    )
    .await;
}

#[sqlx::test]
async fn nothing_kept_is_used_while_changes_cannot_be_told(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool.clone()).await;
    listening(&app, &pool).await;
    kept(&app, &app.token).await;
    // The connection that listens is cut; a change committed now is told to nobody.
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cut, 1, "one listening connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = app.get_as(&app.token, "/api/v1/chats").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a kept entry was used: {body}"
    );
}

#[sqlx::test]
async fn with_the_cache_off_nothing_listens(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only_with(pool.clone(), |api| api.access_cache_secs = 0).await;
    kept(&app, &app.token).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listening: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(listening, 0);
    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let (status, _) = app.get_as(&app.token, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The listening connection goes silent (nothing closed, nothing answered: a vanished peer,
/// a half-open TCP connection behind a middlebox), so changes stop arriving without the
/// connection failing. The API's query every 5 s, which has 5 s to answer, gives it up:
/// from then on what was kept is not used, long before `--access-cache-secs` would drop it.
/// Once connections pass again, the API listens again on a new one: the silent one, which
/// may take the kernel many minutes to drop, does not hold it back.
#[sqlx::test]
async fn a_listening_connection_gone_silent_is_given_up_within_two_heartbeats(pool: sqlx::PgPool) {
    use sqlx::postgres::{PgPoolOptions, PgSslMode};
    use support::silent_proxy::SilentProxy;

    let direct = pool.connect_options();
    let upstream = format!("{}:{}", direct.get_host(), direct.get_port());
    let proxy = SilentProxy::start(upstream, LISTENER_APPLICATION_NAME).await;
    // Every connection of the API goes through the proxy, in clear so it can tell the
    // listening one by its name.
    let proxied = PgPoolOptions::new()
        .max_connections(5)
        .connect_with(
            (*direct)
                .clone()
                .host("127.0.0.1")
                .port(proxy.port)
                .ssl_mode(PgSslMode::Disable),
        )
        .await
        .unwrap();
    // Kept for an hour: only losing the connection can empty the cache within the test.
    let app = TestApp::start_api_only_with(proxied, |api| api.access_cache_secs = 3600).await;
    listening(&app, &pool).await;
    kept(&app, &app.token).await;
    proxy.silence();
    let silenced = Instant::now();
    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    // The notification cannot arrive: the kept entry still answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = app.get_as(&app.token, "/api/v1/chats").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the revoke was told after all: {body}"
    );
    // At most one interval until the next query, plus its 5 s to answer.
    let limit = Duration::from_secs(12);
    loop {
        let (status, _) = app.get_as(&app.token, "/api/v1/chats").await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            silenced.elapsed() < limit,
            "the revoked token still answers {:?} after the listening connection went silent",
            silenced.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.heal();
    let healed = Instant::now();
    app.access_cache_listening().await;
    assert!(
        healed.elapsed() < Duration::from_secs(5),
        "listening again {:?} after connections passed again",
        healed.elapsed()
    );
}
