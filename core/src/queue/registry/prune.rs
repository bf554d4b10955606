//! Removing dead consumer names from the queues' consumer group.
//!
//! Redis keeps a consumer name in the group until someone deletes it, so without this the
//! group (and `XINFO CONSUMERS`, and the queue admin view) collects one name per worker that
//! ever ran. Every worker process runs [`prune_loop`] over the queues it consumes: a name
//! is removed once it is
//!
//! - not the id of a live process in the registry (its process died or exited),
//! - idle (no read or claim) for longer than its entry would have lived
//!   ([`BEATS_TO_LIVE`] beats), so a live consumer that never registered (an older agentq
//!   during a rolling upgrade, a test's bare consumer) is left alone, and
//! - holding no pending entry: its entries are first taken over by live consumers
//!   (`XAUTOCLAIM`, ARCHITECTURE.md §6). A script checks this and deletes in one step,
//!   so an entry delivered to the name in between is never orphaned.
//!
//! Removing a live name would cost nothing: with no pending entries it loses nothing, and
//! its next `XREADGROUP` creates it again.

use crate::redis_conn::RedisConn;
use std::{collections::HashSet, time::Duration};

use redis::streams::StreamInfoConsumersReply;
use tokio_util::sync::CancellationToken;

use super::{BEATS_TO_LIVE, live_processes};
use crate::queue::{QueueKeys, QueueName};

/// Deletes the consumer `ARGV[2]` from group `ARGV[1]` of stream `KEYS[1]` only if it holds
/// no pending entry; returns -1 when it does (and keeps it).
const DELETE_IF_IDLE_SCRIPT: &str = r"
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
";

/// Every `beat` × [`BEATS_TO_LIVE`] (the time a dead process takes to leave the registry),
/// removes the dead consumer names of `queues` until `shutdown`.
pub async fn prune_loop(
    mut conn: RedisConn,
    prefix: String,
    queues: Vec<QueueName>,
    beat: Duration,
    shutdown: CancellationToken,
) {
    let gone_after = beat.max(Duration::from_millis(100)) * BEATS_TO_LIVE;
    loop {
        tokio::select! {
            () = tokio::time::sleep(gone_after) => {}
            () = shutdown.cancelled() => return,
        }
        for &queue in &queues {
            if let Err(e) = prune_dead_consumers(&mut conn, &prefix, queue, gone_after).await {
                tracing::debug!(queue = queue.as_str(), error = %e, "pruning dead consumers failed; will retry");
            }
        }
    }
}

/// Removes the names in `queue`'s group that no live process has, that were idle longer
/// than `gone_after` and that hold no entry. Returns the names removed.
pub async fn prune_dead_consumers(
    conn: &mut RedisConn,
    prefix: &str,
    queue: QueueName,
    gone_after: Duration,
) -> redis::RedisResult<Vec<String>> {
    let keys = QueueKeys::new(prefix, queue);
    let consumers: StreamInfoConsumersReply = match redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&keys.stream)
        .arg(&keys.group)
        .query_async(conn)
        .await
    {
        Ok(reply) => reply,
        // No stream or group yet (`ERR no such key`, `NOGROUP`): nothing to prune.
        Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let idle_for = gone_after.as_millis() as usize;
    let candidates: Vec<String> = consumers
        .consumers
        .into_iter()
        .filter(|c| c.pending == 0 && c.idle > idle_for)
        .map(|c| c.name)
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let live: HashSet<String> = live_processes(conn, prefix)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    let script = redis::Script::new(DELETE_IF_IDLE_SCRIPT);
    let mut removed = Vec::new();
    for name in candidates.into_iter().filter(|name| !live.contains(name)) {
        let held: i64 = script
            .key(&keys.stream)
            .arg(&keys.group)
            .arg(&name)
            .invoke_async(conn)
            .await?;
        if held >= 0 {
            tracing::info!(
                queue = queue.as_str(),
                consumer = %name,
                "removed a dead consumer from the queue's group"
            );
            removed.push(name);
        }
    }
    Ok(removed)
}
