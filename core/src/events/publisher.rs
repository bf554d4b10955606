//! Publishing chat events: one batching task per process.
//!
//! Events queue in memory and leave in one pipeline per round trip, so a fast model's deltas
//! cost a handful of round trips, not one each, and the first delta still leaves at once
//! when nothing else is in flight. [`EventPublisher::publish`] never waits on Redis: callers
//! are turn loops that must not stall on a slow Redis.
//!
//! The queue is bounded in bytes ([`super::EventLimits::publish_buffer_bytes`]) for the
//! events that may be lost: when Redis falls behind, `message_part` deltas past the budget
//! are dropped and counted (`agentq_events_dropped_total{event}`); the `message` that ends
//! the step carries what they said. Events that report persisted state (`message`,
//! `status`, `error`, `action_required`, `retry`, `queue_update`) are always queued: each
//! follows a committed database write, so PostgreSQL bounds their rate, and dropping one
//! would leave a client showing a state the chat is no longer in. One queue keeps every
//! event of a chat in publish order.
//!
//! The same queue carries the events of owners' chat list streams ([`StreamTopic::ChatList`]),
//! which this process's chat list announcer ([`super::chat_list_feed`]) hands over; they
//! report committed state too and are never dropped.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use crate::redis_conn::{RedisConn, SlotPipelines};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    ChatEvent, EventLimits, StreamTopic,
    chat_list_feed::{ChatListChange, ChatListFeed},
    payload,
};
use crate::{queue::chat_events_key, store::Store};

/// Bytes counted per queued event besides its data (key, id, fields).
const ENTRY_OVERHEAD: usize = 128;

/// Most commands one pipeline carries.
const BATCH: usize = 512;

struct Queued {
    topic: StreamTopic,
    name: &'static str,
    data: String,
    weight: usize,
}

enum Command {
    Publish(Queued),
    /// Delete these chats' streams: the chats are gone.
    Forget(Vec<Uuid>),
    Flush(oneshot::Sender<()>),
}

/// Publishes chat events through this process's batching task; cheap to clone.
#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    /// The announcer of chat list changes ([`EventPublisher::with_chat_list`]).
    chat_list: Option<ChatListFeed>,
}

struct Shared {
    limits: EventLimits,
    /// Bytes queued or in flight.
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
}

impl EventPublisher {
    /// Starts the batching task on the shared connection. It ends when every publisher
    /// clone is dropped, after writing what was queued.
    pub fn start(conn: RedisConn, prefix: impl Into<String>, limits: EventLimits) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            limits,
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(write_batches(conn, prefix.into(), shared.clone(), rx));
        Self {
            tx,
            shared,
            chat_list: None,
        }
    }

    /// Also announces chat list changes ([`EventPublisher::chat_list_changed`]) on the owners'
    /// list streams, reading the changed chats through `store` on a task of its own.
    /// Every process that commits chat changes builds its publisher with this
    /// (`crate::services::Services`); without it list changes are not announced.
    pub fn with_chat_list(mut self, store: Store) -> Self {
        let writer = Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            chat_list: None,
        };
        self.chat_list = Some(ChatListFeed::start(store, writer));
        self
    }

    /// Reports a committed change that chat lists show; the announcer publishes `created` /
    /// `updated` / `deleted` on their owners' list streams, with the entry the change's
    /// statement returned or after reading the chats. Never waits. Called by [`crate::outcome::ChatOutcome::publish`].
    pub fn chat_list_changed(&self, change: ChatListChange) {
        match &self.chat_list {
            Some(feed) => feed.report(change),
            None => tracing::debug!(?change, "no chat list announcer in this process"),
        }
    }

    /// Queues an event for the chat's stream, bounded to the payload limits; never blocks
    /// on Redis. A `message_part` is dropped (and counted) when the queue is over budget.
    pub fn publish(&self, chat_id: Uuid, event: ChatEvent) {
        let encoded = payload::encode(&event, &self.shared.limits.payload);
        self.enqueue(
            StreamTopic::Chat(chat_id),
            encoded.name,
            encoded.data,
            event.is_persisted_state(),
        );
    }

    /// Queues an encoded event for `topic`'s stream; one that is not `persisted` state is
    /// dropped (and counted) when the queue is over budget.
    pub(super) fn enqueue(
        &self,
        topic: StreamTopic,
        name: &'static str,
        data: String,
        persisted: bool,
    ) {
        let weight = data.len() + ENTRY_OVERHEAD;
        let queued = self.shared.queued_bytes.fetch_add(weight, Ordering::AcqRel);
        if !persisted && queued + weight > self.shared.limits.publish_buffer_bytes {
            self.shared.queued_bytes.fetch_sub(weight, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::event_dropped(name);
            return;
        }
        let command = Command::Publish(Queued {
            topic,
            name,
            data,
            weight,
        });
        if self.tx.send(command).is_err() {
            self.shared.queued_bytes.fetch_sub(weight, Ordering::AcqRel);
        }
    }

    /// Deletes the event streams of chats that no longer exist, after every event this
    /// process published for them before (one queue keeps the order). A Redis failure is
    /// logged: a stream nobody writes to expires on its own (`EventLimits::ttl`). An event
    /// published later (a worker that has not yet seen the chat go) starts a new stream,
    /// which expires the same way.
    pub fn forget(&self, chat_ids: Vec<Uuid>) {
        let _ = self.tx.send(Command::Forget(chat_ids));
    }

    /// Waits until every event published before this call was written (or dropped after
    /// a Redis failure), chat list changes reported before it included.
    pub async fn flush(&self) {
        if let Some(feed) = &self.chat_list {
            feed.flush().await;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Deltas this publisher dropped under pressure since it started.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The limits events are published under.
    pub fn limits(&self) -> &EventLimits {
        &self.shared.limits
    }
}

async fn write_batches(
    conn: RedisConn,
    prefix: String,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let limits = shared.limits;
    let mut batch = Vec::with_capacity(BATCH);
    let ttl = limits.ttl.as_secs().max(1);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipes = SlotPipelines::new(&conn);
        let mut waiters = Vec::new();
        let mut touched = HashSet::new();
        let mut weight = 0;
        for command in batch.drain(..) {
            match command {
                Command::Publish(event) => {
                    let key = event.topic.key(&prefix);
                    let mut xadd = redis::cmd("XADD");
                    xadd.arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(limits.max_len)
                        .arg("*")
                        .arg("event")
                        .arg(event.name)
                        .arg("data")
                        .arg(event.data);
                    pipes.add(&key, xadd);
                    weight += event.weight;
                    touched.insert(key);
                }
                Command::Forget(chat_ids) => {
                    // One key per command: a family's chats sit in different shards, and
                    // a multi-key DEL across hash tags fails on a cluster.
                    for chat_id in chat_ids {
                        let key = chat_events_key(&prefix, chat_id);
                        let mut del = redis::cmd("DEL");
                        del.arg(&key);
                        pipes.add(&key, del);
                    }
                }
                Command::Flush(done) => waiters.push(done),
            }
        }
        for key in &touched {
            let mut expire = redis::cmd("EXPIRE");
            expire.arg(key).arg(ttl);
            pipes.add(key, expire);
        }
        // Only flush requests in this batch: nothing to write. On a cluster the batch
        // goes as one pipeline per shard tag, in parallel.
        if !pipes.is_empty()
            && let Err(e) = pipes.send().await
        {
            // Events are a live view; the messages endpoint stays the truth.
            tracing::warn!(error = %e, "publishing chat events failed; clients will read persisted messages");
        }
        // Released only now: while Redis is slow the bytes in flight count as pressure too.
        shared.queued_bytes.fetch_sub(weight, Ordering::AcqRel);
        for done in waiters {
            let _ = done.send(());
        }
    }
}
