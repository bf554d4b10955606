//! Finding and organizing chats (issue #14 items 1 and 4): `GET /api/v1/chats?q=...` finds
//! exactly the chats each search term names and ANDs terms; a malformed query is a 400
//! naming the term and where it starts; pinned chats come first in their positions; pages
//! through a thousand chats of one timestamp return each once; labels are bounded and
//! replaced; unknown query parameters are 400s; `DELETE` removes exactly a chat's family.

mod support;

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{DiffStatus, OrganizationRole, PrState},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_user},
    eventually,
    fake_openai::{LAST_RESULT_CHAT_ID, Reply},
};
use uuid::Uuid;

fn field(body: &Value) -> &str {
    body["validations"][0]["field"].as_str().unwrap_or_default()
}

fn ids_of(page: &Value) -> Vec<Uuid> {
    page["chats"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// `/api/v1/chats?q=<q>&limit=100`, with `q` URL-encoded.
fn list_url(q: &str) -> String {
    let mut url = url::Url::parse("http://x/api/v1/chats?limit=100").unwrap();
    url.query_pairs_mut().append_pair("q", q);
    format!("{}?{}", url.path(), url.query().unwrap())
}

/// Every chat the caller's search `q` finds, following `next_after_id` with pages of
/// `limit`; asserts each page's cursor is its last chat.
async fn search_all(app: &TestApp, token: &str, q: &str, limit: usize) -> Vec<Uuid> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let mut url = url::Url::parse("http://x/api/v1/chats").unwrap();
        url.query_pairs_mut()
            .append_pair("q", q)
            .append_pair("limit", &limit.to_string());
        let (status, page) = app
            .get_as(
                token,
                &format!("{}?{}{after}", url.path(), url.query().unwrap()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{q}: {page}");
        let ids = ids_of(&page);
        assert!(ids.len() <= limit);
        all.extend(&ids);
        match page["next_after_id"].as_str() {
            Some(next) => {
                assert_eq!(Some(next.parse().unwrap()), ids.last().copied());
                after = format!("&after_id={next}");
            }
            None => return all,
        }
    }
}

/// Creates a chat as the default user with `body` (a JSON object; `message` defaults to the
/// title), leaving it `pending` (no worker runs in these tests).
async fn chat_with(app: &TestApp, body: Value) -> Uuid {
    let mut body = body;
    if body.get("message").is_none() {
        body["message"] = body["title"].clone();
    }
    let (status, chat) = app.post("/api/v1/chats", body).await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    chat["id"].as_str().unwrap().parse().unwrap()
}

async fn interrupt(app: &TestApp, chat: Uuid) {
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/interrupt"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// The list's chat ids and their `pin_order`s.
async fn order(app: &TestApp) -> (Vec<Uuid>, Vec<Value>) {
    let (status, page) = app.get("/api/v1/chats").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let pins = page["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pin_order"].clone())
        .collect();
    (ids_of(&page), pins)
}

/// PATCHes the chat's `pin_order` to `at` (asserts it worked); the chat.
async fn pin(app: &TestApp, chat: Uuid, at: Value) -> Value {
    let (status, body) = patch(app, chat, json!({ "pin_order": at })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn patch(app: &TestApp, chat: Uuid, body: Value) -> (StatusCode, Value) {
    app.patch_as(&app.token, &format!("/api/v1/chats/{chat}"), body)
        .await
}

#[sqlx::test]
async fn each_search_key_finds_exactly_the_chats_it_names(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = &app.services.store;
    let login = chat_with(
        &app,
        json!({"title": "Fix the login bug", "client_type": "ui", "labels": {"team": "infra"}}),
    )
    .await;
    let rollout = chat_with(
        &app,
        json!({"title": "Roll out 100% of api_v2", "labels": {"team": "web", "env": "prod"}}),
    )
    .await;
    let flaky = chat_with(&app, json!({"title": "fix the flaky test"})).await;
    let docs = chat_with(&app, json!({"title": "Docs"})).await;
    let notes = chat_with(&app, json!({"title": "Release notes"})).await;
    let broken = chat_with(&app, json!({"title": "Broken build"})).await;
    // Statuses, through the transitions a worker would make.
    interrupt(&app, login).await;
    interrupt(&app, rollout).await;
    interrupt(&app, flaky).await;
    interrupt(&app, notes).await;
    store
        .acquire_queued_turn(docs, "w1", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let turn = store
        .acquire_queued_turn(broken, "w1", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    store
        .fail_turn(
            turn.id,
            broken,
            "w1",
            &ChatError::new(ChatErrorKind::Generic, "boom"),
        )
        .await
        .unwrap()
        .unwrap();
    let (status, body) = patch(&app, flaky, json!({"archived": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Diff statuses as an integration reports them.
    store
        .seed_diff_status(
            login,
            &DiffStatus {
                git_remote_origin: Some("https://github.com/acme/api.git".into()),
                git_branch: Some("fix-login".into()),
                pr_url: Some("https://github.com/acme/api/pull/12".into()),
                pr_number: Some(12),
                pr_title: Some("Login: fix the redirect".into()),
                pr_state: Some(PrState::Open),
                pr_draft: true,
                ..DiffStatus::default()
            },
        )
        .await
        .unwrap();
    store
        .seed_diff_status(
            rollout,
            &DiffStatus {
                pr_url: Some("https://github.com/Acme/Web/pull/7".into()),
                pr_number: Some(7),
                pr_title: Some("Rollout".into()),
                pr_state: Some(PrState::Merged),
                ..DiffStatus::default()
            },
        )
        .await
        .unwrap();
    store
        .seed_diff_status(
            notes,
            &DiffStatus {
                git_remote_origin: Some("git@github.com:acme/docs.git".into()),
                ..DiffStatus::default()
            },
        )
        .await
        .unwrap();
    store
        .seed_diff_status(
            flaky,
            &DiffStatus {
                pr_number: Some(12),
                pr_state: Some(PrState::Closed),
                ..DiffStatus::default()
            },
        )
        .await
        .unwrap();
    // Someone else's chat matches many terms and is never listed.
    let mallory = create_user(&app.services, "mallory@example.com", "acme").await;
    let (status, theirs) = app
        .post_as(
            &mallory,
            "/api/v1/chats",
            json!({"message": "fix", "title": "Fix the login bug", "client_type": "ui", "labels": {"team": "infra"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    let theirs: Uuid = theirs["id"].as_str().unwrap().parse().unwrap();
    store
        .seed_diff_status(
            theirs,
            &DiffStatus {
                git_remote_origin: Some("https://github.com/acme/api.git".into()),
                pr_number: Some(12),
                pr_title: Some("Login".into()),
                pr_state: Some(PrState::Open),
                pr_draft: true,
                ..DiffStatus::default()
            },
        )
        .await
        .unwrap();

    let names: HashMap<Uuid, &str> = [
        (login, "login"),
        (rollout, "rollout"),
        (flaky, "flaky"),
        (docs, "docs"),
        (notes, "notes"),
        (broken, "broken"),
        (theirs, "theirs"),
    ]
    .into();
    let cases: &[(&str, &[&str])] = &[
        ("", &["login", "rollout", "docs", "notes", "broken"]),
        ("title:fix", &["login"]),
        ("title:FIX archived:any", &["login", "flaky"]),
        (r#"title:"the login""#, &["login"]),
        ("title:100%", &["rollout"]),
        ("title:_", &["rollout"]),
        ("title:%", &["rollout"]),
        ("archived:true", &["flaky"]),
        (
            "archived:false",
            &["login", "rollout", "docs", "notes", "broken"],
        ),
        (
            "archived:any",
            &["login", "rollout", "flaky", "docs", "notes", "broken"],
        ),
        ("archived:true archived:false", &[]),
        ("status:running", &["docs"]),
        (
            "status:waiting,error",
            &["login", "rollout", "notes", "broken"],
        ),
        ("status:error", &["broken"]),
        ("status:pending", &[]),
        ("pr:12", &["login"]),
        ("pr:12 archived:any", &["login", "flaky"]),
        ("pr:7", &["rollout"]),
        ("pr:99", &[]),
        ("repo:acme/api", &["login"]),
        ("repo:ACME/web", &["rollout"]),
        ("repo:github.com", &["login", "rollout", "notes"]),
        ("repo:acme/docs", &["notes"]),
        ("pr_title:LOGIN", &["login"]),
        ("pr_title:rollout", &["rollout"]),
        ("pr_status:draft", &["login"]),
        ("pr_status:open", &[]),
        ("pr_status:merged", &["rollout"]),
        ("pr_status:closed archived:any", &["flaky"]),
        ("pr_status:none", &["docs", "notes", "broken"]),
        ("client_type:ui", &["login"]),
        ("client_type:api", &["rollout", "docs", "notes", "broken"]),
        ("label:team=infra", &["login"]),
        ("label:env=prod", &["rollout"]),
        ("label:team=inf", &[]),
        ("label:team=", &[]),
        // Terms AND.
        ("title:fix client_type:ui label:team=infra", &["login"]),
        ("title:fix status:running", &[]),
        (
            "repo:github.com status:waiting",
            &["login", "rollout", "notes"],
        ),
        ("repo:github.com pr_status:none", &["notes"]),
        ("status:waiting status:error,running", &[]),
        ("title:o title:e", &["login", "notes", "broken"]),
    ];
    for (q, expected) in cases {
        let found: BTreeSet<&str> = search_all(&app, &app.token, q, 100)
            .await
            .iter()
            .map(|id| names[id])
            .collect();
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(found, expected, "q = {q}");
    }
    // Most recently updated first: `broken` failed last of those not archived.
    let (_, page) = app.get(&list_url("status:waiting,error")).await;
    assert_eq!(ids_of(&page)[0], broken, "{page}");
    app.stop().await;
}

/// `title:` through the owner's title grams (migration `20261205000200`): exact for any
/// text, whatever its case, script or length, after a rename as after a create, and only
/// ever the searching owner's chats, even where another owner's titles are the same.
#[sqlx::test]
async fn title_search_is_exact_for_any_text_and_sees_only_the_owners_chats(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let mallory = create_user(&app.services, "mallory@example.com", "acme").await;
    let titles = [
        "Fix the LOGIN bug",
        "Überprüfung des Codes",
        "日本語のテスト",
        "AB",
        "C:\\Users\\me 50%_off",
    ];
    let mut mine = HashMap::new();
    let mut theirs = HashMap::new();
    for title in titles {
        mine.insert(title, chat_with(&app, json!({ "title": title })).await);
        let (status, body) = app
            .post_as(
                &mallory,
                "/api/v1/chats",
                json!({ "title": title, "message": title }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        theirs.insert(title, body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    // Each case: the query, then the titles it finds (of each owner, their own).
    let cases: &[(&str, &[&str])] = &[
        ("title:login", &["Fix the LOGIN bug"]),
        ("title:LoGiN", &["Fix the LOGIN bug"]),
        (r#"title:"the login b""#, &["Fix the LOGIN bug"]),
        (r#"title:"the  login""#, &[]),
        ("title:nigol", &[]),
        ("title:ÜBERPRÜF", &["Überprüfung des Codes"]),
        ("title:prüfung", &["Überprüfung des Codes"]),
        ("title:本語の", &["日本語のテスト"]),
        ("title:テスト", &["日本語のテスト"]),
        ("title:日本", &["日本語のテスト"]),
        ("title:ab", &["AB"]),
        (
            "title:b",
            &["Fix the LOGIN bug", "Überprüfung des Codes", "AB"],
        ),
        (r#"title:"C:\\USERS""#, &["C:\\Users\\me 50%_off"]),
        ("title:50%_", &["C:\\Users\\me 50%_off"]),
        ("title:0%", &["C:\\Users\\me 50%_off"]),
        ("title:5_%", &[]),
    ];
    for (owner_token, chats) in [(&app.token, &mine), (&mallory, &theirs)] {
        for (q, expected) in cases {
            let found: BTreeSet<Uuid> = search_all(&app, owner_token, q, 2)
                .await
                .into_iter()
                .collect();
            let expected: BTreeSet<Uuid> = expected.iter().map(|t| chats[t]).collect();
            assert_eq!(found, expected, "{q}");
        }
    }
    // A rename is searched by its new title only; the other owner's chat keeps its own.
    let login = mine["Fix the LOGIN bug"];
    let (status, body) = patch(&app, login, json!({"title": "Rotate the signing keys"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        search_all(&app, &app.token, "title:login", 5).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        search_all(&app, &app.token, "title:SIGNING", 5).await,
        vec![login]
    );
    assert_eq!(
        search_all(&app, &mallory, "title:login", 5).await,
        vec![theirs["Fix the LOGIN bug"]]
    );
    assert_eq!(
        search_all(&app, &mallory, "title:signing", 5).await,
        Vec::<Uuid>::new()
    );
    app.stop().await;
}

#[sqlx::test]
async fn malformed_queries_are_400s_naming_the_term_and_its_position(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    // (query, the term named, where it starts)
    let cases: &[(&str, &str, usize)] = &[
        ("fix", "fix", 1),
        ("title:ok bug", "bug", 10),
        ("colour:red", "colour:red", 1),
        ("Title:x", "Title:x", 1),
        (":x", ":x", 1),
        ("title:", "title:", 1),
        (r#"title:"""#, r#"title:"""#, 1),
        (r#"title:"fix the bug"#, r#"title:"fix the bug"#, 1),
        (r#"status:error title:"open"#, r#"title:"open"#, 14),
        (r#"title:"a"b"#, r#"title:"a"b"#, 1),
        (r#"title:a"b"#, r#"title:a"b"#, 1),
        (r#"title:"C:\Users""#, r#"title:"C:\Users""#, 1),
        ("pr:abc", "pr:abc", 1),
        ("pr:0", "pr:0", 1),
        ("pr:-3", "pr:-3", 1),
        ("pr:99999999999", "pr:99999999999", 1),
        ("pr:#12", "pr:#12", 1),
        ("archived:maybe", "archived:maybe", 1),
        ("archived:TRUE", "archived:TRUE", 1),
        ("status:done", "status:done", 1),
        ("status:waiting,", "status:waiting,", 1),
        ("status:paused", "status:paused", 1),
        ("pr_status:draftish", "pr_status:draftish", 1),
        ("client_type:cli", "client_type:cli", 1),
        ("label:team", "label:team", 1),
        ("label:=infra", "label:=infra", 1),
        ("title:\"tab\there\"", "title:\"tab\there\"", 1),
        ("  pr:1  repo:  x", "repo:", 9),
        ("日本 title:x", "日本", 1),
        ("title:日本 語", "語", 10),
    ];
    assert!(cases.len() >= 20);
    for (q, term, position) in cases {
        let (status, body) = app.get(&list_url(q)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(field(&body), "q", "{q}: {body}");
        let detail = body["validations"][0]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("term `{term}` at character {position}:")),
            "{q}: {detail}"
        );
        assert!(body["message"].as_str().unwrap().contains(detail), "{body}");
    }
    // Too long and too many terms name the query.
    let (status, body) = app.get(&list_url(&"x".repeat(1025))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "q");
    let (status, body) = app.get(&list_url(&"pr:1 ".repeat(33))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["validations"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("at most 32 terms"),
        "{body}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn unknown_query_parameters_are_400s_naming_them(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("hello").await;
    for (path, name) in [
        ("/api/v1/chats?search=fix".to_owned(), "search"),
        ("/api/v1/chats?limit=5&sort=new".to_owned(), "sort"),
        ("/api/v1/chats?q=title:a&q=title:b".to_owned(), "q"),
        (format!("/api/v1/chats/{chat}/messages?before=1"), "before"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(field(&body), name, "{path}: {body}");
    }
    // A cursor that names no chat of the caller's cannot say where a page starts.
    let (status, body) = app
        .get(&format!("/api/v1/chats?after_id={}", Uuid::now_v7()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "after_id");
    app.stop().await;
}

/// 1,000 idle root chats of the default user, `chat 1` to `chat 1000`, all updated an hour
/// ago at one instant; their ids in that order.
async fn seed_thousand(app: &TestApp) -> Vec<Uuid> {
    let store = &app.services.store;
    let owner = app.user_id("alice@example.com").await;
    let org = store
        .organizations_with_role(owner, OrganizationRole::AgentsAccess)
        .await
        .unwrap()[0];
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    store.seed_root_chats(owner, org, 1000, at).await.unwrap()
}

#[sqlx::test]
async fn pages_through_a_thousand_chats_of_one_timestamp_return_each_once(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let seeded = seed_thousand(&app).await;
    // Three pinned ones come first, in their positions, whatever their ids.
    let pinned = [seeded[500], seeded[7], seeded[999]];
    for (n, chat) in pinned.iter().enumerate() {
        let (status, body) = patch(&app, *chat, json!({"pin_order": n + 1})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let listed = search_all(&app, &app.token, "", 7).await;
    assert_eq!(listed.len(), 1000);
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>().len(),
        1000,
        "each once"
    );
    assert_eq!(&listed[..3], &pinned);
    // The rest, all updated at the same instant, newest id first.
    let mut rest: Vec<Uuid> = seeded
        .iter()
        .filter(|id| !pinned.contains(id))
        .copied()
        .collect();
    rest.sort_by(|a, b| b.cmp(a));
    assert_eq!(&listed[3..], &rest[..]);

    // A search pages the same way, in the same order, whether its term is common enough to
    // be found by walking the list (`chat 1`: `chat 10`..`chat 19`, `chat 100`..`chat 199`,
    // `chat 1000`, 112 of 1,000) or rare enough to start from the title grams (`chat 99`,
    // `chat 990`..`chat 999`: 11), in pages small or large.
    let mut titles = HashMap::new();
    let mut after = String::new();
    loop {
        let (_, page) = app.get(&format!("/api/v1/chats?limit=100{after}")).await;
        for chat in page["chats"].as_array().unwrap() {
            let id: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
            titles.insert(id, chat["title"].as_str().unwrap().to_owned());
        }
        match page["next_after_id"].as_str() {
            Some(next) => after = format!("&after_id={next}"),
            None => break,
        }
    }
    for (text, page, matches) in [
        ("chat 1", 10, 112),
        ("chat 1", 100, 112),
        ("chat 99", 2, 11),
        ("chat 99", 50, 11),
        ("HAT 5", 3, 111),
    ] {
        let found = search_all(&app, &app.token, &format!("title:\"{text}\""), page).await;
        let expected: Vec<Uuid> = listed
            .iter()
            .filter(|id| titles[id].to_lowercase().contains(&text.to_lowercase()))
            .copied()
            .collect();
        assert_eq!(found.len(), matches, "{text} by {page}");
        assert_eq!(found, expected, "{text} by {page}");
    }
    // Archived ones and the rest, merged into one order.
    let (status, body) = patch(&app, seeded[3], json!({"archived": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let everything = search_all(&app, &app.token, "archived:any", 30).await;
    assert_eq!(everything.len(), 1000);
    assert_eq!(everything[3], seeded[3], "archiving updated it last");
    assert_eq!(search_all(&app, &app.token, "", 50).await.len(), 999);
    // A search of both ranges merges them into the same order, whether each range's matches
    // are walked or come from the title grams: 200 archived chats (about 22 of them
    // `chat 1`) beside 800 that are not.
    for chat in seeded.iter().skip(6).step_by(5) {
        let (status, body) = patch(&app, *chat, json!({"archived": true})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let everything = search_all(&app, &app.token, "archived:any", 100).await;
    assert_eq!(
        search_all(&app, &app.token, "archived:true", 100)
            .await
            .len(),
        200
    );
    for (text, page) in [("chat 1", 3), ("chat 1", 40), ("chat 99", 4)] {
        let q = format!("title:\"{text}\" archived:any");
        let expected: Vec<Uuid> = everything
            .iter()
            .filter(|id| titles[id].contains(text))
            .copied()
            .collect();
        assert_eq!(
            search_all(&app, &app.token, &q, page).await,
            expected,
            "{q} by {page}"
        );
    }
    app.stop().await;
}

/// The title grams live in their own table (migration `20261209000100`), written when a root
/// chat is created and when its title or owner changes: a search that starts from them (a
/// term too rare for the list walk) finds a created chat and a renamed one by its new
/// title, the stored grams are those of the current title, a chat's other writes
/// (archiving it) leave its grams' row as it was, and deleting the chat deletes it.
#[sqlx::test]
async fn title_grams_follow_creates_renames_and_deletes(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = &app.services.store;
    let seeded = seed_thousand(&app).await;
    let created = chat_with(&app, json!({"title": "Rotate the signing keys"})).await;
    let grams_rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM title_grams")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    assert_eq!(grams_rows().await, 1001, "one row per root chat");
    // Pages of 2 walk 60 chats of 1,001 (20 reads of 3) before asking the grams: these
    // come from them.
    assert_eq!(
        search_all(&app, &app.token, "title:\"signing keys\"", 2).await,
        vec![created]
    );
    assert_eq!(
        search_all(&app, &app.token, "title:\"chat 500\"", 2).await,
        vec![seeded[499]]
    );

    let (status, body) = patch(&app, seeded[499], json!({"title": "Deploy the Canary"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        search_all(&app, &app.token, "title:\"chat 500\"", 2)
            .await
            .is_empty()
    );
    assert_eq!(
        search_all(&app, &app.token, "title:\"the canary\"", 2).await,
        vec![seeded[499]]
    );
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chats c JOIN title_grams g ON g.chat_id = c.id
         WHERE g.grams IS DISTINCT FROM chat_title_grams(c.owner_id, c.title)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(stale, 0, "grams of a title the chat no longer has");
    // Archiving writes the chat row, not its grams: their row is the version it was.
    let version = || async {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM title_grams WHERE chat_id = $1")
            .bind(created)
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let before = version().await;
    let (status, body) = patch(&app, created, json!({"archived": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(version().await, before, "archiving rewrote the grams");
    assert_eq!(
        search_all(&app, &app.token, "title:\"signing keys\" archived:true", 2).await,
        vec![created]
    );
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{}", seeded[499]))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(grams_rows().await, 1000, "deleted with its chat");
    assert!(
        search_all(&app, &app.token, "title:\"the canary\" archived:any", 2)
            .await
            .is_empty()
    );
    app.stop().await;
}

#[sqlx::test]
async fn pinned_chats_come_first_in_their_positions(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let mut chats = Vec::new();
    for i in 0..4 {
        let chat = app.create_chat(&format!("chat {i}")).await;
        interrupt(&app, chat).await;
        chats.push(chat);
    }
    let [a, b, c, d] = chats[..] else {
        unreachable!()
    };
    // Unpinned: most recently updated first.
    assert_eq!(order(&app).await.0, vec![d, c, b, a]);
    assert_eq!(pin(&app, b, json!(1)).await["pin_order"], 1);
    // Pinning at 1 again moves the first one down.
    pin(&app, a, json!(1)).await;
    // Past the end is the end.
    assert_eq!(pin(&app, c, json!(50)).await["pin_order"], 3);
    assert_eq!(
        order(&app).await,
        (
            vec![a, b, c, d],
            vec![json!(1), json!(2), json!(3), Value::Null]
        )
    );
    // Reorder: the last to the top.
    pin(&app, c, json!(1)).await;
    assert_eq!(
        order(&app).await,
        (
            vec![c, a, b, d],
            vec![json!(1), json!(2), json!(3), Value::Null]
        )
    );
    // Unpin with null and with 0: the gap closes, and the chat (just updated) leads the
    // unpinned ones.
    assert_eq!(pin(&app, a, Value::Null).await["pin_order"], Value::Null);
    assert_eq!(
        order(&app).await,
        (
            vec![c, b, a, d],
            vec![json!(1), json!(2), Value::Null, Value::Null]
        )
    );
    pin(&app, c, json!(0)).await;
    let (_, chat) = app.get(&format!("/api/v1/chats/{b}")).await;
    assert_eq!(chat["pin_order"], 1);
    // Bad positions are 400s naming the field, and change nothing.
    for bad in [
        json!(-1),
        json!(101),
        json!("first"),
        json!(1.5),
        json!(true),
    ] {
        let (status, body) = patch(&app, d, json!({ "pin_order": bad, "title": "no" })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(field(&body), "pin_order", "{bad}: {body}");
    }
    let (_, chat) = app.get(&format!("/api/v1/chats/{d}")).await;
    assert_eq!(chat["pin_order"], Value::Null);
    assert_eq!(chat["title"], "chat 3");

    // At most 100 pinned chats.
    let owner = app.user_id("alice@example.com").await;
    let store = &app.services.store;
    let org = store
        .organizations_with_role(owner, OrganizationRole::AgentsAccess)
        .await
        .unwrap()[0];
    let many = store
        .seed_root_chats(owner, org, 99, chrono::Utc::now())
        .await
        .unwrap();
    for chat in &many {
        pin(&app, *chat, json!(100)).await;
    }
    let (status, body) = patch(&app, d, json!({"pin_order": 1, "labels": {"k": "v"}})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, chat) = app.get(&format!("/api/v1/chats/{d}")).await;
    assert_eq!(chat["labels"], json!({}), "a refused PATCH changes nothing");
    // Moving one that is pinned already is fine; so is pinning after an unpin.
    assert_eq!(pin(&app, many[0], json!(100)).await["pin_order"], 100);
    pin(&app, b, Value::Null).await;
    assert_eq!(pin(&app, d, json!(1)).await["pin_order"], 1);
    app.stop().await;
}

#[sqlx::test]
async fn labels_are_bounded_replaced_and_searchable(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("labelled").await;
    let too_many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let fifty: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (labels, name) in [
        (Value::Object(too_many), "labels"),
        (json!({"a=b": "v"}), "labels"),
        (json!({"": "v"}), "labels"),
        (json!({ ("k".repeat(65)): "v" }), "labels"),
        (json!({"bad\nkey": "v"}), "labels"),
        (json!({"team": "x".repeat(257)}), "labels.team"),
        (json!({"team": "a\u{1b}b"}), "labels.team"),
        (json!({"team": 3}), "labels.team"),
        (json!(["team"]), "labels"),
    ] {
        let (status, body) = patch(&app, chat, json!({ "labels": labels })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{labels}: {body}");
        assert_eq!(field(&body), name, "{labels}: {body}");
    }
    let (status, body) = patch(&app, chat, json!({"labels": Value::Object(fifty)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["labels"].as_object().unwrap().len(), 50);
    // New labels replace the old ones, in one transaction with the other fields.
    let (status, body) = patch(
        &app,
        chat,
        json!({"labels": {"team": "infra", "k": "x".repeat(256)}, "title": "Renamed", "pin_order": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["labels"]["team"], "infra");
    assert_eq!(body["labels"].as_object().unwrap().len(), 2);
    assert_eq!(body["title"], "Renamed");
    assert_eq!(body["pin_order"], 1);
    let (_, page) = app.get(&list_url("label:team=infra title:renamed")).await;
    assert_eq!(ids_of(&page), vec![chat]);
    assert_eq!(page["chats"][0]["labels"]["team"], "infra");
    let (status, body) = patch(&app, chat, json!({"labels": {}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["labels"], json!({}));
    patch(&app, chat, json!({"labels": {"a": "b"}})).await;
    let (status, body) = patch(&app, chat, json!({ "labels": null })).await;
    assert_eq!(status, StatusCode::OK, "null removes them too: {body}");
    assert_eq!(body["labels"], json!({}));
    let (_, page) = app.get(&list_url("label:team=infra")).await;
    assert_eq!(ids_of(&page), Vec::<Uuid>::new());
    app.stop().await;
}

/// Rows of the chats `ids` in `table` (by its `chat_id`, or `id` for `chats`).
async fn rows(pool: &sqlx::PgPool, table: &str, ids: &[Uuid]) -> i64 {
    let column = if table == "chats" { "id" } else { "chat_id" };
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE {column} = ANY($1)"
    )))
    .bind(ids)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn stream_exists(app: &TestApp, chat: Uuid) -> bool {
    let client = redis::Client::open(support::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = agentq_core::queue::chat_events_key(&app.prefix, chat);
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<bool>(&mut conn)
        .await
        .unwrap()
}

#[sqlx::test]
async fn deleting_a_chat_removes_exactly_its_family(pool: sqlx::PgPool) {
    let app = TestApp::start(pool.clone()).await;
    let owner = support::app::create_owner(&app.services, "root@example.com").await;
    app.configure_site(&owner, json!({"debug_logging_enabled": true}))
        .await;
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/preferences",
            json!({"debug_logging_enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.fake.script_for(
        "PARENT",
        [
            Reply::ToolCalls(vec![(
                "c1".into(),
                "spawn_subagent".into(),
                json!({"subagent_type": "general", "prompt": "CHILD look around"}),
            )]),
            Reply::ToolCalls(vec![(
                "c2".into(),
                "wait_agent".into(),
                json!({"chat_id": LAST_RESULT_CHAT_ID, "timeout_seconds": 30}),
            )]),
            Reply::Text("Done.".into()),
        ],
    );
    let parent = app.create_chat("PARENT: delegate").await;
    let kept = app.create_chat("KEEP: unrelated").await;
    app.wait_until_answered(parent, 6, Duration::from_secs(30))
        .await;
    app.wait_until_answered(kept, 2, Duration::from_secs(30))
        .await;
    // The list embeds the child.
    let (_, page) = app.get(&list_url("title:delegate")).await;
    let children = page["chats"][0]["children"].as_array().unwrap().clone();
    assert_eq!(children.len(), 1, "{page}");
    let child: Uuid = children[0]["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(child, 2, Duration::from_secs(30))
        .await;
    let family = [parent, child];
    // Files: one only the parent links, one it shares with the kept chat.
    let store = &app.services.store;
    let own_file = Uuid::now_v7();
    let shared_file = Uuid::now_v7();
    store
        .store_plan(own_file, parent, "plan", "# mine")
        .await
        .unwrap();
    store
        .store_plan(shared_file, parent, "shared", "# ours")
        .await
        .unwrap();
    store
        .store_plan(shared_file, kept, "shared", "# ours")
        .await
        .unwrap();
    store
        .seed_diff_status(
            parent,
            &DiffStatus {
                pr_number: Some(3),
                ..DiffStatus::default()
            },
        )
        .await
        .unwrap();
    for table in [
        "chat_messages",
        "chat_turns",
        "tool_calls",
        "chat_debug_runs",
    ] {
        assert!(rows(&pool, table, &family).await > 0, "{table}");
    }
    // A subagent's chat is never listed, so only its root has title grams.
    assert_eq!(rows(&pool, "title_grams", &family).await, 1);
    assert_eq!(rows(&pool, "title_grams", &[child]).await, 0);
    let kept_ids = [kept];
    let kept_before: Vec<i64> = futures::future::join_all(
        [
            "chat_messages",
            "chat_turns",
            "chat_debug_runs",
            "chat_file_links",
        ]
        .map(|table| rows(&pool, table, &kept_ids)),
    )
    .await;
    assert!(stream_exists(&app, parent).await && stream_exists(&app, child).await);

    // A subagent chat goes with its root, never alone, and is not pinned alone either.
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{child}"))
            .await,
        StatusCode::CONFLICT
    );
    let (status, body) = patch(&app, child, json!({"pin_order": 1, "labels": {"k": "v"}})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Someone else's chat is not found.
    let mallory = create_user(&app.services, "mallory@example.com", "acme").await;
    assert_eq!(
        app.delete_as(&mallory, &format!("/api/v1/chats/{parent}"))
            .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(rows(&pool, "chats", &family).await, 2);

    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{parent}"))
            .await,
        StatusCode::NO_CONTENT
    );
    for chat in family {
        let (status, _) = app.get(&format!("/api/v1/chats/{chat}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    for table in [
        "chats",
        "chat_messages",
        "chat_turns",
        "chat_queued_messages",
        "tool_calls",
        "chat_debug_runs",
        "chat_file_links",
        "chat_diff_statuses",
        "title_grams",
    ] {
        assert_eq!(rows(&pool, table, &family).await, 0, "{table}");
    }
    let files: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM files ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(files, vec![shared_file], "the file only it linked is gone");
    let kept_after: Vec<i64> = futures::future::join_all(
        [
            "chat_messages",
            "chat_turns",
            "chat_debug_runs",
            "chat_file_links",
        ]
        .map(|table| rows(&pool, table, &kept_ids)),
    )
    .await;
    assert_eq!(kept_before, kept_after, "the other chat is untouched");
    let (_, page) = app.get("/api/v1/chats").await;
    assert_eq!(ids_of(&page), vec![kept]);
    eventually(
        Duration::from_secs(5),
        "the event streams to go",
        || async {
            (!stream_exists(&app, parent).await && !stream_exists(&app, child).await).then_some(())
        },
    )
    .await;
    assert!(stream_exists(&app, kept).await);
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{parent}"))
            .await,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_chat_with_a_turn_in_progress_is_deleted_only_after_an_interrupt(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("busy").await;
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &app.token,
            &format!("/api/v1/chats/{chat}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("interrupt"),
        "{body}"
    );
    interrupt(&app, chat).await;
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{chat}"))
            .await,
        StatusCode::NO_CONTENT
    );
    app.stop().await;
}

#[sqlx::test]
async fn the_openapi_document_describes_search_pins_labels_and_delete(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let list = &doc["paths"]["/api/v1/chats"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["q", "limit", "after_id"]);
    let q = &list["parameters"][0]["description"];
    for key in ["title", "archived", "status", "pr_status", "label"] {
        assert!(q.as_str().unwrap().contains(&format!("`{key}`")), "{q}");
    }
    let item = doc["components"]["schemas"]["ChatListItem"].to_string();
    assert!(item.contains("children") && item.contains("Chat"), "{item}");
    let patch = &doc["components"]["schemas"]["UpdateChatRequest"]["properties"];
    assert!(
        patch.get("pin_order").is_some() && patch.get("labels").is_some(),
        "{patch}"
    );
    let delete = &doc["paths"]["/api/v1/chats/{chat_id}"]["delete"]["responses"];
    for code in ["204", "404", "409"] {
        assert!(delete.get(code).is_some(), "{delete}");
    }
    app.stop().await;
}

/// `chat_title_grams`, a PL/pgSQL loop since migration `20261206000100`, gives exactly the
/// grams of its first, SQL-standard definition (`20261205000200`): every stored
/// `title_grams` and every search's grams must agree, or a search would miss chats.
#[sqlx::test]
async fn title_grams_are_those_of_the_first_definition(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let mut titles: Vec<Option<String>> = [
        "",
        "a",
        "ab",
        "abc",
        "Chat 4242",
        "  Fix THE Bug  ",
        "Ärger mit ÖL über Straße",
        "日本語のタイトル",
        "İstanbul IŞIK",
        "emoji 🦀🦀 crab",
        "\u{fffd}\u{fffd}x",
        "100% _done_ \\ ok",
    ]
    .iter()
    .map(|t| Some(t.to_string()))
    .collect();
    titles.push(Some("aé漢".repeat(100)));
    titles.extend((0..500).map(|i| Some(format!("Title {i} {}", "xyz".repeat(i % 7)))));
    titles.push(None);
    let (checked, differing): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE chat_title_grams(o, t) IS DISTINCT FROM
                CASE WHEN t IS NULL THEN NULL ELSE ARRAY(
                    SELECT hashtext(s.owner || substr(s.title, i, 3))
                    FROM (SELECT o::text AS owner, lower(t) AS title) AS s,
                         generate_series(1, char_length(s.title) - 2) AS i) END)
         FROM (SELECT gen_random_uuid() AS o, t FROM unnest($1::text[]) AS t) AS x",
    )
    .bind(&titles)
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(checked, titles.len() as i64);
    assert_eq!(differing, 0, "titles whose grams changed");
    app.stop().await;
}
