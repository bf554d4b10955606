//! Retention: exactly the debug runs and archived chats past their window are deleted
//! (with what hangs off them); 0 keeps them; a tick never archives and deletes a chat at once.

mod support;

use agentq_core::{domain::DebugRunStatus, store::NewDebugStep};
use agentq_scheduler::{maintenance::maintain, retention::purge_expired};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use support::app::{TestApp, create_owner};
use uuid::Uuid;

async fn count(app: &TestApp, sql: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(app.services.store.pool())
        .await
        .unwrap()
}

/// A debug run of the chat's turn with one recorded step, left `status` (`Running`, or
/// finished as `status`), last changed at `updated_at`.
async fn debug_run(
    app: &TestApp,
    chat: Uuid,
    status: DebugRunStatus,
    updated_at: DateTime<Utc>,
) -> Uuid {
    let store = &app.services.store;
    let turn: Uuid = sqlx::query_scalar("SELECT id FROM chat_turns WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(store.pool())
        .await
        .unwrap();
    let run = store
        .start_debug_run(chat, turn, "fake", "fake-gpt")
        .await
        .unwrap();
    let step = NewDebugStep {
        step: 0,
        attempt: 1,
        request: json!({}),
        response: None,
        usage: None,
        error: None,
        started_at: Utc::now(),
        first_byte_ms: None,
        duration_ms: 1,
        last_message_id: None,
    };
    store.record_debug_step(run, &step).await.unwrap();
    if status != DebugRunStatus::Running {
        assert!(store.finish_debug_run(run, status, None).await.unwrap());
    }
    store.backdate_debug_run(run, updated_at).await.unwrap();
    run
}

#[sqlx::test]
async fn exactly_the_rows_past_each_window_are_deleted(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let now = Utc.with_ymd_and_hms(2026, 9, 1, 12, 0, 0).unwrap();
    // Defaults: debug retention 30 days, chat retention 30 days.
    let a = app.create_chat("a").await;
    let b = app.create_chat("b").await;
    let old_done = debug_run(&app, a, DebugRunStatus::Completed, now - Duration::days(31)).await;
    let old_running = debug_run(
        &app,
        b,
        DebugRunStatus::Running,
        now - Duration::days(30) - Duration::seconds(1),
    )
    .await;
    let recent = app.create_chat("recent").await;
    let kept = debug_run(
        &app,
        recent,
        DebugRunStatus::Completed,
        now - Duration::days(29),
    )
    .await;

    let gone = app.create_chat("archived long ago").await;
    let stays = app.create_chat("archived recently").await;
    let active = app.create_chat("never archived").await;
    for (chat, archived_at) in [
        (gone, Some(now - Duration::days(31))),
        (stays, Some(now - Duration::days(5))),
        (active, None),
    ] {
        sqlx::query(
            "UPDATE chats SET archived = $2, archived_at = $3, last_activity_at = $4 WHERE id = $1",
        )
        .bind(chat)
        .bind(archived_at.is_some())
        .bind(archived_at)
        .bind(now - Duration::days(400))
        .execute(app.services.store.pool())
        .await
        .unwrap();
    }

    let purged = purge_expired(&app.services.store, now).await.unwrap();
    assert_eq!((purged.debug_runs, purged.chats), (2, 1));
    let runs = |id| {
        count(
            &app,
            "SELECT count(*) FROM chat_debug_runs WHERE id = $1",
            id,
        )
    };
    assert_eq!(runs(old_done).await, 0);
    assert_eq!(runs(old_running).await, 0, "in-progress runs too");
    assert_eq!(runs(kept).await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM chat_debug_steps WHERE run_id = $1",
            old_done
        )
        .await,
        0,
        "steps cascade"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM chats WHERE id = $1", gone).await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM chat_messages WHERE chat_id = $1",
            gone
        )
        .await,
        0,
        "messages go with it"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM chats WHERE id = $1", stays).await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM chats WHERE id = $1", active).await,
        1,
        "unarchived chats are never purged"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_window_of_zero_keeps_everything_and_a_tick_never_archives_and_deletes_at_once(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let now = Utc.with_ymd_and_hms(2026, 9, 1, 12, 0, 0).unwrap();
    app.client
        .put(format!("{}/api/v1/admin/config", app.base))
        .bearer_auth(&owner)
        .json(&json!({"chat_retention_days": 0, "debug_retention_days": 0, "auto_archive_days": 1}))
        .send()
        .await
        .unwrap();
    let old = app.create_chat("old").await;
    debug_run(
        &app,
        old,
        DebugRunStatus::Completed,
        now - Duration::days(3000),
    )
    .await;
    sqlx::query("UPDATE chats SET archived = true, archived_at = $2 WHERE id = $1")
        .bind(old)
        .bind(now - Duration::days(3000))
        .execute(app.services.store.pool())
        .await
        .unwrap();
    let purged = purge_expired(&app.services.store, now).await.unwrap();
    assert_eq!((purged.debug_runs, purged.chats), (0, 0), "0 keeps forever");

    // Retention back to 1 day: an idle chat is archived by this tick, not deleted by it.
    app.client
        .put(format!("{}/api/v1/admin/config", app.base))
        .bearer_auth(&owner)
        .json(&json!({"chat_retention_days": 1}))
        .send()
        .await
        .unwrap();
    let idle = app
        .create_idle_chat(&app.token, "idle", now - Duration::days(10))
        .await;
    maintain(&app.services.store, &app.services.producer, now)
        .await
        .unwrap();
    let (archived, exists): (bool, bool) =
        sqlx::query_as("SELECT archived, true FROM chats WHERE id = $1")
            .bind(idle)
            .fetch_one(app.services.store.pool())
            .await
            .unwrap();
    assert!(
        archived && exists,
        "archived by the tick, kept until its own retention window passes"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM chats WHERE id = $1", old).await,
        0,
        "the long-archived one went"
    );
    app.stop().await;
}

/// Stores a file and links it to `chats`.
async fn file_linked_to(app: &TestApp, name: &str, chats: &[Uuid]) -> Uuid {
    let pool = app.services.store.pool();
    let file = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO files (id, owner_id, name, content)
         SELECT $1, owner_id, $2, '\\x00'::bytea FROM chats WHERE id = $3",
    )
    .bind(file)
    .bind(name)
    .bind(chats[0])
    .execute(pool)
    .await
    .unwrap();
    for chat in chats {
        sqlx::query("INSERT INTO chat_file_links (chat_id, file_id) VALUES ($1, $2)")
            .bind(chat)
            .bind(file)
            .execute(pool)
            .await
            .unwrap();
    }
    file
}

#[sqlx::test]
async fn files_go_with_purged_chats_unless_a_kept_chat_links_them(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let now = Utc.with_ymd_and_hms(2026, 9, 1, 12, 0, 0).unwrap();
    let gone = app.create_chat("archived long ago").await;
    let child = app.create_chat("its subagent").await;
    let kept = app.create_chat("archived recently").await;
    sqlx::query("UPDATE chats SET parent_chat_id = $2, root_chat_id = $2 WHERE id = $1")
        .bind(child)
        .bind(gone)
        .execute(app.services.store.pool())
        .await
        .unwrap();
    for (chat, archived_at) in [
        (gone, now - Duration::days(31)),
        (child, now - Duration::days(31)),
        (kept, now - Duration::days(2)),
    ] {
        sqlx::query("UPDATE chats SET archived = true, archived_at = $2 WHERE id = $1")
            .bind(chat)
            .bind(archived_at)
            .execute(app.services.store.pool())
            .await
            .unwrap();
    }
    let only_gone = file_linked_to(&app, "plan.md", &[gone]).await;
    let only_child = file_linked_to(&app, "child.png", &[child]).await;
    let shared = file_linked_to(&app, "shared.txt", &[gone, kept]).await;
    let only_kept = file_linked_to(&app, "kept.txt", &[kept]).await;
    // Uploads never attached to a chat: gone once older than the window.
    let orphan = |name: &'static str, created_at| {
        let pool = app.services.store.pool().clone();
        async move {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO files (id, owner_id, name, content, created_at)
                 SELECT $1, id, $2, '\\x00'::bytea, $3 FROM users LIMIT 1",
            )
            .bind(id)
            .bind(name)
            .bind(created_at)
            .execute(&pool)
            .await
            .unwrap();
            id
        }
    };
    let old_orphan = orphan("old.bin", now - Duration::days(31)).await;
    let new_orphan = orphan("new.bin", now - Duration::days(29)).await;

    let purged = purge_expired(&app.services.store, now).await.unwrap();
    assert_eq!((purged.chats, purged.files), (1, 3));
    let file = |id| count(&app, "SELECT count(*) FROM files WHERE id = $1", id);
    assert_eq!(file(only_gone).await, 0, "linked only by the purged chat");
    assert_eq!(
        file(only_child).await,
        0,
        "linked only by its subagent chat"
    );
    assert_eq!(file(shared).await, 1, "still linked to a kept chat");
    assert_eq!(file(only_kept).await, 1);
    assert_eq!(
        file(old_orphan).await,
        0,
        "unlinked and older than the window"
    );
    assert_eq!(
        file(new_orphan).await,
        1,
        "unlinked but recent: may still be attached"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM chat_file_links WHERE file_id = $1",
            shared
        )
        .await,
        1,
        "only the kept chat's link remains"
    );
    app.stop().await;
}
