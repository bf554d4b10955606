//! Settling entries: a job's outcome (done, retry later, dead) becomes an op on a channel,
//! and one flusher per consumer writes the ops in pipelined batches, many `XACK`/`XDEL` ids
//! per round trip. Handlers never wait for Redis to settle a job, and a Redis blip delays
//! acks instead of losing them (ARCHITECTURE.md §6).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::redis_conn::RedisConn;
use tokio::sync::mpsc;

use super::{ConsumerOptions, next_backoff, now_ms};
use crate::queue::producer::xadd;

/// What to do with a finished entry.
#[derive(Debug)]
pub(super) enum AckOp {
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
    /// An acker sending to the flusher on `tx`.
    pub(super) fn new(tx: mpsc::UnboundedSender<AckOp>, max_attempts: u32) -> Acker {
        Acker {
            tx,
            inflight: Arc::default(),
            max_attempts: max_attempts.max(1),
        }
    }

    /// The ids of the entries held now (delivered, not yet settled).
    pub(super) fn held(&self) -> Vec<String> {
        self.inflight
            .lock()
            .expect("inflight lock")
            .iter()
            .cloned()
            .collect()
    }

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

    /// Marks `entry_id` as held: heartbeats keep it ours until it is settled.
    pub(super) fn track(&self, entry_id: &str) {
        self.track_all([entry_id]);
    }

    /// Marks a read's entries as held, under one lock.
    pub(super) fn track_all<'a>(&self, entry_ids: impl IntoIterator<Item = &'a str>) {
        let mut inflight = self.inflight.lock().expect("inflight lock");
        inflight.extend(entry_ids.into_iter().map(str::to_owned));
    }
}

/// Round trips tried for one ack batch before it is given up (about a minute of backoff).
const ACK_ATTEMPTS: u32 = 20;

/// Drains ack ops into pipelines: many `XACK`/`XDEL` ids per round trip. Runs until every
/// [`Acker`] is dropped; a failed flush is retried with backoff so acks are not lost when
/// Redis blips.
pub(super) async fn flush_acks(
    mut conn: RedisConn,
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
