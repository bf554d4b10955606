//! Announcing chat list changes: one task per process turns "these chats changed" into
//! `created` / `updated` / `deleted` events on their owners' list streams
//! (ARCHITECTURE.md §8.2).
//!
//! [`crate::outcome::ChatOutcome::publish`] reports each committed change that a chat list
//! shows ([`ChatListChange`]); this module hands the events to the process's
//! [`EventPublisher`], which writes them to `{..}:owner:<owner_id>` beside the chat streams.
//! A change whose statement returned the chat's list entry (a turn's: the chat's creation,
//! the acquisition, the finish) is announced with it at once
//! ([`ChatListChange::Committed`]); for the others this module reads the changed chats'
//! entries ([`crate::store::Store::chat_list_entries`]) on its task:
//!
//! - **Never blocks the caller.** Reporting a change is a set insert (an entry, a push onto
//!   the publisher's queue); the read happens on this task, so a turn loop never waits on
//!   PostgreSQL for it, and a slow read never holds up the chat streams' deltas (the
//!   publisher's own queue).
//! - **Entries are not held.** An entry a statement returned goes to the publisher's queue
//!   as it is reported, neither coalesced nor capped here: like a chat's status events, one
//!   per committed change.
//! - **Coalesced, so bounded.** A chat waiting to be read is in the set once, however often
//!   it changed meanwhile: the read returns its state after the last change, which is all a
//!   list shows. Memory is bounded by the number of distinct chats waiting, itself capped
//!   ([`MAX_PENDING`]; past it a change is dropped and counted as
//!   `agentq_events_dropped_total{event="chat_list"}`, which only a PostgreSQL outage gets
//!   near). One read covers up to [`READ_BATCH`] chats.
//! - **Paced, so cheap under load.** A process starts a read at most once every
//!   [`READ_SPACING`]: a change after a quiet spell is read at once, and the changes that
//!   arrive within that time share the next read. A read is a statement, and with several
//!   worker processes each one's changes came one or two at a time, so a turn paid about
//!   one read of its own (bench/RESULTS.md, session 23). A full read ([`READ_BATCH`]: a
//!   backlog) is followed at once; deletions, which need no read, are held only behind
//!   chats waiting to be read, at most that long.
//! - **Order.** One task reads and publishes, after the commits it announces, so the events
//!   of one chat it reads leave in the order of the reads. An entry a statement returned is
//!   queued for the stream when it is reported, right after its commit, as a read made then
//!   would be; it waits for no read, so a read that started before that commit may be
//!   published after it with the older state. Across processes announcers interleave: each
//!   entry carries `updated_at`, and a client keeps the later one; an entry that reaches the
//!   stream after another process's `deleted` of its chat (queued before the deletion,
//!   written after) is one a client ignores, as `GET /chats/events` documents.
//! - **A read that fails** (PostgreSQL down) puts its chats back and retries with backoff;
//!   deletions need no read (the caller names the owner) and go out at once.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{ChatListEvent, EventPublisher, StreamTopic};
use crate::store::{ChatListEntry, Store};

/// Most chats waiting to be announced in one process.
pub const MAX_PENDING: usize = 100_000;

/// Most chats one read covers.
pub const READ_BATCH: usize = 500;

/// Least time between the starts of two reads of one process. A change after a quiet
/// spell is read at once; under load the changes of this long share a read instead of
/// each paying a statement of its own.
pub const READ_SPACING: Duration = Duration::from_millis(20);

/// A committed change a chat list shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatListChange {
    /// A chat was created (a root chat, or a subagent chat).
    Created(Uuid),
    /// These chats changed.
    Updated(Vec<Uuid>),
    /// A chat changed, and the statement that changed it returned its entry (as committed):
    /// announced without a read.
    Committed {
        /// The entry.
        entry: Box<ChatListEntry>,
        /// A new chat: announced as `created`.
        created: bool,
    },
    /// These chats of `owner_id` were deleted: a root chat first, then its subagent chats.
    Deleted {
        /// Their owner.
        owner_id: Uuid,
        /// The chats, the root first.
        chat_ids: Vec<Uuid>,
    },
}

/// Reports changes to this process's announcer task; cheap to clone. The task ends when
/// the last handle is dropped, after announcing what was reported.
#[derive(Clone)]
pub(crate) struct ChatListFeed {
    pending: Arc<Mutex<Pending>>,
    doorbell: mpsc::Sender<()>,
    /// Where a committed entry goes at once (the task's publisher; boxed, since a
    /// publisher holds its feed).
    events: Box<EventPublisher>,
}

#[derive(Default)]
struct Pending {
    /// Chats to read and announce, each once, in the order they first changed.
    chats: VecDeque<Uuid>,
    queued: HashSet<Uuid>,
    /// Of `chats`, those to announce as `created`.
    created: HashSet<Uuid>,
    /// Deletions to announce: (owner, chat, root).
    deleted: Vec<(Uuid, Uuid, Option<Uuid>)>,
    /// Callers of [`ChatListFeed::flush`] waiting for the next round to end.
    flushes: Vec<oneshot::Sender<()>>,
}

/// One round's work, taken out of [`Pending`].
struct Round {
    chats: Vec<Uuid>,
    created: HashSet<Uuid>,
    deleted: Vec<(Uuid, Uuid, Option<Uuid>)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl ChatListFeed {
    /// Starts the announcer task: it reads through `store` and publishes through `events`
    /// (a publisher without a feed of its own, so the task does not keep itself alive).
    pub(crate) fn start(store: Store, events: EventPublisher) -> Self {
        let (doorbell, rung) = mpsc::channel(1);
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(announce(store, events.clone(), pending.clone(), rung));
        Self {
            pending,
            doorbell,
            events: Box::new(events),
        }
    }

    /// Queues a change for the task, or an entry a statement returned for the stream at
    /// once; never waits.
    pub(crate) fn report(&self, change: ChatListChange) {
        match change {
            ChatListChange::Committed { entry, created } => {
                self.events.announce_entry(*entry, created);
                return;
            }
            ChatListChange::Created(chat_id) => {
                let mut p = self.lock();
                if p.enqueue(chat_id) {
                    p.created.insert(chat_id);
                }
            }
            ChatListChange::Updated(chat_ids) => {
                let mut p = self.lock();
                for chat_id in chat_ids {
                    p.enqueue(chat_id);
                }
            }
            ChatListChange::Deleted { owner_id, chat_ids } => {
                let mut p = self.lock();
                let root = chat_ids.first().copied();
                for chat_id in chat_ids {
                    if p.deleted.len() >= MAX_PENDING {
                        crate::metrics::event_dropped("chat_list");
                        break;
                    }
                    let root_chat_id = root.filter(|r| *r != chat_id);
                    p.deleted.push((owner_id, chat_id, root_chat_id));
                }
            }
        }
        // Full means rung already: the task will see this change in its next round.
        let _ = self.doorbell.try_send(());
    }

    /// Waits until what was reported before this call has been handed to the publisher
    /// (or its read failed once; it is retried later).
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.lock().flushes.push(done);
        // A full doorbell means a round is due anyway; a closed one means no task answers.
        if self.doorbell.try_send(()).is_err() && self.doorbell.is_closed() {
            return;
        }
        let _ = wait.await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        lock(&self.pending)
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic while holding the lock leaves plain data behind: keep using it.
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pending {
    /// Adds a chat to read; false when it was waiting already (or dropped over the cap).
    fn enqueue(&mut self, chat_id: Uuid) -> bool {
        if self.queued.contains(&chat_id) {
            return false;
        }
        if self.chats.len() >= MAX_PENDING {
            crate::metrics::event_dropped("chat_list");
            return false;
        }
        self.queued.insert(chat_id);
        self.chats.push_back(chat_id);
        true
    }

    /// Takes up to [`READ_BATCH`] chats, every deletion, and the flush waiters once nothing
    /// else is left for a later round.
    fn take_round(&mut self) -> Round {
        let n = self.chats.len().min(READ_BATCH);
        let chats: Vec<Uuid> = self.chats.drain(..n).collect();
        let mut created = HashSet::new();
        for id in &chats {
            self.queued.remove(id);
            if self.created.remove(id) {
                created.insert(*id);
            }
        }
        let flushes = if self.chats.is_empty() {
            std::mem::take(&mut self.flushes)
        } else {
            Vec::new()
        };
        Round {
            chats,
            created,
            deleted: std::mem::take(&mut self.deleted),
            flushes,
        }
    }

    /// Puts a failed round's chats back in front, keeping what changed since.
    fn put_back(&mut self, chats: Vec<Uuid>, created: HashSet<Uuid>) {
        for id in chats.into_iter().rev() {
            if self.queued.insert(id) {
                self.chats.push_front(id);
            }
        }
        self.created.extend(created);
    }
}

/// The announcer: one round per ring of the doorbell, until everything reported is out.
async fn announce(
    store: Store,
    events: EventPublisher,
    pending: Arc<Mutex<Pending>>,
    mut rung: mpsc::Receiver<()>,
) {
    let max_bytes = events.limits().payload.max_event_bytes;
    let mut backoff = Duration::ZERO;
    let mut last_read: Option<Instant> = None;
    loop {
        let open = rung.recv().await.is_some();
        loop {
            // Paced only when there is something to read: deletions and flushes alone go
            // out at once.
            let wait = last_read.and_then(|at| READ_SPACING.checked_sub(at.elapsed()));
            if let Some(wait) = wait
                && !lock(&pending).chats.is_empty()
            {
                tokio::time::sleep(wait).await;
            }
            let round = lock(&pending).take_round();
            for (owner_id, chat_id, root_chat_id) in &round.deleted {
                let event = ChatListEvent::Deleted {
                    chat_id: *chat_id,
                    root_chat_id: *root_chat_id,
                };
                events.publish_chat_list(*owner_id, &event, max_bytes);
            }
            if round.chats.is_empty() {
                answer(round.flushes);
                break;
            }
            // A full round means a backlog (after an outage, say): the next goes at once.
            last_read = (round.chats.len() < READ_BATCH).then(Instant::now);
            crate::metrics::chat_list_read(round.chats.len());
            match store.chat_list_entries(&round.chats).await {
                Ok(mut entries) => {
                    backoff = Duration::ZERO;
                    // In the order the chats changed; a chat gone since is skipped (its
                    // `deleted` is announced by whoever deleted it).
                    let place = |id: &Uuid| round.chats.iter().position(|c| c == id);
                    entries.sort_by_key(|e| place(&e.id));
                    for chat in entries {
                        let owner_id = chat.owner_id;
                        let created = round.created.contains(&chat.id);
                        events.publish_chat_list(owner_id, &list_event(chat, created), max_bytes);
                    }
                    answer(round.flushes);
                }
                Err(e) => {
                    tracing::warn!(error = %e, chats = round.chats.len(), "reading chat list entries failed; retrying");
                    lock(&pending).put_back(round.chats, round.created);
                    answer(round.flushes);
                    backoff = crate::redis_conn::next_backoff(backoff, Duration::from_millis(100));
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        if !open {
            return;
        }
    }
}

/// The event announcing `chat`: `created` for a new chat, else `updated`.
fn list_event(chat: ChatListEntry, created: bool) -> ChatListEvent {
    if created {
        ChatListEvent::Created {
            chat,
            truncated: false,
        }
    } else {
        ChatListEvent::Updated {
            chat,
            truncated: false,
        }
    }
}

fn answer(flushes: Vec<oneshot::Sender<()>>) {
    for done in flushes {
        let _ = done.send(());
    }
}

impl EventPublisher {
    /// Queues the event announcing a chat list `entry` a statement returned (`created` for a
    /// new chat): no read, so it goes out at once.
    pub(super) fn announce_entry(&self, entry: ChatListEntry, created: bool) {
        let max_bytes = self.limits().payload.max_event_bytes;
        self.publish_chat_list(entry.owner_id, &list_event(entry, created), max_bytes);
    }

    /// Queues `event` for `owner_id`'s chat list stream (never dropped under pressure: it
    /// reports committed state).
    fn publish_chat_list(&self, owner_id: Uuid, event: &ChatListEvent, max_bytes: usize) {
        let (name, data) = event.encode(max_bytes);
        self.enqueue(StreamTopic::ChatList { owner_id }, name, data, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_changed_many_times_is_read_once_and_created_stays_created() {
        let mut p = Pending::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(p.enqueue(a));
        p.created.insert(a);
        assert!(!p.enqueue(a));
        assert!(p.enqueue(b));
        assert!(!p.enqueue(b));
        let round = p.take_round();
        assert_eq!(round.chats, vec![a, b]);
        assert_eq!(round.created, HashSet::from([a]));
        assert!(p.chats.is_empty() && p.queued.is_empty());
    }

    #[test]
    fn a_failed_round_goes_back_in_front_in_its_order() {
        let mut p = Pending::default();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        p.enqueue(a);
        p.enqueue(b);
        p.created.insert(b);
        let round = p.take_round();
        p.enqueue(c);
        p.enqueue(a);
        p.put_back(round.chats, round.created);
        assert_eq!(p.chats, VecDeque::from([b, c, a]));
        assert!(p.created.contains(&b));
    }

    #[test]
    fn a_round_is_bounded_and_flushes_wait_for_the_last_one() {
        let mut p = Pending::default();
        for _ in 0..READ_BATCH + 1 {
            p.enqueue(Uuid::now_v7());
        }
        let (done, _wait) = oneshot::channel();
        p.flushes.push(done);
        let first = p.take_round();
        assert_eq!(first.chats.len(), READ_BATCH);
        assert!(first.flushes.is_empty());
        let last = p.take_round();
        assert_eq!(last.chats.len(), 1);
        assert_eq!(last.flushes.len(), 1);
    }
}
