//! Diff status (issue #14 item 2): an integration reports where a chat's work stands in git
//! (`PUT /api/v1/chats/{id}/diff-status`), `GET` on the chat shows it and the chat search
//! finds it; a bad report is a 400 naming the field; the scheduler's refresher keeps pull
//! requests on its GitHub host current from the REST API (a fake GitHub Enterprise on
//! 127.0.0.1 under `/api/v3`), waits out rate limits for every process, leaves 404s and
//! other hosts alone, and never overwrites a newer report.

mod support;

use std::time::Duration;

use agentq_core::config;
use agentq_scheduler::{
    DiffRefreshConfig,
    diff_refresh::{RefreshOutcome, refresh_tick},
};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_user},
    eventually,
    fake_github::FakeGithub,
};
use uuid::Uuid;

const TOKEN: &str = "ghp_test_token_never_shown";

/// `/api/v1/chats?q=<q>&limit=100`, with `q` URL-encoded.
fn list_url(q: &str) -> String {
    let mut url = url::Url::parse("http://x/api/v1/chats?limit=100").unwrap();
    url.query_pairs_mut().append_pair("q", q);
    format!("{}?{}", url.path(), url.query().unwrap())
}

/// The ids of the caller's chats that `q` finds.
async fn search(app: &TestApp, q: &str) -> Vec<Uuid> {
    let (status, page) = app.get_as(&app.token, &list_url(q)).await;
    assert_eq!(status, StatusCode::OK, "{q}: {page}");
    page["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn report(app: &TestApp, chat: Uuid, body: Value) -> (StatusCode, Value) {
    app.put_as(
        &app.token,
        &format!("/api/v1/chats/{chat}/diff-status"),
        body,
    )
    .await
}

/// The chat's `diff_status` as `GET /api/v1/chats/{id}` shows it.
async fn diff_status(app: &TestApp, chat: Uuid) -> Value {
    let (status, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !body.to_string().contains(TOKEN),
        "the GitHub token leaked into a chat"
    );
    body["diff_status"].clone()
}

/// Refresher settings pointing at the fake, with a token.
fn refresher(github: &FakeGithub) -> DiffRefreshConfig {
    let mut config: DiffRefreshConfig = config::defaults();
    config.github_api_url = github.api_url.parse().unwrap();
    config.github_token = Some(TOKEN.into());
    config.interval_secs = 1;
    config.timeout_secs = 5;
    config
}

/// One refresher tick as of `now`, as a scheduler process with its own client would run it.
async fn tick(app: &TestApp, config: &DiffRefreshConfig, now: DateTime<Utc>) -> RefreshOutcome {
    refresh_tick(&app.services.store, &config.client().unwrap(), config, now)
        .await
        .unwrap()
}

#[sqlx::test]
async fn an_integration_reports_a_diff_status_that_the_chat_shows_and_search_finds(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("fix the login redirect").await;
    let other = app.create_chat("write the docs").await;
    assert_eq!(diff_status(&app, chat).await, Value::Null);

    let (status, stored) = report(
        &app,
        chat,
        json!({
            "git_remote_origin": "git@github.com:acme/api.git",
            "git_branch": "fix-login",
            "pr_url": "https://github.com/acme/api/pull/12",
            "pr_number": 12,
            "pr_title": "Login: fix the redirect",
            "pr_state": "open",
            "pr_draft": true,
            "additions": 120,
            "deletions": 7,
            "changed_files": 4,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    let shown = diff_status(&app, chat).await;
    assert_eq!(shown, stored);
    for (field, value) in [
        ("git_remote_origin", json!("git@github.com:acme/api.git")),
        ("git_branch", json!("fix-login")),
        ("pr_url", json!("https://github.com/acme/api/pull/12")),
        ("pr_number", json!(12)),
        ("pr_title", json!("Login: fix the redirect")),
        ("pr_state", json!("open")),
        ("pr_draft", json!(true)),
        ("additions", json!(120)),
        ("deletions", json!(7)),
        ("changed_files", json!(4)),
        ("refreshed_at", Value::Null),
        ("refresh_error", Value::Null),
    ] {
        assert_eq!(shown[field], value, "{field}: {shown}");
    }
    assert!(shown["reported_at"].is_string(), "{shown}");

    for q in [
        "pr:12",
        "repo:acme/api",
        "pr_title:redirect",
        "pr_status:draft",
    ] {
        assert_eq!(search(&app, q).await, vec![chat], "{q}");
    }
    assert_eq!(search(&app, "pr_status:none").await, vec![other]);

    // A report replaces the last one whole: the PR is gone, the branch stays.
    let (status, stored) = report(&app, chat, json!({"git_branch": "fix-login-2"})).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["pr_url"], Value::Null);
    assert_eq!(stored["pr_draft"], json!(false));
    assert!(search(&app, "pr:12").await.is_empty());
    assert_eq!(diff_status(&app, chat).await["git_branch"], "fix-login-2");

    // Only the chat's owner reports.
    let mallory = create_user(&app.services, "mallory@example.com", "acme").await;
    let (status, body) = app
        .put_as(
            &mallory,
            &format!("/api/v1/chats/{chat}/diff-status"),
            json!({"pr_number": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = report(&app, Uuid::now_v7(), json!({"pr_number": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[sqlx::test]
async fn a_bad_report_is_a_400_naming_the_field_and_stores_nothing(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("hello").await;
    let (status, before) = report(&app, chat, json!({"pr_number": 3})).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let long_url = format!("https://github.com/acme/{}/pull/1", "a".repeat(2100));
    let cases = [
        (
            json!({"pr_url": "ftp://github.com/acme/api/pull/1"}),
            "pr_url",
        ),
        (json!({"pr_url": "javascript:alert(1)"}), "pr_url"),
        (json!({"pr_url": "https://"}), "pr_url"),
        (json!({"pr_url": long_url}), "pr_url"),
        (
            json!({"pr_url": "https://x-access-token:ghp_secret@github.com/acme/api/pull/1"}),
            "pr_url",
        ),
        (
            json!({"git_remote_origin": "https://ghp_secret@github.com/acme/api.git"}),
            "git_remote_origin",
        ),
        (
            json!({"git_remote_origin": "file:///srv/api.git"}),
            "git_remote_origin",
        ),
        (
            json!({"git_remote_origin": "/srv/api.git"}),
            "git_remote_origin",
        ),
        (
            json!({"git_remote_origin": "git@github.com:acme/\u{0}.git"}),
            "git_remote_origin",
        ),
        (json!({"git_branch": "fix login"}), "git_branch"),
        (json!({"git_branch": "b".repeat(256)}), "git_branch"),
        (json!({"pr_title": "Fix\u{0}it"}), "pr_title"),
        (json!({"pr_title": "Fix\nit"}), "pr_title"),
        (json!({"pr_title": "t".repeat(1025)}), "pr_title"),
        (json!({"pr_number": 0}), "pr_number"),
        (json!({"pr_number": -1}), "pr_number"),
        (json!({"pr_number": 2_147_483_648_i64}), "pr_number"),
        (json!({"pr_number": 1.5}), "pr_number"),
        (json!({"additions": -1}), "additions"),
        (json!({"deletions": 3_000_000_000_i64}), "deletions"),
        (json!({"changed_files": "4"}), "changed_files"),
        (json!({"pr_state": "draft"}), "pr_state"),
        (json!({"pr_state": "merged", "pr_draft": true}), "pr_draft"),
        (json!({"pr_sha": "abc"}), "pr_sha"),
    ];
    for (body, field) in cases {
        let (status, error) = report(&app, chat, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["validations"][0]["field"], field, "{body}: {error}");
        assert!(
            !error.to_string().contains("ghp_secret"),
            "a refused credential was echoed: {error}"
        );
    }
    assert_eq!(diff_status(&app, chat).await, before);
    app.stop().await;
}

#[sqlx::test]
async fn the_refresher_keeps_pull_requests_current_from_github_enterprise(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let github = FakeGithub::start().await;
    let config = refresher(&github);
    let login = app.create_chat("fix the login").await;
    let rollout = app.create_chat("roll out").await;
    let gone = app.create_chat("a deleted PR").await;
    let elsewhere = app.create_chat("a PR on github.com").await;
    let reported = |url: String, title: &str| {
        json!({
            "git_remote_origin": format!("{}/acme/api.git", github.web_url),
            "pr_url": url, "pr_title": title, "pr_state": "open", "pr_draft": true,
        })
    };
    for (chat, url, title) in [
        (login, github.pr_url("acme", "api", 12), "WIP"),
        (rollout, github.pr_url("acme", "web", 7), "Rollout"),
        (gone, github.pr_url("acme", "api", 99), "Gone"),
        (
            elsewhere,
            "https://github.com/acme/api/pull/12".to_owned(),
            "Elsewhere",
        ),
    ] {
        let (status, body) = report(&app, chat, reported(url, title)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    github.set_pull(
        "acme",
        "api",
        12,
        "Login: fix the redirect",
        "open",
        false,
        false,
        (40, 2, 3),
    );
    github.set_pull(
        "acme",
        "web",
        7,
        "Rollout v2",
        "closed",
        true,
        false,
        (9, 9, 1),
    );

    let now = Utc::now();
    let outcome = tick(&app, &config, now).await;
    assert_eq!(
        (outcome.refreshed, outcome.not_found),
        (2, 1),
        "{outcome:?}"
    );
    let mut paths = github.paths();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v3/repos/acme/api/pulls/12",
            "/api/v3/repos/acme/api/pulls/99",
            "/api/v3/repos/acme/web/pulls/7",
        ]
    );
    for request in github.requests() {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(
            request.accept.as_deref(),
            Some("application/vnd.github+json")
        );
    }

    let shown = diff_status(&app, login).await;
    assert_eq!(shown["pr_title"], "Login: fix the redirect", "{shown}");
    assert_eq!(shown["pr_state"], "open");
    assert_eq!(shown["pr_draft"], false);
    assert_eq!(
        (
            &shown["additions"],
            &shown["deletions"],
            &shown["changed_files"]
        ),
        (&json!(40), &json!(2), &json!(3))
    );
    assert_eq!(shown["pr_number"], 12, "the number is learnt from GitHub");
    assert!(shown["refreshed_at"].is_string(), "{shown}");
    let shown = diff_status(&app, rollout).await;
    assert_eq!(
        (&shown["pr_state"], &shown["pr_title"]),
        (&json!("merged"), &json!("Rollout v2"))
    );
    let shown = diff_status(&app, gone).await;
    assert_eq!(shown["refresh_error"], "not_found", "{shown}");
    assert_eq!(shown["pr_title"], "Gone", "a 404 keeps what was reported");
    let shown = diff_status(&app, elsewhere).await;
    assert_eq!(
        (&shown["pr_title"], &shown["refreshed_at"]),
        (&json!("Elsewhere"), &Value::Null)
    );

    // The search reads what GitHub said.
    assert_eq!(search(&app, "pr_status:merged").await, vec![rollout]);
    assert_eq!(search(&app, "pr_title:redirect").await, vec![login]);
    assert_eq!(
        search(&app, "pr_status:draft").await.len(),
        2,
        "gone and elsewhere"
    );

    // Nothing is due a second later; after the stale interval only the open PR is asked
    // about again: a merged one never, a 404 not for a day.
    assert_eq!(
        tick(&app, &config, now + chrono::Duration::seconds(1)).await,
        RefreshOutcome::default()
    );
    assert_eq!(github.requests().len(), 3);
    github.set_pull(
        "acme",
        "api",
        12,
        "Login: fix the redirect",
        "closed",
        false,
        false,
        (40, 2, 3),
    );
    let later = now + chrono::Duration::seconds(301);
    let outcome = tick(&app, &config, later).await;
    assert_eq!(outcome.refreshed, 1, "{outcome:?}");
    assert_eq!(github.paths()[3], "/api/v3/repos/acme/api/pulls/12");
    assert_eq!(diff_status(&app, login).await["pr_state"], "closed");
    assert_eq!(search(&app, "pr_status:closed").await, vec![login]);
    let outcome = tick(&app, &config, now + chrono::Duration::hours(25)).await;
    assert_eq!(
        (outcome.refreshed, outcome.not_found),
        (1, 1),
        "{outcome:?}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_rate_limit_makes_every_scheduler_wait_until_github_says(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let github = FakeGithub::start().await;
    let config = refresher(&github);
    for n in 1..=3 {
        let chat = app.create_chat(&format!("chat {n}")).await;
        let (status, body) = report(
            &app,
            chat,
            json!({"pr_url": github.pr_url("acme", "api", n), "pr_state": "open"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        github.set_pull(
            "acme",
            "api",
            n,
            &format!("PR {n}"),
            "open",
            false,
            false,
            (1, 1, 1),
        );
    }

    // A primary rate limit: 403, nothing remaining until the reset.
    let now = Utc::now();
    let reset = now.timestamp() + 120;
    github.answer_next(
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset.to_string()),
        ],
        json!({"message": "API rate limit exceeded"}),
    );
    let outcome = tick(&app, &config, now).await;
    assert_eq!(
        github.requests().len(),
        1,
        "the tick stops at the rate limit"
    );
    assert_eq!(outcome.released, 3, "the rows go back untried: {outcome:?}");
    let reset_at = DateTime::from_timestamp(reset, 0).unwrap();
    assert_eq!(outcome.waiting_until, Some(reset_at));
    // Another scheduler (its own client) waits too: the reset is in PostgreSQL.
    let outcome = tick(&app, &config, now + chrono::Duration::seconds(60)).await;
    assert_eq!(outcome.waiting_until, Some(reset_at));
    assert_eq!(github.requests().len(), 1);
    let after_reset = reset_at + chrono::Duration::seconds(1);
    let outcome = tick(&app, &config, after_reset).await;
    assert_eq!(outcome.refreshed, 3, "{outcome:?}");
    assert_eq!(github.requests().len(), 4);

    // A 429 with `retry-after`: wait that long, then go on.
    let due = after_reset + chrono::Duration::seconds(301);
    github.answer_next(
        429,
        &[("retry-after", "30")],
        json!({"message": "slow down"}),
    );
    let outcome = tick(&app, &config, due).await;
    assert_eq!(
        (outcome.released, outcome.waiting_until),
        (3, Some(due + chrono::Duration::seconds(30)))
    );
    assert_eq!(
        tick(&app, &config, due + chrono::Duration::seconds(10))
            .await
            .refreshed,
        0
    );
    assert_eq!(github.requests().len(), 5);
    let outcome = tick(&app, &config, due + chrono::Duration::seconds(31)).await;
    assert_eq!(outcome.refreshed, 3, "{outcome:?}");

    // The last request of the budget (`x-ratelimit-remaining: 0` on a 200) also stops
    // the tick until the reset, after recording its answer.
    let next = due + chrono::Duration::seconds(31 + 301);
    let reset = next.timestamp() + 60;
    github.answer_next(
        200,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset.to_string()),
        ],
        json!({"number": 1, "title": "PR 1 (last call)", "state": "open", "draft": false,
               "additions": 1, "deletions": 1, "changed_files": 1}),
    );
    let outcome = tick(&app, &config, next).await;
    assert_eq!((outcome.refreshed, outcome.released), (1, 2), "{outcome:?}");
    assert_eq!(
        outcome.waiting_until,
        Some(DateTime::from_timestamp(reset, 0).unwrap())
    );
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_refreshers_take_each_pull_request_once_and_a_newer_report_wins(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let github = FakeGithub::start().await;
    let mut config = refresher(&github);
    config.batch = 4;
    let mut chats = Vec::new();
    for n in 1..=6 {
        let chat = app.create_chat(&format!("chat {n}")).await;
        let (status, body) = report(
            &app,
            chat,
            json!({"pr_url": github.pr_url("acme", "api", n), "pr_title": "as reported"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        github.set_pull(
            "acme",
            "api",
            n,
            "from GitHub",
            "open",
            false,
            false,
            (1, 1, 1),
        );
        chats.push(chat);
    }
    github.set_delay(Duration::from_millis(150));
    let now = Utc::now();
    let (a, b) = tokio::join!(tick(&app, &config, now), tick(&app, &config, now));
    assert_eq!(a.refreshed + b.refreshed, 6, "{a:?} {b:?}");
    let mut paths = github.paths();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 6, "each pull request asked about once");
    assert_eq!(github.requests().len(), 6);

    // A report made while GitHub is being asked replaces the row; the older answer is
    // dropped, and the new report is refreshed on the next tick.
    let chat = chats[0];
    let (status, body) = report(
        &app,
        chat,
        json!({"pr_url": github.pr_url("acme", "api", 1), "pr_title": "as reported"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    github.set_pull(
        "acme",
        "api",
        1,
        "from GitHub, later",
        "open",
        false,
        false,
        (1, 1, 1),
    );
    github.set_delay(Duration::from_millis(400));
    let refreshing = {
        let store = app.services.store.clone();
        let config = config.clone();
        tokio::spawn(async move {
            refresh_tick(&store, &config.client().unwrap(), &config, Utc::now())
                .await
                .unwrap()
        })
    };
    eventually(
        Duration::from_secs(5),
        "the refresher to ask GitHub",
        || async { (github.requests().len() > 6).then_some(()) },
    )
    .await;
    let (status, body) = report(
        &app,
        chat,
        json!({"pr_url": github.pr_url("acme", "api", 1), "pr_title": "reported again"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = refreshing.await.unwrap();
    assert_eq!(
        (outcome.refreshed, outcome.superseded),
        (0, 1),
        "{outcome:?}"
    );
    let shown = diff_status(&app, chat).await;
    assert_eq!(
        (&shown["pr_title"], &shown["refreshed_at"]),
        (&json!("reported again"), &Value::Null),
        "{shown}"
    );
    let outcome = tick(&app, &config, Utc::now()).await;
    assert_eq!(outcome.refreshed, 1, "{outcome:?}");
    assert_eq!(
        diff_status(&app, chat).await["pr_title"],
        "from GitHub, later"
    );
    app.stop().await;
}

#[sqlx::test]
async fn the_scheduler_runs_the_refresher_on_its_interval(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let github = FakeGithub::start().await;
    let chat = app.create_chat("ship it").await;
    github.set_pull(
        "acme",
        "api",
        5,
        "Ship it",
        "closed",
        true,
        false,
        (3, 0, 1),
    );
    let (status, body) = report(
        &app,
        chat,
        json!({"pr_url": github.pr_url("acme", "api", 5), "pr_state": "open"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut scheduler: agentq_scheduler::SchedulerConfig = config::defaults();
    scheduler.maintenance_cron = "0 0 1 1 *".parse().unwrap();
    scheduler.diff_refresh = refresher(&github);
    app.start_recovery(scheduler);
    eventually(
        Duration::from_secs(10),
        "the PR to show as merged",
        || async { (diff_status(&app, chat).await["pr_state"] == "merged").then_some(()) },
    )
    .await;
    assert_eq!(search(&app, "pr_status:merged").await, vec![chat]);
    app.stop().await;
}

#[test]
fn the_github_token_never_shows_in_help() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(["scheduler", "--help"])
        .env("AGENTQ_GITHUB_TOKEN", TOKEN)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in [
        "--github-api-url",
        "AGENTQ_GITHUB_TOKEN",
        "--diff-refresh-stale-secs",
        "[default: https://api.github.com]",
    ] {
        assert!(help.contains(setting), "help lacks {setting}");
    }
    assert!(!help.contains(TOKEN));
}
