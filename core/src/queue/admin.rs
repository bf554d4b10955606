//! What operators see and do with queues: lengths, pending entries, consumers (the group's
//! names, and the live processes consuming each queue from the process registry), and the
//! dead-letter stream (list, retry, drop). Lives here because only `core::queue` knows key
//! names.

use crate::redis_conn::RedisConn;
use chrono::{DateTime, Utc};
use redis::streams::{
    StreamInfoConsumersReply, StreamPendingCountReply, StreamPendingReply, StreamRangeReply,
};
use serde::Serialize;

use super::{
    ProcessEntry, QueueKeys, QueueName, entries::Entry, producer::xadd, registry::live_processes,
};

/// One queue's state.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    /// Queue name.
    pub queue: &'static str,
    /// Entries in the stream (waiting or delivered but not acked).
    pub length: u64,
    /// Delivered, not yet acked.
    pub pending: u64,
    /// Milliseconds the oldest pending entry has waited for its ack.
    pub oldest_pending_ms: u64,
    /// Jobs waiting for a retry.
    pub delayed: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Consumer names in the group (`XINFO CONSUMERS`), live or not: a dead worker's name
    /// stays until live workers have taken over its entries and pruned it.
    pub consumers: Vec<ConsumerStats>,
    /// The live processes that consume this queue, from the process registry: idle ones
    /// included, dead ones never.
    pub live_consumers: Vec<LiveConsumer>,
}

/// One consumer name of the group.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsumerStats {
    /// Its unique name (role, host, pid, random); a worker's registry id.
    pub name: String,
    /// Entries it holds.
    pub pending: u64,
    /// Milliseconds since it last read or claimed.
    pub idle_ms: u64,
    /// Whether a live process has this name in the process registry.
    pub live: bool,
}

/// A live process consuming a queue (see `GET /api/v1/admin/processes` for all of it).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveConsumer {
    /// Its consumer name (and registry id).
    pub name: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its slots for this queue holding a job at its last beat.
    pub busy_slots: usize,
    /// Its slots for this queue (`--concurrency`).
    pub concurrency: usize,
    /// Its last beat.
    pub last_beat: DateTime<Utc>,
    /// It is draining after SIGTERM.
    pub stopping: bool,
}

/// A dead letter.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// The job's JSON.
    pub job: serde_json::Value,
    /// Failed runs.
    pub attempt: u32,
    /// Why it gave up (the last error).
    pub reason: String,
    /// Its id in the queue before it died.
    pub original_id: String,
}

/// Reads every queue's state in one pipelined round trip per queue, plus the registry.
pub async fn queue_stats(
    conn: &mut RedisConn,
    prefix: &str,
) -> redis::RedisResult<Vec<QueueStats>> {
    let processes = live_processes(conn, prefix).await?;
    let mut out = Vec::new();
    for queue in QueueName::ALL {
        let keys = QueueKeys::new(prefix, queue);
        let (length, delayed, dead): (u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&keys.stream)
            .cmd("ZCARD")
            .arg(&keys.delayed)
            .cmd("XLEN")
            .arg(&keys.dead)
            .query_async(conn)
            .await?;
        let (pending, oldest_pending_ms) = pending_summary(conn, &keys).await;
        let consumers = consumer_stats(conn, &keys, &processes).await;
        out.push(QueueStats {
            queue: queue.as_str(),
            length,
            pending,
            oldest_pending_ms,
            delayed,
            dead_letters: dead,
            consumers,
            live_consumers: live_consumers(queue, &processes),
        });
    }
    Ok(out)
}

/// `(pending count, idle ms of the oldest pending entry)`; zeros when the group is missing.
async fn pending_summary(conn: &mut RedisConn, keys: &QueueKeys) -> (u64, u64) {
    let summary: redis::RedisResult<StreamPendingReply> = redis::cmd("XPENDING")
        .arg(&keys.stream)
        .arg(&keys.group)
        .query_async(conn)
        .await;
    let count = summary.map_or(0, |s| s.count() as u64);
    if count == 0 {
        return (0, 0);
    }
    let oldest: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg("-")
        .arg("+")
        .arg(1)
        .query_async(conn)
        .await;
    let idle = oldest.ok().and_then(|reply| {
        reply
            .ids
            .first()
            .map(|entry| entry.last_delivered_ms as u64)
    });
    (count, idle.unwrap_or(0))
}

/// The live processes whose entries say they consume `queue`.
fn live_consumers(queue: QueueName, processes: &[ProcessEntry]) -> Vec<LiveConsumer> {
    processes
        .iter()
        .filter(|p| p.queues.iter().any(|q| q == queue.as_str()))
        .map(|p| LiveConsumer {
            name: p.id.clone(),
            hostname: p.hostname.clone(),
            busy_slots: p.busy_slots.get(queue.as_str()).copied().unwrap_or(0),
            concurrency: p.concurrency,
            last_beat: p.last_beat,
            stopping: p.stopping,
        })
        .collect()
}

/// The group's consumers, each marked live when a live process has its name; none when
/// the group is missing.
async fn consumer_stats(
    conn: &mut RedisConn,
    keys: &QueueKeys,
    processes: &[ProcessEntry],
) -> Vec<ConsumerStats> {
    let reply: redis::RedisResult<StreamInfoConsumersReply> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&keys.stream)
        .arg(&keys.group)
        .query_async(conn)
        .await;
    let Ok(reply) = reply else {
        return Vec::new();
    };
    reply
        .consumers
        .into_iter()
        .map(|c| ConsumerStats {
            live: processes.iter().any(|p| p.id == c.name),
            name: c.name,
            pending: c.pending as u64,
            idle_ms: c.idle as u64,
        })
        .collect()
}

/// Dead letters of a queue, oldest first, after `after` (exclusive), at most `count`.
pub async fn dead_letters(
    conn: &mut RedisConn,
    prefix: &str,
    queue: QueueName,
    after: Option<&str>,
    count: usize,
) -> redis::RedisResult<Vec<DeadLetter>> {
    let keys = QueueKeys::new(prefix, queue);
    let entries = super::entries::range_after(conn, &keys.dead, after, count).await?;
    Ok(parse_dead(entries))
}

/// Puts dead letters back on their queue (attempts reset) and removes them from the
/// dead-letter stream; `ids` empty means all. Returns how many were retried.
pub async fn retry_dead_letters(
    conn: &mut RedisConn,
    prefix: &str,
    queue: QueueName,
    ids: &[String],
) -> redis::RedisResult<usize> {
    let keys = QueueKeys::new(prefix, queue);
    let letters = select_dead(conn, &keys, ids).await?;
    if letters.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for letter in &letters {
        pipe.add_command(xadd(&keys.stream, 0, &letter.job.to_string(), 0))
            .ignore();
    }
    let ids: Vec<&str> = letters.iter().map(|l| l.id.as_str()).collect();
    pipe.cmd("XDEL").arg(&keys.dead).arg(&ids).ignore();
    pipe.query_async::<()>(conn).await?;
    Ok(letters.len())
}

/// Deletes dead letters; `ids` empty means all. Returns how many were dropped.
pub async fn drop_dead_letters(
    conn: &mut RedisConn,
    prefix: &str,
    queue: QueueName,
    ids: &[String],
) -> redis::RedisResult<usize> {
    let keys = QueueKeys::new(prefix, queue);
    if ids.is_empty() {
        let n: usize = redis::cmd("XLEN").arg(&keys.dead).query_async(conn).await?;
        let _: () = redis::cmd("DEL").arg(&keys.dead).query_async(conn).await?;
        return Ok(n);
    }
    redis::cmd("XDEL")
        .arg(&keys.dead)
        .arg(ids)
        .query_async(conn)
        .await
}

async fn select_dead(
    conn: &mut RedisConn,
    keys: &QueueKeys,
    ids: &[String],
) -> redis::RedisResult<Vec<DeadLetter>> {
    if ids.is_empty() {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&keys.dead)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await?;
        return Ok(parse_dead(reply.ids));
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XRANGE").arg(&keys.dead).arg(id).arg(id);
    }
    let replies: Vec<StreamRangeReply> = pipe.query_async(conn).await?;
    Ok(replies
        .into_iter()
        .flat_map(|reply| parse_dead(reply.ids))
        .collect())
}

fn parse_dead(entries: Vec<Entry>) -> Vec<DeadLetter> {
    entries
        .into_iter()
        .map(|entry| {
            let text = |name: &str| entry.get::<String>(name).unwrap_or_default();
            let job = text("job");
            DeadLetter {
                job: serde_json::from_str(&job).unwrap_or(serde_json::Value::String(job)),
                attempt: text("attempt").parse().unwrap_or(0),
                reason: text("reason"),
                original_id: text("original_id"),
                id: entry.id,
            }
        })
        .collect()
}

/// A queue's lifetime counters at one instant, for throughput: jobs that left the stream
/// between two samples are `added` minus the growth of `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    /// The queue.
    pub queue: QueueName,
    /// Entries ever added to its stream (`XINFO STREAM` `entries-added`, Redis 7+).
    pub added: u64,
    /// Entries in the stream now.
    pub length: u64,
}

/// Every queue's [`QueueCounters`] (zeros for a queue whose stream does not exist yet).
pub async fn queue_counters(
    conn: &mut RedisConn,
    prefix: &str,
) -> redis::RedisResult<Vec<QueueCounters>> {
    let mut out = Vec::new();
    for queue in QueueName::ALL {
        let keys = QueueKeys::new(prefix, queue);
        let reply: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&keys.stream)
            .query_async(conn)
            .await;
        let (added, length) = match reply {
            Ok(info) => (
                info_field(&info, "entries-added"),
                info_field(&info, "length"),
            ),
            // No such key: nothing was ever enqueued.
            Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => (0, 0),
            Err(e) => return Err(e),
        };
        out.push(QueueCounters {
            queue,
            added,
            length,
        });
    }
    Ok(out)
}

/// An integer field of an `XINFO STREAM` reply (a map in RESP3, pairs in RESP2).
fn info_field(info: &redis::Value, name: &str) -> u64 {
    let as_u64 = |v: &redis::Value| match v {
        redis::Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    let is_name = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => b == name.as_bytes(),
        redis::Value::SimpleString(s) => s == name,
        _ => false,
    };
    match info {
        redis::Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| is_name(k))
            .map_or(0, |(_, v)| as_u64(v)),
        redis::Value::Array(items) => items
            .chunks(2)
            .find(|pair| is_name(&pair[0]))
            .and_then(|pair| pair.get(1))
            .map_or(0, as_u64),
        _ => 0,
    }
}

/// The dashboard's session-signing key: 32 random bytes, created by the first API process
/// that asks (`SET NX`) and read by every other, so sessions survive restarts and work on
/// any replica. Deleting the key signs every operator out.
pub async fn dashboard_session_key(
    conn: &mut RedisConn,
    prefix: &str,
    fresh: [u8; 32],
) -> redis::RedisResult<Vec<u8>> {
    let key = super::keys::dashboard_session_key(prefix);
    let (stored,): (Vec<u8>,) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(&fresh[..])
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(&key)
        .query_async(conn)
        .await?;
    Ok(stored)
}
