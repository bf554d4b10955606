//! Access is checked where work starts: a revoked token, a user whose `agents-access` was
//! removed and a suspended user are refused on every route that starts a turn, resumes one,
//! streams one or stops one, with a status and a JSON body saying what is missing.

mod support;

use std::collections::BTreeSet;

use agentq_core::domain::{OrganizationRole, UserStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::TestApp;
use uuid::Uuid;

/// Every route that starts or steers work in a chat, as the OpenAPI document names it.
/// `every_route_that_starts_work_is_walked` fails when a new one is not added here.
const WORK_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/chats"),
    ("POST", "/api/v1/chats/{chat_id}/messages"),
    ("POST", "/api/v1/chats/{chat_id}/tool-results"),
    ("GET", "/api/v1/chats/{chat_id}/stream"),
    ("PATCH", "/api/v1/chats/{chat_id}/messages/{message_id}"),
    ("POST", "/api/v1/chats/{chat_id}/regenerate"),
];

/// Routes under `/api/v1/chats` that change something but start no work. Interrupting
/// stops work (and spending), deleting a chat refuses one that works, and a diff status
/// records what happened in git: the chat's owner may always do any of them, role or not.
const NOT_WORK: &[(&str, &str)] = &[
    ("PATCH", "/api/v1/chats/{chat_id}"),
    ("DELETE", "/api/v1/chats/{chat_id}"),
    ("POST", "/api/v1/chats/{chat_id}/interrupt"),
    ("PUT", "/api/v1/chats/{chat_id}/diff-status"),
];

/// A request body for each work route that gets past validation.
fn body_for(path: &str) -> Option<Value> {
    if path.ends_with("/messages")
        || path.ends_with("/messages/{message_id}")
        || path == "/api/v1/chats"
    {
        Some(json!({ "message": "keep going" }))
    } else if path.ends_with("/tool-results") {
        Some(json!({ "results": [{ "tool_call_id": Uuid::now_v7(), "output": "ok" }] }))
    } else {
        None
    }
}

/// Calls `method path` (with `{chat_id}` filled in, and `{message_id}` with a fresh id) as
/// `token`: the status and the JSON body (`null` for a stream that opened: its body never
/// ends).
async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    chat: Uuid,
) -> (StatusCode, Value) {
    let url = format!(
        "{}{}",
        app.base,
        path.replace("{chat_id}", &chat.to_string())
            .replace("{message_id}", &Uuid::now_v7().to_string())
    );
    let mut request = app
        .client
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
        .bearer_auth(token);
    if let Some(body) = body_for(path) {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let is_json = response.headers().get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap_or_default()
            .starts_with("application/json")
    });
    let body = if is_json {
        response.json().await.unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    (status, body)
}

/// Every work route answers `token` with something other than 401 or 403 (the walk
/// reaches each handler), so a later refusal is the check under test, not a bad request.
async fn assert_work_allowed(app: &TestApp, token: &str, chat: Uuid) {
    for (method, path) in WORK_ROUTES {
        let (status, body) = call(app, token, method, path, chat).await;
        let refused = [
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
        ];
        assert!(
            !refused.contains(&status) && !status.is_server_error(),
            "{method} {path} before the change: {status} {body}"
        );
    }
}

#[sqlx::test]
async fn every_route_that_starts_work_is_walked(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/chats") {
            continue;
        }
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found.insert(("GET".into(), "/api/v1/chats/{chat_id}/stream".into()));
    let walked: BTreeSet<(String, String)> = WORK_ROUTES
        .iter()
        .chain(NOT_WORK)
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        found, walked,
        "a route under /api/v1/chats changes state: add it to WORK_ROUTES (and check access in \
         it with `require_work_access`) or to NOT_WORK"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_revoked_token_gets_401_on_every_route_that_starts_work(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("first").await;
    let (status, created) = app
        .post("/api/v1/users/me/tokens", json!({ "name": "laptop" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["secret"].as_str().unwrap().to_owned();
    let token_id = created["token"]["id"].as_str().unwrap().to_owned();
    assert_work_allowed(&app, &token, chat).await;

    let response = app
        .client
        .delete(format!("{}/api/v1/users/me/tokens/{token_id}", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for (method, path) in WORK_ROUTES {
        let (status, body) = call(&app, &token, method, path, chat).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("revoked"),
            "{method} {path}: {body}"
        );
    }
    // The user's other token is untouched.
    let (status, _) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[sqlx::test]
async fn a_user_whose_agents_access_was_removed_gets_403_on_every_route_that_starts_work(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("first").await;
    assert_work_allowed(&app, &app.token, chat).await;

    let store = &app.services.store;
    let alice = app.user_id("alice@example.com").await;
    let acme = store.ensure_organization("acme").await.unwrap();
    assert!(
        app.access_change(store.remove_member_role(acme, alice, OrganizationRole::AgentsAccess))
            .await
            .unwrap()
    );

    for (method, path) in WORK_ROUTES {
        let (status, body) = call(&app, &app.token, method, path, chat).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("agents-access"),
            "{method} {path}: the body says what is missing: {body}"
        );
    }
    // Reading what is already there is not starting work, and stopping work (and its
    // cost) is always the owner's to do.
    let (status, _) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &app,
        &app.token,
        "POST",
        "/api/v1/chats/{chat_id}/interrupt",
        chat,
    )
    .await;
    assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!status.is_server_error(), "{body}");
    let (status, _) = app.get(&format!("/api/v1/chats/{chat}/messages")).await;
    assert_eq!(status, StatusCode::OK);

    // The role counts in the chat's own organization: holding it elsewhere lets the user
    // start new chats there, not resume this one.
    let other = store.ensure_organization("other").await.unwrap();
    app.access_change(store.add_member(other, alice, &[OrganizationRole::AgentsAccess]))
        .await
        .unwrap();
    let (status, body) = call(
        &app,
        &app.token,
        "POST",
        "/api/v1/chats/{chat_id}/messages",
        chat,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&acme.to_string()),
        "{body}"
    );
    let (status, body) = app
        .post("/api/v1/chats", json!({ "message": "elsewhere" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["organization_id"], json!(other));
    app.stop().await;
}

#[sqlx::test]
async fn a_suspended_or_deleted_user_is_refused_until_reactivated(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("first").await;
    let alice = app.user_id("alice@example.com").await;
    let store = &app.services.store;

    for (status_now, word) in [
        (UserStatus::Suspended, "suspended"),
        (UserStatus::Deleted, "deleted"),
    ] {
        assert!(
            app.access_change(store.set_user_status(alice, status_now))
                .await
                .unwrap()
        );
        for (method, path) in WORK_ROUTES {
            let (status, body) = call(&app, &app.token, method, path, chat).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains(word),
                "{method} {path}: {body}"
            );
        }
        // Every route, not only those that start work.
        let (status, body) = app.get("/api/v1/chats").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }

    assert!(
        app.access_change(store.set_user_status(alice, UserStatus::Active))
            .await
            .unwrap()
    );
    assert_work_allowed(&app, &app.token, chat).await;
    app.stop().await;
}
