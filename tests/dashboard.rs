//! The operator dashboard at `/admin`, in a real headless Chromium against a running agentq:
//! the overview follows a queue's depth and the worker processes live (its script swaps
//! the page's content in place, no reload); a dead letter retried from the page runs; a
//! token that is not a site owner's is refused; a form without the session's CSRF token is
//! refused. The same refusals are checked over plain HTTP too, where the cookies'
//! attributes can be read. With `AGENTQ_DASHBOARD_SCREENSHOTS=<dir>` the browser tests
//! write the README's screenshots there.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use agentq_core::{queue::RunToolCall, shutdown::CancellationToken};
use reqwest::{StatusCode, header};
use serde_json::Value;
use support::{
    app::{TestApp, create_owner},
    browser::Browser,
    eventually,
    fake_openai::Reply,
    flaky_tools::flaky_tools_consumer,
    process::AgentqProcess,
};

const LIVE: Duration = Duration::from_secs(20);

#[sqlx::test]
async fn the_overview_follows_a_queue_and_the_worker_processes_live(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only_with(pool, |api| api.dashboard_sample_ms = 400).await;
    let owner = create_owner(&app.services, "ops@example.com").await;
    let browser = Browser::start().await;
    browser.sign_in(&app.base, &owner).await;
    browser.wait_for_path("/admin").await;
    browser.wait_for_text("#depth-turns", "0", LIVE).await;
    // Set on the page itself: still there at the end means the page was never reloaded,
    // every change below arrived through the script's refresh.
    browser
        .client
        .execute("window.agentqMarker = 'same page'; return null;", vec![])
        .await
        .unwrap();

    // No worker runs: each new chat's turn waits in the turns queue.
    for n in 0..3 {
        app.create_chat(&format!("question {n}")).await;
    }
    browser.wait_for_text("#depth-turns", "3", LIVE).await;
    assert!(browser.find("tr[data-process^='worker-']").await.is_none());

    // A worker process starts: it appears, and it drains the queue.
    let mut worker = AgentqProcess::worker(&app, &[]);
    browser
        .wait_for_presence("tr[data-process^='worker-']", true, LIVE)
        .await;
    // Its busy slots per queue, out of its concurrency.
    let row = browser.read("tr[data-process^='worker-']").await;
    assert!(row.contains("worker") && row.contains("turns "), "{row}");
    browser.wait_for_text("#depth-turns", "0", LIVE).await;
    browser
        .wait_for_text("#turns-by-status tr[data-status=completed] td", "3", LIVE)
        .await;
    // The jobs/s chart has its line once a few samples are in.
    browser
        .wait_for_presence(".chart polyline.turns", true, LIVE)
        .await;
    browser.screenshot("dashboard-overview.png").await;

    // It stops: it leaves the registry, and the page.
    assert!(worker.terminate().success());
    browser
        .wait_for_presence("tr[data-process^='worker-']", false, LIVE)
        .await;
    let marker = browser
        .client
        .execute("return window.agentqMarker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, Value::from("same page"), "the page was reloaded");
    browser.close().await;
}

#[sqlx::test]
async fn a_dead_letter_retried_from_the_page_runs_and_a_form_without_csrf_is_refused(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "ops@example.com").await;
    let healthy = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let _runner = flaky_tools_consumer(&app, healthy.clone(), runs.clone(), stop.clone());
    let job = RunToolCall {
        tool_call_id: uuid::Uuid::now_v7(),
    };
    app.services.producer.enqueue(&job).await.unwrap();

    let browser = Browser::start().await;
    browser.sign_in(&app.base, &owner).await;
    browser.wait_for_path("/admin").await;
    browser
        .open(&format!("{}/admin/dead-letters", app.base))
        .await;
    // The page refreshes itself: the letter shows up when the job gives up.
    browser
        .wait_for_presence("#queue-tools tr[data-dead-letter]", true, LIVE)
        .await;
    let row = browser.read("#queue-tools tr[data-dead-letter]").await;
    assert!(row.contains("the tool backend is down"), "{row}");
    assert!(row.contains(&job.tool_call_id.to_string()), "{row}");
    assert_eq!(
        browser
            .read("#queue-tools tr[data-dead-letter] td.num")
            .await,
        "2",
        "two failed runs"
    );
    browser.screenshot("dashboard-dead-letters.png").await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A form whose CSRF token was taken out is refused, and nothing is dropped.
    browser
        .client
        .execute(
            "const form = document.querySelector('#queue-tools tr[data-dead-letter] form[action$=\"/drop\"]');
             form.querySelector('input[name=csrf]').remove();
             form.querySelector('button').click();
             return null;",
            vec![],
        )
        .await
        .unwrap();
    let refusal = browser.wait_for_page_text("CSRF").await;
    assert!(refusal.contains("403"), "{refusal}");
    browser
        .open(&format!("{}/admin/dead-letters", app.base))
        .await;
    assert!(
        browser
            .find("#queue-tools tr[data-dead-letter]")
            .await
            .is_some(),
        "the letter is still there"
    );

    // The backend recovers; the operator clicks Retry on the letter.
    healthy.store(true, Ordering::SeqCst);
    browser
        .find("#queue-tools tr[data-dead-letter] form[action$='/retry'] button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(LIVE, "the retried job to run", || async {
        (runs.load(Ordering::SeqCst) == 3).then_some(())
    })
    .await;
    browser.wait_for_path("/admin/dead-letters").await;
    browser.wait_for_page_text("Retried 1 dead letter").await;
    browser
        .wait_for_presence("#queue-tools tr[data-dead-letter]", false, LIVE)
        .await;
    stop.cancel();
    browser.close().await;
}

#[sqlx::test]
async fn a_token_that_is_not_a_site_owners_cannot_sign_in(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let browser = Browser::start().await;
    // `app.token` is a member's (agents-access in an organization), not a site owner's.
    browser.sign_in(&app.base, &app.token).await;
    browser.wait_for_page_text("only site owners").await;
    assert_eq!(browser.path().await, "/admin/login");
    browser.open(&format!("{}/admin", app.base)).await;
    assert_eq!(browser.path().await, "/admin/login", "no session was made");

    browser.sign_in(&app.base, "aq_not_a_token").await;
    browser.wait_for_page_text("invalid or expired").await;
    browser.screenshot("dashboard-login.png").await;
    browser.close().await;
}

#[sqlx::test]
async fn the_scheduler_and_attention_pages_show_ticks_and_chats_in_error(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "ops@example.com").await;
    // A maintenance tick as the scheduler's loop runs it (with its schedule).
    let schedule: agentq_scheduler::Schedule = "*/10 * * * *".parse().unwrap();
    let tick_at = schedule
        .next_after(chrono::Utc::now() - chrono::Duration::minutes(10))
        .unwrap();
    agentq_scheduler::maintenance::run_scheduled_tick(
        &app.services.store,
        &app.services.producer,
        Some(&schedule),
        tick_at,
        "scheduler-test",
    )
    .await
    .unwrap()
    .expect("the tick is ours");
    // A chat whose provider refuses the request ends in `error`.
    app.fake.script([Reply::Status {
        code: 400,
        retry_after: None,
        body: r#"{"error":{"message":"this model does not exist","type":"invalid_request_error"}}"#
            .into(),
    }]);
    let chat = app.create_chat("hello").await;
    eventually(LIVE, "the chat in error", || async {
        let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (body["status"] == "error").then_some(())
    })
    .await;

    let browser = Browser::start().await;
    browser.sign_in(&app.base, &owner).await;
    browser.wait_for_path("/admin").await;
    browser.open(&format!("{}/admin/scheduler", app.base)).await;
    let row = browser.read("tr[data-job=maintenance]").await;
    assert!(row.contains("every 10 minutes, UTC"), "{row}");
    assert!(row.contains("scheduler-test"), "{row}");
    assert!(row.contains("archived 0"), "{row}");
    let next = schedule.next_after(chrono::Utc::now()).unwrap();
    assert!(
        row.contains(&next.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        "{row} names the next tick {next}"
    );
    browser.screenshot("dashboard-scheduler.png").await;

    browser.open(&format!("{}/admin/attention", app.base)).await;
    let row = browser.read(&format!("tr[data-chat='{chat}']")).await;
    assert!(row.contains("alice@example.com"), "{row}");
    assert!(row.contains("HTTP 400"), "{row}");
    let kind = browser
        .read(&format!("tr[data-chat='{chat}'] code.kind"))
        .await;
    assert!(!kind.is_empty() && kind != "unknown", "{kind}");
    browser.screenshot("dashboard-attention.png").await;
    browser
        .find(&format!("tr[data-chat='{chat}'] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_path(&format!("/admin/chats/{chat}/debug-export"))
        .await;
    let export: Value =
        serde_json::from_str(&browser.wait_for_page_text("\"chat_id\"").await).unwrap();
    assert_eq!(export["chat_id"], chat.to_string());
    assert_eq!(export["version"], 1);
    browser.close().await;
}

/// `name=value` of a `Set-Cookie` header named `name`, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

const FORM: &str = "application/x-www-form-urlencoded";

/// `fields` as a browser encodes a form.
fn encode(fields: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The value of the first hidden `csrf` field in `html`.
fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

#[sqlx::test]
async fn sessions_and_forms_refuse_what_the_dashboard_did_not_issue(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "ops@example.com").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", app.base);

    let response = http.get(url("/admin")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/admin/login");

    // The sign-in form's nonce is in its cookie and in the form; both must come back.
    let response = http.get(url("/admin/login")).send().await.unwrap();
    let login_cookie = set_cookie(&response, "agentq_admin_login").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(login_cookie.contains(attribute), "{login_cookie}");
    }
    let nonce = csrf_field(&response.text().await.unwrap());
    let pair = format!("agentq_admin_login={nonce}");
    assert!(login_cookie.starts_with(&pair));
    let sign_in = |token: &str, csrf: Option<&str>, cookie: Option<&str>, tls: bool| {
        let mut form = vec![("token", token.to_owned())];
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf.to_owned()));
        }
        let mut request = http
            .post(url("/admin/login"))
            .header(header::CONTENT_TYPE, FORM)
            .body(encode(&form));
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if tls {
            request = request.header("x-forwarded-proto", "https");
        }
        request.send()
    };
    let refused = sign_in(&owner, Some(&nonce), None, false).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "no nonce cookie");
    let refused = sign_in(&owner, None, Some(&pair), false).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "no nonce in the form"
    );
    let refused = sign_in(&app.token, Some(&nonce), Some(&pair), false)
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "a member's token");
    assert!(set_cookie(&refused, "agentq_admin").is_none());
    let refused = sign_in("aq_nope", Some(&nonce), Some(&pair), false)
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let signed_in = sign_in(&owner, Some(&nonce), Some(&pair), false)
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[header::LOCATION], "/admin");
    let session = set_cookie(&signed_in, "agentq_admin").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    assert!(
        !session.contains(&owner),
        "the token itself is never in the cookie"
    );
    let session = session.split(';').next().unwrap().to_owned();
    let behind_tls = sign_in(&owner, Some(&nonce), Some(&pair), true)
        .await
        .unwrap();
    assert!(
        set_cookie(&behind_tls, "agentq_admin")
            .unwrap()
            .contains("; Secure"),
        "behind a TLS proxy the cookie is Secure"
    );

    let page = http
        .get(url("/admin/dead-letters"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let csrf = csrf_field(&page.text().await.unwrap());

    // Every form needs the session's CSRF token: missing or wrong is a 403.
    let post = |csrf: Option<&str>, cookie: &str| {
        let form: Vec<(&str, String)> = csrf.map(|c| ("csrf", c.to_owned())).into_iter().collect();
        http.post(url("/admin/dead-letters/tools/retry"))
            .header(header::COOKIE, cookie.to_owned())
            .header(header::CONTENT_TYPE, FORM)
            .body(encode(&form))
            .send()
    };
    assert_eq!(
        post(None, &session).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(Some(&nonce), &session).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let done = post(Some(&csrf), &session).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()[header::LOCATION],
        "/admin/dead-letters?retried=0"
    );

    // A cookie whose signature does not hold is no session.
    let mut forged = session.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let response = http
        .get(url("/admin"))
        .header(header::COOKIE, &forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // Revoking the token ends the session on its next request.
    let (_, tokens) = app.get_as(&owner, "/api/v1/users/me/tokens").await;
    let id = tokens["tokens"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete_as(&owner, &format!("/api/v1/users/me/tokens/{id}"))
            .await,
        StatusCode::NO_CONTENT
    );
    let response = http
        .get(url("/admin"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/admin/login");
}
