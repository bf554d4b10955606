//! Taking new entries in: one `XREADGROUP COUNT <free slots> BLOCK` after another on the
//! consumer's own connection, so an idle worker wakes within milliseconds and a busy one
//! takes a batch per round trip, and never more entries than it has free slots.

use crate::redis_conn::RedisConn;
use std::{sync::Arc, time::Duration};

use redis::streams::StreamReadReply;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Acker, BusySlots, ConsumerOptions, Delivery, Slot, job_entries::jobs_read, next_backoff,
    sleep_or_shutdown,
};
use crate::queue::QueueKeys;

/// Creates the consumer group (and the stream) if missing. Starting at `0` means jobs
/// enqueued before any worker existed are still consumed.
async fn ensure_group(conn: &mut RedisConn, keys: &QueueKeys) -> redis::RedisResult<()> {
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

pub(super) async fn fetch_loop(
    mut conn: RedisConn,
    options: Arc<ConsumerOptions>,
    slots: Arc<Semaphore>,
    busy: BusySlots,
    deliver: mpsc::UnboundedSender<Vec<Delivery>>,
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
                let jobs = jobs_read(reply);
                if jobs.is_empty() {
                    continue;
                }
                acker.track_all(jobs.iter().map(|(entry_id, _, _)| entry_id.as_str()));
                // Normally the slots are free at once and the batch goes out in one send (one
                // wake of the job runner); if reclaim took slots meanwhile, each entry waits
                // for one (it is ours and heartbeated, so nobody else takes it).
                let mut permits = slots.clone().try_acquire_many_owned(jobs.len() as u32).ok();
                let mut batch = Vec::with_capacity(jobs.len());
                for (entry_id, payload, attempt) in jobs {
                    let permit = match permits.as_mut().and_then(|p| p.split(1)) {
                        Some(permit) => permit,
                        None => {
                            if !batch.is_empty() {
                                let _ = deliver.send(std::mem::take(&mut batch));
                            }
                            // On shutdown the rest stay pending under this consumer; live
                            // consumers take them over after the lease.
                            tokio::select! {
                                permit = slots.clone().acquire_owned() => permit.expect("semaphore never closes"),
                                _ = shutdown.cancelled() => break,
                            }
                        }
                    };
                    batch.push(Delivery {
                        entry_id,
                        payload,
                        attempt,
                        slot: Slot::hold(permit, &busy),
                    });
                }
                if !batch.is_empty() {
                    let _ = deliver.send(batch);
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
