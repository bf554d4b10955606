//! The acquisitions of the turn jobs a process starts together, taken in one statement.
//!
//! Under load a worker starts many turn jobs at once (a fetch brings up to its batch, and
//! each job's first act is to take its turn). Each acquisition alone costs PostgreSQL a
//! statement, a commit and a round trip, most of which does not depend on how many turns
//! the statement takes. So a job asks this process's [`Acquisitions`] instead of the
//! store: while [`IN_FLIGHT`] statements are running, the requests that arrive wait, and
//! the next statement takes all of them ([`Store::acquire_turns`], at most [`MAX_BATCH`]).
//! At rest a request finds a statement free and goes alone, at once: batching only fills
//! the statements the load would queue anyway.
//!
//! A batch never waits for a chat's lock (it would hold its other chats meanwhile, and
//! could close a cycle): a turn it did not take, because its chat was busy or because it
//! was not `queued`, is taken by its job alone with [`Store::acquire_turn`], which waits
//! as every acquisition did before batching, and tells the two apart. So is every turn of
//! a batch whose statement failed before it committed, so one turn's failure is its own.
//! A turn taken whose row cannot be read (a value a newer version wrote) fails its own job
//! only, and is handed back at once for a worker that can read it. (A connection lost
//! after the commit, or a row whose id cannot be read, leaves the batch's turns taken
//! with no job running them, as it would a lone acquisition's turn: their jobs find them
//! `running` and skip them, and recovery takes them back when their leases expire.)
//! Nothing about a turn's state moves here: each is taken (or found taken) exactly as a
//! lone acquisition would, under its own lease owner.

use std::{sync::Arc, time::Duration};

use agentq_core::{StoreError, domain::AcquiredTurn, store::Store};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// Acquisition statements a process runs at once; requests arriving meanwhile wait for
/// the next one. Two keep a statement ready while the other runs; batches take two of
/// the process's PostgreSQL connections at most (turns taken alone take their own).
pub const IN_FLIGHT: usize = 2;

/// The most turns one statement takes: it holds their chats' locks until it commits, and
/// bigger batches save little more.
pub const MAX_BATCH: usize = 32;

/// One job's request: its turn, its acquisition's lease owner, where the answer goes.
struct Request {
    turn_id: Uuid,
    owner: String,
    reply: oneshot::Sender<Batched>,
}

/// What a batch did for one request.
enum Batched {
    /// The statement took the turn for this request.
    Taken(Box<AcquiredTurn>),
    /// The statement took the turn, but its row could not be read: the turn is handed
    /// back, and the job fails.
    Unreadable(StoreError),
    /// It did not take it (the chat was busy, the turn not `queued`, or the statement
    /// failed): the job takes it alone.
    Alone,
}

/// This process's batching of turn acquisitions (see the module page).
#[derive(Clone)]
pub struct Acquisitions {
    store: Store,
    lease: Duration,
    requests: mpsc::UnboundedSender<Request>,
}

impl Acquisitions {
    /// Starts the task that runs the statements (on the current runtime); it ends when the
    /// last handle is dropped.
    pub fn start(store: Store, lease: Duration) -> Self {
        let (requests, queued) = mpsc::unbounded_channel();
        tokio::spawn(batches(store.clone(), lease, queued));
        Self {
            store,
            lease,
            requests,
        }
    }

    /// Takes `turn_id` for `owner` as [`Store::acquire_turn`] does: in the next statement
    /// of this process, or alone when that statement did not take it. The channel is
    /// unbounded, but each request is a job awaiting it, so there are never more than the
    /// jobs running.
    pub async fn acquire(
        &self,
        turn_id: Uuid,
        owner: &str,
    ) -> Result<Option<AcquiredTurn>, StoreError> {
        agentq_core::metrics::turn_acquisition_asked();
        let (reply, answer) = oneshot::channel();
        let request = Request {
            turn_id,
            owner: owner.to_owned(),
            reply,
        };
        if self.requests.send(request).is_ok() {
            match answer.await {
                Ok(Batched::Taken(turn)) => return Ok(Some(*turn)),
                Ok(Batched::Unreadable(e)) => return Err(e),
                Ok(Batched::Alone) | Err(_) => {}
            }
        }
        // Not taken by a batch; or the batching task is gone (the runtime is shutting
        // down, or a statement's task panicked before answering: a turn the lost statement
        // took is found not `queued` here, and comes back through recovery when its lease
        // expires).
        agentq_core::metrics::turn_acquisition_statement();
        self.store.acquire_turn(turn_id, owner, self.lease).await
    }
}

/// Gathers requests into statements: takes one of the [`IN_FLIGHT`] permits, waits for a
/// request, adds every request already waiting (up to [`MAX_BATCH`]), runs them together.
async fn batches(store: Store, lease: Duration, mut queued: mpsc::UnboundedReceiver<Request>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            run_batch(&store, lease, batch).await;
            drop(permit);
        });
    }
}

/// One statement for `batch`; each request is answered with its turn, or sent to take it
/// alone. A request whose job stopped waiting (its future dropped; jobs run on tasks of
/// their own, so only a runtime shutting down does that today) is left out, and a turn
/// taken for a job that stopped meanwhile is handed back, as is a turn whose row cannot
/// be read. A handed-back turn's job was not acknowledged (a job is acked when it
/// returns), so its redelivery, or recovery's resend, runs it.
async fn run_batch(store: &Store, lease: Duration, mut batch: Vec<Request>) {
    batch.retain(|r| !r.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let turns: Vec<(Uuid, String)> = batch.iter().map(|r| (r.turn_id, r.owner.clone())).collect();
    agentq_core::metrics::turn_acquisition_statement();
    let mut taken = match store.acquire_turns(&turns, lease).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, turns = batch.len(), "a batched acquisition failed; each job takes its turn alone");
            Vec::new()
        }
    };
    // Everyone is answered first; the hand-backs come after.
    let mut hand_back = Vec::new();
    for request in batch {
        let answer = match taken
            .iter()
            .position(|t| t.id == request.turn_id && t.lease_owner == request.owner)
        {
            Some(at) => match taken.swap_remove(at).turn {
                Ok(turn) => Batched::Taken(Box::new(turn)),
                Err(e) => {
                    hand_back.push((request.turn_id, request.owner.clone()));
                    Batched::Unreadable(e)
                }
            },
            None => Batched::Alone,
        };
        if let Err(Batched::Taken(turn)) = request.reply.send(answer) {
            hand_back.push((turn.id, turn.lease_owner));
        }
    }
    for (turn_id, owner) in hand_back {
        if let Err(e) = store.release_turn(turn_id, &owner).await {
            tracing::warn!(turn.id = %turn_id, error = %e, "could not hand back a turn no job runs; recovery will after its lease");
        }
    }
}
