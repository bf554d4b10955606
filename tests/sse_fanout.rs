//! SSE at scale and under abuse (issue 10, items 5 and 11): many streams share a handful of
//! Redis connections, open streams are capped per user and per process, streams end after
//! their lifetime and resume without a gap, a resume from a trimmed id gets `reset`, events
//! are bounded in bytes, a slow subscriber does not hold up the others, and the publisher
//! drops (and counts) only streamed deltas under pressure.

mod support;

use std::time::{Duration, Instant};

use agentq_core::{
    domain::{ChatStatus, Message, MessagePart, Role},
    events::{
        ChatEvent, EventHub, EventLimits, EventPublisher, HubConfig, history::StreamId,
        hub::Delivery,
    },
    queue::{CHAT_EVENT_SHARDS, chat_events_key},
    redis_conn,
};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use support::{
    app::{TestApp, create_user},
    delete_keys, eventually, redis_url,
    sse::{self, Received, read_until},
    unique_prefix,
};
use uuid::Uuid;

/// Streams opened by the fan-out test; `AGENTQ_SSE_FANOUT_STREAMS` raises it for measuring.
fn fanout_streams() -> usize {
    std::env::var("AGENTQ_SSE_FANOUT_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn tick(n: i64) -> ChatEvent {
    ChatEvent::QueueUpdate { queued_messages: n }
}

fn ticks(events: &[Received]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.event == "queue_update")
        .map(|e| e.data["queued_messages"].as_i64().unwrap())
        .collect()
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The connections a Redis server has: all of them (this query's own excluded), and those
/// named as this test's shared event readers.
async fn redis_connections(url: &str, prefix: &str) -> (usize, usize) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let name = format!("name={prefix}:sse-reader:");
    let readers = list.lines().filter(|l| l.contains(&name)).count();
    (list.lines().count() - 1, readers)
}

#[sqlx::test]
async fn a_thousand_streams_share_a_handful_of_redis_connections(pool: sqlx::PgPool) {
    let streams = fanout_streams();
    // A Redis of this test's own, so that every connection on it is the API's.
    let redis = support::redis_server::PrivateRedis::start().await;
    let app = TestApp::start_api_on(pool, redis.url(), |api| {
        api.sse_max_streams_per_user = streams;
        api.sse_max_streams = streams + 10;
    })
    .await;
    app.lift_rate_limits().await;
    let mut tokens = vec![app.token.clone()];
    for i in 1..4 {
        tokens.push(create_user(&app.services, &format!("user{i}@example.com"), "acme").await);
    }
    let mut chats = Vec::new();
    for i in 0..100 {
        let token = &tokens[i % tokens.len()];
        let (status, body) = app
            .post_as(token, "/api/v1/chats", json!({ "message": "hi" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        chats.push((id, token.clone()));
    }
    let client = reqwest::Client::new();
    let rss_before = rss_kib();
    let opened = Instant::now();
    let mut followers: Vec<_> = futures::stream::iter(0..streams)
        .map(|j| {
            let (chat, token) = &chats[j % chats.len()];
            let url = app.stream_url(*chat);
            let client = client.clone();
            let token = token.clone();
            async move { sse::follow(&client, &url, &token, None).await }
        })
        .buffered(64)
        .collect()
        .await;
    // Every stream replays its chat's history (the first message) before following live.
    for follower in followers.iter_mut() {
        let got = follower
            .until(Duration::from_secs(30), |e| e.event == "message")
            .await;
        assert!(got.iter().any(|e| e.event == "message"), "{got:?}");
    }
    let open_took = opened.elapsed();

    let (all, readers) = redis_connections(&redis.url(), &app.prefix).await;
    assert!(
        (1..=usize::from(CHAT_EVENT_SHARDS)).contains(&readers),
        "{streams} streams hold {readers} reader connections"
    );
    // The readers plus the process's shared connections (commands, publisher, queue),
    // nothing per stream.
    assert!(
        all <= usize::from(CHAT_EVENT_SHARDS) + 8,
        "{streams} streams hold {all} Redis connections in all"
    );

    // Events published to ten chats reach exactly their subscribers.
    let published = Instant::now();
    for (chat, _) in &chats[..10] {
        app.services.events.publish(*chat, tick(42));
    }
    let mut latencies = Vec::new();
    for (j, follower) in followers.iter_mut().enumerate() {
        if j % chats.len() >= 10 {
            continue;
        }
        let got = follower
            .until(Duration::from_secs(10), |e| e.event == "queue_update")
            .await;
        let last = got.last().expect("an event");
        assert_eq!(ticks(&got), vec![42], "{got:?}");
        latencies.push(last.at.duration_since(published));
    }
    assert_eq!(latencies.len(), streams / 10);
    for follower in followers.iter_mut().skip(10).take(90) {
        assert!(
            follower.next(Duration::from_millis(20)).await.is_none(),
            "a stream of another chat got an event"
        );
    }
    latencies.sort();
    let rss_after = rss_kib();
    println!(
        "sse fan-out: {streams} streams on 100 chats: reader connections {readers} (all Redis connections {all}), \
         opened in {open_took:?}, RSS of this process (API + clients) {} MiB -> {} MiB \
         (+{} KiB per stream), first live event p50 {:?} p99 {:?} max {:?}",
        rss_before / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) / streams as u64,
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies.last().unwrap(),
    );
    drop(followers);
    app.stop().await;
}

#[sqlx::test]
async fn open_streams_are_capped_per_user_and_per_process(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only_with(pool, |api| {
        api.sse_max_streams_per_user = 2;
        api.sse_max_streams = 3;
    })
    .await;
    let chat = app.create_chat("hi").await;
    let url = app.stream_url(chat);
    let first = sse::follow(&app.client, &url, &app.token, None).await;
    let _second = sse::follow(&app.client, &url, &app.token, None).await;

    let refused = sse::open(&app.client, &url, &app.token, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["limit"], "sse_max_streams_per_user", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("per user"),
        "{body}"
    );

    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let (_, created) = app
        .post_as(&bob, "/api/v1/chats", json!({ "message": "hi" }))
        .await;
    let bob_url = app.stream_url(created["id"].as_str().unwrap().parse().unwrap());
    let _bob = sse::follow(&app.client, &bob_url, &bob, None).await;
    let refused = sse::open(&app.client, &bob_url, &bob, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["limit"], "sse_max_streams", "{body}");

    // A closed stream frees its slot (noticed at the next keep-alive).
    drop(first);
    let _again = eventually(Duration::from_secs(5), "a freed stream slot", || async {
        let response = sse::open(&app.client, &url, &app.token, None).await;
        (response.status() == StatusCode::OK).then_some(response)
    })
    .await;
    app.stop().await;
}

#[sqlx::test]
async fn a_resume_from_a_trimmed_id_gets_reset_first(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("hi").await;
    let url = app.stream_url(chat);
    let history = read_until(
        &app.client,
        &url,
        &app.token,
        None,
        Duration::from_secs(5),
        |e| e.event == "message",
    )
    .await;
    let old_id = history[0].id.clone();

    // A publisher that keeps only a few entries pushes the old ones out.
    let trimming = EventPublisher::start(
        app.services.redis_conn.clone(),
        app.prefix.clone(),
        EventLimits {
            max_len: 10,
            ..EventLimits::default()
        },
    );
    for n in 0..500 {
        trimming.publish(chat, tick(n));
    }
    trimming.flush().await;

    let mut resumed = sse::follow(&app.client, &url, &app.token, Some(&old_id)).await;
    let reset = resumed
        .next(Duration::from_secs(5))
        .await
        .expect("an event");
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert_eq!(reset.data["reason"], "trimmed");
    // After the reset the stream goes on from its end: no stale events, then live ones.
    app.services.events.publish(chat, tick(1_000));
    let next = resumed
        .next(Duration::from_secs(5))
        .await
        .expect("an event");
    assert_eq!(ticks(&[next]), vec![1_000]);

    // Resuming from the reset's id (what a client that reconnects sends) needs no reset.
    let after_reset = read_until(
        &app.client,
        &url,
        &app.token,
        Some(&reset.id),
        Duration::from_secs(5),
        |e| e.event == "queue_update",
    )
    .await;
    assert_eq!(ticks(&after_reset), vec![1_000], "{after_reset:?}");
    assert!(after_reset.iter().all(|e| e.event != "reset"));

    // An id still held resumes exactly after it.
    let mut conn = app.services.redis_conn.clone();
    let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(chat_events_key(&app.prefix, chat))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(3)
        .query_async(&mut conn)
        .await
        .unwrap();
    let held = &newest[2].0;
    let tail = read_until(
        &app.client,
        &url,
        &app.token,
        Some(held),
        Duration::from_secs(5),
        |e| e.data["queued_messages"] == 1_000,
    )
    .await;
    assert_eq!(ticks(&tail), vec![499, 1_000], "{tail:?}");

    // A stream that expired altogether: reset too.
    let _: () = redis::cmd("DEL")
        .arg(chat_events_key(&app.prefix, chat))
        .query_async(&mut conn)
        .await
        .unwrap();
    let expired = read_until(
        &app.client,
        &url,
        &app.token,
        Some(held),
        Duration::from_secs(5),
        |e| e.event == "reset",
    )
    .await;
    assert_eq!(expired[0].data["reason"], "expired", "{expired:?}");

    // A malformed id is the client's error.
    let bad = sse::open(&app.client, &url, &app.token, Some("yesterday")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["validations"][0]["field"], "Last-Event-ID", "{body}");
    app.stop().await;
}

#[sqlx::test]
async fn a_stream_ends_at_its_lifetime_and_resumes_without_gap_or_repeat(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only_with(pool, |api| api.sse_max_lifetime_secs = 2).await;
    app.lift_rate_limits().await;
    let chat = app.create_chat("hi").await;
    let url = app.stream_url(chat);
    let events = app.services.events.clone();
    let ticker = tokio::spawn(async move {
        for n in 1..=250 {
            events.publish(chat, tick(n));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut received = Vec::new();
    let mut last_id: Option<String> = None;
    let mut connections = 0;
    while ticks(&received).last() != Some(&250) {
        connections += 1;
        assert!(connections <= 10, "too many reconnects");
        let started = Instant::now();
        let got = read_until(
            &app.client,
            &url,
            &app.token,
            last_id.as_deref(),
            Duration::from_secs(10),
            |e| e.data["queued_messages"] == 250,
        )
        .await;
        let lasted = started.elapsed();
        let done = ticks(&got).last() == Some(&250);
        assert!(
            done || (Duration::from_millis(1_500)..Duration::from_secs(4)).contains(&lasted),
            "the server ended the stream after {lasted:?}"
        );
        last_id = got.last().map(|e| e.id.clone()).or(last_id);
        received.extend(got);
    }
    ticker.await.unwrap();
    assert!(connections >= 2, "the stream outlived its lifetime");
    assert_eq!(ticks(&received), (1..=250).collect::<Vec<_>>());
    app.stop().await;
}

#[sqlx::test]
async fn a_megabyte_message_streams_as_a_bounded_preview_and_reads_whole(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("hi").await;
    let text = "a".repeat(1 << 20);
    // A worker answers with a megabyte, through the store as the turn engine does.
    let store = &app.services.store;
    let turn = store
        .acquire_queued_turn(chat, "test-worker/1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the queued turn");
    let completion = support::text_completion("fake-gpt", &text);
    let answered = store
        .complete_turn(
            turn.id,
            chat,
            turn.step,
            &turn.lease_owner,
            &completion,
            agentq_core::store::AnswerTitle::Keep,
        )
        .await
        .unwrap()
        .expect("the worker held the turn");
    let id = answered.message.expect("the answer").id;
    let messages = app.messages(chat).await;
    let stored = messages.iter().find(|m| m["id"] == id.to_string()).unwrap();
    assert_eq!(
        stored["content"][0]["text"].as_str().unwrap().len(),
        1 << 20
    );
    let message: Message = serde_json::from_value(stored.clone()).unwrap();
    app.services.events.publish(
        chat,
        ChatEvent::Message {
            message: Box::new(message),
        },
    );
    // A delta larger than an event may be is cut as well.
    app.services.events.publish(
        chat,
        ChatEvent::MessagePart {
            role: Role::Assistant,
            part: MessagePart::Text { text: text.clone() },
            step: 0,
        },
    );

    let events = app
        .events_until(chat, Duration::from_secs(5), |e| e.event == "message_part")
        .await;
    let limits = EventLimits::default().payload;
    let preview = events
        .iter()
        .find(|e| e.event == "message" && e.data["message"]["id"] == id.to_string())
        .expect("the big message's event");
    assert!(
        preview.data_len <= limits.max_event_bytes,
        "{}",
        preview.data_len
    );
    assert_eq!(preview.data["truncated"], true);
    assert_eq!(preview.data["message"]["role"], "assistant");
    assert_eq!(preview.data["message"]["step"], 0);
    let shown = preview.data["message"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.starts_with(shown) && shown.len() <= limits.preview_bytes);
    // The small user message is whole and says so.
    let first = events.iter().find(|e| e.event == "message").unwrap();
    assert_eq!(first.data["truncated"], false);
    let delta = events.last().unwrap();
    assert!(
        delta.data_len <= limits.max_event_bytes,
        "{}",
        delta.data_len
    );
    assert_eq!(delta.data["truncated"], true);
    app.stop().await;
}

#[sqlx::test]
async fn a_slow_client_catches_up_from_redis_without_gaps(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only_with(pool, |api| api.sse_subscriber_buffer = 1).await;
    app.lift_rate_limits().await;
    let chat = app.create_chat("hi").await;
    let mut follower = sse::follow(&app.client, &app.stream_url(chat), &app.token, None).await;
    follower
        .until(Duration::from_secs(5), |e| e.event == "message")
        .await;
    // A burst far larger than the stream's buffer: the shared reader cuts it loose, and it
    // reads the rest from Redis.
    for n in 1..=300 {
        app.services.events.publish(chat, tick(n));
    }
    let got = follower
        .until(Duration::from_secs(10), |e| {
            e.data["queued_messages"] == 300
        })
        .await;
    assert_eq!(ticks(&got), (1..=300).collect::<Vec<_>>());
    let metrics = agentq_core::metrics::install().render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("agentq_sse_lagged_total") && !l.ends_with(" 0")),
        "the burst did not overflow the buffer; the test proves nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_does_not_hold_up_the_others() {
    let prefix = unique_prefix();
    let client = redis_conn::RedisClient::open(&redis_url()).unwrap();
    let conn = client.shared().unwrap();
    let hub = EventHub::new(
        client,
        conn.clone(),
        prefix.clone(),
        HubConfig {
            subscriber_buffer: 4,
            client_name: format!("{prefix}:sse-reader"),
            ..HubConfig::default()
        },
    );
    let publisher = EventPublisher::start(conn, prefix.clone(), EventLimits::default());
    let chat = Uuid::now_v7();
    let mut stalled = hub.subscribe(chat, StreamId::ZERO).await;
    let mut reading = hub.subscribe(chat, StreamId::ZERO).await;
    for n in 0..20 {
        publisher.publish(chat, tick(n));
        publisher.flush().await;
        let Delivery::Event(event) = tokio::time::timeout(Duration::from_secs(5), reading.recv())
            .await
            .expect("the reading subscriber is served")
        else {
            panic!("the reading subscriber lagged");
        };
        assert_eq!(event.data, format!("{{\"queued_messages\":{n}}}"));
    }
    for _ in 0..4 {
        assert!(matches!(stalled.recv().await, Delivery::Event(_)));
    }
    assert!(matches!(stalled.recv().await, Delivery::Lagged));
    drop((stalled, reading));
    delete_keys(&redis_url(), &prefix).await;
}

#[sqlx::test]
async fn under_pressure_the_publisher_drops_only_counted_deltas(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("hi").await;
    let stored: Message = serde_json::from_value(app.messages(chat).await[0].clone()).unwrap();
    let publisher = EventPublisher::start(
        app.services.redis_conn.clone(),
        app.prefix.clone(),
        EventLimits {
            publish_buffer_bytes: 64 * 1024,
            ..EventLimits::default()
        },
    );
    // A burst of deltas far faster than Redis takes them (this runtime has one thread, so the
    // writer does not even run during the loop), then the persisted message and status.
    let delta = MessagePart::Text {
        text: "d".repeat(1_000),
    };
    for _ in 0..2_000 {
        publisher.publish(
            chat,
            ChatEvent::MessagePart {
                role: Role::Assistant,
                part: delta.clone(),
                step: 0,
            },
        );
    }
    publisher.publish(
        chat,
        ChatEvent::Message {
            message: Box::new(stored.clone()),
        },
    );
    publisher.publish(
        chat,
        ChatEvent::Status {
            status: ChatStatus::Waiting,
            chat_id: chat,
        },
    );
    publisher.flush().await;

    let dropped = publisher.dropped();
    assert!(dropped > 0 && dropped < 2_000, "dropped {dropped}");
    let metrics = agentq_core::metrics::install().render();
    let counted: u64 = metrics
        .lines()
        .find(|l| l.starts_with("agentq_events_dropped_total{event=\"message_part\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the drop counter");
    assert!(counted >= dropped, "{counted} < {dropped}");

    let mut conn = app.services.redis_conn.clone();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(chat_events_key(&app.prefix, chat))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|(_, fields)| {
            fields
                .iter()
                .find(|(k, _)| k == "event")
                .unwrap()
                .1
                .as_str()
        })
        .collect();
    let deltas = names.iter().filter(|n| **n == "message_part").count();
    assert_eq!(deltas as u64, 2_000 - dropped);
    assert_eq!(&names[names.len() - 2..], ["message", "status"]);
    app.stop().await;
}

#[tokio::test]
async fn the_shared_reader_reconnects_after_a_redis_restart() {
    let mut redis = support::redis_server::PrivateRedis::start().await;
    let prefix = unique_prefix();
    let client = redis_conn::RedisClient::open(&redis.url()).unwrap();
    let conn = client.shared().unwrap();
    let hub = EventHub::new(
        client,
        conn.clone(),
        prefix.clone(),
        HubConfig {
            client_name: format!("{prefix}:sse-reader"),
            ..HubConfig::default()
        },
    );
    let publisher = EventPublisher::start(conn, prefix, EventLimits::default());
    let chat = Uuid::now_v7();
    let mut subscription = hub.subscribe(chat, StreamId::ZERO).await;
    publisher.publish(chat, tick(1));
    match tokio::time::timeout(Duration::from_secs(5), subscription.recv()).await {
        Ok(Delivery::Event(e)) => assert_eq!(e.data, r#"{"queued_messages":1}"#),
        other => panic!("no event: {other:?}"),
    }

    redis.restart().await;
    // Events published while the connections come back are lost (Redis lost everything
    // anyway); publish until one gets through to the subscriber.
    let mut delivered = None;
    for _ in 0..30 {
        publisher.publish(chat, tick(2));
        publisher.flush().await;
        if let Ok(Delivery::Event(e)) =
            tokio::time::timeout(Duration::from_millis(500), subscription.recv()).await
        {
            delivered = Some(e.data.clone());
            break;
        }
    }
    assert_eq!(delivered.as_deref(), Some(r#"{"queued_messages":2}"#));
}
