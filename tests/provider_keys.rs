//! Key policy per provider and users' own keys (issue #15 item 3): whose key each turn is
//! sent with, row by row of the resolution table, checked at the provider (the fake records
//! every request's `Authorization`); the database refusing impossible policies; keys sealed
//! at rest, never in an answer or a worker's log; and `agentq admin rotate-key` moving every sealed
//! value to a new key that a worker then uses.

mod support;

use std::{process::Command, time::Duration};

use agentq_core::{
    StoreError,
    domain::ProviderKind,
    secrets::SecretBox,
    store::{ProviderChanges, SEALED_COLUMNS},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner, create_user},
    eventually,
    fake_openai::answer_to,
    process::{AgentqProcess, LogFormat},
};
use uuid::Uuid;

/// A provider of kind `openai` (it needs a key) on the fake, with `policy` merged into its
/// body, and one model on it; returns (provider id, model id).
async fn provider_on_fake(app: &TestApp, owner: &str, name: &str, policy: Value) -> (Uuid, Uuid) {
    let mut body = json!({"name": name, "kind": "openai", "base_url": app.fake.base_url});
    body.as_object_mut()
        .unwrap()
        .extend(policy.as_object().unwrap().clone());
    let (status, provider) = app.post_as(owner, "/api/v1/admin/providers", body).await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let (status, model) = app
        .post_as(
            owner,
            "/api/v1/admin/models",
            json!({"provider_id": provider["id"], "name": format!("model-of-{name}")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    (
        provider["id"].as_str().unwrap().parse().unwrap(),
        model["id"].as_str().unwrap().parse().unwrap(),
    )
}

/// Sends `message` in a new chat of `token`'s user on `model`; waits until the chat is
/// `waiting` or `error` and returns the chat.
async fn turn_on(app: &TestApp, token: &str, model: Uuid, message: &str) -> Value {
    let (status, chat) = app
        .post_as(
            token,
            "/api/v1/chats",
            json!({"message": message, "model_config_id": model}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let id = chat["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), "the turn to end", || async {
        let (_, chat) = app.get_as(token, &format!("/api/v1/chats/{id}")).await;
        (chat["status"] == "waiting" || chat["status"] == "error").then_some(chat)
    })
    .await
}

/// The `Authorization` of each request the fake received for the turn that `message`
/// started: its last user message is `message` (a later turn of the same chat sends the
/// earlier messages too, first among them).
fn keys_sent_for(app: &TestApp, message: &str) -> Vec<Option<String>> {
    app.fake
        .received()
        .into_iter()
        .filter(|r| {
            r.body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .is_some_and(|text| text.contains(message))
        })
        .map(|r| r.authorization)
        .collect()
}

#[sqlx::test]
async fn each_row_of_the_resolution_table_sends_the_right_key_or_none(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let with_key = app.token.clone();
    let without_key = create_user(&app.services, "bob@example.com", "acme").await;

    // One provider per valid policy, each with its own central key.
    let policies = [
        ("central-only", json!({})),
        (
            "user-required",
            json!({"allow_user_api_key": true, "central_api_key_enabled": true}),
        ),
        (
            "user-or-central",
            json!({"allow_user_api_key": true, "allow_central_api_key_fallback": true}),
        ),
        (
            "user-only",
            json!({"allow_user_api_key": true, "central_api_key_enabled": false}),
        ),
    ];
    let mut models = std::collections::HashMap::new();
    for (name, policy) in &policies {
        let mut policy = policy.clone();
        policy["api_key"] = json!(format!("sk-central-{name}"));
        // "central-only" takes user keys at first, so alice can store one it later ignores.
        if *name == "central-only" {
            policy["allow_user_api_key"] = json!(true);
        }
        let (provider, model) = provider_on_fake(&app, &owner, name, policy).await;
        let (status, stored) = app
            .put_as(
                &with_key,
                &format!("/api/v1/users/me/provider-keys/{provider}"),
                json!({"api_key": format!("sk-user-{name}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{stored}");
        models.insert(*name, (provider, model));
    }
    let (status, patched) = app
        .patch_as(
            &owner,
            &format!("/api/v1/admin/providers/{}", models["central-only"].0),
            json!({"allow_user_api_key": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");

    // (provider, user has a key) -> the key the provider receives, or missing_key.
    let rows: [(&str, bool, Option<&str>); 8] = [
        ("central-only", true, Some("sk-central-central-only")),
        ("central-only", false, Some("sk-central-central-only")),
        ("user-required", true, Some("sk-user-user-required")),
        ("user-required", false, None),
        ("user-or-central", true, Some("sk-user-user-or-central")),
        ("user-or-central", false, Some("sk-central-user-or-central")),
        ("user-only", true, Some("sk-user-user-only")),
        ("user-only", false, None),
    ];
    for (name, has_key, expected) in rows {
        let token = if has_key { &with_key } else { &without_key };
        let message = format!("row {name} with key {has_key}");
        let chat = turn_on(&app, token, models[name].1, &message).await;
        let sent = keys_sent_for(&app, &message);
        match expected {
            Some(key) => {
                assert_eq!(chat["status"], "waiting", "{name}/{has_key}: {chat}");
                assert_eq!(
                    sent,
                    vec![Some(format!("Bearer {key}"))],
                    "{name}, user key {has_key}"
                );
            }
            None => {
                assert_eq!(chat["status"], "error", "{name}/{has_key}: {chat}");
                assert_eq!(chat["last_error"]["kind"], "missing_key", "{chat}");
                assert_eq!(chat["last_error"]["provider"], name, "{chat}");
                assert!(
                    chat["last_error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("needs your own API key"),
                    "{chat}"
                );
                assert!(sent.is_empty(), "no request without a key: {sent:?}");
            }
        }
    }

    // The listing says the same as the turns, to each user.
    let listed = |token: String| {
        let app = &app;
        async move {
            let (status, body) = app.get_as(&token, "/api/v1/models").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["models"].as_array().unwrap().clone()
        }
    };
    let of = |list: &[Value], name: &str| {
        list.iter()
            .find(|m| m["provider_name"] == name)
            .cloned()
            .unwrap()
    };
    let bob = listed(without_key.clone()).await;
    for (name, available, source, code) in [
        ("central-only", true, json!("central"), Value::Null),
        (
            "user-required",
            false,
            Value::Null,
            json!("user_key_required"),
        ),
        ("user-or-central", true, json!("central"), Value::Null),
        ("user-only", false, Value::Null, json!("user_key_required")),
    ] {
        let m = of(&bob, name);
        assert_eq!(m["available"], available, "{m}");
        assert_eq!(m["key_source"], source, "{m}");
        assert_eq!(m["unavailable_code"], code, "{m}");
        assert_eq!(m["unavailable_reason"].is_string(), !available, "{m}");
    }
    let alice = listed(with_key.clone()).await;
    assert!(alice.iter().all(|m| m["available"] == true), "{alice:?}");
    assert_eq!(of(&alice, "user-only")["key_source"], "user");
    assert_eq!(of(&alice, "central-only")["key_source"], "central");

    // Deleting the key takes effect at the next turn: back to the central key (fallback)
    // or to missing_key.
    let status = app
        .delete_as(&with_key, "/api/v1/users/me/provider-keys/user-or-central")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let message = "fallback after deleting the key";
    let chat = turn_on(&app, &with_key, models["user-or-central"].1, message).await;
    assert_eq!(chat["status"], "waiting", "{chat}");
    assert_eq!(
        keys_sent_for(&app, message),
        vec![Some("Bearer sk-central-user-or-central".to_owned())]
    );
    let status = app
        .delete_as(&with_key, "/api/v1/users/me/provider-keys/user-only")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let message = "user-only after deleting the key";
    let chat = turn_on(&app, &with_key, models["user-only"].1, message).await;
    assert_eq!(chat["last_error"]["kind"], "missing_key", "{chat}");
    assert!(keys_sent_for(&app, message).is_empty());

    // A fallback to a central key that is not stored is missing_key too.
    let (status, body) = app
        .patch_as(
            &owner,
            &format!("/api/v1/admin/providers/{}", models["user-or-central"].0),
            json!({"api_key": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let message = "fallback without a central key";
    let chat = turn_on(&app, &without_key, models["user-or-central"].1, message).await;
    assert_eq!(chat["last_error"]["kind"], "missing_key", "{chat}");
    assert!(
        chat["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("has no API key configured"),
        "{chat}"
    );
    assert!(keys_sent_for(&app, message).is_empty());
    let m = of(&listed(without_key).await, "user-or-central");
    assert_eq!(m["unavailable_code"], "no_central_key", "{m}");
    app.stop().await;
}

#[sqlx::test]
async fn impossible_key_policies_are_refused_by_the_api_and_the_database(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    // (central, user keys, fallback) and the field the API names.
    let impossible = [
        (false, false, false, "central_api_key_enabled"),
        (false, false, true, "central_api_key_enabled"),
        (false, true, true, "allow_central_api_key_fallback"),
        (true, false, true, "allow_central_api_key_fallback"),
    ];
    for (i, (c, u, f, field)) in impossible.into_iter().enumerate() {
        let (status, body) = app
            .post_as(
                &owner,
                "/api/v1/admin/providers",
                json!({"name": format!("bad-{i}"), "kind": "openai", "api_key": "sk-x",
                       "central_api_key_enabled": c, "allow_user_api_key": u,
                       "allow_central_api_key_fallback": f}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{c} {u} {f}: {body}");
        assert_eq!(body["validations"][0]["field"], field, "{body}");
    }
    // A patch is judged merged with what is stored.
    let (provider, _) = provider_on_fake(&app, &owner, "P", json!({"api_key": "sk-p"})).await;
    let path = format!("/api/v1/admin/providers/{provider}");
    let (status, body) = app
        .patch_as(
            &owner,
            &path,
            json!({"allow_central_api_key_fallback": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["validations"][0]["field"],
        "allow_central_api_key_fallback"
    );
    let (status, body) = app
        .patch_as(
            &owner,
            &path,
            json!({"allow_user_api_key": true, "allow_central_api_key_fallback": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["allow_central_api_key_fallback"], true);
    let (status, body) = app
        .patch_as(&owner, &path, json!({"central_api_key_enabled": false}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The database refuses them whatever writes them: the store straight away...
    let store = &app.services.store;
    for (c, u, f, _) in impossible {
        let refused = store
            .create_provider(&ProviderChanges {
                name: Some(format!("direct-{c}-{u}-{f}")),
                kind: Some(ProviderKind::Openai),
                base_url: Some("http://127.0.0.1:9/v1".into()),
                central_api_key_enabled: Some(c),
                allow_user_api_key: Some(u),
                allow_central_api_key_fallback: Some(f),
                ..ProviderChanges::default()
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid { .. })),
            "{c} {u} {f}: {refused:?}"
        );
    }
    // ... also a patch, judged merged with the stored row under its lock, naming the field.
    for (c, u, f, field) in impossible {
        let refused = store
            .update_provider(
                provider,
                &ProviderChanges {
                    central_api_key_enabled: Some(c),
                    allow_user_api_key: Some(u),
                    allow_central_api_key_fallback: Some(f),
                    ..ProviderChanges::default()
                },
            )
            .await;
        match refused {
            Err(StoreError::Invalid { field: named, .. }) => {
                assert_eq!(named, field, "{c} {u} {f}")
            }
            other => panic!("{c} {u} {f}: {other:?}"),
        }
    }
    // ... and plain SQL.
    for (c, u, f, _) in impossible {
        let refused = sqlx::query(
            "UPDATE providers SET central_api_key_enabled = $2, allow_user_api_key = $3,
                    allow_central_api_key_fallback = $4 WHERE id = $1",
        )
        .bind(provider)
        .bind(c)
        .bind(u)
        .bind(f)
        .execute(store.pool())
        .await
        .unwrap_err();
        let constraint = refused
            .as_database_error()
            .and_then(|e| e.constraint().map(str::to_owned));
        assert_eq!(
            constraint.as_deref(),
            Some("providers_key_policy_check"),
            "{c} {u} {f}"
        );
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_stored_key_is_sealed_and_never_shown(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let (provider, _) = provider_on_fake(
        &app,
        &owner,
        "Byok",
        json!({"allow_user_api_key": true, "api_key": "sk-central-visible-never"}),
    )
    .await;
    let (_, no_user_keys) =
        provider_on_fake(&app, &owner, "Central", json!({"api_key": "sk-central-2"})).await;
    let _ = no_user_keys;
    let secret = "sk-user-3f9a1c77e2b04d5d";
    let mut bodies = Vec::new();

    let (status, body) = app.get("/api/v1/users/me/provider-keys").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["providers"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        1,
        "only providers that take user keys: {body}"
    );
    assert_eq!(listed[0]["has_key"], false);
    bodies.push(body);

    let (status, body) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/provider-keys/Byok",
            json!({"api_key": secret}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["has_key"], true);
    assert_eq!(body["provider_id"], json!(provider));
    assert!(body["updated_at"].is_string(), "{body}");
    bodies.push(body);
    let (_, body) = app.get("/api/v1/users/me/provider-keys").await;
    assert_eq!(body["providers"][0]["has_key"], true, "{body}");
    bodies.push(body);
    for path in ["/api/v1/models", "/api/v1/users/me/provider-keys"] {
        bodies.push(app.get(path).await.1);
    }
    bodies.push(app.get_as(&owner, "/api/v1/admin/providers").await.1);
    for body in &bodies {
        let text = body.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(&secret[secret.len() - 8..]), "{text}");
        assert!(!text.contains("sk-central-visible-never"), "{text}");
    }

    // At rest: not the plain text, and it opens with the configured key only.
    let (stored, row_text): (Vec<u8>, String) =
        sqlx::query_as("SELECT api_key_ciphertext, k::text FROM user_provider_keys k")
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the key's bytes are not in the stored value"
    );
    assert!(!row_text.contains(secret));
    let other_box = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    assert!(
        other_box.open(&stored).is_err(),
        "another key does not open it"
    );
    let sealed_box = SecretBox::from_hex(&app.secret_key).unwrap();
    assert_eq!(sealed_box.open(&stored).unwrap(), secret);

    // Refusals name what is wrong.
    for (path, body, status) in [
        (
            "/api/v1/users/me/provider-keys/Central",
            json!({"api_key": "sk-1"}),
            StatusCode::CONFLICT,
        ),
        (
            "/api/v1/users/me/provider-keys/nope",
            json!({"api_key": "sk-1"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/users/me/provider-keys/Byok",
            json!({"api_key": "two words"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/users/me/provider-keys/Byok",
            json!({"api_key": ""}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/users/me/provider-keys/Byok",
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/users/me/provider-keys/Byok",
            json!({"api_key": "k".repeat(4097)}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, answer) = app.put_as(&app.token, path, body).await;
        assert_eq!(got, status, "{path}: {answer}");
    }

    // Another user sees their own state only.
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let (_, body) = app.get_as(&bob, "/api/v1/users/me/provider-keys").await;
    assert_eq!(body["providers"][0]["has_key"], false, "{body}");
    assert_eq!(
        app.delete_as(
            &app.token,
            &format!("/api/v1/users/me/provider-keys/{provider}")
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let (_, body) = app.get("/api/v1/users/me/provider-keys").await;
    assert_eq!(body["providers"][0]["has_key"], false, "{body}");
    app.stop().await;
}

#[sqlx::test]
async fn the_rotation_list_covers_every_sealed_column(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let in_schema = app.services.store.ciphertext_columns().await.unwrap();
    let mut listed: Vec<String> = SEALED_COLUMNS
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| format!("{}.{c}", t.table)))
        .collect();
    listed.sort();
    assert_eq!(
        in_schema, listed,
        "a *_ciphertext column is missing from store::SEALED_COLUMNS (or the list names one that is gone)"
    );
    app.stop().await;
}

fn agentq(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(args)
        .args(["--database-url", &app.database_url()])
        .env("AGENTQ_LOG", "warn")
        .env_remove("AGENTQ_SECRET_KEY")
        .env_remove("AGENTQ_PREVIOUS_SECRET_KEY")
        .output()
        .unwrap()
}

#[sqlx::test]
async fn rotating_the_key_reseals_everything_and_workers_use_the_new_key(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let (_, model) = provider_on_fake(
        &app,
        &owner,
        "Rotating",
        json!({"allow_user_api_key": true, "allow_central_api_key_fallback": true,
               "api_key": "sk-central-rotating", "headers": {"X-Team": "team-secret"}}),
    )
    .await;
    let user_key = "sk-user-rotating-77";
    let (status, body) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/provider-keys/Rotating",
            json!({"api_key": user_key}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let old_key = app.secret_key.clone();
    let new_key = SecretBox::generate_key_hex();

    let rotate = [
        "admin",
        "rotate-key",
        "--secret-key",
        new_key.as_str(),
        "--previous-secret-key",
        old_key.as_str(),
        "--batch",
        "1",
    ];
    let first = agentq(&app, &rotate);
    let said = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let line = |table: &str, out: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{table}\t")))
            .unwrap_or_else(|| panic!("{table} in {out}"))
            .to_owned()
    };
    assert_eq!(
        line("providers", &said),
        "providers\t2\t0\t0",
        "key and headers"
    );
    assert_eq!(
        line("user_provider_keys", &said),
        "user_provider_keys\t1\t0\t0"
    );
    for secret in [
        user_key,
        "sk-central-rotating",
        "team-secret",
        old_key.as_str(),
        new_key.as_str(),
    ] {
        assert!(!said.contains(secret), "{said}");
    }

    // Every value now opens under the new key alone, not the old one.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT api_key_ciphertext FROM user_provider_keys
         UNION ALL SELECT api_key_ciphertext FROM providers",
    )
    .fetch_all(app.services.store.pool())
    .await
    .unwrap();
    let new_box = SecretBox::from_hex(&new_key).unwrap();
    let old_box = SecretBox::from_hex(&old_key).unwrap();
    for value in &stored {
        assert!(new_box.open(value).is_ok());
        assert!(old_box.open(value).is_err());
    }

    // A second run (as after a crash halfway) finds everything done.
    let again = agentq(&app, &rotate);
    assert!(again.status.success());
    let said = String::from_utf8_lossy(&again.stdout).into_owned();
    assert_eq!(line("providers", &said), "providers\t0\t2\t0");
    assert_eq!(
        line("user_provider_keys", &said),
        "user_provider_keys\t0\t1\t0"
    );

    // Without the old key the command refuses to start.
    let missing = agentq(
        &app,
        &["admin", "rotate-key", "--secret-key", new_key.as_str()],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("AGENTQ_PREVIOUS_SECRET_KEY"));

    // A worker with only the new key sends the user's key and the central one's headers;
    // neither it nor the rest of the run logs a key.
    let worker =
        AgentqProcess::worker_logged(&app, &["--secret-key", new_key.as_str()], LogFormat::Json);
    let message = "after the rotation";
    let chat = turn_on(&app, &app.token, model, message).await;
    assert_eq!(chat["status"], "waiting", "{chat}");
    let received = app.fake.received_for(message);
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("Bearer {user_key}").as_str())
    );
    assert!(
        received[0]
            .headers
            .contains(&("x-team".to_owned(), "team-secret".to_owned())),
        "{:?}",
        received[0].headers
    );
    let messages = app
        .messages(chat["id"].as_str().unwrap().parse().unwrap())
        .await;
    assert!(
        messages
            .last()
            .unwrap()
            .to_string()
            .contains(&answer_to(message))
    );
    let log = worker.log_lines().join("\n");
    for secret in [
        user_key,
        "sk-central-rotating",
        "team-secret",
        new_key.as_str(),
    ] {
        assert!(!log.contains(secret), "{log}");
    }
    drop(worker);
    app.stop().await;
}

#[sqlx::test]
async fn a_provider_reference_no_provider_can_have_is_a_400_naming_provider(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let long = "p".repeat(101);
    for reference in ["a%00b", "a%0Ab", long.as_str()] {
        let path = format!("/api/v1/users/me/provider-keys/{reference}");
        let (status, body) = app
            .put_as(&app.token, &path, json!({"api_key": "sk-1"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reference}: {body}");
        assert_eq!(body["validations"][0]["field"], "provider", "{body}");
        assert_eq!(
            app.delete_as(&app.token, &path).await,
            StatusCode::BAD_REQUEST,
            "{reference}"
        );
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_provider_name_cannot_be_a_uuid_and_an_id_wins_over_a_name(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let (status, body) = app
        .post_as(
            &owner,
            "/api/v1/admin/providers",
            json!({"name": Uuid::now_v7().to_string(), "kind": "openai",
                   "base_url": app.fake.base_url}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "name", "{body}");
    let byok = json!({"allow_user_api_key": true});
    let (first, _) = provider_on_fake(&app, &owner, "First", byok.clone()).await;
    let (second, _) = provider_on_fake(&app, &owner, "Second", byok).await;
    let (status, body) = app
        .patch_as(
            &owner,
            &format!("/api/v1/admin/providers/{second}"),
            json!({"name": first.to_string()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "name", "{body}");
    // A row written before the API refused such names, found before `first` by a scan
    // (`first` is rewritten after it, so its tuple comes last).
    let pool = app.services.store.pool();
    sqlx::query("UPDATE providers SET name = $2 WHERE id = $1")
        .bind(second)
        .bind(first.to_string())
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE providers SET updated_at = now() WHERE id = $1")
        .bind(first)
        .execute(pool)
        .await
        .unwrap();
    for _ in 0..3 {
        let (status, body) = app
            .put_as(
                &app.token,
                &format!("/api/v1/users/me/provider-keys/{first}"),
                json!({"api_key": "sk-first"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["provider_id"], json!(first), "{body}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_rotation_pages_on_the_primary_key_index_and_reseals_thousands(pool: sqlx::PgPool) {
    let store = agentq_core::store::Store::new(pool);
    let old = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let new = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let rows = 3000;
    let ids: Vec<Uuid> = (0..rows).map(|_| Uuid::now_v7()).collect();
    let names: Vec<String> = (0..rows).map(|i| format!("bulk-{i}")).collect();
    let sealed: Vec<Vec<u8>> = (0..rows).map(|i| old.seal(&format!("sk-{i}"))).collect();
    sqlx::query(
        "INSERT INTO providers (id, name, kind, base_url, api_key_ciphertext)
         SELECT id, name, 'openai', 'http://127.0.0.1:9/v1', k
         FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS t(id, name, k)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&sealed)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();

    // Every table's next-page query can use its primary-key index with no sort (the
    // old text-key query could not, whatever the planner was told).
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for table in SEALED_COLUMNS {
        let [_, next] = store.reseal_batch_sql(table).await.unwrap();
        let cursor: Vec<String> = table
            .key
            .iter()
            .map(|_| match table.table {
                "oidc_client" => "0".to_owned(),
                _ => Uuid::nil().to_string(),
            })
            .collect();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {next}")))
            .bind(100_i64)
            .bind(&cursor)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains(&format!("{}_pkey", table.table)),
            "{}: {plan}",
            table.table
        );
        assert!(!plan.contains("Sort"), "{}: {plan}", table.table);
    }
    drop(conn);

    let counts = store
        .reseal_all(&new.clone().with_previous(&old), 128)
        .await
        .unwrap();
    let providers = counts.iter().find(|c| c.table == "providers").unwrap();
    assert_eq!((providers.resealed, providers.unreadable), (rows as u64, 0));
    let stored: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT name, api_key_ciphertext FROM providers WHERE name LIKE 'bulk-%'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(stored.len(), rows);
    for (name, value) in stored {
        assert_eq!(new.open(&value).unwrap(), format!("sk-{}", &name[5..]));
    }
    // A second run finds every value current.
    let again = store
        .reseal_all(&new.clone().with_previous(&old), 128)
        .await
        .unwrap();
    let providers = again.iter().find(|c| c.table == "providers").unwrap();
    assert_eq!((providers.resealed, providers.current), (0, rows as u64));
}

#[sqlx::test]
async fn a_key_stored_after_missing_key_serves_the_next_turn_and_the_title(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    app.worker.generate_titles = true;
    app.start_worker().await;
    let owner = create_owner(&app.services, "root@example.com").await;
    // Users' keys only: a user without one gets missing_key.
    let (_, model) = provider_on_fake(
        &app,
        &owner,
        "OwnOnly",
        json!({"allow_user_api_key": true, "central_api_key_enabled": false}),
    )
    .await;
    let first = "before storing a key";
    let chat = turn_on(&app, &app.token, model, first).await;
    assert_eq!(chat["last_error"]["kind"], "missing_key", "{chat}");
    assert!(keys_sent_for(&app, first).is_empty());

    let (status, body) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/provider-keys/OwnOnly",
            json!({"api_key": "sk-alice-own"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = chat["id"].as_str().unwrap().to_owned();
    let second = "after storing a key";
    let (status, body) = app
        .post_as(
            &app.token,
            &format!("/api/v1/chats/{id}/messages"),
            json!({"message": second}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let chat = eventually(Duration::from_secs(20), "the turn to end", || async {
        let (_, chat) = app.get_as(&app.token, &format!("/api/v1/chats/{id}")).await;
        (chat["status"] == "waiting" || chat["status"] == "error").then_some(chat)
    })
    .await;
    assert_eq!(chat["status"], "waiting", "{chat}");
    let own = Some("Bearer sk-alice-own".to_owned());
    let sent = keys_sent_for(&app, second);
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|k| *k == own), "{sent:?}");

    // The title is asked for with the chat owner's key too.
    let titles = eventually(Duration::from_secs(20), "a title request", || async {
        let titles: Vec<_> = app
            .fake
            .received()
            .into_iter()
            .filter(|r| {
                r.body["messages"][0]["content"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("You name conversations"))
            })
            .collect();
        (!titles.is_empty()).then_some(titles)
    })
    .await;
    assert!(titles.iter().all(|r| r.authorization == own), "{titles:?}");
    app.stop().await;
}

/// A pasted key keeps no spaces, tabs or line breaks around it (what the provider gets is
/// the key itself); any other character outside printable ASCII is a 400, and the 4096-byte
/// limit counts what was sent, as the document's `maxLength` does.
#[sqlx::test]
async fn a_pasted_key_loses_its_surrounding_whitespace_and_nothing_else(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let (_, model) = provider_on_fake(
        &app,
        &owner,
        "Paste",
        json!({"allow_user_api_key": true, "central_api_key_enabled": false}),
    )
    .await;
    let path = "/api/v1/users/me/provider-keys/Paste";
    for refused in [
        "\u{b}sk-vertical-tab".to_owned(),
        "sk-inner space".to_owned(),
        format!("sk-{}  ", "x".repeat(4093)),
    ] {
        let (status, body) = app
            .put_as(&app.token, path, json!({"api_key": refused}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused:?}: {body}");
        assert_eq!(body["validations"][0]["field"], "api_key", "{body}");
    }
    let (status, body) = app
        .put_as(&app.token, path, json!({"api_key": " \tsk-pasted\r\n"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chat = turn_on(&app, &app.token, model, "a turn on a pasted key").await;
    assert_eq!(chat["status"], "waiting", "{chat}");
    let sent = keys_sent_for(&app, "a turn on a pasted key");
    assert!(!sent.is_empty());
    assert!(
        sent.iter()
            .all(|k| k.as_deref() == Some("Bearer sk-pasted")),
        "{sent:?}"
    );
    app.stop().await;
}
