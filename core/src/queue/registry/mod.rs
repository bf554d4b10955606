//! The process registry (ARCHITECTURE.md §6.1): every api, worker and scheduler process
//! announces itself in Redis with a beat, so operators see what runs and how busy it is,
//! and queue consumers can tell a dead consumer name from a live one.
//!
//! - **One entry per process**, `{<prefix>:processes}:process:<id>`: its [`ProcessEntry`]
//!   as JSON, rewritten at every beat with a time to live of three beats. A process that
//!   dies stops beating and its entry expires within three beats; one that stops
//!   gracefully deletes it at once ([`Announcement::withdraw`]).
//! - **An index**, the sorted set `{<prefix>:processes}:index` of process ids scored by
//!   their last beat, so listing is one `ZRANGE` and one `MGET` (one hash tag, so one
//!   Redis Cluster slot) instead of a `SCAN` over the keyspace. A listing drops the ids
//!   whose entry has expired ([`live_processes`]).
//! - **Ids** are `<kind>-<host>-<pid>-<random>` ([`super::consumer_name`]). A worker's id is
//!   also its consumer name in every queue's group, which is what lets [`prune`] remove
//!   the names of dead workers from the groups (`XGROUP DELCONSUMER`) once they hold no
//!   entries.
//!
//! ```no_run
//! # async fn example(conn: crate::redis_conn::RedisConn) -> redis::RedisResult<()> {
//! use std::time::Duration;
//! use agentq_core::queue::{Announcement, Process, ProcessKind, consumer_name, live_processes};
//! use tokio_util::sync::CancellationToken;
//!
//! let shutdown = CancellationToken::new();
//! let process = Process::new(consumer_name("scheduler"), ProcessKind::Scheduler);
//! let announcement =
//!     Announcement::start(conn.clone(), "agentq", process, Duration::from_secs(5), shutdown.clone());
//! let live = live_processes(&mut conn.clone(), "agentq").await?;
//! shutdown.cancel();
//! announcement.withdraw().await; // gone from the registry at once
//! # Ok(()) }
//! ```

mod announce;
pub(super) mod prune;

use std::collections::BTreeMap;

use crate::redis_conn::RedisConn;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use announce::{Announcement, Process};

use super::RegistryKeys;

/// Beats after which a silent process counts as gone: its entry's time to live.
pub const BEATS_TO_LIVE: u32 = 3;

/// The kind of process an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProcessKind {
    /// `agentq api` (or the API of `agentq dev`).
    Api,
    /// `agentq worker` (or the worker of `agentq dev`).
    Worker,
    /// `agentq scheduler` (or the scheduler of `agentq dev`).
    Scheduler,
}

impl ProcessKind {
    /// The kind's name in ids, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessKind::Api => "api",
            ProcessKind::Worker => "worker",
            ProcessKind::Scheduler => "scheduler",
        }
    }
}

/// What a live process says about itself, as of its last beat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessEntry {
    /// Unique per process start: `<kind>-<host>-<pid>-<random>`. A worker's id is also its
    /// consumer name in every queue's consumer group.
    #[cfg_attr(feature = "openapi", schema(example = "worker-web-1-4182-9f3a1c2e"))]
    pub id: String,
    /// What the process runs.
    pub kind: ProcessKind,
    /// The host it runs on.
    pub hostname: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The agentq version it runs.
    pub version: String,
    /// The queues it consumes (workers; empty for the others).
    pub queues: Vec<String>,
    /// Jobs it runs at once per queue (`--concurrency`; 0 for processes without queues).
    pub concurrency: usize,
    /// Per queue it consumes, the slots holding a job at the last beat.
    pub busy_slots: BTreeMap<String, usize>,
    /// When the process announced itself first.
    pub started_at: DateTime<Utc>,
    /// Its last beat (by its own clock).
    pub last_beat: DateTime<Utc>,
    /// Milliseconds between its beats; it is gone from the registry three beats after the
    /// last one.
    pub beat_ms: u64,
    /// It received SIGTERM and drains: it takes no new jobs and leaves when running ones
    /// finish (or `--drain-secs` ends).
    pub stopping: bool,
}

/// The live processes, by kind then id. Ids whose entry expired (their process died) are
/// removed from the index on the way.
pub async fn live_processes(
    conn: &mut RedisConn,
    prefix: &str,
) -> redis::RedisResult<Vec<ProcessEntry>> {
    let keys = RegistryKeys::new(prefix);
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys.index)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<String> = ids.iter().map(|id| keys.process(id)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&entries).query_async(conn).await?;
    let mut live = Vec::with_capacity(ids.len());
    let mut gone = Vec::new();
    for (id, value) in ids.into_iter().zip(values) {
        match value {
            // An entry this version cannot read (written by a newer one) is alive all the
            // same: leave it in the index, just do not list it.
            Some(json) => live.extend(serde_json::from_str::<ProcessEntry>(&json).ok()),
            None => gone.push(id),
        }
    }
    if !gone.is_empty() {
        // Only ids whose entry expired: a process that beats again is added back by its
        // beat, so removing a stale id can never hide a live process for long.
        let removed: redis::RedisResult<()> = redis::cmd("ZREM")
            .arg(&keys.index)
            .arg(&gone)
            .query_async(conn)
            .await;
        if let Err(e) = removed {
            tracing::debug!(error = %e, "could not drop expired processes from the registry index");
        }
    }
    live.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    Ok(live)
}
