//! Users, organizations, roles and token scopes (issue #15, items 1, 2 and 6;
//! ARCHITECTURE.md §11.2): site owners administer users and organizations, organization
//! admins their own organization's members and usage, new users get `agents-access` where
//! the site setting says, a token with scopes does only those things and never more than
//! its user, and a chat references nothing of another organization.

mod support;

use agentq_core::domain::OrganizationRole;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{TestApp, create_owner};
use uuid::Uuid;

/// Makes a token for `user` (the store's path, as `agentq admin tokens create`).
async fn token_for(app: &TestApp, user: Uuid) -> String {
    let token = agentq_core::auth::generate_token();
    app.services
        .store
        .create_api_token(user, "test", &token.sha256, None)
        .await
        .unwrap();
    token.secret
}

fn message(body: &Value) -> String {
    body["message"].as_str().unwrap_or_default().to_owned()
}

fn field(body: &Value) -> String {
    body["validations"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[sqlx::test]
async fn a_scoped_token_does_only_what_its_scopes_say_and_never_more_than_its_user(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let (status, read) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({"name": "reader", "scopes": ["chat:read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{read}");
    let read = read["secret"].as_str().unwrap().to_owned();

    let (status, _) = app.get_as(&read, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post_as(&read, "/api/v1/chats", json!({"message": "hi"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`chat:create`"), "{body}");
    assert!(message(&body).contains("chat:read"), "{body}");

    // A token that may create chats may not delete them.
    let (status, creator) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({"name": "creator", "scopes": ["chat:create", "chat:read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{creator}");
    assert_eq!(
        creator["token"]["scopes"],
        json!(["chat:read", "chat:create"])
    );
    let creator = creator["secret"].as_str().unwrap().to_owned();
    let (status, chat) = app
        .post_as(&creator, "/api/v1/chats", json!({"message": "hi"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat_url = format!("/api/v1/chats/{}", chat["id"].as_str().unwrap());
    // Sending a message is creating too (the scope follows the route's template).
    let (status, body) = app
        .post_as(
            &creator,
            &format!("{chat_url}/messages"),
            json!({"message": "and then"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = app
        .send(reqwest::Method::DELETE, &creator, &chat_url, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`chat:delete`"), "{body}");
    let (status, body) = app
        .patch_as(&creator, &chat_url, json!({"title": "renamed"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`chat:update`"), "{body}");

    // A scoped token cannot mint a stronger one: not an unscoped one, not another scope.
    // Making a token is a change (`chat:update`), which `creator` lacks.
    let (status, body) = app
        .post_as(&creator, "/api/v1/users/me/tokens", json!({"name": "more"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`chat:update`"), "{body}");
    let (status, updater) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({"name": "updater", "scopes": ["chat:update"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{updater}");
    let updater = updater["secret"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post_as(&updater, "/api/v1/users/me/tokens", json!({"name": "more"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app
        .post_as(
            &updater,
            "/api/v1/users/me/tokens",
            json!({"name": "more", "scopes": ["chat:update", "chat:delete"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`chat:delete`"), "{body}");
    let (status, body) = app
        .post_as(
            &updater,
            "/api/v1/users/me/tokens",
            json!({"name": "same", "scopes": ["chat:update"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // `admin` on a member's token opens no administration; on an owner's it does, and a
    // chat scope does not.
    let (status, admin) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({"name": "admin", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{admin}");
    let admin = admin["secret"].as_str().unwrap().to_owned();
    let (status, body) = app.get_as(&admin, "/api/v1/admin/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("site owners"), "{body}");
    let (status, _) = app.get_as(&admin, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let owner = create_owner(&app.services, "root@example.com").await;
    let (status, owner_read) = app
        .post_as(
            &owner,
            "/api/v1/users/me/tokens",
            json!({"name": "reader", "scopes": ["chat:read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner_read}");
    let owner_read = owner_read["secret"].as_str().unwrap().to_owned();
    let (status, body) = app.get_as(&owner_read, "/api/v1/admin/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`admin`"), "{body}");
    let (status, _) = app.get_as(&owner, "/api/v1/admin/users").await;
    assert_eq!(status, StatusCode::OK);

    // Bad scopes are a 400 naming the entry; none at all is not "no limit".
    let (status, body) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({"name": "x", "scopes": ["chat:read", "chat:*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "scopes[1]");
    let (status, body) = app
        .post(
            "/api/v1/users/me/tokens",
            json!({"name": "x", "scopes": []}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "scopes");

    // The list says what each token may do; `null` is everything.
    let (_, list) = app.get("/api/v1/users/me/tokens").await;
    let scopes: Vec<&Value> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["scopes"])
        .collect();
    assert!(scopes.contains(&&json!(["chat:read"])), "{list}");
    assert!(scopes.contains(&&Value::Null), "{list}");
    app.stop().await;
}

#[sqlx::test]
async fn new_users_get_agents_access_in_the_organization_the_setting_names(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let (status, org) = app
        .post_as(
            &owner,
            "/api/v1/admin/organizations",
            json!({"name": "newcomers"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();

    // Off by default: a new user joins nothing.
    let (status, plain) = app
        .post_as(
            &owner,
            "/api/v1/admin/users",
            json!({"email": "a@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(plain["memberships"], json!([]));

    let (status, config) = app
        .put_as(
            &owner,
            "/api/v1/admin/config",
            json!({"auto_grant_agents_access_organization_id": org_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["auto_grant_agents_access_organization_id"], org_id);

    // Through the admin API and through the store path the CLI uses, alike.
    let (status, user) = app
        .post_as(
            &owner,
            "/api/v1/admin/users",
            json!({"email": "b@example.com", "name": "Bea"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["memberships"][0]["organization_id"], org_id);
    assert_eq!(user["memberships"][0]["roles"], json!(["agents-access"]));
    let cli_user = app
        .services
        .store
        .create_user("c@example.com", false)
        .await
        .unwrap()
        .unwrap();
    let token = token_for(&app, cli_user).await;
    let (status, chat) = app
        .post_as(&token, "/api/v1/chats", json!({"message": "hello"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    assert_eq!(chat["organization_id"], org_id);

    // The organization new users join cannot be deleted from under the setting.
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &owner,
            &format!("/api/v1/admin/organizations/{org_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        message(&body).contains("auto_grant_agents_access_organization_id"),
        "{body}"
    );

    // `null` turns it off; an id of no organization is a 400 naming the field.
    let (status, config) = app
        .put_as(
            &owner,
            "/api/v1/admin/config",
            json!({"auto_grant_agents_access_organization_id": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(
        config["auto_grant_agents_access_organization_id"],
        Value::Null
    );
    let (status, body) = app
        .put_as(
            &owner,
            "/api/v1/admin/config",
            json!({"auto_grant_agents_access_organization_id": Uuid::now_v7()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "auto_grant_agents_access_organization_id");
    let (status, later) = app
        .post_as(
            &owner,
            "/api/v1/admin/users",
            json!({"email": "d@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{later}");
    assert_eq!(later["memberships"], json!([]));
    app.stop().await;
}

#[sqlx::test]
async fn site_owners_manage_users_and_organizations(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let owner_id = app.user_id("root@example.com").await;

    // Organizations: create, a taken name, rename, list.
    let (status, org) = app
        .post_as(
            &owner,
            "/api/v1/admin/organizations",
            json!({"name": "initech"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    let org_url = format!(
        "/api/v1/admin/organizations/{}",
        org["id"].as_str().unwrap()
    );
    let (status, body) = app
        .post_as(
            &owner,
            "/api/v1/admin/organizations",
            json!({"name": "acme"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, renamed) = app
        .patch_as(&owner, &org_url, json!({"name": "initrode"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "initrode");
    let (_, list) = app.get_as(&owner, "/api/v1/admin/organizations").await;
    let acme = list["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(acme["members"], 1, "{list}");

    // Users: create, a taken email, site role, suspend and reactivate.
    let (status, user) = app
        .post_as(
            &owner,
            "/api/v1/admin/users",
            json!({"email": "dave@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["site_role"], "member");
    let user_id: Uuid = user["id"].as_str().unwrap().parse().unwrap();
    let user_url = format!("/api/v1/admin/users/{user_id}");
    let (status, _) = app
        .post_as(
            &owner,
            "/api/v1/admin/users",
            json!({"email": "DAVE@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let dave = token_for(&app, user_id).await;
    let (status, _) = app.get_as(&dave, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .patch_as(&owner, &user_url, json!({"status": "suspended"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get_as(&dave, "/api/v1/chats").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("suspended"), "{body}");
    let (status, _) = app
        .patch_as(
            &owner,
            &user_url,
            json!({"status": "active", "site_role": "owner"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get_as(&dave, "/api/v1/admin/users").await;
    assert_eq!(status, StatusCode::OK, "dave is an owner now");
    let (status, detail) = app.get_as(&owner, &user_url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["site_role"], "owner");

    // The last active owner cannot be demoted or suspended.
    let (status, _) = app
        .patch_as(&owner, &user_url, json!({"site_role": "member"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let own_url = format!("/api/v1/admin/users/{owner_id}");
    for change in [
        json!({"site_role": "member"}),
        json!({"status": "suspended"}),
    ] {
        let (status, body) = app.patch_as(&owner, &own_url, change).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(message(&body).contains("last active site owner"), "{body}");
    }

    // Deleting: a non-empty organization says what keeps it; an empty one goes.
    let acme_url = format!(
        "/api/v1/admin/organizations/{}",
        acme["id"].as_str().unwrap()
    );
    app.create_chat("keeps acme").await;
    let (status, body) = app
        .send(reqwest::Method::DELETE, &owner, &acme_url, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("1 members"), "{body}");
    assert!(message(&body).contains("1 chats"), "{body}");
    let (status, _) = app
        .send(reqwest::Method::DELETE, &owner, &org_url, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .send(reqwest::Method::DELETE, &owner, &org_url, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // None of it is a member's to do.
    let (status, _) = app.get("/api/v1/admin/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .post("/api/v1/admin/organizations", json!({"name": "mine"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[sqlx::test]
async fn organization_admins_manage_their_own_organization_and_nothing_else(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    let acme = store.ensure_organization("acme").await.unwrap();
    let globex = store.ensure_organization("globex").await.unwrap();
    let admin_id = store.ensure_user("admin@example.com", false).await.unwrap();
    store
        .add_member(acme, admin_id, &[OrganizationRole::OrganizationAdmin])
        .await
        .unwrap();
    let admin = token_for(&app, admin_id).await;
    let erin_id = store.ensure_user("erin@example.com", false).await.unwrap();
    let erin = token_for(&app, erin_id).await;
    let bob_id = store.ensure_user("bob@example.com", false).await.unwrap();
    store
        .add_member(globex, bob_id, &[OrganizationRole::AgentsAccess])
        .await
        .unwrap();
    let bob = token_for(&app, bob_id).await;
    let members = format!("/api/v1/organizations/{acme}/members");

    // Erin joins acme without a role: she can create no chat there, and the 403 says why.
    let (status, added) = app
        .post_as(
            &admin,
            &members,
            json!({"email": "erin@example.com", "roles": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let (status, body) = app
        .post_as(
            &erin,
            "/api/v1/chats",
            json!({"message": "hi", "organization_id": acme}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`agents-access`"), "{body}");
    let (status, again) = app
        .post_as(
            &admin,
            &members,
            json!({"email": "erin@example.com", "roles": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // The admin grants it; then she can.
    let erin_url = format!("{members}/{erin_id}");
    let (status, set) = app
        .put_as(&admin, &erin_url, json!({"roles": ["agents-access"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["roles"], json!(["agents-access"]));
    let (status, chat) = app
        .post_as(&erin, "/api/v1/chats", json!({"message": "hi"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");

    // No site roles here, and no unknown roles.
    let (status, body) = app
        .put_as(&admin, &erin_url, json!({"roles": ["owner"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "roles[0]");

    // The members list, as the admin sees it.
    let (status, list) = app.get_as(&admin, &members).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let emails: Vec<&str> = list["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        ["admin@example.com", "alice@example.com", "erin@example.com"]
    );

    // Usage of acme's chats only: bob's chat in globex is not in it.
    let (status, bobs) = app
        .post_as(&bob, "/api/v1/chats", json!({"message": "bob's"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bobs}");
    let (status, usage) = app
        .get_as(&admin, &format!("/api/v1/organizations/{acme}/usage"))
        .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert!(!usage.to_string().contains(bobs["id"].as_str().unwrap()));

    // Not another organization's admin (404: not in it), not a plain member's (403).
    let (status, body) = app
        .get_as(&admin, &format!("/api/v1/organizations/{globex}/members"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.get_as(&erin, &members).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`organization-admin`"), "{body}");
    let (status, _) = app
        .put_as(
            &admin,
            &format!("/api/v1/organizations/{globex}/members/{admin_id}"),
            json!({"roles": ["agents-access"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Removing her stops her work in acme's chats at once.
    let (status, _) = app
        .send(reqwest::Method::DELETE, &admin, &erin_url, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .post_as(
            &erin,
            &format!("/api/v1/chats/{}/messages", chat["id"].as_str().unwrap()),
            json!({"message": "more"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app
        .send(reqwest::Method::DELETE, &admin, &erin_url, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A site owner administers any organization.
    let owner = create_owner(&app.services, "root@example.com").await;
    let (status, _) = app
        .get_as(&owner, &format!("/api/v1/organizations/{globex}/members"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .get_as(
            &owner,
            &format!("/api/v1/organizations/{}/members", Uuid::now_v7()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Anyone sees their own memberships.
    let (status, mine) = app.get_as(&bob, "/api/v1/users/me/organizations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["memberships"][0]["organization_name"], "globex");
    assert_eq!(mine["memberships"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn a_chat_goes_in_an_organization_of_its_owner_and_uses_nothing_of_another(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    let owner = create_owner(&app.services, "root@example.com").await;
    let acme = store.ensure_organization("acme").await.unwrap();
    let globex = store.ensure_organization("globex").await.unwrap();

    // An organization the caller is not in may as well not exist: 400 naming the field.
    for id in [globex, Uuid::now_v7()] {
        let (status, body) = app
            .post(
                "/api/v1/chats",
                json!({"message": "hi", "organization_id": id}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(field(&body), "organization_id");
    }

    // MCP servers: a site-wide one, one of acme's, one of globex's (forced on there).
    let server = |slug: &str, org: Option<Uuid>, availability: &str| {
        json!({"slug": slug, "display_name": slug, "url": format!("https://mcp.example.com/{slug}"),
               "availability": availability, "organization_id": org})
    };
    let mut ids = Vec::new();
    for body in [
        server("site", None, "default_off"),
        server("acme-tools", Some(acme), "default_off"),
        server("globex-tools", Some(globex), "force_on"),
    ] {
        let (status, created) = app.post_as(&owner, "/api/v1/admin/mcp-servers", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (_, listed) = app.get("/api/v1/mcp-servers").await;
    let slugs: Vec<&str> = listed["mcp_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(
        slugs,
        ["acme-tools", "site"],
        "globex's server is not listed"
    );

    let (status, body) = app
        .post(
            "/api/v1/chats",
            json!({"message": "hi", "mcp_server_ids": [ids[0], ids[2]]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "mcp_server_ids");
    assert!(body.to_string().contains("another organization"), "{body}");
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": "hi", "mcp_server_ids": [ids[0], ids[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat_id: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(chat["organization_id"], acme.to_string());

    // globex's `force_on` server does not reach acme's chat; a message naming it is refused.
    let effective: Vec<String> = store
        .effective_mcp_servers(chat_id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.slug)
        .collect();
    assert_eq!(effective, ["acme-tools", "site"]);
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat_id}/messages"),
            json!({"message": "more", "mcp_server_ids": [ids[2]]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "mcp_server_ids");

    // A server of an organization nobody names is a 400 naming the field.
    let (status, body) = app
        .post_as(
            &owner,
            "/api/v1/admin/mcp-servers",
            server("nowhere", Some(Uuid::now_v7()), "default_off"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "organization_id");
    app.stop().await;
}
