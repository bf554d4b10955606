//! The authorization matrix (issue #15; issue #18, item 4; ARCHITECTURE.md §11.2): every
//! route of the OpenAPI document, called by every kind of caller, answers the status the
//! table below says, and no response shows one user's chats, messages, files, skills,
//! debug runs or tokens to another, nor any provider key or MCP secret to anyone. Nor does
//! any line the API and the workers log (captured at `debug`), nor a debug export.
//!
//! The routes come from the document the router is built from (as `tests/openapi.rs`
//! reads it), so a route added without a row here fails this test, which prints the row
//! to add with the statuses the route answered: check each cell means what it should
//! before pasting it.
//!
//! The world: organizations A and B; a site owner who belongs to neither; A's
//! `organization-admin` (no `agents-access`); `member_a` with `agents-access` in A (owns the
//! chat, message, skill, debug run and token the paths name); a member of A with no role; a
//! member of B with both roles there (owns a chat of their own, and administers B); a
//! `chat:read` token of `member_a`'s; and no token at all. Both chats run on a provider
//! with a key (`member_a` brings their own key for it) with two MCP servers holding secrets
//! (an API key, a custom header), and record debug runs; `member_a`'s calls both servers'
//! tools. Requests that send a body send one with an unknown
//! field: a caller who gets past the access checks then gets 400, and nothing changes
//! (routes that take no body do what they do). `DELETE`s run last, deleting the chat at
//! the very end, and the member `DELETE` removes is added back before each call.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use agentq_core::{auth::generate_token, domain::OrganizationRole};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{
    app::TestApp, captured_logs, eventually, fake_openai::Reply, mcp_server::McpTestServer,
};
use uuid::Uuid;

/// The callers, in the order each row calls them (the owner of what the paths name comes
/// last, so what they delete is gone only after everyone else was refused).
const CALLERS: [&str; 7] = [
    "anonymous",
    "scoped",
    "member_b",
    "no_access",
    "org_admin",
    "owner",
    "member_a",
];

/// One route and what each caller gets, in [`CALLERS`] order:
/// anonymous, scoped (`member_a`'s `chat:read` token), member_b, no_access, org_admin, owner,
/// member_a.
type Row = (&'static str, &'static str, [u16; 7]);

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                                      anon scop  m_b  noac oadm ownr  m_a
    // Public: probes, metrics, the document; the OAuth callback (no token: its state names the user).
    ("GET",    "/api/v1/openapi.json",                                      [200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/healthz",                                                  [200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/metrics",                                                  [200, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/readyz",                                                   [200, 200, 200, 200, 200, 200, 200]),
    // Chats: only their owner (member_a) gets past, the chat:read token only on reads; others get 404.
    ("GET",    "/api/v1/chats",                                             [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/chats/events",                                      [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/chats/{chat_id}",                                   [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/children",                          [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/debug/export",                      [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/debug/runs",                        [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/debug/runs/{run_id}",               [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/files",                             [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/files/{file_id}",                   [401, 404, 404, 404, 404, 404, 404]),
    ("GET",    "/api/v1/chats/{chat_id}/messages",                          [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/model",                             [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/stream",                            [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/chats/{chat_id}/tool-calls",                        [401, 200, 404, 404, 404, 404, 200]),
    ("PATCH",  "/api/v1/chats/{chat_id}",                                   [401, 403, 404, 404, 404, 404, 400]),
    ("PATCH",  "/api/v1/chats/{chat_id}/messages/{message_id}",             [401, 403, 404, 404, 404, 404, 400]),
    ("POST",   "/api/v1/chats",                                             [401, 403, 400, 400, 400, 400, 400]),
    ("POST",   "/api/v1/chats/{chat_id}/interrupt",                         [401, 403, 404, 404, 404, 404, 409]),
    ("POST",   "/api/v1/chats/{chat_id}/messages",                          [401, 403, 404, 404, 404, 404, 400]),
    ("POST",   "/api/v1/chats/{chat_id}/regenerate",                        [401, 403, 404, 404, 404, 404, 202]),
    ("POST",   "/api/v1/chats/{chat_id}/tool-results",                      [401, 403, 404, 404, 404, 404, 400]),
    ("PUT",    "/api/v1/chats/{chat_id}/diff-status",                       [401, 403, 404, 404, 404, 404, 400]),
    // The caller's own settings and tokens: everyone has their own; the chat:read token only reads.
    ("GET",    "/api/v1/users/me/instructions",                             [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/model-overrides",                          [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/notification-preferences",                 [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/oidc-token",                               [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/organizations",                            [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/skills",                                   [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/skills/{name}",                            [401, 200, 404, 404, 404, 404, 200]),
    ("GET",    "/api/v1/users/me/tokens",                                   [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/usage",                                    [401, 200, 200, 200, 200, 200, 200]),
    ("PATCH",  "/api/v1/users/me/skills/{name}",                            [401, 403, 400, 400, 400, 400, 400]),
    ("POST",   "/api/v1/users/me/skills",                                   [401, 403, 400, 400, 400, 400, 400]),
    ("POST",   "/api/v1/users/me/skills/import",                            [401, 403, 415, 415, 415, 415, 415]),
    ("POST",   "/api/v1/users/me/tokens",                                   [401, 403, 400, 400, 400, 400, 400]),
    ("PUT",    "/api/v1/users/me/instructions",                             [401, 403, 400, 400, 400, 400, 400]),
    ("PUT",    "/api/v1/users/me/model-overrides",                          [401, 403, 400, 400, 400, 400, 400]),
    ("PUT",    "/api/v1/users/me/notification-preferences",                 [401, 403, 400, 400, 400, 400, 400]),
    ("PUT",    "/api/v1/users/me/oidc-token",                               [401, 403, 400, 400, 400, 400, 400]),
    ("PUT",    "/api/v1/users/me/preferences",                              [401, 403, 400, 400, 400, 400, 400]),
    // MCP servers as users see them.
    ("GET",    "/api/v1/mcp-servers",                                       [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/mcp-servers/oauth/callback",                        [400, 400, 400, 400, 400, 400, 400]),
    ("POST",   "/api/v1/mcp-servers/{id}/oauth/start",                      [401, 403, 409, 409, 409, 409, 409]),
    // Organization A's administration: its organization-admin and site owners; 403 for its other members, 404 for outsiders.
    ("GET",    "/api/v1/organizations/{organization_id}/members",           [401, 403, 404, 403, 200, 200, 403]),
    ("GET",    "/api/v1/organizations/{organization_id}/usage",             [401, 403, 404, 403, 200, 200, 403]),
    ("POST",   "/api/v1/organizations/{organization_id}/members",           [401, 403, 404, 403, 400, 400, 403]),
    ("PUT",    "/api/v1/organizations/{organization_id}/members/{user_id}", [401, 403, 404, 403, 400, 400, 403]),
    // Site administration: site owners only (reading the settings: anyone with the `admin` scope).
    ("GET",    "/api/v1/admin/config",                                      [401, 403, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/admin/mcp-servers",                                 [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/mcp-servers/{id}",                            [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/model-contexts",                              [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/models",                                      [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/oidc-client",                                 [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/organizations",                               [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/processes",                                   [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/providers",                                   [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/queues",                                      [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/queues/{queue}/dead-letters",                 [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/spend-limits",                                [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/subagent-models",                             [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/system-prompt",                               [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/usage",                                       [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/users",                                       [401, 403, 403, 403, 403, 200, 403]),
    ("GET",    "/api/v1/admin/users/{user_id}",                             [401, 403, 403, 403, 403, 200, 403]),
    ("PATCH",  "/api/v1/admin/mcp-servers/{id}",                            [401, 403, 403, 403, 403, 400, 403]),
    ("PATCH",  "/api/v1/admin/models/{id}",                                 [401, 403, 403, 403, 403, 400, 403]),
    ("PATCH",  "/api/v1/admin/organizations/{organization_id}",             [401, 403, 403, 403, 403, 400, 403]),
    ("PATCH",  "/api/v1/admin/providers/{id}",                              [401, 403, 403, 403, 403, 400, 403]),
    ("PATCH",  "/api/v1/admin/users/{user_id}",                             [401, 403, 403, 403, 403, 400, 403]),
    ("POST",   "/api/v1/admin/mcp-servers",                                 [401, 403, 403, 403, 403, 400, 403]),
    ("POST",   "/api/v1/admin/models",                                      [401, 403, 403, 403, 403, 400, 403]),
    ("POST",   "/api/v1/admin/organizations",                               [401, 403, 403, 403, 403, 400, 403]),
    ("POST",   "/api/v1/admin/providers",                                   [401, 403, 403, 403, 403, 400, 403]),
    ("POST",   "/api/v1/admin/queues/{queue}/dead-letters/retry",           [401, 403, 403, 403, 403, 200, 403]),
    ("POST",   "/api/v1/admin/queues/{queue}/dead-letters/{id}/retry",      [401, 403, 403, 403, 403, 404, 403]),
    ("POST",   "/api/v1/admin/users",                                       [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/config",                                      [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/model-contexts",                              [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/oidc-client",                                 [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/spend-limits",                                [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/spend-limits/organizations/{organization_id}", [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/spend-limits/users/{user_id}",                [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/subagent-models",                             [401, 403, 403, 403, 403, 400, 403]),
    ("PUT",    "/api/v1/admin/system-prompt",                               [401, 403, 403, 403, 403, 400, 403]),
    // DELETEs run after everything else (the chat's own last, whatever its place here).
    ("DELETE", "/api/v1/admin/mcp-servers/{id}",                            [401, 403, 403, 403, 403, 204, 403]),
    ("DELETE", "/api/v1/admin/models/{id}",                                 [401, 403, 403, 403, 403, 204, 403]),
    ("DELETE", "/api/v1/admin/organizations/{organization_id}",             [401, 403, 403, 403, 403, 409, 403]),
    ("DELETE", "/api/v1/admin/providers/{id}",                              [401, 403, 403, 403, 403, 204, 403]),
    ("DELETE", "/api/v1/admin/queues/{queue}/dead-letters",                 [401, 403, 403, 403, 403, 200, 403]),
    ("DELETE", "/api/v1/admin/queues/{queue}/dead-letters/{id}",            [401, 403, 403, 403, 403, 404, 403]),
    ("DELETE", "/api/v1/admin/spend-limits/organizations/{organization_id}", [401, 403, 403, 403, 403, 404, 403]),
    ("DELETE", "/api/v1/admin/spend-limits/users/{user_id}",                [401, 403, 403, 403, 403, 404, 403]),
    ("DELETE", "/api/v1/mcp-servers/{id}/oauth",                            [401, 403, 404, 404, 404, 404, 404]),
    ("DELETE", "/api/v1/organizations/{organization_id}/members/{user_id}", [401, 403, 404, 403, 204, 204, 403]),
    ("DELETE", "/api/v1/users/me/oidc-token",                               [401, 403, 204, 204, 204, 204, 204]),
    ("DELETE", "/api/v1/users/me/skills/{name}",                            [401, 403, 404, 404, 404, 404, 204]),
    ("DELETE", "/api/v1/users/me/tokens/{token_id}",                        [401, 403, 404, 404, 404, 404, 204]),
    ("DELETE", "/api/v1/chats/{chat_id}",                                   [401, 403, 404, 404, 404, 404, 204]),
    // Uploads (#14 item 3): the file ids filled in are absent, so a read is a 404 for all;
    // an upload needs `chat:update` and is anyone's own.
    ("GET",    "/api/v1/files/{file_id}",                                   [401, 404, 404, 404, 404, 404, 404]),
    ("GET",    "/api/v1/files/{file_id}/metadata",                          [401, 404, 404, 404, 404, 404, 404]),
    ("POST",   "/api/v1/files",                                             [401, 403, 201, 201, 201, 201, 201]),
    // Models and users' own provider keys (#15 item 3). The walk deletes the provider
    // before it reaches DELETE, so every caller's key is gone by then: 404.
    ("GET",    "/api/v1/models",                                            [401, 200, 200, 200, 200, 200, 200]),
    ("GET",    "/api/v1/users/me/provider-keys",                            [401, 200, 200, 200, 200, 200, 200]),
    ("PUT",    "/api/v1/users/me/provider-keys/{provider}",                 [401, 403, 400, 400, 400, 400, 400]),
    ("DELETE", "/api/v1/users/me/provider-keys/{provider}",                 [401, 403, 404, 404, 404, 404, 404]),
];

/// The value each path parameter takes.
fn fill(path: &str, w: &World) -> String {
    let id_for = |path: &str| -> String {
        if path.starts_with("/api/v1/admin/providers/") {
            w.provider_id.clone()
        } else if path.starts_with("/api/v1/admin/models/") {
            w.model_id.clone()
        } else if path.contains("mcp-servers/") {
            w.mcp_id.clone()
        } else if path.contains("/dead-letters/") {
            "1-0".into()
        } else {
            panic!(
                "no value for `{{id}}` in {path}: add one to fill() in tests/authorization_matrix.rs"
            )
        }
    };
    let mut out = path
        .replace("{chat_id}", &w.chat_a.to_string())
        .replace("{message_id}", &w.message_a)
        .replace("{run_id}", &w.run_a)
        .replace("{file_id}", &w.absent.to_string())
        .replace("{token_id}", &w.spare_token_id)
        .replace("{provider}", &w.provider_id)
        .replace("{name}", SKILL)
        .replace("{queue}", "turns")
        .replace("{organization_id}", &w.org_a.to_string())
        .replace("{user_id}", &w.spare_user.to_string());
    if out.contains("{id}") {
        out = out.replace("{id}", &id_for(path));
    }
    assert!(
        !out.contains('{'),
        "no value for a parameter of {path}: add one to fill() in tests/authorization_matrix.rs"
    );
    out
}

const SKILL: &str = "matrix-skill";
const ALICE_TEXT: &str = "matrix-alice-message-3b7d";
const BOB_TEXT: &str = "matrix-bob-message-8e2f";
const PROVIDER_KEY: &str = "sk-matrix-provider-key-91c2";
const MCP_KEY: &str = "mcp-matrix-key-55e1";
/// The value of the second MCP server's custom header.
const MCP_HEADER_SECRET: &str = "mcp-matrix-header-7a40";
/// member_a's own key for the provider.
const USER_KEY: &str = "sk-user-matrix-6d1f0c9a2b7e4d3f";
/// What member_a's upload holds.
const FILE_TEXT: &str = "matrix upload 3e8b1c5d7f9a";
/// What member_a's skill says.
const SKILL_TEXT: &str = "matrix skill 8c2d4e6f1a3b";

struct World {
    app: TestApp,
    tokens: BTreeMap<&'static str, Option<String>>,
    org_a: Uuid,
    org_b: Uuid,
    chat_a: Uuid,
    chat_b: Uuid,
    message_a: String,
    spare_token_id: String,
    spare_user: Uuid,
    provider_id: String,
    model_id: String,
    mcp_id: String,
    absent: Uuid,
    /// member_a's debug run (of `chat_a`).
    run_a: String,
    /// Text that must not appear in a response, and the callers who may see it.
    secrets: Vec<(String, &'static str, Vec<&'static str>)>,
    /// Credentials: never in a response (they are among `secrets`), nor in a log line.
    credentials: Vec<(String, &'static str)>,
    /// Kept alive for the chats' MCP calls.
    _mcp_servers: [McpTestServer; 2],
}

async fn token_for(app: &TestApp, user: Uuid) -> String {
    let token = generate_token();
    app.services
        .store
        .create_api_token(user, "matrix", &token.sha256, None)
        .await
        .unwrap();
    token.secret
}

async fn build_world(pool: sqlx::PgPool) -> World {
    let app = TestApp::start(pool).await;
    app.lift_rate_limits().await;
    let store = app.services.store.clone();
    let org_a = store.ensure_organization("acme").await.unwrap();
    let org_b = store.ensure_organization("globex").await.unwrap();

    let owner_id = store.ensure_user("root@example.com", true).await.unwrap();
    let admin_id = store.ensure_user("admin@example.com", false).await.unwrap();
    store
        .add_member(org_a, admin_id, &[OrganizationRole::OrganizationAdmin])
        .await
        .unwrap();
    let carol = store.ensure_user("carol@example.com", false).await.unwrap();
    store.add_member(org_a, carol, &[]).await.unwrap();
    let bob = store.ensure_user("bob@example.com", false).await.unwrap();
    store
        .add_member(
            org_b,
            bob,
            &[
                OrganizationRole::AgentsAccess,
                OrganizationRole::OrganizationAdmin,
            ],
        )
        .await
        .unwrap();
    let spare_user = store.ensure_user("spare@example.com", false).await.unwrap();
    store
        .add_member(org_a, spare_user, &[OrganizationRole::AgentsAccess])
        .await
        .unwrap();

    let owner = token_for(&app, owner_id).await;
    let org_admin = token_for(&app, admin_id).await;
    let no_access = token_for(&app, carol).await;
    let member_b = token_for(&app, bob).await;
    let member_a = app.token.clone();

    let (status, scoped) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({"name": "read only", "scopes": ["chat:read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{scoped}");
    assert_eq!(scoped["token"]["scopes"], json!(["chat:read"]));
    let scoped = scoped["secret"].as_str().unwrap().to_owned();
    let (status, spare) = app
        .post("/api/v1/users/me/tokens", json!({"name": "spare"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spare}");
    let spare_token_id = spare["token"]["id"].as_str().unwrap().to_owned();
    let spare_secret = spare["secret"].as_str().unwrap().to_owned();

    // What the owner configures: a provider and a model with a key, MCP servers with an
    // API key and a secret header, debug runs for the site and both chat owners.
    let (status, provider) = app
        .post_as(
            &owner,
            "/api/v1/admin/providers",
            json!({"name": "Matrix", "kind": "openai-compat", "base_url": app.fake.base_url,
                   "api_key": PROVIDER_KEY, "allow_user_api_key": true,
                   "allow_central_api_key_fallback": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let (status, model) = app
        .post_as(
            &owner,
            "/api/v1/admin/models",
            json!({"provider_id": provider["id"], "name": "matrix-model"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    let keyed = McpTestServer::start().await;
    let headed = McpTestServer::start().await;
    let (status, mcp) = app
        .post_as(
            &owner,
            "/api/v1/admin/mcp-servers",
            json!({"slug": "matrix", "display_name": "Matrix", "url": keyed.url,
                   "availability": "default_on", "auth_type": "api_key",
                   "api_key_header": "X-Api-Key", "api_key": MCP_KEY}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mcp}");
    let (status, body) = app
        .post_as(
            &owner,
            "/api/v1/admin/mcp-servers",
            json!({"slug": "matrix-hdr", "display_name": "Matrix headers", "url": headed.url,
                   "availability": "default_on", "auth_type": "custom_headers",
                   "custom_headers": {"x-matrix-secret": MCP_HEADER_SECRET}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.configure_site(&owner, json!({"debug_logging_enabled": true}))
        .await;
    for token in [&member_a, &member_b] {
        let (status, body) = app
            .put_as(
                token,
                "/api/v1/users/me/preferences",
                json!({"debug_logging_enabled": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // member_a's own key for the provider (their chat runs on it, member_b's on the
    // provider's), and an upload of theirs.
    let (status, key) = app
        .put_as(
            &app.token,
            &format!(
                "/api/v1/users/me/provider-keys/{}",
                provider["id"].as_str().unwrap()
            ),
            json!({"api_key": USER_KEY}),
        )
        .await;
    assert!(status.is_success(), "{status}: {key}");
    let upload = app
        .client
        .post(format!("{}/api/v1/files?name=notes.txt", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body(FILE_TEXT)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let file: serde_json::Value = upload.json().await.unwrap();
    let file_a = file["id"].as_str().unwrap().to_owned();

    // member_a's chat (calls a tool of each MCP server, then answers), skill; member_b's
    // chat. Both on the keyed model.
    app.fake.script_for(
        ALICE_TEXT,
        [
            Reply::ToolCalls(vec![
                (
                    "call_m1".into(),
                    "matrix__echo".into(),
                    json!({"text": "one"}),
                ),
                (
                    "call_m2".into(),
                    "matrix-hdr__echo".into(),
                    json!({"text": "two"}),
                ),
            ]),
            Reply::Text("Both servers answered.".into()),
        ],
    );
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": ALICE_TEXT, "title": "chat of A", "model_config_id": model["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat_a: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    let messages = app
        .wait_until_answered(chat_a, 4, Duration::from_secs(20))
        .await;
    let message_a = messages[0]["id"].as_str().unwrap().to_owned();
    let (status, chat) = app
        .post_as(
            &member_b,
            "/api/v1/chats",
            json!({"message": BOB_TEXT, "title": "chat of B", "model_config_id": model["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat_b: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    let (status, skill) = app
        .post(
            "/api/v1/users/me/skills",
            json!({"name": SKILL, "body": format!("# Matrix\n{SKILL_TEXT}\n")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{skill}");
    let run_of = |token: String, chat: Uuid| {
        let app = &app;
        async move {
            eventually(Duration::from_secs(20), "a debug run", || async {
                let (_, list) = app
                    .get_as(&token, &format!("/api/v1/chats/{chat}/debug/runs"))
                    .await;
                let run = &list["runs"][0];
                (run["status"] == "completed").then(|| run["id"].as_str().unwrap().to_owned())
            })
            .await
        }
    };
    let run_a = run_of(member_a.clone(), chat_a).await;
    let run_b = run_of(member_b.clone(), chat_b).await;

    // The secrets were in play: each was sent where it belongs.
    let sent: Vec<Option<String>> = app
        .fake
        .received()
        .into_iter()
        .map(|r| r.authorization)
        .collect();
    for key in [USER_KEY, PROVIDER_KEY] {
        assert!(
            sent.contains(&Some(format!("Bearer {key}"))),
            "the provider never received {key}: {sent:?}"
        );
    }
    assert_eq!(
        keyed.distinct_headers(),
        [BTreeMap::from([(
            "x-api-key".to_owned(),
            MCP_KEY.to_owned()
        )])]
    );
    assert_eq!(
        headed.distinct_headers(),
        [BTreeMap::from([(
            "x-matrix-secret".to_owned(),
            MCP_HEADER_SECRET.to_owned()
        )])]
    );
    assert_eq!(
        (keyed.called(), headed.called()),
        (vec!["echo".to_owned()], vec!["echo".to_owned()])
    );

    let tokens = BTreeMap::from([
        ("anonymous", None),
        ("scoped", Some(scoped.clone())),
        ("member_b", Some(member_b.clone())),
        ("no_access", Some(no_access.clone())),
        ("org_admin", Some(org_admin.clone())),
        ("owner", Some(owner.clone())),
        ("member_a", Some(member_a.clone())),
    ]);
    // Credentials: shown to nobody, logged nowhere.
    let credentials: Vec<(String, &'static str)> = vec![
        (owner, "the owner's token"),
        (org_admin, "the org admin's token"),
        (no_access, "no_access's token"),
        (member_b, "member_b's token"),
        (member_a, "member_a's token"),
        (scoped, "the scoped token"),
        (spare_secret, "member_a's spare token"),
        (PROVIDER_KEY.into(), "the provider key"),
        (USER_KEY.into(), "member_a's own provider key"),
        (MCP_KEY.into(), "the MCP server's key"),
        (MCP_HEADER_SECRET.into(), "the MCP server's secret header"),
        (app.secret_key.clone(), "the key secrets are sealed with"),
    ];
    let mut secrets: Vec<(String, &'static str, Vec<&'static str>)> = credentials
        .iter()
        .map(|(secret, what)| (secret.clone(), *what, Vec::new()))
        .collect();
    secrets.extend([
        (FILE_TEXT.into(), "member_a's file", vec![]),
        (file_a, "member_a's file id", vec!["member_a", "scoped"]),
        (
            SKILL_TEXT.into(),
            "member_a's skill",
            vec!["member_a", "scoped"],
        ),
        (
            ALICE_TEXT.into(),
            "member_a's message",
            vec!["member_a", "scoped"],
        ),
        (BOB_TEXT.into(), "member_b's message", vec!["member_b"]),
        (
            run_a.clone(),
            "member_a's debug run id",
            vec!["member_a", "scoped"],
        ),
        (run_b, "member_b's debug run id", vec!["member_b"]),
        // Usage reports name chats: the site's to the owner, org A's to its admin.
        (
            chat_a.to_string(),
            "member_a's chat id",
            vec!["member_a", "scoped", "owner", "org_admin"],
        ),
        (
            chat_b.to_string(),
            "member_b's chat id",
            vec!["member_b", "owner"],
        ),
    ]);
    World {
        app,
        tokens,
        org_a,
        org_b,
        chat_a,
        chat_b,
        message_a,
        spare_token_id,
        spare_user,
        provider_id: provider["id"].as_str().unwrap().to_owned(),
        model_id: model["id"].as_str().unwrap().to_owned(),
        mcp_id: mcp["id"].as_str().unwrap().to_owned(),
        absent: Uuid::now_v7(),
        run_a,
        secrets,
        credentials,
        _mcp_servers: [keyed, headed],
    }
}

/// Calls `method url` as `token`: the status and the body as text (an event stream is read
/// for a moment: it never ends).
async fn call(w: &World, token: Option<&str>, method: &str, url: &str) -> (u16, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let sends_body = [Method::POST, Method::PUT, Method::PATCH].contains(&method);
    let mut request = w.app.client.request(method, format!("{}{url}", w.app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if sends_body {
        request = request.json(&json!({"matrix_probe_unknown_field": true}));
    }
    let mut response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let streaming = response.headers().get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    });
    let body = if streaming {
        let mut text = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
            text.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&text).into_owned()
    } else {
        response.text().await.unwrap_or_default()
    };
    (status, body)
}

/// Waits until neither chat runs a turn, so the next cell meets the same state whatever the
/// worker's timing.
async fn settle(w: &World) {
    for (chat, owner) in [(w.chat_a, "member_a"), (w.chat_b, "member_b")] {
        let token = w.tokens[owner].clone().unwrap();
        eventually(Duration::from_secs(20), "the chat to settle", || async {
            let (_, chat) = w.app.get_as(&token, &format!("/api/v1/chats/{chat}")).await;
            let status = chat["status"].as_str().unwrap_or("deleted");
            (!["pending", "running"].contains(&status)).then_some(())
        })
        .await;
    }
}

/// Every operation of the document, as `(METHOD, path)`.
async fn documented_routes(app: &TestApp) -> BTreeSet<(String, String)> {
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

fn row_text(method: &str, path: &str, got: &[u16]) -> String {
    let cells: Vec<String> = got.iter().map(|s| format!("{s:>3}")).collect();
    format!(
        "    ({:<9} {:<60} [{}]),",
        format!("\"{method}\","),
        format!("\"{path}\","),
        cells.join(", ")
    )
}

#[sqlx::test]
async fn every_route_answers_every_caller_as_the_matrix_says_and_leaks_nothing(pool: sqlx::PgPool) {
    let logs = captured_logs::capture();
    let w = build_world(pool).await;

    // The debug export of a chat that ran on a keyed provider (with its owner's own key)
    // and called tools of MCP servers with secrets holds the conversation, not the secrets.
    let member_a = w.tokens["member_a"].clone().unwrap();
    let (status, export) = w
        .app
        .get_as(
            &member_a,
            &format!("/api/v1/chats/{}/debug/export", w.chat_a),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert!(export["run_count"].as_u64().unwrap() >= 1, "{export}");
    let export = export.to_string();
    assert!(
        export.contains("matrix__echo") && export.contains("matrix-hdr__echo"),
        "the export records the MCP calls: {export}"
    );
    for (secret, what) in &w.credentials {
        assert!(
            !export.contains(secret.as_str()),
            "the debug export holds {what}"
        );
    }
    let documented = documented_routes(&w.app).await;
    let table: BTreeMap<(String, String), [u16; 7]> = MATRIX
        .iter()
        .map(|(m, p, cells)| ((m.to_string(), p.to_string()), *cells))
        .collect();
    assert_eq!(table.len(), MATRIX.len(), "a route appears twice in MATRIX");

    // Table order first, then routes the table lacks; DELETEs after everything else, and
    // the chat's own DELETE last of all.
    let position = |route: &(String, String)| {
        let index = MATRIX
            .iter()
            .position(|(m, p, _)| *m == route.0 && *p == route.1)
            .unwrap_or(usize::MAX);
        let deletes_chat = route.0 == "DELETE" && route.1 == "/api/v1/chats/{chat_id}";
        (route.0 == "DELETE", deletes_chat, index, route.clone())
    };
    let mut order: Vec<&(String, String)> = documented.iter().collect();
    order.sort_by_key(|r| position(r));

    let store = w.app.services.store.clone();
    let mut wrong = Vec::new();

    // Organization B's administration, mirrored: A's admin is an outsider there (never a
    // 2xx), B's admin (member_b) an insider who sees B's members and no one else.
    for (method, path) in documented
        .iter()
        .filter(|(m, p)| p.contains("{organization_id}") && m != "DELETE")
    {
        let url = fill(path, &w).replace(&w.org_a.to_string(), &w.org_b.to_string());
        let (status, _) = call(&w, w.tokens["org_admin"].as_deref(), method, &url).await;
        if (200..300).contains(&status) {
            wrong.push(format!(
                "A's organization-admin got {status} from {method} {url} (organization B)"
            ));
        }
    }
    let (status, members) = call(
        &w,
        w.tokens["member_b"].as_deref(),
        "GET",
        &format!("/api/v1/organizations/{}/members", w.org_b),
    )
    .await;
    assert_eq!(status, 200, "{members}");
    assert!(
        members.contains("bob@example.com") && !members.contains("admin@example.com"),
        "{members}"
    );

    let mut missing = Vec::new();
    let mut leaks = Vec::new();
    for route in order {
        let (method, path) = route;
        let url = fill(path, &w);
        let mut got = [0u16; 7];
        for (i, caller) in CALLERS.iter().enumerate() {
            if method == "DELETE" {
                // What the member DELETE removes comes back for the next caller.
                store
                    .add_member(w.org_a, w.spare_user, &[OrganizationRole::AgentsAccess])
                    .await
                    .unwrap();
            }
            let (status, body) = call(&w, w.tokens[caller].as_deref(), method, &url).await;
            got[i] = status;
            for (needle, what, allowed) in &w.secrets {
                if !allowed.contains(caller) && body.contains(needle.as_str()) {
                    leaks.push(format!("{method} {path} showed {what} to {caller}"));
                }
            }
            if method != "GET" && (200..300).contains(&status) {
                settle(&w).await;
            }
        }
        match table.get(route) {
            None => missing.push(row_text(method, path, &got)),
            Some(expected) if *expected != got => wrong.push(format!(
                "{}\n        expected {:?}",
                row_text(method, path, &got),
                expected
            )),
            Some(_) => {}
        }
    }
    let stale: Vec<_> = table
        .keys()
        .filter(|route| !documented.contains(*route))
        .collect();

    let mut failures = Vec::new();
    if !missing.is_empty() {
        failures.push(format!(
            "routes missing from MATRIX in tests/authorization_matrix.rs (add a row for each; \
             these are the statuses they answered, check each cell before pasting):\n{}",
            missing.join("\n")
        ));
    }
    if !wrong.is_empty() {
        failures.push(format!(
            "cells that answered differently (callers: {CALLERS:?}):\n{}",
            wrong.join("\n")
        ));
    }
    if !stale.is_empty() {
        failures.push(format!(
            "rows for routes the document no longer has: {stale:?}"
        ));
    }
    if !leaks.is_empty() {
        failures.push(format!("responses that leaked:\n{}", leaks.join("\n")));
    }
    // Everything the API and the workers logged while all that happened, at `debug`.
    let logged = logs.text();
    assert!(
        logs.line_count() > 1000
            && logged.contains("agentq::access")
            && logged.contains("agentq::jobs"),
        "the logs were captured ({} lines)",
        logs.line_count()
    );
    for (secret, what) in &w.credentials {
        for line in logged.lines().filter(|l| l.contains(secret.as_str())) {
            let shown: String = line.chars().take(400).collect();
            failures.push(format!("a log line holds {what}: {shown}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    w.app.stop().await;
}

#[sqlx::test]
async fn the_matrix_names_real_routes_and_real_callers(pool: sqlx::PgPool) {
    // The table's own sanity: every status is one an HTTP client can get, and a caller
    // without a token never gets past a route that needs one.
    let app = TestApp::start_api_only(pool).await;
    let documented = documented_routes(&app).await;
    for (method, path, cells) in MATRIX {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in the document"
        );
        for status in cells {
            assert!(
                StatusCode::from_u16(*status).is_ok() && *status >= 200,
                "{method} {path}: {status} is not a status"
            );
        }
        let public = ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"];
        if !public.contains(path) && !path.ends_with("/oauth/callback") {
            assert_eq!(
                cells[0], 401,
                "{method} {path} must refuse a caller without a token"
            );
        }
    }
    app.stop().await;
}
