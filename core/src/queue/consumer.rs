//! The consuming side of one queue in one process: fetch, reclaim, heartbeat, delayed
//! retries, and batched acks. Each concern is one loop; all of them back off on Redis
//! errors and resume, and all stop on the shared shutdown token.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{
    aio::ConnectionManager,
    streams::{StreamAutoClaimReply, StreamPendingCountReply, StreamReadReply},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{QueueKeys, entries, producer::xadd};

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
    pub(super) permit: OwnedSemaphorePermit,
}

/// What to do with a finished entry.
#[derive(Debug)]
enum AckOp {
    Done(String),
    Retry {
        entry_id: String,
        payload: String,
        attempt: u32,
        due_ms: u64,
    },
    Dead {
        entry_id: String,
        payload: String,
        attempt: u32,
        reason: String,
    },
}

/// Settles entries; cheap to clone. Ops are flushed in pipelined batches.
#[derive(Clone, Debug)]
pub struct Acker {
    tx: mpsc::UnboundedSender<AckOp>,
    inflight: Arc<Mutex<HashSet<String>>>,
    max_attempts: u32,
}

impl Acker {
    /// The job succeeded: `XACK` + `XDEL`.
    pub fn done(&self, entry_id: &str) {
        self.settle(AckOp::Done(entry_id.to_owned()), entry_id);
    }

    /// The handler failed: retry after `1 s * 2^attempt` (capped at 5 min) or, after
    /// `max_attempts`, move to the dead-letter stream with `error`. Returns which
    /// (`retried` or `dead_lettered`), for metrics.
    pub fn failed(&self, entry_id: &str, payload: &str, attempt: u32, error: &str) -> &'static str {
        let attempt = attempt + 1;
        let dead = attempt >= self.max_attempts;
        let op = if dead {
            AckOp::Dead {
                entry_id: entry_id.to_owned(),
                payload: payload.to_owned(),
                attempt,
                reason: format!("failed {attempt} time(s); last error: {error}"),
            }
        } else {
            let delay = Duration::from_secs(1u64 << attempt.min(8)).min(Duration::from_secs(300));
            AckOp::Retry {
                entry_id: entry_id.to_owned(),
                payload: payload.to_owned(),
                attempt,
                due_ms: now_ms() + delay.as_millis() as u64,
            }
        };
        self.settle(op, entry_id);
        if dead { "dead_lettered" } else { "retried" }
    }

    /// The entry cannot be run at all (e.g. it does not decode): dead-letter it now.
    pub fn dead(&self, entry_id: &str, payload: &str, attempt: u32, reason: &str) {
        let op = AckOp::Dead {
            entry_id: entry_id.to_owned(),
            payload: payload.to_owned(),
            attempt,
            reason: reason.to_owned(),
        };
        self.settle(op, entry_id);
    }

    fn settle(&self, op: AckOp, entry_id: &str) {
        self.inflight
            .lock()
            .expect("inflight lock")
            .remove(entry_id);
        // The flusher only stops after every sender is gone, so this cannot fail while an
        // entry is held.
        let _ = self.tx.send(op);
    }

    fn track(&self, entry_id: &str) {
        self.inflight
            .lock()
            .expect("inflight lock")
            .insert(entry_id.to_owned());
    }
}

/// A running consumer: its deliveries, its acker, and the loops behind them.
pub struct Consumer {
    /// Entries for this process, in arrival order.
    pub deliveries: mpsc::UnboundedReceiver<Delivery>,
    /// Settles entries.
    pub acker: Acker,
    /// The loops that take entries in (fetch, reclaim); they end soon after shutdown.
    intake: Vec<tokio::task::JoinHandle<()>>,
    /// Heartbeats, delayed retries and the ack flusher; the flusher ends after the last ack.
    upkeep: Vec<tokio::task::JoinHandle<()>>,
}

impl Consumer {
    /// Starts the loops. `shared` carries short commands; `blocking` is this consumer's own
    /// connection for `XREADGROUP BLOCK`.
    pub fn start(
        shared: ConnectionManager,
        blocking: ConnectionManager,
        options: ConsumerOptions,
        shutdown: CancellationToken,
    ) -> Consumer {
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let (deliver_tx, deliveries) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let acker = Acker {
            tx: ack_tx,
            inflight: Arc::default(),
            max_attempts: options.max_attempts.max(1),
        };
        let options = Arc::new(options);
        // The flusher runs until every Acker clone is dropped, so acks of jobs that finish
        // during a drain still reach Redis.
        let flusher = tokio::spawn(flush_acks(shared.clone(), options.clone(), ack_rx));
        let intake = vec![
            tokio::spawn(fetch_loop(
                blocking,
                options.clone(),
                slots.clone(),
                deliver_tx.clone(),
                acker.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(reclaim_loop(
                shared.clone(),
                options.clone(),
                slots,
                deliver_tx,
                acker.clone(),
                shutdown.clone(),
            )),
        ];
        let upkeep = vec![
            tokio::spawn(heartbeat_loop(
                shared.clone(),
                options.clone(),
                acker.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(delayed_loop(shared, options, shutdown)),
            flusher,
        ];
        Consumer {
            deliveries,
            acker,
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

/// Creates the consumer group (and the stream) if missing. Starting at `0` means jobs
/// enqueued before any worker existed are still consumed.
async fn ensure_group(conn: &mut ConnectionManager, keys: &QueueKeys) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Grows a retry delay: 50 ms doubling to 5 s.
fn next_backoff(current: Duration) -> Duration {
    crate::redis_conn::next_backoff(current, Duration::from_millis(50))
}

async fn fetch_loop(
    mut conn: ConnectionManager,
    options: Arc<ConsumerOptions>,
    slots: Arc<Semaphore>,
    deliver: mpsc::UnboundedSender<Delivery>,
    acker: Acker,
    shutdown: CancellationToken,
) {
    let keys = &options.keys;
    let mut backoff = Duration::ZERO;
    let mut group_ready = false;
    while !shutdown.is_cancelled() {
        if !group_ready {
            match ensure_group(&mut conn, keys).await {
                Ok(()) => group_ready = true,
                Err(e) => {
                    backoff = next_backoff(backoff);
                    tracing::warn!(queue = keys.queue.as_str(), error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot create consumer group; retrying");
                    sleep_or_shutdown(backoff, &shutdown).await;
                    continue;
                }
            }
        }
        // Wait for a free slot, then ask for as many entries as there are free slots (up to
        // the batch size). Slots are taken only for entries that arrive, so while this read
        // blocks the reclaim loop can still use them to take over a dead consumer's work.
        let probe = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closes"),
            _ = shutdown.cancelled() => break,
        };
        let count = (slots.available_permits() + 1).min(options.fetch_batch.max(1));
        drop(probe);
        // A read that times out answers nil, which parses as a reply with no streams.
        let reply: redis::RedisResult<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&keys.group)
            .arg(&options.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(options.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&keys.stream)
            .arg(">")
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(reply) => {
                backoff = Duration::ZERO;
                for (entry_id, payload, attempt) in jobs_read(reply) {
                    // Normally free at once; if reclaim took slots meanwhile, the entry waits
                    // for one (it is ours and heartbeated, so nobody else takes it).
                    acker.track(&entry_id);
                    let permit = slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closes");
                    let _ = deliver.send(Delivery {
                        entry_id,
                        payload,
                        attempt,
                        permit,
                    });
                }
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost the stream (restart without persistence): recreate and go on.
                tracing::warn!(
                    queue = keys.queue.as_str(),
                    "consumer group missing; recreating"
                );
                group_ready = false;
            }
            Err(e) => {
                backoff = next_backoff(backoff);
                tracing::warn!(queue = keys.queue.as_str(), error = %e, retry_in_ms = backoff.as_millis() as u64, "reading the queue failed; retrying");
                sleep_or_shutdown(backoff, &shutdown).await;
            }
        }
    }
    tracing::debug!(queue = keys.queue.as_str(), "fetch loop stopped");
}

async fn reclaim_loop(
    mut conn: ConnectionManager,
    options: Arc<ConsumerOptions>,
    slots: Arc<Semaphore>,
    deliver: mpsc::UnboundedSender<Delivery>,
    acker: Acker,
    shutdown: CancellationToken,
) {
    let keys = &options.keys;
    let period = (options.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut cursor = "0-0".to_owned();
    loop {
        if sleep_or_shutdown(period, &shutdown).await {
            break;
        }
        let mut permits = Vec::new();
        while permits.len() < options.fetch_batch.max(1) {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if permits.is_empty() {
            continue;
        }
        let reply: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
            .arg(&keys.stream)
            .arg(&keys.group)
            .arg(&options.consumer)
            .arg(options.lease.as_millis() as u64)
            .arg(&cursor)
            .arg("COUNT")
            .arg(permits.len())
            .query_async(&mut conn)
            .await;
        let (next, claimed) = match reply {
            Ok(reply) => jobs_claimed(reply),
            Err(e) => {
                tracing::debug!(queue = keys.queue.as_str(), error = %e, "reclaim failed; will retry");
                continue;
            }
        };
        cursor = next;
        if claimed.is_empty() {
            continue;
        }
        let counts = delivery_counts(&mut conn, keys, &claimed).await;
        for ((entry_id, payload, attempt), deliveries) in claimed.into_iter().zip(counts) {
            tracing::info!(
                queue = keys.queue.as_str(),
                entry_id,
                deliveries,
                "took over an entry whose holder stopped heartbeating"
            );
            if deliveries > u64::from(options.max_deliveries) {
                acker.track(&entry_id);
                acker.dead(
                    &entry_id,
                    &payload,
                    attempt,
                    &format!(
                        "delivered {deliveries} times without an ack (its workers died or hung)"
                    ),
                );
                continue;
            }
            let Some(permit) = permits.pop() else { break };
            acker.track(&entry_id);
            let _ = deliver.send(Delivery {
                entry_id,
                payload,
                attempt,
                permit,
            });
        }
    }
}

/// Delivery counts of just-claimed entries, one pipelined `XPENDING` each (a rare path).
async fn delivery_counts(
    conn: &mut ConnectionManager,
    keys: &QueueKeys,
    entries: &[(String, String, u32)],
) -> Vec<u64> {
    let mut pipe = redis::pipe();
    for (id, _, _) in entries {
        pipe.cmd("XPENDING")
            .arg(&keys.stream)
            .arg(&keys.group)
            .arg(id)
            .arg(id)
            .arg(1);
    }
    // An entry acked meanwhile has no pending row: count it as delivered once.
    let replies: Vec<StreamPendingCountReply> = pipe.query_async(conn).await.unwrap_or_default();
    let mut counts: Vec<u64> = replies
        .into_iter()
        .map(|reply| {
            reply
                .ids
                .first()
                .map_or(1, |pending| pending.times_delivered as u64)
        })
        .collect();
    counts.resize(entries.len(), 1);
    counts
}

async fn heartbeat_loop(
    mut conn: ConnectionManager,
    options: Arc<ConsumerOptions>,
    acker: Acker,
    shutdown: CancellationToken,
) {
    let keys = &options.keys;
    let period = (options.lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        if sleep_or_shutdown(period, &shutdown).await {
            break;
        }
        let held: Vec<String> = acker
            .inflight
            .lock()
            .expect("inflight lock")
            .iter()
            .cloned()
            .collect();
        for chunk in held.chunks(1000) {
            // XCLAIM with min-idle 0 and JUSTID resets the idle clock of entries we hold
            // without counting a delivery, so nobody takes over a job that is still running.
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&keys.stream)
                .arg(&keys.group)
                .arg(&options.consumer)
                .arg(0);
            for id in chunk {
                cmd.arg(id);
            }
            cmd.arg("JUSTID");
            if let Err(e) = cmd.query_async::<()>(&mut conn).await {
                tracing::debug!(queue = keys.queue.as_str(), error = %e, "heartbeat failed; will retry");
            }
        }
    }
}

/// Moves due retries from the delayed set to the stream, atomically, so two processes
/// never move the same one.
const MOVE_DUE_SCRIPT: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  local attempt = string.sub(member, 1, sep - 1)
  local payload = string.sub(member, sep + 1)
  if tonumber(ARGV[3]) > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'job', payload, 'attempt', attempt)
  else
    redis.call('XADD', KEYS[2], '*', 'job', payload, 'attempt', attempt)
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

async fn delayed_loop(
    mut conn: ConnectionManager,
    options: Arc<ConsumerOptions>,
    shutdown: CancellationToken,
) {
    let keys = &options.keys;
    let script = redis::Script::new(MOVE_DUE_SCRIPT);
    loop {
        if sleep_or_shutdown(Duration::from_millis(250), &shutdown).await {
            break;
        }
        let moved: redis::RedisResult<i64> = script
            .key(&keys.delayed)
            .key(&keys.stream)
            .arg(now_ms())
            .arg(1000)
            .arg(options.max_len)
            .invoke_async(&mut conn)
            .await;
        match moved {
            Ok(n) if n > 0 => tracing::debug!(
                queue = keys.queue.as_str(),
                moved = n,
                "due retries moved to the queue"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(queue = keys.queue.as_str(), error = %e, "moving due retries failed; will retry")
            }
        }
    }
}

/// Round trips tried for one ack batch before it is given up (about a minute of backoff).
const ACK_ATTEMPTS: u32 = 20;

/// Drains ack ops into pipelines: many `XACK`/`XDEL` ids per round trip. Runs until every
/// [`Acker`] is dropped; a failed flush is retried with backoff so acks are not lost when
/// Redis blips.
async fn flush_acks(
    mut conn: ConnectionManager,
    options: Arc<ConsumerOptions>,
    mut rx: mpsc::UnboundedReceiver<AckOp>,
) {
    let keys = &options.keys;
    let mut batch = Vec::with_capacity(1024);
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let mut done = Vec::new();
        let mut pipe = redis::pipe();
        for op in batch.drain(..) {
            match op {
                AckOp::Done(id) => done.push(id),
                AckOp::Retry {
                    entry_id,
                    payload,
                    attempt,
                    due_ms,
                } => {
                    pipe.cmd("ZADD")
                        .arg(&keys.delayed)
                        .arg(due_ms)
                        .arg(format!("{attempt}|{payload}"))
                        .ignore();
                    done.push(entry_id);
                }
                AckOp::Dead {
                    entry_id,
                    payload,
                    attempt,
                    reason,
                } => {
                    tracing::warn!(
                        queue = keys.queue.as_str(),
                        entry_id,
                        reason,
                        "job moved to the dead-letter stream"
                    );
                    let mut cmd = xadd(&keys.dead, 10_000, &payload, attempt);
                    cmd.arg("reason")
                        .arg(&reason)
                        .arg("original_id")
                        .arg(&entry_id);
                    pipe.add_command(cmd).ignore();
                    done.push(entry_id);
                }
            }
        }
        if !done.is_empty() {
            pipe.cmd("XACK")
                .arg(&keys.stream)
                .arg(&keys.group)
                .arg(&done)
                .ignore();
            pipe.cmd("XDEL").arg(&keys.stream).arg(&done).ignore();
        }
        let mut backoff = Duration::ZERO;
        let mut written = false;
        for _ in 0..ACK_ATTEMPTS {
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(e) => {
                    backoff = next_backoff(backoff);
                    tracing::warn!(queue = keys.queue.as_str(), error = %e, "acking failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        if !written {
            // The entries stay pending: XAUTOCLAIM hands them to a consumer again after the
            // lease, so their jobs may run twice. Say so, and count it for alerting.
            tracing::error!(
                queue = keys.queue.as_str(),
                entries = done.len(),
                attempts = ACK_ATTEMPTS,
                "gave up acking a batch; its jobs will be redelivered after the lease"
            );
            crate::metrics::ack_batch_abandoned(keys.queue.as_str(), done.len());
        }
    }
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

/// `(id, job payload, failed attempts)` of a job entry; `None` for an entry without a job.
fn job_of(entry: entries::Entry) -> Option<(String, String, u32)> {
    let payload: String = entry.get("job")?;
    let attempt = entry
        .get::<String>("attempt")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    Some((entry.id, payload, attempt))
}

/// Jobs of an `XREADGROUP` reply.
fn jobs_read(reply: StreamReadReply) -> Vec<(String, String, u32)> {
    reply
        .keys
        .into_iter()
        .flat_map(|stream| stream.ids)
        .filter_map(job_of)
        .collect()
}

/// The next cursor and the jobs of an `XAUTOCLAIM` reply (entries deleted while pending
/// come back as deleted ids, or as nil entries before Redis 7, and are skipped).
fn jobs_claimed(reply: StreamAutoClaimReply) -> (String, Vec<(String, String, u32)>) {
    let claimed = reply.claimed.into_iter().filter_map(job_of).collect();
    (reply.next_stream_id, claimed)
}
