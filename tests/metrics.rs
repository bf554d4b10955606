//! Prometheus metrics appear and move: jobs run and fail, turn steps, provider errors,
//! queue gauges, open SSE streams; a worker process serves its own `/metrics`.

mod support;

use std::time::Duration;

use support::{
    app::TestApp, eventually, fake_openai::Reply, process::WorkerProcess, sse::is_status,
};

/// The value of the first sample of `name` whose labels contain every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse().ok())
                .flatten()
        })
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[sqlx::test]
async fn metrics_count_jobs_turns_provider_errors_and_queues(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let url = format!("{}/metrics", app.base);
    for i in 0..2 {
        let chat = app.create_chat(&format!("count me {i}")).await;
        app.wait_until_answered(chat, 2, Duration::from_secs(10))
            .await;
    }
    app.fake.script([Reply::Status {
        code: 401,
        retry_after: None,
        body: "{}".into(),
    }]);
    let failing = app.create_chat("this one fails").await;
    app.events_until(failing, Duration::from_secs(10), |e| is_status(e, "error"))
        .await;

    let text = eventually(Duration::from_secs(5), "the counters", || async {
        let text = scrape(&app.client, &url).await;
        (sample(
            &text,
            "agentq_jobs_total",
            &[("queue", "turns"), ("outcome", "ok")],
        ) >= Some(3.0))
        .then_some(text)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "agentq_turn_steps_total",
            &[("outcome", "completed")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "agentq_turn_steps_total", &[("outcome", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "agentq_provider_errors_total",
            &[("provider", "OpenAI"), ("kind", "auth")]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "agentq_provider_request_seconds_count",
            &[("provider", "OpenAI")]
        ) >= Some(3.0)
    );
    assert!(
        sample(
            &text,
            "agentq_job_wait_seconds_count",
            &[("queue", "turns")]
        ) >= Some(3.0)
    );
    assert_eq!(
        sample(&text, "agentq_queue_length", &[("queue", "turns")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "agentq_queue_dead_letters", &[("queue", "tools")]),
        Some(0.0)
    );
    assert_eq!(sample(&text, "agentq_redis_up", &[]), Some(1.0));

    // An open SSE stream is counted while it is open.
    let chat = app.create_chat("stream me").await;
    let stream = app
        .client
        .get(app.stream_url(chat))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let during = scrape(&app.client, &url).await;
    assert_eq!(
        sample(&during, "agentq_sse_streams_open", &[]),
        Some(1.0),
        "{during}"
    );
    drop(stream);
    eventually(
        Duration::from_secs(5),
        "the stream to be closed",
        || async {
            (sample(
                &scrape(&app.client, &url).await,
                "agentq_sse_streams_open",
                &[],
            ) == Some(0.0))
            .then_some(())
        },
    )
    .await;
    app.stop().await;
}

#[sqlx::test]
async fn a_worker_process_serves_its_own_metrics(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _worker = WorkerProcess::worker(&app, &["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let chat = app.create_chat("hello").await;
    app.wait_until_answered(chat, 2, Duration::from_secs(15))
        .await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = eventually(Duration::from_secs(5), "the worker's counters", || async {
        let text = app.client.get(&url).send().await.ok()?.text().await.ok()?;
        (sample(
            &text,
            "agentq_jobs_total",
            &[("queue", "turns"), ("outcome", "ok")],
        ) >= Some(1.0))
        .then_some(text)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "agentq_turn_steps_total",
            &[("outcome", "completed")]
        ),
        Some(1.0)
    );
    assert!(sample(&text, "agentq_queue_consumers", &[("queue", "turns")]) >= Some(1.0));
    app.stop().await;
}

#[sqlx::test]
async fn maintenance_ticks_archived_rows_and_emails_are_counted(pool: sqlx::PgPool) {
    use chrono::{TimeZone, Utc};
    use support::{
        app::{create_owner, mail_config},
        smtp::SmtpSink,
    };

    let mut app = TestApp::start_api_only(pool).await;
    let smtp = SmtpSink::start();
    app.start_mail_worker(&mail_config(&smtp.url())).await;
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, serde_json::json!({"auto_archive_days": 1}))
        .await;
    let token = app.token.clone();
    for i in 0..2 {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        app.create_idle_chat(&token, &format!("idle {i}"), at).await;
    }
    let tick_at = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
    for runner in ["a", "b"] {
        agentq_scheduler::maintenance::run_tick(
            &app.services.store,
            &app.services.producer,
            tick_at,
            runner,
        )
        .await
        .unwrap();
    }
    smtp.wait_for(1, Duration::from_secs(20)).await;
    let url = format!("{}/metrics", app.base);
    let text = eventually(Duration::from_secs(5), "the email counted", || async {
        let text = scrape(&app.client, &url).await;
        sample(&text, "agentq_email_attempts_total", &[("outcome", "sent")])
            .is_some()
            .then_some(text)
    })
    .await;
    let tick = |outcome| {
        sample(
            &text,
            "agentq_scheduler_ticks_total",
            &[("job", "maintenance"), ("outcome", outcome)],
        )
    };
    assert_eq!(tick("ok"), Some(1.0));
    assert_eq!(
        tick("skipped"),
        Some(1.0),
        "the second runner found it done"
    );
    assert_eq!(
        sample(
            &text,
            "agentq_maintenance_rows_total",
            &[("kind", "archived_chats")]
        ),
        Some(2.0)
    );
    assert_eq!(sample(&text, "agentq_emails_queued_total", &[]), Some(1.0));
    assert_eq!(
        sample(&text, "agentq_email_attempts_total", &[("outcome", "sent")]),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "agentq_scheduler_tick_seconds_count",
            &[("job", "maintenance")]
        ) == Some(1.0)
    );
    app.stop().await;
}
