//! API tokens: listed without their secrets, created with a default expiry, revoked by id,
//! refused once expired or revoked; `agentq admin create-user` does not mint a second token
//! for an existing user, and `agentq admin tokens ...` manages them from the command line.

mod support;

use std::process::{Command, Output};

use agentq_core::auth::hash_token;
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::TestApp;
use uuid::Uuid;

/// The fields a token list shows, and nothing else.
const TOKEN_FIELDS: &[&str] = &[
    "created_at",
    "expires_at",
    "id",
    "last_used_at",
    "name",
    "scopes",
];

#[sqlx::test]
async fn tokens_are_listed_without_secrets_and_revoked_by_id(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;

    let (status, created) = app
        .post("/api/v1/users/me/tokens", json!({ "name": "ci runner" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("aq_"));
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    // The default lifetime is 90 days.
    let expires: chrono::DateTime<Utc> = created["token"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = Utc::now() + Duration::days(90);
    assert!(
        (expires - expected).num_seconds().abs() < 60,
        "{expires} vs {expected}"
    );
    let (status, _) = app.get_as(&secret, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::OK, "the new token works");

    let response = app
        .client
        .get(format!("{}/api/v1/users/me/tokens", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for secret_text in [
        secret.as_str(),
        hash_token(&secret).as_str(),
        app.token.as_str(),
        hash_token(&app.token).as_str(),
    ] {
        assert!(
            !text.contains(secret_text),
            "the list holds a secret: {text}"
        );
    }
    let list: Value = serde_json::from_str(&text).unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{list}");
    for token in tokens {
        let mut keys: Vec<&str> = token
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, TOKEN_FIELDS, "{token}");
    }
    let ci = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!(ci["name"], "ci runner");
    assert!(ci["last_used_at"].is_string(), "used once above: {ci}");

    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/users/me/tokens/{id}"))
            .await,
        StatusCode::NO_CONTENT
    );
    let (status, body) = app.get_as(&secret, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, list) = app.get("/api/v1/users/me/tokens").await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/users/me/tokens/{id}"))
            .await,
        StatusCode::NOT_FOUND,
        "already revoked"
    );

    // Someone else's token id is a 404, and stays valid.
    let bob = support::app::create_user(&app.services, "bob@example.com", "acme").await;
    let (_, bobs) = app.get_as(&bob, "/api/v1/users/me/tokens").await;
    let bob_id = bobs["tokens"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/users/me/tokens/{bob_id}"))
            .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get_as(&bob, "/api/v1/chats").await.0, StatusCode::OK);
    app.stop().await;
}

#[sqlx::test]
async fn token_requests_are_validated_by_field(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({ "name": "  " }), "name"),
        (json!({ "name": "a\nb" }), "name"),
        (
            json!({ "name": "x", "expires_in_days": 0 }),
            "expires_in_days",
        ),
        (
            json!({ "name": "x", "expires_in_days": 3651 }),
            "expires_in_days",
        ),
    ] {
        let (status, reply) = app.post("/api/v1/users/me/tokens", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(reply["validations"][0]["field"], field, "{body}: {reply}");
    }
    let (status, created) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({ "name": "short", "expires_in_days": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["token"]["expires_at"].is_string());
    assert_eq!(
        app.delete_as(&app.token, "/api/v1/users/me/tokens/nope")
            .await,
        StatusCode::BAD_REQUEST
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_expired_token_gets_401(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let (status, created) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({ "name": "one day", "expires_in_days": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id: Uuid = created["token"]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.get_as(&secret, "/api/v1/chats").await.0, StatusCode::OK);

    // A day passes (a change the API is told of, as it would be of any other).
    app.access_change(
        app.services
            .store
            .backdate_api_token_expiry(id, chrono::Utc::now() - chrono::Duration::seconds(1)),
    )
    .await
    .unwrap();
    let (status, body) = app.get_as(&secret, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let chat = app.create_chat("hello").await;
    let response = app
        .client
        .post(format!("{}/api/v1/chats/{chat}/messages", app.base))
        .bearer_auth(&secret)
        .json(&json!({ "message": "more" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The list still shows it, with the expiry that explains the 401.
    let (_, list) = app.get("/api/v1/users/me/tokens").await;
    let listed = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == json!(id))
        .cloned()
        .unwrap();
    let at: chrono::DateTime<Utc> = listed["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(at < Utc::now(), "{listed}");
    app.stop().await;
}

fn agentq(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(args)
        .args(["--database-url", &app.database_url()])
        .env("AGENTQ_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test]
async fn create_user_twice_refuses_and_tokens_are_managed_from_the_cli(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let create = [
        "admin",
        "create-user",
        "--email",
        "carol@example.com",
        "--org",
        "acme",
    ];

    let first = agentq(&app, &create);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let token = text(&first.stdout).trim().to_owned();
    assert!(token.starts_with("aq_"), "{token}");
    assert!(
        text(&first.stderr).contains("expires"),
        "{}",
        text(&first.stderr)
    );
    assert_eq!(app.get_as(&token, "/api/v1/chats").await.0, StatusCode::OK);

    let second = agentq(&app, &create);
    assert!(!second.status.success(), "a second run must fail");
    assert!(
        text(&second.stdout).trim().is_empty(),
        "no token is printed"
    );
    let said = text(&second.stderr);
    assert!(said.contains("already exists"), "{said}");
    assert!(said.contains("admin tokens create"), "{said}");
    let (_, list) = app.get_as(&token, "/api/v1/users/me/tokens").await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");

    // Another token only when asked for explicitly.
    let more = agentq(
        &app,
        &[
            "admin",
            "tokens",
            "create",
            "--email",
            "carol@example.com",
            "--name",
            "backup",
            "--expires-days",
            "7",
        ],
    );
    assert!(more.status.success(), "{}", text(&more.stderr));
    let backup = text(&more.stdout).trim().to_owned();
    assert!(backup.starts_with("aq_"));

    let listed = agentq(
        &app,
        &["admin", "tokens", "list", "--email", "carol@example.com"],
    );
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    assert_eq!(table.lines().count(), 3, "a header and two tokens: {table}");
    for secret in [&token, &backup] {
        assert!(!table.contains(secret.as_str()), "{table}");
        assert!(!table.contains(&hash_token(secret)), "{table}");
    }
    let backup_id = table
        .lines()
        .find(|l| l.contains("\tbackup\t"))
        .and_then(|l| l.split('\t').next())
        .unwrap()
        .to_owned();

    // The CLI is another process: the API learns of its changes from their notification.
    let revoked = app
        .access_change(async { agentq(&app, &["admin", "tokens", "revoke", "--id", &backup_id]) })
        .await;
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert_eq!(
        app.get_as(&backup, "/api/v1/chats").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get_as(&token, "/api/v1/chats").await.0, StatusCode::OK);

    let suspended = app
        .access_change(async {
            agentq(
                &app,
                &[
                    "admin",
                    "set-user-status",
                    "--email",
                    "carol@example.com",
                    "--status",
                    "suspended",
                ],
            )
        })
        .await;
    assert!(suspended.status.success(), "{}", text(&suspended.stderr));
    assert_eq!(
        app.get_as(&token, "/api/v1/chats").await.0,
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

/// A user can hold 50 active tokens; the 51st is a 409 until one is revoked.
#[sqlx::test]
async fn a_user_holds_at_most_fifty_active_tokens(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    // The app's own token is the first.
    let mut last = None;
    for i in 1..50 {
        let (status, body) = app
            .post(
                "/api/v1/users/me/tokens",
                json!({ "name": format!("t{i}") }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "token {i}: {body}");
        last = body["token"]["id"].as_str().map(str::to_owned);
    }
    let (status, body) = app
        .post("/api/v1/users/me/tokens", json!({ "name": "one too many" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("revoke one"),
        "{body}"
    );
    let revoked = app
        .delete_as(
            &app.token,
            &format!("/api/v1/users/me/tokens/{}", last.unwrap()),
        )
        .await;
    assert_eq!(revoked, StatusCode::NO_CONTENT);
    let (status, body) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({ "name": "after a revoke" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}
