//! Auto-archive by UTC day: a whole day's chats go together at the first tick after the
//! right midnight, never a tick earlier; pinned and busy chats stay; the limit archives
//! the oldest first.

mod support;

use agentq_scheduler::archive::archive_idle_chats;
use std::time::Duration as StdDuration;

use agentq_core::{domain::AcquiredTurn, store::NewToolCall};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use support::app::{TestApp, create_owner};
use uuid::Uuid;

async fn set(app: &TestApp, chat: Uuid, column_sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE chats SET {column_sql} WHERE id = $1"
    )))
    .bind(chat)
    .execute(app.services.store.pool())
    .await
    .unwrap();
}

/// Makes a just-created chat idle (its queued turn interrupted: `waiting`), last active at `at`.
async fn idle_since(app: &TestApp, chat: Uuid, at: DateTime<Utc>) {
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/interrupt"), json!(null))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "interrupted", "{body}");
    last_active(app, chat, at).await;
}

/// Backdates the chat's last activity; its status stays as it is.
async fn last_active(app: &TestApp, chat: Uuid, at: DateTime<Utc>) {
    app.services
        .store
        .backdate_chat_activity(chat, at)
        .await
        .unwrap();
}

/// A worker takes the chat's queued turn: the chat is `running`.
async fn start_turn(app: &TestApp, chat: Uuid) -> AcquiredTurn {
    app.services
        .store
        .acquire_queued_turn(chat, "test-worker/1", StdDuration::from_secs(600))
        .await
        .unwrap()
        .expect("a queued turn")
}

/// The worker's step asks the client for a dynamic tool's result: `requires_action`.
async fn ask_the_client(app: &TestApp, turn: &AcquiredTurn) {
    let completion = support::text_completion("fake-gpt", "Asking you.");
    let call = NewToolCall {
        provider_call_id: "call_ask".into(),
        name: "ask_user".into(),
        arguments: json!({}),
        dynamic: true,
        source: "client".into(),
    };
    let step = app
        .services
        .store
        .record_tool_step(
            turn,
            &turn.lease_owner,
            &completion,
            &[call],
            StdDuration::from_secs(600),
        )
        .await
        .unwrap();
    assert!(step.is_some(), "the worker still held the turn");
}

async fn archived(app: &TestApp, chat: Uuid) -> bool {
    sqlx::query_scalar("SELECT archived FROM chats WHERE id = $1")
        .bind(chat)
        .fetch_one(app.services.store.pool())
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_utc_day_of_chats_is_archived_together_at_the_right_midnight(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    app.client
        .put(format!("{}/api/v1/admin/config", app.base))
        .bearer_auth(&owner)
        .json(&json!({"auto_archive_days": 3}))
        .send()
        .await
        .unwrap();
    let early = app.create_chat("early").await;
    let late = app.create_chat("late").await;
    let next_day = app.create_chat("next day").await;
    idle_since(
        &app,
        early,
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 1).unwrap(),
    )
    .await;
    idle_since(
        &app,
        late,
        Utc.with_ymd_and_hms(2026, 6, 1, 23, 59, 59).unwrap(),
    )
    .await;
    idle_since(
        &app,
        next_day,
        Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap(),
    )
    .await;

    // Day 1 + 3 days + 1: due from 2026-06-05 00:00 UTC, and not one tick earlier.
    let before = archive_idle_chats(
        &app.services.store,
        Utc.with_ymd_and_hms(2026, 6, 4, 23, 59, 59).unwrap(),
    )
    .await
    .unwrap();
    assert!(before.archived.is_empty());
    assert!(!archived(&app, early).await && !archived(&app, late).await);
    let tick = archive_idle_chats(
        &app.services.store,
        Utc.with_ymd_and_hms(2026, 6, 5, 0, 0, 30).unwrap(),
    )
    .await
    .unwrap();
    let ids: Vec<Uuid> = tick.archived.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        vec![early, late],
        "the whole day, oldest first, and only that day"
    );
    assert!(archived(&app, early).await && archived(&app, late).await);
    assert!(!archived(&app, next_day).await);
    let archived_at: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT archived_at FROM chats WHERE id = $1")
            .bind(early)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert!(archived_at.is_some(), "the retention clock starts");
    let (_, list) = app.get("/api/v1/chats").await;
    assert_eq!(
        list["chats"].as_array().unwrap().len(),
        1,
        "archived chats leave the default list"
    );
    app.stop().await;
}

#[sqlx::test]
async fn pinned_and_busy_chats_stay_children_follow_and_the_limit_takes_the_oldest(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    app.client
        .put(format!("{}/api/v1/admin/config", app.base))
        .bearer_auth(&owner)
        .json(&json!({"auto_archive_days": 1, "auto_archive_limit": 3}))
        .send()
        .await
        .unwrap();
    let old = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let mut idle = Vec::new();
    for i in 0..5 {
        let chat = app.create_chat(&format!("idle {i}")).await;
        idle_since(&app, chat, old + chrono::Duration::minutes(i)).await;
        idle.push(chat);
    }
    let pinned = app.create_chat("pinned").await;
    idle_since(&app, pinned, old).await;
    set(&app, pinned, "pin_order = 1").await;
    let mut busy = Vec::new();
    // Busy: a turn queued (`pending`), on a worker (`running`), or waiting for the
    // client's tool result (`requires_action`).
    for status in ["pending", "running", "requires_action"] {
        let chat = app.create_chat(status).await;
        last_active(&app, chat, old).await;
        if status != "pending" {
            let turn = start_turn(&app, chat).await;
            if status == "requires_action" {
                ask_the_client(&app, &turn).await;
            }
        }
        let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
        assert_eq!(body["status"], status, "{body}");
        busy.push(chat);
    }
    // A subagent chat of the oldest root follows it.
    let child = app.create_chat("child").await;
    idle_since(&app, child, old).await;
    set(
        &app,
        child,
        &format!("parent_chat_id = '{0}', root_chat_id = '{0}'", idle[0]),
    )
    .await;
    // A finished subagent: it does not keep its family (a busy one would).

    let now = Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap();
    let first = archive_idle_chats(&app.services.store, now).await.unwrap();
    assert_eq!(
        first.archived.iter().map(|c| c.id).collect::<Vec<_>>(),
        idle[..3].to_vec(),
        "three per tick, oldest first"
    );
    assert!(archived(&app, child).await, "children follow their root");
    let second = archive_idle_chats(&app.services.store, now).await.unwrap();
    assert_eq!(
        second.archived.iter().map(|c| c.id).collect::<Vec<_>>(),
        idle[3..].to_vec(),
        "the rest on the next tick"
    );
    let third = archive_idle_chats(&app.services.store, now).await.unwrap();
    assert!(third.archived.is_empty());
    assert!(!archived(&app, pinned).await, "pinned chats stay");
    for chat in busy {
        assert!(!archived(&app, chat).await, "busy chats stay");
    }
    app.stop().await;
}

#[sqlx::test]
async fn activity_in_a_subagent_chat_keeps_its_family_from_being_archived(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&owner, json!({"auto_archive_days": 2}))
        .await;
    let root = app.create_chat("root").await;
    let child = app.create_chat("child").await;
    let old = Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0).unwrap();
    idle_since(&app, root, old).await;
    set(
        &app,
        child,
        &format!("parent_chat_id = '{root}', root_chat_id = '{root}'"),
    )
    .await;
    last_active(&app, child, old).await;
    // The subagent works on May 9: the whole family counts as active that day.
    let busy_day = Utc.with_ymd_and_hms(2026, 5, 9, 15, 0, 0).unwrap();
    last_active(&app, child, busy_day).await;
    let root_activity: DateTime<Utc> =
        sqlx::query_scalar("SELECT last_activity_at FROM chats WHERE id = $1")
            .bind(root)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert_eq!(
        root_activity, busy_day,
        "the root carries the family's newest activity"
    );

    // A subagent still pending or running keeps the family, however old the activity.
    let much_later = Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap();
    let tick = archive_idle_chats(&app.services.store, much_later)
        .await
        .unwrap();
    assert!(
        tick.archived.is_empty(),
        "a pending subagent keeps its family"
    );
    let turn = start_turn(&app, child).await;
    let tick = archive_idle_chats(&app.services.store, much_later)
        .await
        .unwrap();
    assert!(
        tick.archived.is_empty(),
        "a running subagent keeps its family"
    );
    // It finishes (which is activity now), and the family was last active on May 9.
    let done = app
        .services
        .store
        .interrupt_turn(turn.id, child, turn.step, &turn.lease_owner, None)
        .await
        .unwrap();
    assert!(done.is_some(), "the worker still held the turn");
    for chat in [child, root] {
        last_active(&app, chat, busy_day).await;
    }

    let may_11 = Utc.with_ymd_and_hms(2026, 5, 11, 23, 0, 0).unwrap();
    let tick = archive_idle_chats(&app.services.store, may_11)
        .await
        .unwrap();
    assert!(tick.archived.is_empty(), "not idle long enough as a family");
    let may_12 = Utc.with_ymd_and_hms(2026, 5, 12, 0, 0, 0).unwrap();
    let tick = archive_idle_chats(&app.services.store, may_12)
        .await
        .unwrap();
    assert_eq!(
        tick.archived.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![root]
    );
    assert!(archived(&app, child).await, "the child follows");
    app.stop().await;
}

#[sqlx::test]
async fn an_archived_chat_is_restored_by_hand_or_by_a_new_message(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let chat = app.create_chat("keep me").await;
    let child = app.create_chat("its subagent").await;
    for id in [chat, child] {
        app.wait_until_answered(id, 2, std::time::Duration::from_secs(10))
            .await;
    }
    set(
        &app,
        child,
        &format!("parent_chat_id = '{chat}', root_chat_id = '{chat}'"),
    )
    .await;
    let token = app.token.clone();
    let path = format!("/api/v1/chats/{chat}");

    let (status, body) = app.patch_as(&token, &path, json!({"archived": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["archived"], true);
    assert!(
        body["archived_at"].is_string(),
        "the retention clock starts"
    );
    assert!(archived(&app, child).await, "the subagent chat follows");

    let (status, body) = app
        .patch_as(&token, &path, json!({"archived": false}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["archived"].clone(), body["archived_at"].clone()),
        (json!(false), json!(null))
    );
    assert!(!archived(&app, child).await, "restored with its root");

    // Bad requests name the field; a subagent chat or someone else's chat is refused.
    let (status, body) = app.patch_as(&token, &path, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["validations"][0]["field"], "archived");
    let (status, _) = app
        .patch_as(
            &token,
            &format!("/api/v1/chats/{child}"),
            json!({"archived": true}),
        )
        .await;
    assert_eq!(status, 409);
    let bob = support::app::create_user(&app.services, "bob@example.com", "acme").await;
    let (status, _) = app.patch_as(&bob, &path, json!({"archived": true})).await;
    assert_eq!(status, 404);

    // Archived again, then a new message brings it (and its subagent) back.
    app.patch_as(&token, &path, json!({"archived": true})).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "still here"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(!archived(&app, chat).await, "a message restores the chat");
    assert!(!archived(&app, child).await);
    app.wait_until_answered(chat, 3, std::time::Duration::from_secs(10))
        .await;
    assert!(!archived(&app, chat).await);
    app.stop().await;
}
