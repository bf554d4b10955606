//! The consuming side of one queue in one process (ARCHITECTURE.md §6). Each concern is
//! one loop in its own module: [`fetch`] takes new entries in, [`reclaim`] takes over a
//! stopped consumer's, [`heartbeat`] keeps held entries ours, [`due_retries`] puts retries
//! back when due, and [`acker`] settles finished entries in batches. All of them back off
//! on Redis errors and resume, and all stop on the shared shutdown token.

mod acker;
mod due_retries;
mod fetch;
mod heartbeat;
mod job_entries;
mod reclaim;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::redis_conn::RedisConn;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use acker::Acker;

use super::QueueKeys;

/// How one consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The queue's keys.
    pub keys: QueueKeys,
    /// This process's unique consumer name (see [`super::consumer_name`]).
    pub consumer: String,
    /// Jobs held at once; entries are fetched only for free slots.
    pub concurrency: usize,
    /// Largest batch one read asks for.
    pub fetch_batch: usize,
    /// Idle time after which another consumer may take an entry over.
    pub lease: Duration,
    /// Deliveries without an ack before an entry is dead-lettered.
    pub max_deliveries: u32,
    /// Failed handler runs before an entry is dead-lettered.
    pub max_attempts: u32,
    /// How long one `XREADGROUP` blocks; bounds how fast shutdown is noticed.
    pub block: Duration,
    /// Approximate stream cap for re-added entries (0 = none).
    pub max_len: usize,
}

/// One entry handed to this process. Holding it holds a concurrency slot.
#[derive(Debug)]
pub struct Delivery {
    /// Stream entry id (also the apalis task id).
    pub entry_id: String,
    /// The job's JSON.
    pub payload: String,
    /// Failed runs before this one.
    pub attempt: u32,
    pub(super) slot: Slot,
}

/// How many of a consumer's slots hold a job right now (delivered, not yet settled): what
/// the process registry reports as busy (ARCHITECTURE.md §6.1). Cheap to clone and read.
#[derive(Debug, Clone, Default)]
pub struct BusySlots(Arc<AtomicUsize>);

impl BusySlots {
    /// Slots holding a job now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One held concurrency slot: a permit of the consumer's semaphore, counted in its
/// [`BusySlots`] until the job is done and the slot dropped. The fetch and reclaim loops
/// also take permits for a moment while they ask Redis for entries; only slots handed to
/// a job count as busy.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    busy: BusySlots,
}

impl Slot {
    fn hold(permit: OwnedSemaphorePermit, busy: &BusySlots) -> Self {
        busy.0.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            busy: busy.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.busy.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running consumer: its deliveries, its acker, and the loops behind them.
pub struct Consumer {
    /// Entries for this process, in arrival order, a read's worth at a time.
    pub deliveries: mpsc::UnboundedReceiver<Vec<Delivery>>,
    /// Settles entries.
    pub acker: Acker,
    /// Slots holding a job now.
    pub busy: BusySlots,
    /// The loops that take entries in (fetch, reclaim); they end soon after shutdown.
    intake: Vec<tokio::task::JoinHandle<()>>,
    /// Heartbeats, delayed retries and the ack flusher; the flusher ends after the last ack.
    upkeep: Vec<tokio::task::JoinHandle<()>>,
}

impl Consumer {
    /// Starts the loops. `shared` carries short commands; `blocking` is this consumer's own
    /// connection for `XREADGROUP BLOCK`.
    pub fn start(
        shared: RedisConn,
        blocking: RedisConn,
        options: ConsumerOptions,
        shutdown: CancellationToken,
    ) -> Consumer {
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let busy = BusySlots::default();
        let (deliver_tx, deliveries) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let acker = Acker::new(ack_tx, options.max_attempts);
        let options = Arc::new(options);
        // The flusher runs until every Acker clone is dropped, so acks of jobs that finish
        // during a drain still reach Redis.
        let flusher = tokio::spawn(acker::flush_acks(shared.clone(), options.clone(), ack_rx));
        let intake = vec![
            tokio::spawn(fetch::fetch_loop(
                blocking,
                options.clone(),
                slots.clone(),
                busy.clone(),
                deliver_tx.clone(),
                acker.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(reclaim::reclaim_loop(
                shared.clone(),
                options.clone(),
                slots,
                busy.clone(),
                deliver_tx,
                acker.clone(),
                shutdown.clone(),
            )),
        ];
        let upkeep = vec![
            tokio::spawn(heartbeat::heartbeat_loop(
                shared.clone(),
                options.clone(),
                acker.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(due_retries::delayed_loop(shared, options, shutdown)),
            flusher,
        ];
        Consumer {
            deliveries,
            acker,
            busy,
            intake,
            upkeep,
        }
    }

    /// Splits off the loops' handles: `(intake, upkeep)`. After shutdown, await the intake
    /// loops, then stop the job runner, then await upkeep (which flushes the last acks).
    #[allow(clippy::type_complexity)]
    pub fn take_tasks(
        &mut self,
    ) -> (
        Vec<tokio::task::JoinHandle<()>>,
        Vec<tokio::task::JoinHandle<()>>,
    ) {
        (
            std::mem::take(&mut self.intake),
            std::mem::take(&mut self.upkeep),
        )
    }
}

/// Grows a retry delay: 50 ms doubling to 5 s.
fn next_backoff(current: Duration) -> Duration {
    crate::redis_conn::next_backoff(current, Duration::from_millis(50))
}

/// Sleeps for `d`; returns true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => shutdown.is_cancelled(),
        _ = shutdown.cancelled() => true,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
