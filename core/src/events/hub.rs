//! The API process's shared reader of chat event streams, fanned out to SSE subscribers.
//!
//! One Redis connection per open SSE stream does not scale: each holds a socket and a
//! blocked client in Redis, and a user opening streams in a loop exhausts Redis's
//! connection limit for every tenant. Instead each API process runs at most one reader task
//! per event shard (see [`crate::queue::chat_event_shard_tag`]), each on its own dedicated
//! connection named `<prefix>:sse-reader:<shard>` (`CLIENT LIST` shows them):
//!
//! ```text
//!   SSE stream ──subscribe(chat, from)──▶ Shard { chat ─▶ Feed { cursor, subscribers } }
//!                                              ▲                        │ try_send
//!   reader(shard) ── XREAD BLOCK over every followed chat of the shard ─┘ (bounded mpsc)
//!                    + this process's wake key of the shard
//! ```
//!
//! - **Multi-key reads within one hash slot.** Every chat stream of a shard shares the
//!   shard's hash tag, so one `XREAD ... STREAMS k1 .. kn wake` is legal on Redis Cluster
//!   (one slot, one node); the shards spread over the nodes. With [`crate::queue::CHAT_EVENT_SHARDS`]
//!   shards a process holds at most that many reader connections, whatever the number of
//!   streams.
//! - **The set of chats changes while the read blocks.** A subscription to a chat the shard
//!   does not follow yet appends to the process's wake stream of that shard (same hash tag),
//!   which is part of the blocked `XREAD`, so the reader re-issues it with the new key at
//!   once. Unsubscribed chats drop out at the next round (the block lasts at most
//!   [`HubConfig::block`]). A reader whose shard has no chats for [`HubConfig::idle`] ends
//!   and closes its connection.
//! - **A slow subscriber does not stall the others.** Events go to each subscriber with
//!   `try_send` into a buffer of [`HubConfig::subscriber_buffer`] events; a subscriber whose
//!   buffer is full is cut loose and told it lagged ([`Delivery::Lagged`]); the SSE route
//!   then catches up from Redis (replay from its last id, or `reset` when that was trimmed).
//! - **No gap when joining.** A feed's cursor is the last id the reader has seen. A new
//!   subscriber joins with the stream's current end; if the feed is already further, the
//!   subscriber's replay (which runs after it joined) covers the difference, and it drops
//!   what it receives twice by id.
//!
//! What the hub follows is a [`StreamTopic`]: a chat's stream, or an owner's chat list
//! stream (`GET /chats/events`), which lives in the shard of the owner's id and is read by
//! the same rounds; "chat" below stands for either.
//!
//! Events are shared between the subscribers of a chat (`Arc`), so memory grows with the
//! events in flight, not with events × subscribers. One `XREAD` reply holds at most
//! [`HubConfig::read_count`] entries per followed chat, each at most `max_event_bytes`
//! (see [`super::payload`]).
//!
//! Cost on Redis: each round of a reader names every chat its shard follows, so a round is
//! O(followed chats of the shard); rounds happen as often as events arrive (each returns
//! whatever arrived meanwhile), plus one per new chat followed (the wake-up).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::streams::StreamReadReply;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{StoredEvent, StreamTopic, history::StreamId, stored_event};
use crate::{
    queue::{CHAT_EVENT_SHARDS, chat_events_wake_key},
    redis_conn::{RedisClient, RedisConn},
};

/// How the shared reader behaves.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events buffered per subscriber before it is told it lagged.
    pub subscriber_buffer: usize,
    /// Longest one `XREAD` blocks before it is issued again.
    pub block: Duration,
    /// Entries one `XREAD` takes per chat stream.
    pub read_count: usize,
    /// A reader with no chats to follow for this long ends.
    pub idle: Duration,
    /// `CLIENT SETNAME` of the reader connections, followed by `:<shard>`.
    pub client_name: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            subscriber_buffer: 256,
            block: Duration::from_secs(5),
            read_count: 32,
            idle: Duration::from_secs(30),
            client_name: "agentq:sse-reader".into(),
        }
    }
}

/// What a subscription receives.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The next event of the chat.
    Event(Arc<StoredEvent>),
    /// The subscriber fell behind (its buffer filled) and was dropped from the feed; read
    /// from Redis to catch up, then subscribe again.
    Lagged,
}

/// The process's shared reader; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    client: RedisClient,
    conn: RedisConn,
    prefix: String,
    process_id: Uuid,
    config: HubConfig,
    shards: Vec<Mutex<Shard>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Shard {
    feeds: HashMap<StreamTopic, Feed>,
    reader_running: bool,
}

struct Feed {
    key: String,
    /// The newest id dispatched (or the position the first subscriber joined at).
    cursor: StreamId,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<StoredEvent>>,
    lagged: Arc<AtomicBool>,
}

impl EventHub {
    /// A hub reading with dedicated connections from `client`; `conn` (the shared
    /// connection) sends wake-ups. Nothing connects until the first subscription.
    pub fn new(
        client: RedisClient,
        conn: RedisConn,
        prefix: impl Into<String>,
        config: HubConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                conn,
                prefix: prefix.into(),
                process_id: Uuid::new_v4(),
                config,
                shards: (0..CHAT_EVENT_SHARDS)
                    .map(|_| Mutex::new(Shard::default()))
                    .collect(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Follows `topic` (a chat id names the chat's stream) from `from` (exclusive): every
    /// event with a larger id reaches the subscription, unless it lags. Subscribe before
    /// replaying, so nothing falls between.
    pub async fn subscribe(&self, topic: impl Into<StreamTopic>, from: StreamId) -> Subscription {
        let topic = topic.into();
        let inner = &self.inner;
        let shard = topic.shard();
        let (tx, rx) = mpsc::channel(inner.config.subscriber_buffer.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (spawn, wake) = {
            let mut s = inner.shard(shard);
            let mut new_feed = false;
            let feed = s.feeds.entry(topic).or_insert_with(|| {
                new_feed = true;
                Feed {
                    key: topic.key(&inner.prefix),
                    cursor: from,
                    subscribers: Vec::new(),
                }
            });
            feed.subscribers.push(Subscriber {
                id,
                tx,
                lagged: lagged.clone(),
            });
            if s.reader_running {
                (false, new_feed)
            } else {
                s.reader_running = true;
                (true, false)
            }
        };
        if spawn {
            crate::metrics::sse_readers(1.0);
            tokio::spawn(read_shard(inner.clone(), shard));
        }
        if wake {
            inner.wake(shard).await;
        }
        Subscription {
            inner: inner.clone(),
            topic,
            id,
            rx,
            lagged,
        }
    }

    /// Streams (chats and chat lists) this process follows now (for tests and metrics).
    pub fn followed_chats(&self) -> usize {
        (0..CHAT_EVENT_SHARDS)
            .map(|s| self.inner.shard(s).feeds.len())
            .sum()
    }

    /// Reader tasks running now.
    pub fn readers(&self) -> usize {
        (0..CHAT_EVENT_SHARDS)
            .filter(|s| self.inner.shard(*s).reader_running)
            .count()
    }
}

impl Inner {
    fn shard(&self, shard: u16) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.shards[usize::from(shard)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn wake_key(&self, shard: u16) -> String {
        chat_events_wake_key(&self.prefix, shard, self.process_id)
    }

    /// Makes the shard's blocked read return so it re-reads the set of chats.
    async fn wake(&self, shard: u16) {
        let key = self.wake_key(shard);
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg(1)
            .arg("*")
            .arg("w")
            .arg(1)
            .ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(3600).ignore();
        if let Err(e) = pipe.query_async::<()>(&mut self.conn.clone()).await {
            // The reader still picks the chat up when its block times out.
            tracing::debug!(error = %e, "waking the event reader failed");
        }
    }
}

/// One SSE stream's place in the hub; leaving is dropping it.
pub struct Subscription {
    inner: Arc<Inner>,
    topic: StreamTopic,
    id: u64,
    rx: mpsc::Receiver<Arc<StoredEvent>>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    /// The next event, or [`Delivery::Lagged`] once the subscriber was cut loose.
    pub async fn recv(&mut self) -> Delivery {
        match self.rx.recv().await {
            Some(event) => Delivery::Event(event),
            None => {
                if !self.lagged.load(Ordering::Acquire) {
                    tracing::debug!("event feed closed without lag; catching up from Redis");
                }
                Delivery::Lagged
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut s = self.inner.shard(self.topic.shard());
        if let Some(feed) = s.feeds.get_mut(&self.topic) {
            feed.subscribers.retain(|sub| sub.id != self.id);
            if feed.subscribers.is_empty() {
                s.feeds.remove(&self.topic);
            }
        }
    }
}

/// The reader of one shard: runs while the shard has chats to follow (and [`HubConfig::idle`]
/// after), on its own connection.
async fn read_shard(inner: Arc<Inner>, shard: u16) {
    let config = &inner.config;
    let wake_key = inner.wake_key(shard);
    let mut wake_cursor = StreamId::ZERO;
    let mut conn: Option<RedisConn> = None;
    let mut backoff = Duration::ZERO;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        let followed: Vec<(StreamTopic, String, StreamId)> = {
            let mut s = inner.shard(shard);
            if s.feeds.is_empty() {
                let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= config.idle {
                    s.reader_running = false;
                    crate::metrics::sse_readers(-1.0);
                    return;
                }
            } else {
                idle_since = None;
            }
            s.feeds
                .iter()
                .map(|(topic, feed)| (*topic, feed.key.clone(), feed.cursor))
                .collect()
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                match inner
                    .client
                    .reader(&format!("{}:{shard}", config.client_name), config.block)
                    .await
                {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        backoff = next_backoff(backoff);
                        tracing::warn!(shard, error = %e, "event reader cannot connect to Redis; retrying");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
            }
        };
        let block = if followed.is_empty() {
            // Nothing to follow: wait for a wake-up, but come back to check the idle limit.
            config.block.min(config.idle).max(Duration::from_millis(10))
        } else {
            config.block
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(config.read_count.max(1))
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS");
        for (_, key, _) in &followed {
            cmd.arg(key);
        }
        cmd.arg(&wake_key);
        for (_, _, cursor) in &followed {
            cmd.arg(cursor.to_string());
        }
        cmd.arg(wake_cursor.to_string());
        // A read that times out answers nil, which parses as a reply with no streams.
        match cmd.query_async::<StreamReadReply>(c).await {
            Ok(reply) => {
                backoff = Duration::ZERO;
                let by_key: HashMap<&str, StreamTopic> = followed
                    .iter()
                    .map(|(topic, key, _)| (key.as_str(), *topic))
                    .collect();
                let mut s = inner.shard(shard);
                for stream in reply.keys {
                    let (key, entries) = (stream.key, stream.ids);
                    if key == wake_key {
                        if let Some(last) = entries.last().and_then(|e| StreamId::parse(&e.id)) {
                            wake_cursor = last;
                        }
                        continue;
                    }
                    if let Some(topic) = by_key.get(key.as_str()) {
                        let events = entries.into_iter().filter_map(stored_event).collect();
                        dispatch(&mut s, *topic, events);
                    }
                }
            }
            Err(e) => {
                conn = None;
                backoff = next_backoff(backoff);
                tracing::warn!(shard, error = %e, "reading chat events failed; reconnecting");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Hands `events` of `topic` to its subscribers; cuts loose those whose buffer is full.
fn dispatch(shard: &mut Shard, topic: StreamTopic, events: Vec<StoredEvent>) {
    let Some(feed) = shard.feeds.get_mut(&topic) else {
        return;
    };
    let mut fresh = Vec::with_capacity(events.len());
    for event in events {
        let Some(id) = StreamId::parse(&event.id) else {
            continue;
        };
        // The feed may have been re-created further on since the read was issued.
        if id > feed.cursor {
            feed.cursor = id;
            fresh.push(Arc::new(event));
        }
    }
    if fresh.is_empty() {
        return;
    }
    feed.subscribers.retain(|sub| {
        for event in &fresh {
            match sub.tx.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.lagged.store(true, Ordering::Release);
                    crate::metrics::sse_lagged();
                    return false;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    });
    if feed.subscribers.is_empty() {
        shard.feeds.remove(&topic);
    }
}

fn next_backoff(current: Duration) -> Duration {
    crate::redis_conn::next_backoff(current, Duration::from_millis(100))
}
