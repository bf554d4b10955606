//! Per-user tokens for MCP servers (issue #12, item 4): a user connects to an `oauth2`
//! server through the authorization-code flow with PKCE against a real (fake) authorization
//! server on 127.0.0.1, and the worker's `user_token` then hands the user's token to the
//! real rmcp server as `Authorization: Bearer`; an expired token is refreshed once, however
//! many workers ask at the same moment, and the rotated pair is saved; replayed and forged
//! states are 400s; nobody ever gets another user's token; `user_oidc` servers get the
//! user's stored OIDC token, refreshed at the configured OIDC client.

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use agentq_core::store::{McpServerRecord, UserTokenKey};
use agentq_worker::tools::mcp::{McpAuth, McpClient, McpError, McpLimits, user_token};
use axum::{
    Form, Json,
    extract::{Query, State},
    http::StatusCode as AxumStatus,
    response::{IntoResponse, Redirect, Response},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner, create_user},
    eventually,
    fake_openai::Reply,
    mcp_server::McpTestServer,
};
use uuid::Uuid;

const PUBLIC_BASE: &str = "https://agents.example.com";
const CALLBACK: &str = "/api/v1/mcp-servers/oauth/callback";

// ---------------------------------------------------------------------------------------
// A fake OAuth 2.0 authorization server: checks the client, the code, the redirect URI and
// the PKCE verifier; issues numbered tokens; rotates refresh tokens (each works once).

#[derive(Default)]
struct AuthState {
    /// Accepted clients: id -> secret.
    clients: HashMap<String, String>,
    /// Outstanding codes: code -> (client id, redirect URI, PKCE challenge).
    codes: HashMap<String, (String, String, String)>,
    /// Refresh tokens that still work.
    refresh_tokens: HashSet<String>,
    /// Seconds the next access tokens live.
    expires_in: i64,
    /// Tokens issued so far (numbers the next ones).
    issued: usize,
    /// Refresh grants answered.
    refreshes: usize,
    /// Authorization requests seen, as query maps.
    authorize_requests: Vec<HashMap<String, String>>,
    /// Answer every token request with a 503 HTML page (the issuer is having a bad time).
    down: bool,
}

#[derive(Clone)]
struct FakeAuth {
    base: String,
    state: Arc<Mutex<AuthState>>,
}

impl FakeAuth {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(AuthState {
            expires_in: 3600,
            ..AuthState::default()
        }));
        state
            .lock()
            .unwrap()
            .clients
            .insert("agentq-client".into(), "client-secret-1".into());
        state
            .lock()
            .unwrap()
            .clients
            .insert("oidc-client".into(), "oidc-secret-1".into());
        let app = axum::Router::new()
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    fn set_expires_in(&self, secs: i64) {
        self.state.lock().unwrap().expires_in = secs;
    }

    fn refreshes(&self) -> usize {
        self.state.lock().unwrap().refreshes
    }

    fn accept_refresh_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .insert(token.into());
    }

    fn revoke_all_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
}

fn oauth_error(error: &str) -> Response {
    (
        AxumStatus::BAD_REQUEST,
        Json(json!({"error": error, "error_description": format!("the fake says {error}")})),
    )
        .into_response()
}

/// `GET /authorize`: the user "consents" at once; redirects to the redirect URI with a
/// code and the state.
async fn authorize(
    State(state): State<Arc<Mutex<AuthState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().unwrap();
    s.authorize_requests.push(q.clone());
    let client = q.get("client_id").cloned().unwrap_or_default();
    if q.get("response_type").map(String::as_str) != Some("code")
        || !s.clients.contains_key(&client)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return oauth_error("invalid_request");
    }
    s.issued += 1;
    let code = format!("code-{}", s.issued);
    let redirect_uri = q["redirect_uri"].clone();
    s.codes.insert(
        code.clone(),
        (client, redirect_uri.clone(), q["code_challenge"].clone()),
    );
    let mut to = url::Url::parse(&redirect_uri).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &q["state"]);
    Redirect::to(to.as_str()).into_response()
}

/// `POST /token`: `authorization_code` (code, redirect URI, verifier and client checked)
/// and `refresh_token` (each refresh token works once).
async fn token(
    State(state): State<Arc<Mutex<AuthState>>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let refreshing = f.get("grant_type").map(String::as_str) == Some("refresh_token");
    if refreshing {
        // Slow enough that two workers refreshing at once overlap.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut s = state.lock().unwrap();
    if s.down {
        return (
            AxumStatus::SERVICE_UNAVAILABLE,
            "<html>try again later</html>",
        )
            .into_response();
    }
    let client = f.get("client_id").cloned().unwrap_or_default();
    if s.clients.get(&client) != f.get("client_secret") {
        return oauth_error("invalid_client");
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((code_client, redirect_uri, challenge)) = s
                .codes
                .remove(f.get("code").map(String::as_str).unwrap_or(""))
            else {
                return oauth_error("invalid_grant");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            if code_client != client
                || f.get("redirect_uri") != Some(&redirect_uri)
                || agentq_core::oauth::pkce_challenge(&verifier) != challenge
            {
                return oauth_error("invalid_grant");
            }
        }
        Some("refresh_token") => {
            let presented = f.get("refresh_token").cloned().unwrap_or_default();
            if !s.refresh_tokens.remove(&presented) {
                return oauth_error("invalid_grant");
            }
            s.refreshes += 1;
        }
        _ => return oauth_error("unsupported_grant_type"),
    }
    s.issued += 1;
    let n = s.issued;
    let refresh = format!("refresh-{n}");
    s.refresh_tokens.insert(refresh.clone());
    Json(json!({
        "access_token": format!("access-{n}"),
        "token_type": "Bearer",
        "expires_in": s.expires_in,
        "refresh_token": refresh,
        "scope": "read write",
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------
// Helpers.

async fn start_app(pool: sqlx::PgPool) -> TestApp {
    TestApp::start_api_only_with(pool, |api| {
        api.public_base_url = Some(PUBLIC_BASE.into());
    })
    .await
}

/// Creates an `oauth2` server for `mcp_url` whose authorization server is `auth`.
async fn create_oauth_server(app: &TestApp, owner: &str, mcp_url: &str, auth: &FakeAuth) -> Uuid {
    let (status, server) = app
        .send(
            Method::POST,
            owner,
            "/api/v1/admin/mcp-servers",
            Some(json!({
                "slug": "calendar", "display_name": "Calendar", "url": mcp_url,
                "auth_type": "oauth2", "availability": "default_on",
                "oauth_client_id": "agentq-client", "oauth_client_secret": "client-secret-1",
                "oauth_authorize_url": format!("{}/authorize", auth.base),
                "oauth_token_url": format!("{}/token", auth.base),
                "oauth_scopes": ["read", "write"],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{server}");
    server["id"].as_str().unwrap().parse().unwrap()
}

async fn record(app: &TestApp, id: Uuid) -> McpServerRecord {
    app.services.store.get_mcp_server(id).await.unwrap()
}

/// What the user's browser does: starts the flow as `token`, follows the authorization
/// URL, and lands on the callback (addressed at the test's API instead of the public
/// base URL). Returns the callback URL it was sent to and the callback's answer.
async fn connect(app: &TestApp, token: &str, server: Uuid) -> (String, (StatusCode, Value)) {
    let (status, started) = app
        .post_as(
            token,
            &format!("/api/v1/mcp-servers/{server}/oauth/start"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at_issuer = browser
        .get(started["authorize_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(at_issuer.status(), StatusCode::SEE_OTHER);
    let location = at_issuer.headers()["location"].to_str().unwrap().to_owned();
    let local = location.replace(PUBLIC_BASE, &app.base);
    (local.clone(), callback(&local).await)
}

/// A GET without an agentq token, as a browser makes it.
async fn callback(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn connected(listing: &Value, server: Uuid) -> Value {
    listing["mcp_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == server.to_string())
        .unwrap()["connected"]
        .clone()
}

fn limits() -> McpLimits {
    McpLimits {
        connect_timeout: Duration::from_secs(5),
        list_timeout: Duration::from_secs(15),
        ..McpLimits::default()
    }
}

/// Lists the server's tools with `token` (fresh client: no cache) and returns the
/// Authorization headers `mcp` saw for it (`None`: none sent).
async fn authorization_seen(
    server: &McpServerRecord,
    token: Option<&str>,
    mcp: &McpTestServer,
) -> Vec<Option<String>> {
    mcp.headers.lock().unwrap().clear();
    let auth = McpAuth::for_server(server, None, token).unwrap();
    let tools = McpClient::new(limits())
        .list_tools(server, &auth)
        .await
        .unwrap();
    assert_eq!(tools[0].name, "echo");
    let mut seen: Vec<Option<String>> = mcp
        .headers
        .lock()
        .unwrap()
        .iter()
        .map(|headers| headers.get("authorization").cloned())
        .collect();
    seen.dedup();
    seen
}

// ---------------------------------------------------------------------------------------

#[sqlx::test]
async fn a_user_connects_and_the_server_sees_exactly_their_token(pool: sqlx::PgPool) {
    let app = start_app(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let auth = FakeAuth::start().await;
    let mcp = McpTestServer::start().await;
    let mcp_url = mcp.url.clone();
    let server_id = create_oauth_server(&app, &owner, &mcp_url, &auth).await;
    let secrets = app.services.secrets.clone();
    let (alice_id, bob_id) = (
        app.user_id("alice@example.com").await,
        app.user_id("bob@example.com").await,
    );

    let (_, listing) = app.get_as(&app.token, "/api/v1/mcp-servers").await;
    assert_eq!(connected(&listing, server_id), false, "{listing}");

    let (callback_url, (status, body)) = connect(&app, &app.token, server_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connected"], true);
    assert_eq!(body["slug"], "calendar");
    // What the authorization server was asked: PKCE S256, the configured scopes, and a
    // redirect URI under the public base URL.
    let asked = auth.state.lock().unwrap().authorize_requests[0].clone();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["code_challenge"].len(), 43);
    assert_eq!(asked["scope"], "read write");
    assert_eq!(asked["redirect_uri"], format!("{PUBLIC_BASE}{CALLBACK}"));

    let (_, listing) = app.get_as(&app.token, "/api/v1/mcp-servers").await;
    assert_eq!(connected(&listing, server_id), true, "{listing}");
    assert!(
        !listing.to_string().contains("access-"),
        "no token in {listing}"
    );
    let (_, bobs) = app.get_as(&bob, "/api/v1/mcp-servers").await;
    assert_eq!(connected(&bobs, server_id), false, "{bobs}");

    // A state works once; a made-up one never.
    let replayed = callback(&callback_url).await;
    assert_eq!(replayed.0, StatusCode::BAD_REQUEST, "{}", replayed.1);
    assert_eq!(replayed.1["validations"][0]["field"], "state");
    let forged = callback(&format!(
        "{}{CALLBACK}?code=code-1&state=made-up-state",
        app.base
    ))
    .await;
    assert_eq!(forged.0, StatusCode::BAD_REQUEST, "{}", forged.1);
    assert_eq!(forged.1["validations"][0]["field"], "state");

    // Stored sealed: the database holds no token in the clear.
    let sealed: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT access_token_ciphertext || coalesce(refresh_token_ciphertext, '') FROM mcp_oauth_tokens",
    )
    .fetch_all(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(sealed.len(), 1);
    assert!(!String::from_utf8_lossy(&sealed[0]).contains("access-2"));
    assert!(!String::from_utf8_lossy(&sealed[0]).contains("refresh-2"));

    // The worker's view: alice's token for alice, nothing for bob.
    let server = record(&app, server_id).await;
    let alices = user_token(&app.services.store, secrets.as_ref(), &server, alice_id)
        .await
        .unwrap();
    assert_eq!(alices.as_deref(), Some("access-2"));
    assert_eq!(auth.refreshes(), 0, "a fresh token is not refreshed");
    let bobs_token = user_token(&app.services.store, secrets.as_ref(), &server, bob_id)
        .await
        .unwrap();
    assert_eq!(bobs_token, None, "bob never connected, so he gets no token");

    // What the MCP server receives.
    assert_eq!(
        authorization_seen(&server, alices.as_deref(), &mcp).await,
        [Some("Bearer access-2".to_owned())]
    );
    assert_eq!(
        authorization_seen(&server, bobs_token.as_deref(), &mcp).await,
        [None],
        "no token, no Authorization header"
    );

    // Disconnecting forgets the tokens.
    let (status, _) = app
        .send(
            Method::DELETE,
            &app.token,
            &format!("/api/v1/mcp-servers/{server_id}/oauth"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listing) = app.get_as(&app.token, "/api/v1/mcp-servers").await;
    assert_eq!(connected(&listing, server_id), false, "{listing}");
    assert_eq!(
        user_token(&app.services.store, secrets.as_ref(), &server, alice_id)
            .await
            .unwrap(),
        None
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_expired_token_is_refreshed_once_even_by_two_workers_and_the_rotated_pair_is_saved(
    pool: sqlx::PgPool,
) {
    let app = start_app(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let auth = FakeAuth::start().await;
    let mcp = McpTestServer::start().await;
    let mcp_url = mcp.url.clone();
    let server_id = create_oauth_server(&app, &owner, &mcp_url, &auth).await;
    let secrets = app.services.secrets.clone().unwrap();
    let alice_id = app.user_id("alice@example.com").await;
    let store = &app.services.store;

    // A token that lives 1 s is within the refresh margin from the start.
    auth.set_expires_in(1);
    let (_, (status, body)) = connect(&app, &app.token, server_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    auth.set_expires_in(3600);
    let server = record(&app, server_id).await;

    // Two workers find it expired at the same moment: one refresh, both get the new token.
    let (a, b) = tokio::join!(
        user_token(store, Some(&secrets), &server, alice_id),
        user_token(store, Some(&secrets), &server, alice_id),
    );
    assert_eq!(a.unwrap().as_deref(), Some("access-3"));
    assert_eq!(b.unwrap().as_deref(), Some("access-3"));
    assert_eq!(auth.refreshes(), 1, "the refresh token was spent once");
    let stored = store
        .user_token(UserTokenKey::McpServer {
            server_id,
            user_id: alice_id,
        })
        .await
        .unwrap()
        .unwrap();
    let refresh = secrets
        .open(stored.refresh_token_ciphertext.as_deref().unwrap())
        .unwrap();
    assert_eq!(refresh, "refresh-3", "the rotated refresh token is saved");
    assert!(stored.expires_at.unwrap() > chrono::Utc::now() + chrono::Duration::minutes(50));

    // The saved token is used as is from now on, and the server sees it.
    let again = user_token(store, Some(&secrets), &server, alice_id)
        .await
        .unwrap();
    assert_eq!(again.as_deref(), Some("access-3"));
    assert_eq!(auth.refreshes(), 1);
    assert_eq!(
        authorization_seen(&server, again.as_deref(), &mcp).await,
        [Some("Bearer access-3".to_owned())]
    );

    // An issuer that is down for a moment (503, no OAuth error) kills nothing: the call
    // fails as worth retrying, the tokens stay, and the next refresh works.
    auth.set_expires_in(1);
    let (_, (status, body)) = connect(&app, &app.token, server_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    auth.set_down(true);
    let hiccup = user_token(store, Some(&secrets), &server, alice_id).await;
    assert!(
        matches!(&hiccup, Err(McpError::Unreachable { detail, .. }) if detail.contains("503")),
        "{hiccup:?}"
    );
    let (_, listing) = app.get_as(&app.token, "/api/v1/mcp-servers").await;
    assert_eq!(connected(&listing, server_id), true, "{listing}");
    auth.set_down(false);
    let refreshes = auth.refreshes();
    assert!(
        user_token(store, Some(&secrets), &server, alice_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(auth.refreshes(), refreshes + 1);

    // When the issuer refuses the refresh (grant revoked), the call is a clear error and
    // the dead tokens are forgotten, so the user sees they must connect again.
    auth.set_expires_in(1);
    let (_, (status, body)) = connect(&app, &app.token, server_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    auth.revoke_all_refresh_tokens();
    let refused = user_token(store, Some(&secrets), &server, alice_id).await;
    assert!(
        matches!(&refused, Err(McpError::Unauthorized { detail, .. }) if detail.contains("invalid_grant") && detail.contains("connect again")),
        "{refused:?}"
    );
    let (_, listing) = app.get_as(&app.token, "/api/v1/mcp-servers").await;
    assert_eq!(connected(&listing, server_id), false, "{listing}");
    app.stop().await;
}

#[sqlx::test]
async fn a_refused_or_misdirected_connection_is_a_clear_4xx(pool: sqlx::PgPool) {
    let app = start_app(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let auth = FakeAuth::start().await;
    let mcp = McpTestServer::start().await;
    let mcp_url = mcp.url.clone();
    let server_id = create_oauth_server(&app, &owner, &mcp_url, &auth).await;

    // The user declined at the authorization server.
    let (status, started) = app
        .post_as(
            &app.token,
            &format!("/api/v1/mcp-servers/{server_id}/oauth/start"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let state = url::Url::parse(started["authorize_url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let (status, body) = callback(&format!(
        "{}{CALLBACK}?error=access_denied&error_description=no%20thanks&state={state}",
        app.base
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "error");
    assert!(
        body["message"].as_str().unwrap().contains("access_denied"),
        "{body}"
    );

    // A flow left too long: its state has expired (aged here instead of waiting 10 min).
    let (status, started) = app
        .post_as(
            &app.token,
            &format!("/api/v1/mcp-servers/{server_id}/oauth/start"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    sqlx::query("UPDATE mcp_oauth_states SET expires_at = now() - interval '1 second'")
        .execute(app.services.store.pool())
        .await
        .unwrap();
    let location = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(started["authorize_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .replace(PUBLIC_BASE, &app.base);
    let (status, body) = callback(&location).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "state");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // The token endpoint refuses the client (a wrong secret configured).
    let (status, body) = app
        .send(
            Method::PATCH,
            &owner,
            &format!("/api/v1/admin/mcp-servers/{server_id}"),
            Some(json!({"oauth_client_secret": "wrong-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, (status, body)) = connect(&app, &app.token, server_id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "code");
    assert!(
        body["message"].as_str().unwrap().contains("invalid_client"),
        "{body}"
    );
    assert!(!body.to_string().contains("wrong-secret"), "{body}");

    // No state at all; a server that does not use oauth2; an unknown server.
    let (status, body) = callback(&format!("{}{CALLBACK}?code=x", app.base)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "state");
    let (status, plain) = app
        .send(
            Method::POST,
            &owner,
            "/api/v1/admin/mcp-servers",
            Some(json!({"slug": "plain", "display_name": "Plain", "url": mcp_url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    let (status, body) = app
        .post_as(
            &app.token,
            &format!(
                "/api/v1/mcp-servers/{}/oauth/start",
                plain["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app
        .post_as(
            &app.token,
            &format!("/api/v1/mcp-servers/{}/oauth/start", Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    app.stop().await;
}

#[sqlx::test]
async fn without_a_public_base_url_there_is_nothing_to_redirect_to(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let auth = FakeAuth::start().await;
    let server_id = create_oauth_server(&app, &owner, "http://127.0.0.1:9/mcp", &auth).await;
    let (status, body) = app
        .post_as(
            &app.token,
            &format!("/api/v1/mcp-servers/{server_id}/oauth/start"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("AGENTQ_PUBLIC_BASE_URL"),
        "{body}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn user_oidc_servers_get_the_owners_stored_token_refreshed_at_the_oidc_client(
    pool: sqlx::PgPool,
) {
    let app = start_app(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    create_user(&app.services, "bob@example.com", "acme").await;
    let auth = FakeAuth::start().await;
    let mcp = McpTestServer::start().await;
    let mcp_url = mcp.url.clone();
    let secrets = app.services.secrets.clone().unwrap();
    let store = &app.services.store;
    let (alice_id, bob_id) = (
        app.user_id("alice@example.com").await,
        app.user_id("bob@example.com").await,
    );

    let (status, client) = app
        .put_as(
            &owner,
            "/api/v1/admin/oidc-client",
            json!({"token_url": format!("{}/token", auth.base), "client_id": "oidc-client",
                   "client_secret": "oidc-secret-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{client}");
    assert_eq!(client["has_client_secret"], true);
    assert!(!client.to_string().contains("oidc-secret-1"), "{client}");
    let (status, _) = app
        .put_as(&app.token, "/api/v1/admin/oidc-client", json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only site owners set the client"
    );

    let (status, created) = app
        .send(
            Method::POST,
            &owner,
            "/api/v1/admin/mcp-servers",
            Some(
                json!({"slug": "wiki", "display_name": "Wiki", "url": mcp_url,
                        "auth_type": "user_oidc"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let server = record(&app, created["id"].as_str().unwrap().parse().unwrap()).await;

    // Alice stores her token (the login front end would); it never comes back.
    let (status, stored) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/oidc-token",
            json!({"access_token": "oidc-access-0", "refresh_token": "oidc-refresh-0",
                   "expires_in": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["has_token"], true);
    assert_eq!(stored["has_refresh_token"], true);
    assert!(!stored.to_string().contains("oidc-access-0"), "{stored}");
    let (status, body) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/oidc-token",
            json!({"access_token": "has space"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "access_token");

    let token = user_token(store, Some(&secrets), &server, alice_id)
        .await
        .unwrap();
    assert_eq!(token.as_deref(), Some("oidc-access-0"));
    assert_eq!(
        authorization_seen(&server, token.as_deref(), &mcp).await,
        [Some("Bearer oidc-access-0".to_owned())]
    );
    assert_eq!(
        user_token(store, Some(&secrets), &server, bob_id)
            .await
            .unwrap(),
        None,
        "bob stored none and never gets alice's"
    );

    // An expiring token is refreshed at the OIDC client's token endpoint and saved.
    auth.accept_refresh_token("oidc-refresh-0");
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/oidc-token",
            json!({"access_token": "oidc-access-0", "refresh_token": "oidc-refresh-0",
                   "expires_in": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let refreshed = user_token(store, Some(&secrets), &server, alice_id)
        .await
        .unwrap();
    assert_eq!(refreshed.as_deref(), Some("access-1"));
    assert_eq!(auth.refreshes(), 1);
    let (_, status_now) = app.get_as(&app.token, "/api/v1/users/me/oidc-token").await;
    assert_eq!(status_now["has_token"], true);
    assert!(
        status_now["expires_at"].as_str().unwrap() > chrono::Utc::now().to_rfc3339().as_str(),
        "{status_now}"
    );
    assert_eq!(
        user_token(store, Some(&secrets), &server, alice_id)
            .await
            .unwrap()
            .as_deref(),
        Some("access-1"),
        "the new token is saved and reused"
    );
    assert_eq!(auth.refreshes(), 1);

    // Deleting it: calls go without an Authorization header.
    let (status, _) = app
        .send(
            Method::DELETE,
            &app.token,
            "/api/v1/users/me/oidc-token",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let none = user_token(store, Some(&secrets), &server, alice_id)
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(authorization_seen(&server, None, &mcp).await, [None]);
    app.stop().await;
}

#[sqlx::test]
async fn a_chat_calls_an_oauth2_server_with_its_owners_token_and_never_anothers(
    pool: sqlx::PgPool,
) {
    let mut app = start_app(pool).await;
    app.start_worker().await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let auth = FakeAuth::start().await;
    let mcp = McpTestServer::start().await;
    let server_id = create_oauth_server(&app, &owner, &mcp.url, &auth).await;
    // Alice connects; bob never does.
    let (_, (status, body)) = connect(&app, &app.token, server_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let echo = |id: &str| {
        Reply::ToolCalls(vec![(
            id.into(),
            "calendar__echo".into(),
            json!({"text": "hello"}),
        )])
    };
    app.fake
        .script_for("ALICE", [echo("a1"), Reply::Text("Alice done.".into())]);
    app.fake
        .script_for("BOB", [echo("b1"), Reply::Text("Bob done.".into())]);

    // Alice's chat lists and calls the server with her token, and gets the tool's answer.
    let chat = app.create_chat("ALICE: echo hello").await;
    let messages = app
        .wait_until_answered(chat, 4, Duration::from_secs(20))
        .await;
    assert_eq!(messages[2]["content"][0]["output"], "hello", "{messages:?}");
    let alices = user_token(
        &app.services.store,
        app.services.secrets.as_ref(),
        &record(&app, server_id).await,
        app.user_id("alice@example.com").await,
    )
    .await
    .unwrap()
    .unwrap();
    let seen = mcp.distinct_headers();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["authorization"], format!("Bearer {alices}"));
    assert_eq!(mcp.called(), ["echo"]);

    // Bob's chat reaches the same server with no Authorization header at all.
    mcp.headers.lock().unwrap().clear();
    let (status, created) = app
        .post_as(&bob, "/api/v1/chats", json!({"message": "BOB: echo hello"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bobs_chat = created["id"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(20),
        "bob's chat to be answered",
        || async {
            let (_, body) = app
                .get_as(&bob, &format!("/api/v1/chats/{bobs_chat}/messages"))
                .await;
            (body["messages"].as_array().map_or(0, Vec::len) >= 4).then_some(())
        },
    )
    .await;
    let seen = mcp.distinct_headers();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|headers| !headers.contains_key("authorization")),
        "{seen:?}"
    );
    assert_eq!(mcp.called(), ["echo", "echo"]);
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_starts_all_succeed_and_a_suspended_users_flow_is_refused(pool: sqlx::PgPool) {
    let app = start_app(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let auth = FakeAuth::start().await;
    let mcp = McpTestServer::start().await;
    let mcp_url = mcp.url.clone();
    let server_id = create_oauth_server(&app, &owner, &mcp_url, &auth).await;
    let start = format!("/api/v1/mcp-servers/{server_id}/oauth/start");

    // Many starts of one user at once: each answers, none deadlocks into a 500.
    let answers =
        futures::future::join_all((0..40).map(|_| app.post_as(&app.token, &start, json!({}))))
            .await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }

    // A user suspended between starting and the callback does not get connected.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (status, started) = app.post_as(&app.token, &start, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let at_issuer = browser
        .get(started["authorize_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let location = at_issuer.headers()["location"].to_str().unwrap().to_owned();
    let alice = app.user_id("alice@example.com").await;
    app.services
        .store
        .set_user_status(alice, agentq_core::domain::UserStatus::Suspended)
        .await
        .unwrap();
    let (status, body) = callback(&location.replace(PUBLIC_BASE, &app.base)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let stored = app
        .services
        .store
        .user_token(UserTokenKey::McpServer {
            server_id,
            user_id: alice,
        })
        .await
        .unwrap();
    assert!(stored.is_none(), "no token stored for a suspended user");
    app.stop().await;
}
