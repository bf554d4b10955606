//! MCP server configs as site owners, users and chats see them (issue #12, item 3): site
//! owners create, change and delete servers; their secrets are sealed and never come back
//! in any response; a new `auth_type` forgets the old credentials; bad input is a 400 naming
//! the field and a taken slug a 409; users list only enabled servers; chats choose servers
//! on create and per message, and `effective_mcp_servers` follows each availability.

mod support;

use agentq_core::store::McpServerRecord;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{TestApp, create_owner};
use uuid::Uuid;

const ADMIN: &str = "/api/v1/admin/mcp-servers";

/// Creates a server as `owner` and returns it; panics unless the answer is a 201.
async fn create(app: &TestApp, owner: &str, body: Value) -> Value {
    let (status, server) = app.send(Method::POST, owner, ADMIN, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    server
}

/// Asserts a 400 whose first validation names `field`.
fn assert_refused(reply: &(StatusCode, Value), field: &str) {
    let (status, body) = reply;
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], field, "{body}");
}

/// Asserts none of the secrets this file uses appears in `body`.
fn assert_no_secrets(body: &Value) {
    let text = body.to_string();
    for secret in ["key-sk-123", "hdr-secret-456", "client-secret-789"] {
        assert!(!text.contains(secret), "{secret} leaked in {text}");
    }
}

fn slugs(servers: &[McpServerRecord]) -> Vec<&str> {
    servers.iter().map(|s| s.slug.as_str()).collect()
}

#[sqlx::test]
async fn site_owners_manage_servers_and_secrets_never_come_back(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;

    let api_key = create(
        &app,
        &owner,
        json!({"slug": "docs", "display_name": "Docs", "description": "Searches the docs",
               "url": "https://mcp.example.com/docs", "auth_type": "api_key",
               "api_key_header": "X-Api-Key", "api_key": "key-sk-123",
               "availability": "default_on", "tool_deny_list": ["drop_all"]}),
    )
    .await;
    assert_eq!(api_key["has_api_key"], true);
    assert_eq!(api_key["api_key_header"], "x-api-key");
    assert_eq!(api_key["transport"], "streamable_http");
    assert_eq!(api_key["enabled"], true);
    assert_eq!(api_key["allow_in_plan_mode"], false);
    assert_no_secrets(&api_key);
    let headers = create(
        &app,
        &owner,
        json!({"slug": "tickets", "display_name": "Tickets", "url": "http://127.0.0.1:9/mcp",
               "auth_type": "custom_headers", "custom_headers": {"X-Team": "hdr-secret-456"}}),
    )
    .await;
    assert_eq!(headers["has_custom_headers"], true);
    assert_no_secrets(&headers);
    let oauth = create(
        &app,
        &owner,
        json!({"slug": "calendar", "display_name": "Calendar", "url": "https://cal.example.com/mcp",
               "auth_type": "oauth2", "oauth_client_id": "agentq", "oauth_client_secret": "client-secret-789",
               "oauth_authorize_url": "https://cal.example.com/authorize",
               "oauth_token_url": "https://cal.example.com/token", "oauth_scopes": ["read", "write"]}),
    )
    .await;
    assert_eq!(oauth["has_client_secret"], true);
    assert_eq!(oauth["oauth_scopes"], json!(["read", "write"]));
    assert_no_secrets(&oauth);

    // Sealed at rest.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT coalesce(api_key_ciphertext, custom_headers_ciphertext, oauth_client_secret_ciphertext)
         FROM mcp_servers",
    )
    .fetch_all(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(stored.len(), 3);
    for sealed in &stored {
        let text = String::from_utf8_lossy(sealed);
        assert!(
            !text.contains("key-sk-123")
                && !text.contains("hdr-secret-456")
                && !text.contains("client-secret-789")
        );
    }

    // Every read, for owners and users, is free of them.
    let (status, list) = app.send(Method::GET, &owner, ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["mcp_servers"].as_array().unwrap().len(), 3);
    assert_no_secrets(&list);
    let id = api_key["id"].as_str().unwrap();
    let (status, one) = app
        .send(Method::GET, &owner, &format!("{ADMIN}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_no_secrets(&one);
    let (_, public) = app
        .send(Method::GET, &app.token, "/api/v1/mcp-servers", None)
        .await;
    assert_no_secrets(&public);

    // A change that does not touch credentials keeps them.
    let (status, renamed) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{ADMIN}/{id}"),
            Some(json!({"display_name": "Documentation", "allow_in_plan_mode": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["display_name"], "Documentation");
    assert_eq!(renamed["has_api_key"], true);
    assert_eq!(renamed["allow_in_plan_mode"], true);
    assert_no_secrets(&renamed);

    // A new auth type forgets the old credentials, in the response and in the row.
    let (status, switched) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{ADMIN}/{id}"),
            Some(json!({"auth_type": "user_oidc"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched["auth_type"], "user_oidc");
    assert_eq!(switched["has_api_key"], false);
    assert_eq!(switched["api_key_header"], Value::Null);
    let (key, header): (Option<Vec<u8>>, Option<String>) =
        sqlx::query_as("SELECT api_key_ciphertext, api_key_header FROM mcp_servers WHERE id = $1")
            .bind(id.parse::<Uuid>().unwrap())
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert!(key.is_none() && header.is_none());
    let oauth_id = oauth["id"].as_str().unwrap();
    let (status, switched) = app.send(Method::PATCH,
        &owner,
        &format!("{ADMIN}/{oauth_id}"),
        Some(json!({"auth_type": "api_key", "api_key_header": "authorization", "api_key": "Token key-sk-123"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched["has_client_secret"], false);
    assert_eq!(switched["oauth_client_id"], Value::Null);
    assert_eq!(switched["oauth_scopes"], json!([]));
    assert_eq!(switched["has_api_key"], true);
    assert_no_secrets(&switched);

    // Deleting.
    let (status, _) = app
        .send(Method::DELETE, &owner, &format!("{ADMIN}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .send(Method::GET, &owner, &format!("{ADMIN}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send(Method::DELETE, &owner, &format!("{ADMIN}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn users_may_not_manage_servers_and_list_only_enabled_ones(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let on = create(
        &app,
        &owner,
        json!({"slug": "search", "display_name": "Search", "url": "https://s.example.com/mcp"}),
    )
    .await;
    create(
        &app,
        &owner,
        json!({"slug": "hidden", "display_name": "Hidden", "url": "https://h.example.com/mcp", "enabled": false}),
    )
    .await;
    let id = on["id"].as_str().unwrap();

    let user = app.token.clone();
    for (method, path, body) in [
        (Method::GET, ADMIN.to_owned(), None),
        (
            Method::POST,
            ADMIN.to_owned(),
            Some(json!({"slug": "x", "display_name": "X", "url": "https://x.example.com"})),
        ),
        (Method::GET, format!("{ADMIN}/{id}"), None),
        (
            Method::PATCH,
            format!("{ADMIN}/{id}"),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, format!("{ADMIN}/{id}"), None),
    ] {
        let (status, body) = app.send(method.clone(), &user, &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }

    let (status, list) = app
        .send(Method::GET, &user, "/api/v1/mcp-servers", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let servers = list["mcp_servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{list}");
    assert_eq!(servers[0]["slug"], "search");
    assert_eq!(servers[0]["availability"], "default_off");
    assert!(
        servers[0].get("url").is_none(),
        "users do not see URLs: {list}"
    );
}

#[sqlx::test]
async fn bad_server_configs_are_400s_naming_the_field_and_taken_slugs_409s(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let base = json!({"slug": "good", "display_name": "Good", "url": "https://g.example.com/mcp"});
    let with = |patch: Value| {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases = [
        (json!({"slug": "Docs"}), "slug"),
        (json!({"slug": "my_docs"}), "slug"),
        (json!({"slug": "a--b"}), "slug"),
        (json!({"slug": "-a"}), "slug"),
        (json!({"slug": "a".repeat(33)}), "slug"),
        (json!({"slug": null}), "slug"),
        (json!({"display_name": " "}), "display_name"),
        (json!({"url": "ftp://files.example.com"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "https://user:secret@g.example.com/mcp"}),
            "url",
        ),
        (json!({"url": "https://g.example.com/m\u{0}cp"}), "url"),
        (json!({"url": "https://g.example.com/\tmcp"}), "url"),
        (json!({"url": null}), "url"),
        (json!({"auth_type": "basic"}), "auth_type"),
        (json!({"availability": "sometimes"}), "availability"),
        (json!({"transport": "stdio"}), "transport"),
        (
            json!({"auth_type": "api_key", "api_key": "k"}),
            "api_key_header",
        ),
        (
            json!({"auth_type": "api_key", "api_key_header": "X-Key"}),
            "api_key",
        ),
        (
            json!({"auth_type": "api_key", "api_key_header": "bad header", "api_key": "k"}),
            "api_key_header",
        ),
        (
            json!({"auth_type": "api_key", "api_key_header": "Mcp-Session-Id", "api_key": "k"}),
            "api_key_header",
        ),
        (
            json!({"auth_type": "api_key", "api_key_header": "X-Key", "api_key": "line\nbreak"}),
            "api_key",
        ),
        (json!({"api_key": "k"}), "api_key"),
        (json!({"auth_type": "custom_headers"}), "custom_headers"),
        (
            json!({"auth_type": "custom_headers", "custom_headers": {}}),
            "custom_headers",
        ),
        (
            json!({"auth_type": "custom_headers", "custom_headers": {"X-A": "\u{7}"}}),
            "custom_headers.x-a",
        ),
        (
            json!({"auth_type": "oauth2", "oauth_client_id": "c", "oauth_authorize_url": "https://a.example.com"}),
            "oauth_token_url",
        ),
        (
            json!({"auth_type": "oauth2", "oauth_client_id": "c", "oauth_authorize_url": "javascript:x", "oauth_token_url": "https://t.example.com"}),
            "oauth_authorize_url",
        ),
        (json!({"tool_allow_list": [""]}), "tool_allow_list[0]"),
        (json!({"unknown": 1}), "unknown"),
    ];
    for (patch, field) in cases {
        let body = with(patch.clone());
        let reply = app.send(Method::POST, &owner, ADMIN, Some(body)).await;
        assert_refused(&reply, field);
    }

    let first = create(&app, &owner, base.clone()).await;
    let (status, body) = app
        .send(Method::POST, &owner, ADMIN, Some(base.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let other = create(
        &app,
        &owner,
        json!({"slug": "other", "display_name": "Other", "url": "https://o.example.com/mcp"}),
    )
    .await;
    let path = format!("{ADMIN}/{}", other["id"].as_str().unwrap());
    let (status, body) = app
        .send(Method::PATCH, &owner, &path, Some(json!({"slug": "good"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A patch is checked as a whole: switching to api_key needs the key too.
    let reply = app
        .send(
            Method::PATCH,
            &owner,
            &path,
            Some(json!({"auth_type": "api_key", "api_key_header": "X-Key"})),
        )
        .await;
    assert_refused(&reply, "api_key");
    // A null secret is refused, not read as "keep" (only a new auth_type removes one).
    for secret in ["api_key", "custom_headers", "oauth_client_secret"] {
        let reply = app
            .send(Method::PATCH, &owner, &path, Some(json!({ secret: null })))
            .await;
        assert_refused(&reply, secret);
    }
    let reply = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{ADMIN}/not-a-uuid"),
            Some(json!({})),
        )
        .await;
    assert_refused(&reply, "id");
    let (status, _) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{ADMIN}/{}", Uuid::now_v7()),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(first["slug"], "good");
}

#[sqlx::test]
async fn chats_choose_servers_and_each_availability_applies_as_documented(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let mut ids = std::collections::HashMap::new();
    for (slug, availability, enabled) in [
        ("forced", "force_on", true),
        ("usual", "default_on", true),
        ("extra", "default_off", true),
        ("off-forced", "force_on", false),
        ("off-usual", "default_on", false),
    ] {
        let server = create(
            &app,
            &owner,
            json!({"slug": slug, "display_name": slug, "url": "https://m.example.com/mcp",
                   "availability": availability, "enabled": enabled}),
        )
        .await;
        ids.insert(slug, server["id"].as_str().unwrap().to_owned());
    }
    let store = &app.services.store;
    let new_chat = |servers: Option<Vec<&str>>| {
        let mut body = json!({"message": "hello"});
        if let Some(servers) = servers {
            body["mcp_server_ids"] = json!(
                servers
                    .iter()
                    .map(|s| ids.get(s).cloned().unwrap_or_else(|| s.to_string()))
                    .collect::<Vec<_>>()
            );
        }
        body
    };
    let create_chat = |body: Value| {
        let app = &app;
        async move {
            let (status, chat) = app
                .send(Method::POST, &app.token, "/api/v1/chats", Some(body))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{chat}");
            chat["id"].as_str().unwrap().parse::<Uuid>().unwrap()
        }
    };

    // Never chose: force_on and default_on.
    let defaults = create_chat(new_chat(None)).await;
    assert_eq!(
        slugs(&store.effective_mcp_servers(defaults).await.unwrap()),
        ["forced", "usual"]
    );
    // Chose a default_off one: it replaces the defaults; force_on stays.
    let chose_extra = create_chat(new_chat(Some(vec!["extra"]))).await;
    assert_eq!(
        slugs(&store.effective_mcp_servers(chose_extra).await.unwrap()),
        ["extra", "forced"]
    );
    // Chose nothing: opted out of every default, not of force_on.
    let opted_out = create_chat(new_chat(Some(vec![]))).await;
    assert_eq!(
        slugs(&store.effective_mcp_servers(opted_out).await.unwrap()),
        ["forced"]
    );
    // Chose both (twice over): each once.
    let both = create_chat(new_chat(Some(vec!["usual", "extra", "usual"]))).await;
    assert_eq!(
        slugs(&store.effective_mcp_servers(both).await.unwrap()),
        ["extra", "forced", "usual"]
    );
    assert_eq!(
        store
            .chat_mcp_server_choice(both)
            .await
            .unwrap()
            .unwrap()
            .len(),
        2
    );

    // Unknown and disabled ids are refused, naming the field.
    let unknown = Uuid::now_v7().to_string();
    let reply = app
        .send(
            Method::POST,
            &app.token,
            "/api/v1/chats",
            Some(new_chat(Some(vec![unknown.as_str()]))),
        )
        .await;
    assert_refused(&reply, "mcp_server_ids");
    let reply = app
        .send(
            Method::POST,
            &app.token,
            "/api/v1/chats",
            Some(new_chat(Some(vec!["off-usual"]))),
        )
        .await;
    assert_refused(&reply, "mcp_server_ids");
    let reply = app
        .send(
            Method::POST,
            &app.token,
            "/api/v1/chats",
            Some(json!({"message": "hi", "mcp_server_ids": ["nope"]})),
        )
        .await;
    assert_refused(&reply, "mcp_server_ids[0]");
    // Too many ids are refused by count before anything else looks at them, duplicates or not.
    let many = vec![unknown.clone(); 1_000];
    let reply = app
        .send(
            Method::POST,
            &app.token,
            "/api/v1/chats",
            Some(json!({"message": "hi", "mcp_server_ids": many})),
        )
        .await;
    assert_refused(&reply, "mcp_server_ids");
    assert!(reply.1.to_string().contains("at most 64"), "{}", reply.1);

    // Per message: the new choice applies from then on; a bad one changes nothing.
    let path = format!("/api/v1/chats/{defaults}/messages");
    let reply = app
        .send(
            Method::POST,
            &app.token,
            &path,
            Some(json!({"message": "more", "mcp_server_ids": [unknown]})),
        )
        .await;
    assert_refused(&reply, "mcp_server_ids");
    assert_eq!(store.chat_mcp_server_choice(defaults).await.unwrap(), None);
    let (status, body) = app
        .send(
            Method::POST,
            &app.token,
            &path,
            Some(json!({"message": "more", "mcp_server_ids": [ids["extra"]]})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(
        slugs(&store.effective_mcp_servers(defaults).await.unwrap()),
        ["extra", "forced"]
    );
    // A message without the field keeps the choice.
    let (status, body) = app
        .send(
            Method::POST,
            &app.token,
            &path,
            Some(json!({"message": "again"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(
        slugs(&store.effective_mcp_servers(defaults).await.unwrap()),
        ["extra", "forced"]
    );

    // Disabling a chosen server takes it out; deleting one too.
    let (status, _) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("{ADMIN}/{}", ids["extra"]),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        slugs(&store.effective_mcp_servers(both).await.unwrap()),
        ["forced", "usual"]
    );
    let (status, _) = app
        .send(
            Method::DELETE,
            &owner,
            &format!("{ADMIN}/{}", ids["usual"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        slugs(&store.effective_mcp_servers(both).await.unwrap()),
        ["forced"]
    );
}

#[sqlx::test]
async fn a_refused_message_leaves_the_chats_choice_of_servers_alone(pool: sqlx::PgPool) {
    // No worker: the first turn stays queued, so later messages wait in the chat's queue.
    let app = TestApp::start_api_only(pool).await;
    app.lift_rate_limits().await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let extra = create(
        &app,
        &owner,
        json!({"slug": "extra", "display_name": "Extra", "url": "https://m.example.com/mcp"}),
    )
    .await;
    let chat = app.create_chat("hello").await;
    let path = format!("/api/v1/chats/{chat}/messages");
    for n in 0..agentq_core::store::MAX_QUEUED_MESSAGES {
        let (status, body) = app
            .send(
                Method::POST,
                &app.token,
                &path,
                Some(json!({"message": format!("queued {n}")})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = app
        .send(
            Method::POST,
            &app.token,
            &path,
            Some(json!({"message": "one too many", "mcp_server_ids": [extra["id"]]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let store = &app.services.store;
    assert_eq!(store.chat_mcp_server_choice(chat).await.unwrap(), None);
    assert!(store.effective_mcp_servers(chat).await.unwrap().is_empty());
}

#[sqlx::test]
async fn concurrent_changes_to_a_server_keep_each_others_changes(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let server = create(
        &app,
        &owner,
        json!({"slug": "docs", "display_name": "Docs", "url": "https://m.example.com/mcp",
               "auth_type": "api_key", "api_key_header": "x-api-key", "api_key": "key-old"}),
    )
    .await;
    let id: Uuid = server["id"].as_str().unwrap().parse().unwrap();
    let path = format!("{ADMIN}/{id}");
    let store = &app.services.store;
    let secrets = app.services.secrets.as_ref().unwrap();

    // A write merged into a version that changed meanwhile is refused: it would put the
    // old key back.
    let before = store.get_mcp_server(id).await.unwrap();
    let (status, body) = app
        .send(
            Method::PATCH,
            &owner,
            &path,
            Some(json!({"api_key": "key-new"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stale = store
        .update_mcp_server(id, before.updated_at, &before.to_write())
        .await;
    assert!(
        matches!(stale, Err(agentq_core::StoreError::Conflict(_))),
        "{stale:?}"
    );
    let now = store.get_mcp_server(id).await.unwrap();
    assert_eq!(
        secrets
            .open(now.api_key_ciphertext.as_ref().unwrap())
            .unwrap(),
        "key-new"
    );

    // Changes to different fields sent at once all land (six writers: each loses at most
    // five rounds, within the eight a PATCH gets).
    let changes = [
        json!({"display_name": "Documentation"}),
        json!({"description": "Searches the docs"}),
        json!({"api_key": "key-newest"}),
        json!({"tool_allow_list": ["search"]}),
        json!({"tool_deny_list": ["delete"]}),
        json!({"allow_in_plan_mode": true}),
    ];
    let replies = futures::future::join_all(
        changes
            .iter()
            .map(|c| app.send(Method::PATCH, &owner, &path, Some(c.clone()))),
    )
    .await;
    for (status, body) in &replies {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let last = store.get_mcp_server(id).await.unwrap();
    assert_eq!(last.display_name, "Documentation");
    assert_eq!(last.description, "Searches the docs");
    assert_eq!(last.tool_allow_list, ["search"]);
    assert_eq!(last.tool_deny_list, ["delete"]);
    assert!(last.allow_in_plan_mode);
    assert_eq!(
        secrets
            .open(last.api_key_ciphertext.as_ref().unwrap())
            .unwrap(),
        "key-newest"
    );
}

/// The acquired turn says whether any server applies to its chat
/// (`AcquiredTurn::any_mcp_server`), so a step of a chat with none skips the server read:
/// it must agree with `effective_mcp_servers` for every availability, or a step would
/// offer no MCP tools to a chat that has servers.
#[sqlx::test]
async fn the_acquired_turn_says_whether_any_server_applies_to_its_chat(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let store = &app.services.store;
    let new_chat = |servers: Option<Vec<String>>| {
        let app = &app;
        async move {
            let mut body = json!({"message": "hello"});
            if let Some(servers) = servers {
                body["mcp_server_ids"] = json!(servers);
            }
            let (status, chat) = app
                .send(Method::POST, &app.token, "/api/v1/chats", Some(body))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{chat}");
            chat["id"].as_str().unwrap().parse::<Uuid>().unwrap()
        }
    };
    // Acquires the chat's queued turn; returns what it says, checked against the read.
    let applies = |chat: Uuid| async move {
        let turn = store
            .acquire_queued_turn(chat, "w/1", std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .expect("a queued turn");
        let servers = store.effective_mcp_servers(chat).await.unwrap();
        assert_eq!(
            turn.any_mcp_server,
            !servers.is_empty(),
            "the acquire and the read disagree: {:?}",
            slugs(&servers)
        );
        turn.any_mcp_server
    };
    let server = |slug: &'static str, availability: &'static str, enabled: bool| {
        let (app, owner) = (&app, &owner);
        async move {
            let body = json!({"slug": slug, "display_name": slug, "url": "https://m.example.com/mcp",
                              "availability": availability, "enabled": enabled});
            create(app, owner, body).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // No server at all.
    assert!(!applies(new_chat(None).await).await);
    // Disabled servers apply to nothing, forced or not; a default_off one only when chosen.
    server("off-forced", "force_on", false).await;
    server("off-usual", "default_on", false).await;
    let extra = server("extra", "default_off", true).await;
    assert!(!applies(new_chat(None).await).await);
    assert!(applies(new_chat(Some(vec![extra.clone()])).await).await);
    // A default_on server applies to a chat that never chose, not to one that opted out.
    server("usual", "default_on", true).await;
    assert!(applies(new_chat(None).await).await);
    assert!(!applies(new_chat(Some(vec![])).await).await);
    // A forced one applies even to a chat that opted out of everything.
    server("forced", "force_on", true).await;
    assert!(applies(new_chat(Some(vec![])).await).await);
}
