//! Taking over a stopped consumer's entries: an entry idle past the lease (its holder
//! stopped heartbeating) is claimed with `XAUTOCLAIM` by a consumer with free slots; one
//! delivered more than `max_deliveries` times is dead-lettered instead, so a job that kills
//! its workers does not kill them all (ARCHITECTURE.md §6).

use crate::redis_conn::RedisConn;
use std::{sync::Arc, time::Duration};

use redis::streams::{StreamAutoClaimReply, StreamPendingCountReply};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Acker, BusySlots, ConsumerOptions, Delivery, Slot, job_entries::jobs_claimed, sleep_or_shutdown,
};
use crate::queue::QueueKeys;

pub(super) async fn reclaim_loop(
    mut conn: RedisConn,
    options: Arc<ConsumerOptions>,
    slots: Arc<Semaphore>,
    busy: BusySlots,
    deliver: mpsc::UnboundedSender<Vec<Delivery>>,
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
        let mut batch = Vec::new();
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
}

/// Delivery counts of just-claimed entries, one pipelined `XPENDING` each (a rare path).
async fn delivery_counts(
    conn: &mut RedisConn,
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
