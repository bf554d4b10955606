//! The scheduler as operators run it: any number of replicas, each tick run once
//! cluster-wide, one digest per owner per tick, a clean exit on SIGTERM.

mod support;

use std::{process::Command, time::Duration};

use agentq_scheduler::maintenance::run_tick;
use chrono::{TimeZone, Utc};
use serde_json::json;
use support::{
    app::{TestApp, create_owner, create_user, mail_config},
    process::AgentqProcess,
    smtp::SmtpSink,
};

#[sqlx::test]
async fn two_scheduler_processes_send_one_digest_per_owner(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    let smtp = SmtpSink::start();
    app.start_mail_worker(&mail_config(&smtp.url())).await;
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, json!({"auto_archive_days": 1}))
        .await;
    let carol = create_user(&app.services, "carol@example.com", "acme").await;
    let token = app.token.clone();
    let five_days_ago = Utc::now() - chrono::Duration::days(5);
    for (who, n) in [(&token, 3), (&carol, 2)] {
        for i in 0..n {
            app.create_idle_chat(who, &format!("chat {i}"), five_days_ago)
                .await;
        }
    }

    // Both fire maintenance every second, on the same ticks.
    let mut first = AgentqProcess::scheduler(&app, "* * * * * *");
    let mut second = AgentqProcess::scheduler(&app, "* * * * * *");
    smtp.wait_for(2, Duration::from_secs(30)).await;
    // Several more ticks of both replicas.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages_to("alice@example.com").len(), 1);
    assert_eq!(smtp.messages_to("carol@example.com").len(), 1);
    assert_eq!(smtp.messages().len(), 2);
    let alice_text = smtp.messages_to("alice@example.com")[0].text();
    assert!(alice_text.contains("3 chats of yours"), "{alice_text}");

    let pool = app.services.store.pool();
    let (ticks, archiving_ticks): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE (outcome->>'archived')::int > 0)
         FROM scheduler_ticks WHERE job = 'maintenance'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(ticks >= 3, "ticks kept running: {ticks}");
    assert_eq!(archiving_ticks, 1, "one tick archived everything");
    let emails: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_messages")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(emails, 2);

    assert!(first.terminate().success(), "exit 0 on SIGTERM");
    assert!(second.terminate().success(), "exit 0 on SIGTERM");
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_claims_of_one_tick_run_it_once(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let tick_at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 10, 0).unwrap();
    let runs = futures::future::join_all((0..8).map(|i| {
        let (store, producer) = (app.services.store.clone(), app.services.producer.clone());
        async move {
            run_tick(&store, &producer, tick_at, &format!("runner-{i}"))
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(runs.iter().filter(|r| r.is_some()).count(), 1);
    let next = run_tick(
        &app.services.store,
        &app.services.producer,
        tick_at + chrono::Duration::minutes(10),
        "runner-0",
    )
    .await
    .unwrap();
    assert!(next.is_some(), "the next tick is a new tick");
    let finished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM scheduler_ticks WHERE finished_at IS NOT NULL AND outcome IS NOT NULL",
    )
    .fetch_one(app.services.store.pool())
    .await
    .unwrap();
    assert_eq!(finished, 2, "each tick recorded what it did");
    app.stop().await;
}

#[test]
fn a_bad_cron_expression_is_refused_at_startup_with_its_text() {
    let output = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(["scheduler", "--maintenance-cron", "every monday"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("every monday"), "{stderr}");
    assert!(stderr.contains("--maintenance-cron"), "{stderr}");
}

#[sqlx::test]
async fn an_injected_clock_drives_the_daily_tick_at_utc_midnight(pool: sqlx::PgPool) {
    use std::sync::Arc;

    use agentq_scheduler::{OffsetClock, SchedulerConfig};

    let app = TestApp::start_api_only(pool).await;
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, json!({"auto_archive_days": 3}))
        .await;
    let token = app.token.clone();
    let chat = app
        .create_idle_chat(
            &token,
            "idle since June 1",
            Utc.with_ymd_and_hms(2026, 6, 1, 23, 59, 59).unwrap(),
        )
        .await;

    // Daily at midnight UTC; "now" is two seconds before June 5.
    let mut config: SchedulerConfig = agentq_core::config::defaults();
    config.maintenance_cron = "0 0 * * *".parse().unwrap();
    let clock = OffsetClock::starting_at(Utc.with_ymd_and_hms(2026, 6, 4, 23, 59, 58).unwrap());
    let stop = agentq_core::shutdown::CancellationToken::new();
    let scheduler = tokio::spawn(agentq_scheduler::run(
        app.services.store.clone(),
        app.services.producer.clone(),
        app.services.events.clone(),
        config,
        Arc::new(clock),
        stop.clone(),
    ));
    let tick_at: chrono::DateTime<Utc> =
        support::eventually(Duration::from_secs(10), "the midnight tick", || async {
            sqlx::query_scalar(
                "SELECT tick_at FROM scheduler_ticks WHERE job = 'maintenance' AND finished_at IS NOT NULL",
            )
            .fetch_optional(app.services.store.pool())
            .await
            .unwrap()
        })
        .await;
    assert_eq!(tick_at, Utc.with_ymd_and_hms(2026, 6, 5, 0, 0, 0).unwrap());
    let archived: bool = sqlx::query_scalar("SELECT archived FROM chats WHERE id = $1")
        .bind(chat)
        .fetch_one(app.services.store.pool())
        .await
        .unwrap();
    assert!(archived, "June 1 + 3 days: due at the June 5 midnight tick");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), scheduler)
        .await
        .expect("the scheduler stops on shutdown")
        .unwrap();
    app.stop().await;
}
