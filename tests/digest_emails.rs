//! Archive digest emails, as their recipients get them from a real SMTP server: one email
//! per owner per tick, the oldest 25 titles with links, the rest counted, the retention
//! sentence; opted-out owners get nothing; an SMTP outage delays but never doubles a digest.

mod support;

use std::time::Duration;

use agentq_core::domain::NotificationStatus;
use agentq_scheduler::maintenance::run_tick;
use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::json;
use support::{
    app::{TestApp, create_owner, create_user, mail_config},
    eventually,
    smtp::{SmtpSink, smtp_url},
};
use uuid::Uuid;

async fn outbox(app: &TestApp) -> Vec<(String, NotificationStatus, i32, Option<String>)> {
    sqlx::query_as(
        "SELECT recipient, status, attempts, error FROM notification_messages ORDER BY recipient",
    )
    .fetch_all(app.services.store.pool())
    .await
    .unwrap()
}

async fn set_digest(
    app: &TestApp,
    token: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    app.put_as(token, "/api/v1/users/me/notification-preferences", body)
        .await
}

/// The API, a mail worker sending to a fresh SMTP server, and the site owner's token with
/// `settings` applied.
async fn app_with_mail(pool: sqlx::PgPool, settings: serde_json::Value) -> (TestApp, SmtpSink) {
    let mut app = TestApp::start_api_only(pool).await;
    let smtp = SmtpSink::start();
    app.start_mail_worker(&mail_config(&smtp.url())).await;
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, settings).await;
    (app, smtp)
}

#[sqlx::test]
async fn an_owner_with_30_archived_chats_gets_one_digest_of_the_oldest_25(pool: sqlx::PgPool) {
    let (app, smtp) = app_with_mail(
        pool,
        // Alice creates 30 chats back to back, the whole default burst of chats_per_minute.
        json!({"auto_archive_days": 7, "chat_retention_days": 30, "chats_per_minute": 0}),
    )
    .await;
    let token = app.token.clone();
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let (status, prefs) = set_digest(&app, &bob, json!({"archive_digest": false})).await;
    assert_eq!(
        (status, prefs),
        (StatusCode::OK, json!({"archive_digest": false}))
    );

    let day = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let mut chats = Vec::new();
    // Created newest first, so the order in the email comes from activity, not insertion.
    for i in (0..30).rev() {
        let at = day + chrono::Duration::minutes(i);
        chats.push(
            app.create_idle_chat(&token, &format!("Chat {i:02}"), at)
                .await,
        );
    }
    chats.reverse();
    app.create_idle_chat(&bob, "Bob's idle chat", day).await;

    // Activity on June 1 with 7 days: due from June 9, 00:00 UTC.
    let early = app
        .maintenance_tick(Utc.with_ymd_and_hms(2026, 6, 8, 23, 50, 0).unwrap())
        .await
        .unwrap();
    assert_eq!((early.archived, early.emails_queued), (0, 0));
    let tick_at = Utc.with_ymd_and_hms(2026, 6, 9, 0, 0, 0).unwrap();
    let tick = app.maintenance_tick(tick_at).await.expect("the tick runs");
    assert_eq!(tick.archived, 31);
    assert_eq!(tick.emails_queued, 1, "bob opted out");

    let received = smtp.wait_for(1, Duration::from_secs(20)).await;
    let email = &received[0];
    assert_eq!(email.to, vec!["alice@example.com".to_owned()]);
    assert_eq!(
        email.subject(),
        "Chats auto-archived after 7 days of inactivity"
    );
    let text = email.text();
    for i in 0..25 {
        assert!(
            text.contains(&format!("Chat {i:02}")),
            "oldest 25 listed:\n{text}"
        );
    }
    for i in 25..30 {
        assert!(
            !text.contains(&format!("Chat {i:02}")),
            "newest 5 not listed:\n{text}"
        );
    }
    assert!(text.contains("...and 5 more."), "{text}");
    assert!(text.contains(&format!(
        "Chat 00 <https://agents.example.com/chats/{}>, last active 8 days ago",
        chats[0]
    )));
    assert!(text.contains(
        "You can restore them within 30 days, after which they will be permanently deleted."
    ));
    let html = email.html();
    assert!(html.contains(&format!(
        "<a href=\"https://agents.example.com/chats/{}\">Chat 00</a>",
        chats[0]
    )));
    assert!(html.contains("...and 5 more."));

    // The same tick fired again (another replica, a restart) does nothing.
    let again = run_tick(
        &app.services.store,
        &app.services.producer,
        tick_at,
        "other",
    )
    .await
    .unwrap();
    assert!(again.is_none(), "a tick runs once");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.messages().len(), 1, "one digest, and none for bob");
    let rows = outbox(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].1, rows[0].2), (NotificationStatus::Sent, 1));
    app.stop().await;
}

#[sqlx::test]
async fn with_retention_off_the_digest_says_chats_are_kept(pool: sqlx::PgPool) {
    let (app, smtp) = app_with_mail(
        pool,
        json!({"auto_archive_days": 1, "chat_retention_days": 0}),
    )
    .await;
    let token = app.token.clone();
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
    app.create_idle_chat(&token, "Only one", at).await;
    let tick_at = Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap();
    app.maintenance_tick(tick_at).await;
    let received = smtp.wait_for(1, Duration::from_secs(20)).await;
    let text = received[0].text();
    assert_eq!(
        received[0].subject(),
        "Chats auto-archived after 1 day of inactivity"
    );
    assert!(text.contains("Only one"));
    assert!(text.contains("last active 3 days ago"), "{text}");
    assert!(text.contains("Archived chats are kept indefinitely."));
    assert!(!text.contains("permanently deleted"));
    assert!(!text.contains("more."), "no remainder line for one chat");
    app.stop().await;
}

#[sqlx::test]
async fn smtp_down_then_up_delivers_each_digest_exactly_once(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    let port = SmtpSink::unused_port();
    app.start_mail_worker(&mail_config(&smtp_url(port))).await;
    app.start_recovery_every_second();
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, json!({"auto_archive_days": 2}))
        .await;
    let alice = app.token.clone();
    let carol = create_user(&app.services, "carol@example.com", "acme").await;
    let at = Utc.with_ymd_and_hms(2026, 2, 1, 8, 0, 0).unwrap();
    app.create_idle_chat(&alice, "Alice's", at).await;
    app.create_idle_chat(&carol, "Carol's", at).await;
    let tick_at = Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap();
    let tick = app.maintenance_tick(tick_at).await.unwrap();
    assert_eq!(tick.emails_queued, 2);

    // Nothing listens: both attempts fail, and the rows say why and wait to retry.
    let failed = eventually(Duration::from_secs(20), "failed first attempts", || async {
        let rows = outbox(&app).await;
        rows.iter()
            .all(|(_, status, attempts, error)| {
                *status == NotificationStatus::Queued && *attempts >= 1 && error.is_some()
            })
            .then_some(rows)
    })
    .await;
    assert!(
        failed[0].3.as_deref().unwrap().contains("SMTP"),
        "{failed:?}"
    );

    let smtp = SmtpSink::start_on(port);
    smtp.wait_for(2, Duration::from_secs(30)).await;
    // Recovery keeps ticking: nothing more may arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages_to("alice@example.com").len(), 1);
    assert_eq!(smtp.messages_to("carol@example.com").len(), 1);
    assert_eq!(smtp.messages().len(), 2);
    for (recipient, status, attempts, _) in outbox(&app).await {
        assert_eq!(status, NotificationStatus::Sent, "{recipient}");
        assert!(attempts >= 2, "{recipient}: sent on a retry");
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_digest_that_keeps_failing_ends_failed_with_its_error(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    let mut mail = mail_config(&smtp_url(SmtpSink::unused_port()));
    mail.max_attempts = 2;
    app.start_mail_worker(&mail).await;
    app.start_recovery_every_second();
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, json!({"auto_archive_days": 2}))
        .await;
    let alice = app.token.clone();
    app.create_idle_chat(
        &alice,
        "Doomed",
        Utc.with_ymd_and_hms(2026, 2, 1, 8, 0, 0).unwrap(),
    )
    .await;
    app.maintenance_tick(Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap())
        .await;
    let rows = eventually(Duration::from_secs(30), "the email to fail", || async {
        let rows = outbox(&app).await;
        (rows.len() == 1 && rows[0].1 == NotificationStatus::Failed).then_some(rows)
    })
    .await;
    assert_eq!(rows[0].2, 2, "two attempts, then it gave up");
    let error = rows[0].3.clone().unwrap();
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    app.stop().await;
}

#[sqlx::test]
async fn notification_preferences_are_read_and_validated(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let (status, prefs) = app.get("/api/v1/users/me/notification-preferences").await;
    assert_eq!(
        (status, prefs),
        (StatusCode::OK, json!({"archive_digest": true}))
    );
    let token = app.token.clone();
    for (body, field) in [
        (json!({}), "archive_digest"),
        (json!({"archive_digest": "no"}), "archive_digest"),
        (json!({"archive_digest": true, "weekly": true}), "weekly"),
    ] {
        let (status, error) = set_digest(&app, &token, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            error["validations"][0]["field"]
                .as_str()
                .unwrap_or_default()
                .contains(field)
                || error["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(field),
            "{body} -> {error}"
        );
    }
    let (status, _) = set_digest(&app, &token, json!({"archive_digest": false})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, prefs) = app.get("/api/v1/users/me/notification-preferences").await;
    assert_eq!(prefs, json!({"archive_digest": false}));
    app.stop().await;
}

#[sqlx::test]
async fn with_a_mail_dir_the_digest_is_written_as_an_eml_file(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    let dir = std::env::temp_dir().join(format!("agentq-mail-{}", Uuid::new_v4().simple()));
    let mut mail = mail_config("");
    mail.smtp_url = None;
    mail.mail_dir = Some(dir.clone());
    app.start_mail_worker(&mail).await;
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, json!({"auto_archive_days": 3}))
        .await;
    let token = app.token.clone();
    let chat = app
        .create_idle_chat(
            &token,
            "Saved to disk",
            Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap(),
        )
        .await;
    app.maintenance_tick(Utc.with_ymd_and_hms(2026, 4, 20, 0, 0, 0).unwrap())
        .await;
    // The file appears whole (it is written under another name, then renamed): the first
    // read of it is the whole message, and nothing else is left in the directory.
    let file = eventually(Duration::from_secs(20), "an .eml file", || async {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"))
    })
    .await;
    let raw = std::fs::read(&file).unwrap();
    let outbox_id: Uuid = sqlx::query_scalar("SELECT id FROM notification_messages")
        .fetch_one(app.services.store.pool())
        .await
        .unwrap();
    assert_eq!(
        file.file_name().unwrap().to_str().unwrap(),
        format!("{outbox_id}.eml"),
        "named after its outbox row, so a redelivery replaces it"
    );
    let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        message.subject(),
        Some("Chats auto-archived after 3 days of inactivity")
    );
    let text = message.body_text(0).unwrap();
    assert!(
        text.contains(&format!("https://agents.example.com/chats/{chat}")),
        "{text}"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// Archives one idle chat of alice's and returns the digest's outbox row (no mail worker).
async fn one_queued_digest(app: &TestApp) -> Uuid {
    let root = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&root, json!({"auto_archive_days": 1}))
        .await;
    let token = app.token.clone();
    let at = Utc.with_ymd_and_hms(2026, 2, 1, 8, 0, 0).unwrap();
    app.create_idle_chat(&token, "Idle", at).await;
    app.maintenance_tick(Utc.with_ymd_and_hms(2026, 2, 5, 0, 0, 0).unwrap())
        .await
        .unwrap();
    sqlx::query_scalar("SELECT id FROM notification_messages")
        .fetch_one(app.services.store.pool())
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_sender_whose_lease_expired_cannot_record_its_outcome(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let id = one_queued_digest(&app).await;
    let store = &app.services.store;
    let lease = Duration::from_millis(300);
    let first = store.claim_notification(id, lease).await.unwrap().unwrap();
    assert!(
        store.claim_notification(id, lease).await.unwrap().is_none(),
        "held while the lease runs"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = store.claim_notification(id, lease).await.unwrap().unwrap();
    assert_eq!((first.attempts, second.attempts), (1, 2));
    // The stalled first sender wakes up: none of its outcomes land.
    assert!(!store.mark_notification_sent(id, 1).await.unwrap());
    assert!(
        !store
            .retry_notification(id, 1, "late", Utc::now())
            .await
            .unwrap()
    );
    assert!(!store.fail_notification(id, 1, "late").await.unwrap());
    assert!(store.mark_notification_sent(id, 2).await.unwrap());
    assert!(
        store.claim_notification(id, lease).await.unwrap().is_none(),
        "a sent email is never claimed again"
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_unanswered_email_is_nudged_less_and_less_often(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let id = one_queued_digest(&app).await;
    let store = &app.services.store;
    let nudged = || async {
        store
            .nudge_due_notifications(Duration::from_secs(1), 10)
            .await
            .unwrap()
    };
    // The tick's own nudge counts: nothing for a second.
    assert!(nudged().await.is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(nudged().await, vec![id]);
    // The next wait is twice as long.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(nudged().await.is_empty());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(nudged().await, vec![id]);
    // A worker that takes it resets the count.
    store
        .claim_notification(id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let nudges: i32 = sqlx::query_scalar("SELECT nudges FROM notification_messages")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(nudges, 0);
    app.stop().await;
}
