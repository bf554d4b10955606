//! The chat list, live (issue #14 item 5): `GET /api/v1/chats/events` tells a sidebar about
//! its user's chats being created, run, renamed, archived, restored, pinned and deleted,
//! subagent chats under their root, and never about anyone else's; a client that reconnects
//! with `Last-Event-ID` gets what it missed exactly once; a malformed id is a 400. A turn is
//! announced from what its statements return, without reading its chat again.

mod support;

use std::{cell::RefCell, collections::HashSet, time::Duration};

use agentq_core::events::{ChatListChange, chat_list_feed::READ_SPACING};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_user},
    fake_openai::{LAST_RESULT_CHAT_ID, Reply},
    metrics::counter,
    sse::{self, Follower, Received},
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn list_url(app: &TestApp) -> String {
    format!("{}/api/v1/chats/events", app.base)
}

/// The chat an event is about.
fn chat_of(event: &Received) -> Option<Uuid> {
    let id = match event.event.as_str() {
        "created" | "updated" => &event.data["chat"]["id"],
        "deleted" => &event.data["chat_id"],
        _ => return None,
    };
    id.as_str().and_then(|s| s.parse().ok())
}

/// True for a `kind` event about `chat` whose entry satisfies `check`.
fn about(event: &Received, kind: &str, chat: Uuid, check: impl Fn(&Value) -> bool) -> bool {
    event.event == kind && chat_of(event) == Some(chat) && check(&event.data["chat"])
}

async fn create(app: &TestApp, token: &str, body: Value) -> Uuid {
    let (status, body) = app.post_as(token, "/api/v1/chats", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn patch(app: &TestApp, chat: Uuid, body: Value) {
    let (status, reply) = app
        .patch_as(&app.token, &format!("/api/v1/chats/{chat}"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// Reads `follower` until an event satisfies `stop`, and returns what it read.
async fn until(
    follower: &mut Follower,
    what: &str,
    stop: impl Fn(&Received) -> bool,
) -> Vec<Received> {
    let events = follower.until(WAIT, &stop).await;
    assert!(
        events.last().is_some_and(&stop),
        "no event for {what}; got {:#?}",
        events
            .iter()
            .map(|e| (&e.event, &e.data))
            .collect::<Vec<_>>()
    );
    events
}

#[sqlx::test]
async fn a_sidebar_follows_its_chats_from_creation_through_a_turn_to_deletion(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let mut alice_list = sse::follow(&app.client, &list_url(&app), &app.token, None).await;
    let mut bob_list = sse::follow(&app.client, &list_url(&app), &bob, None).await;

    // Bob's chat is on Bob's list.
    let bobs = create(&app, &bob, json!({"message": "bob's secret plans"})).await;
    until(&mut bob_list, "bob's chat", |e| {
        about(e, "created", bobs, |_| true)
    })
    .await;

    // Alice's chat: created, then its first turn runs (the model takes a moment to answer,
    // so `running` is there to see) and it waits for her.
    app.fake
        .script_for("GREETING", [Reply::Hang(Duration::from_millis(1_500))]);
    let chat = create(
        &app,
        &app.token,
        json!({"message": "GREETING hello", "title": "Greeting"}),
    )
    .await;
    let mut seen = until(&mut alice_list, "the chat to be created", |e| {
        about(e, "created", chat, |c| c["title"] == "Greeting")
    })
    .await;
    let created = seen.last().unwrap().data["chat"].clone();
    assert_eq!(created["root_chat_id"], Value::Null, "{created}");
    assert_eq!(created["archived"], false, "{created}");
    seen.extend(
        until(&mut alice_list, "the turn to finish", |e| {
            about(e, "updated", chat, |c| c["status"] == "waiting")
        })
        .await,
    );
    // A sidebar keeps the entry with the later `updated_at` (announcers of different
    // processes may interleave); in that order the status only moves forward.
    let mut entries: Vec<&Value> = seen
        .iter()
        .filter(|e| chat_of(e) == Some(chat))
        .map(|e| &e.data["chat"])
        .collect();
    entries.sort_by_key(|c| {
        c["updated_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    });
    let statuses: Vec<&str> = entries
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"running"),
        "the turn ran for over a second: {statuses:?}"
    );
    let rank = |s: &str| {
        ["pending", "running", "waiting"]
            .iter()
            .position(|r| *r == s)
    };
    assert!(
        statuses.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "statuses only move forward: {statuses:?}"
    );

    // Renamed, archived, restored: each shows up with the whole entry as it is now.
    patch(&app, chat, json!({"title": "Small talk"})).await;
    until(&mut alice_list, "the rename", |e| {
        about(e, "updated", chat, |c| c["title"] == "Small talk")
    })
    .await;
    patch(&app, chat, json!({"archived": true})).await;
    until(&mut alice_list, "the archive", |e| {
        about(e, "updated", chat, |c| {
            c["archived"] == true && c["title"] == "Small talk" && c["status"] == "waiting"
        })
    })
    .await;
    patch(&app, chat, json!({"archived": false})).await;
    until(&mut alice_list, "the restore", |e| {
        about(e, "updated", chat, |c| c["archived"] == false)
    })
    .await;

    // Pinning a second chat first moves the first one down: both entries are announced.
    patch(&app, chat, json!({"pin_order": 1})).await;
    until(&mut alice_list, "the pin", |e| {
        about(e, "updated", chat, |c| c["pin_order"] == 1)
    })
    .await;
    let other = create(&app, &app.token, json!({"message": "another"})).await;
    app.wait_until_answered(other, 2, WAIT).await;
    patch(&app, other, json!({"pin_order": 1})).await;
    let moved = until(&mut alice_list, "the first chat's new place", |e| {
        about(e, "updated", chat, |c| c["pin_order"] == 2)
    })
    .await;
    assert!(
        moved
            .iter()
            .any(|e| about(e, "updated", other, |c| c["pin_order"] == 1)),
        "{moved:?}"
    );

    // Deleted: the id, and nothing more about it.
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{chat}"))
            .await,
        StatusCode::NO_CONTENT
    );
    let gone = until(&mut alice_list, "the deletion", |e| {
        e.event == "deleted" && chat_of(e) == Some(chat)
    })
    .await;
    assert_eq!(gone.last().unwrap().data["root_chat_id"], Value::Null);

    // Neither list ever mentioned the other user's chats.
    app.services.events.flush().await;
    let alice_rest = alice_list
        .until(Duration::from_millis(300), |_| false)
        .await;
    let bob_rest = bob_list.until(Duration::from_millis(300), |_| false).await;
    let alice_saw: Vec<Uuid> = seen.iter().chain(&alice_rest).filter_map(chat_of).collect();
    assert!(!alice_saw.contains(&bobs), "{alice_saw:?}");
    assert!(
        bob_rest.iter().filter_map(chat_of).all(|c| c == bobs),
        "{bob_rest:?}"
    );
    // A replay of Bob's whole stream holds his chat only.
    let bob_all = sse::read_until(
        &app.client,
        &list_url(&app),
        &bob,
        None,
        Duration::from_millis(500),
        |_| false,
    )
    .await;
    assert!(!bob_all.is_empty());
    assert!(
        bob_all.iter().filter_map(chat_of).all(|c| c == bobs),
        "{bob_all:?}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_subagent_chat_is_announced_under_its_root(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let mut list = sse::follow(&app.client, &list_url(&app), &app.token, None).await;
    app.fake.script_for(
        "PARENT",
        [
            Reply::ToolCalls(vec![(
                "c1".into(),
                "spawn_subagent".into(),
                json!({"subagent_type": "explore", "prompt": "CHILD look around", "title": "Scout"}),
            )]),
            Reply::ToolCalls(vec![(
                "c2".into(),
                "wait_agent".into(),
                json!({"chat_id": LAST_RESULT_CHAT_ID, "timeout_seconds": 30}),
            )]),
            Reply::Text("Done.".into()),
        ],
    );
    let parent = create(&app, &app.token, json!({"message": "PARENT: delegate"})).await;
    let spawned = until(&mut list, "the subagent chat", |e| {
        e.event == "created" && e.data["chat"]["root_chat_id"] == parent.to_string()
    })
    .await;
    let child = spawned.last().unwrap().data["chat"].clone();
    // Its creation is announced first: its turn's start and answer come after.
    let child_id_text = child["id"].as_str().unwrap();
    assert!(
        spawned[..spawned.len() - 1]
            .iter()
            .all(|e| e.data["chat"]["id"].as_str() != Some(child_id_text)),
        "the subagent chat was announced before its creation: {spawned:#?}"
    );
    assert_eq!(child["parent_chat_id"], parent.to_string(), "{child}");
    assert_eq!(child["title"], "Scout", "{child}");
    assert_eq!(child["subagent_type"], "explore", "{child}");
    let child_id: Uuid = child["id"].as_str().unwrap().parse().unwrap();
    until(&mut list, "the subagent to finish", |e| {
        about(e, "updated", child_id, |c| c["status"] == "waiting")
    })
    .await;
    until(&mut list, "the parent to finish", |e| {
        about(e, "updated", parent, |c| c["status"] == "waiting")
    })
    .await;
    app.stop().await;
}

#[sqlx::test]
async fn a_client_that_reconnects_with_last_event_id_gets_what_it_missed_exactly_once(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let url = list_url(&app);
    let first = create(&app, &app.token, json!({"message": "first"})).await;
    app.services.events.flush().await;
    let before = sse::read_until(&app.client, &url, &app.token, None, WAIT, |e| {
        about(e, "created", first, |_| true)
    })
    .await;
    let held = before.last().unwrap().id.clone();

    // While the client is away: a rename, an archive, a new chat, a deletion.
    patch(&app, first, json!({"title": "Renamed"})).await;
    patch(&app, first, json!({"archived": true})).await;
    let second = create(&app, &app.token, json!({"message": "second"})).await;
    let third = create(&app, &app.token, json!({"message": "third"})).await;
    let (status, body) = app
        .post_as(
            &app.token,
            &format!("/api/v1/chats/{third}/interrupt"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        app.delete_as(&app.token, &format!("/api/v1/chats/{third}"))
            .await,
        StatusCode::NO_CONTENT
    );
    app.services.events.flush().await;

    let quiet = Duration::from_millis(700);
    let missed =
        sse::read_until(&app.client, &url, &app.token, Some(&held), quiet, |_| false).await;
    let everything = sse::read_until(&app.client, &url, &app.token, None, quiet, |_| false).await;
    let ids = |events: &[Received]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    // Exactly what came after the resume point: no repeat, no gap.
    let after_held = everything
        .iter()
        .position(|e| e.id == held)
        .expect("the resume point is in the replay");
    assert_eq!(ids(&missed), ids(&everything[after_held + 1..]));
    let mut unique = ids(&missed);
    unique.dedup();
    assert_eq!(unique.len(), missed.len(), "no event twice");
    // And it says where things stand now.
    let last_of = |chat: Uuid| missed.iter().rev().find(|e| chat_of(e) == Some(chat));
    let first_now = &last_of(first).expect("the first chat changed").data["chat"];
    assert_eq!(first_now["title"], "Renamed", "{first_now}");
    assert_eq!(first_now["archived"], true, "{first_now}");
    assert!(missed.iter().any(|e| about(e, "created", second, |_| true)));
    assert_eq!(last_of(third).map(|e| e.event.as_str()), Some("deleted"));

    // Resuming from the end gets nothing old.
    let last = missed.last().unwrap().id.clone();
    let nothing =
        sse::read_until(&app.client, &url, &app.token, Some(&last), quiet, |_| false).await;
    assert!(nothing.is_empty(), "{nothing:?}");
    app.stop().await;
}

#[sqlx::test]
async fn a_malformed_last_event_id_is_a_400_naming_the_header(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let bad = sse::open(&app.client, &list_url(&app), &app.token, Some("yesterday")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["validations"][0]["field"], "Last-Event-ID", "{body}");
    let anonymous = app.client.get(list_url(&app)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// A turn's own statements return what a chat list shows of its chat: its creation, its
/// start and its answer are announced with no read of the chat, each entry as that
/// statement left the chat (the 201's chat, then what `GET /chats/{id}` says after).
#[sqlx::test]
async fn a_turn_is_announced_with_the_entries_its_statements_returned(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let mut list = sse::follow(&app.client, &list_url(&app), &app.token, None).await;
    app.fake
        .script_for("SLOW", [Reply::Hang(Duration::from_millis(300))]);
    let reads_before = counter("agentq_chat_list_reads_total");
    // A title of the user's own: no generated title follows the answer.
    let (status, created) = app
        .post_as(
            &app.token,
            "/api/v1/chats",
            json!({"message": "SLOW hello", "title": "Entries", "labels": {"team": "infra"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let chat: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let seen = until(&mut list, "the answer", |e| {
        about(e, "updated", chat, |c| c["status"] == "waiting")
    })
    .await;
    app.services.events.flush().await;
    let reads = counter("agentq_chat_list_reads_total") - reads_before;
    assert_eq!(
        reads, 0,
        "the turn's entries were read again (the counter is the process's: run the test \
         alone, as nextest does)"
    );

    // The fields a list entry shares with a chat.
    let shared = |entry: &Value, chat: &Value, what: &str| {
        for field in [
            "id",
            "parent_chat_id",
            "root_chat_id",
            "title",
            "status",
            "client_type",
            "pin_order",
            "labels",
            "archived",
            "archived_at",
            "last_activity_at",
            "created_at",
            "updated_at",
        ] {
            assert_eq!(
                entry[field], chat[field],
                "{what}: {field}\n{entry}\n{chat}"
            );
        }
        assert_eq!(entry["subagent_type"], Value::Null, "{what}: {entry}");
        assert_eq!(entry["closed"], false, "{what}: {entry}");
    };
    let find = |kind: &str, status: &str| {
        seen.iter()
            .find(|e| about(e, kind, chat, |c| c["status"] == status))
            .unwrap_or_else(|| panic!("no {kind} event with status {status}: {seen:#?}"))
    };
    shared(
        &find("created", "pending").data["chat"],
        &created,
        "created",
    );
    let running = &find("updated", "running").data["chat"];
    let at = |v: &Value| {
        v["updated_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert!(
        at(running) > at(&created),
        "the start is a change: {running}"
    );
    let (status, now) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(status, StatusCode::OK, "{now}");
    shared(&seen.last().unwrap().data["chat"], &now, "waiting");
    assert_eq!(now["labels"]["team"], "infra", "{now}");
    app.stop().await;
}

/// Changes reported close together share a read of their entries (a process starts one at
/// most every `READ_SPACING`), and each is still announced with the chat's entry.
#[sqlx::test]
async fn changes_close_together_share_a_read_and_each_is_announced(pool: sqlx::PgPool) {
    const CHANGES: usize = 40;
    // No worker: the only changes are the ones this test reports.
    let app = TestApp::start_api_only(pool).await;
    app.lift_rate_limits().await;
    let mut chats = Vec::new();
    for i in 0..CHANGES {
        let chat = create(
            &app,
            &app.token,
            json!({"message": format!("chat {i}"), "title": format!("chat {i}")}),
        )
        .await;
        chats.push(chat);
    }
    app.services.events.flush().await;
    let mut list = sse::follow(&app.client, &list_url(&app), &app.token, None).await;

    // One change every 2 ms: read one at a time, they would take a read each.
    let reads_before = counter("agentq_chat_list_reads_total");
    let started = std::time::Instant::now();
    for chat in &chats {
        app.services
            .events
            .chat_list_changed(ChatListChange::Updated(vec![*chat]));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    app.services.events.flush().await;
    let spent = started.elapsed();
    let reads = counter("agentq_chat_list_reads_total") - reads_before;
    let paced = (spent.as_millis() / READ_SPACING.as_millis()) as u64 + 2;
    assert!(
        reads <= paced,
        "{CHANGES} changes over {spent:?} took {reads} reads, more than one each {READ_SPACING:?} \
         ({paced}; the counter is the process's: run the test alone, as nextest does)"
    );

    let missing: RefCell<HashSet<Uuid>> = RefCell::new(chats.iter().copied().collect());
    let events = list
        .until(WAIT, |e| {
            if e.event == "updated"
                && let Some(chat) = chat_of(e)
            {
                missing.borrow_mut().remove(&chat);
            }
            missing.borrow().is_empty()
        })
        .await;
    let announced: HashSet<Uuid> = events
        .iter()
        .filter(|e| e.event == "updated")
        .filter_map(chat_of)
        .collect();
    for (i, chat) in chats.iter().enumerate() {
        assert!(announced.contains(chat), "chat {i} was not announced");
        let entry = events
            .iter()
            .rev()
            .find(|e| e.event == "updated" && chat_of(e) == Some(*chat))
            .unwrap();
        assert_eq!(
            entry.data["chat"]["title"],
            format!("chat {i}"),
            "{:?}",
            entry.data
        );
    }
    app.stop().await;
}
