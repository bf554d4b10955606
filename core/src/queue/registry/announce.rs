//! A process's beat: its registry entry rewritten every beat with a time to live of
//! [`BEATS_TO_LIVE`] beats, marked `stopping` once shutdown begins, and deleted by
//! [`Announcement::withdraw`] when the process has finished its work.

use std::{collections::BTreeMap, time::Duration};

use crate::redis_conn::RedisConn;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{BEATS_TO_LIVE, ProcessEntry, ProcessKind};
use crate::queue::{BusySlots, QueueName, RegistryKeys};

/// What a process announces about itself: the fixed part of its entry, and where to read
/// its busy slots at each beat.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its id (a worker's consumer name; see [`crate::queue::consumer_name`]).
    pub id: String,
    /// What it runs.
    pub kind: ProcessKind,
    /// The queues it consumes, each with its consumer's busy slots.
    pub queues: Vec<(QueueName, BusySlots)>,
    /// Jobs it runs at once per queue.
    pub concurrency: usize,
}

impl Process {
    /// A process that consumes no queue (an API or a scheduler).
    pub fn new(id: String, kind: ProcessKind) -> Self {
        Self {
            id,
            kind,
            queues: Vec::new(),
            concurrency: 0,
        }
    }
}

/// A running beat; [`Announcement::withdraw`] it when the process has stopped working.
/// Dropped without a withdraw (a crash), the entry expires after [`BEATS_TO_LIVE`] beats.
pub struct Announcement {
    conn: RedisConn,
    keys: RegistryKeys,
    id: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Announcement {
    /// Starts beating every `beat` (the first beat at once). When `shutdown` is cancelled
    /// the entry says `stopping` (at once, then at every beat) until it is withdrawn.
    pub fn start(
        conn: RedisConn,
        prefix: &str,
        process: Process,
        beat: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let beat = beat.max(Duration::from_millis(100));
        let keys = RegistryKeys::new(prefix);
        let now = Utc::now();
        let entry = ProcessEntry {
            id: process.id.clone(),
            kind: process.kind,
            hostname: crate::queue::hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            queues: process
                .queues
                .iter()
                .map(|(queue, _)| queue.as_str().to_owned())
                .collect(),
            concurrency: process.concurrency,
            busy_slots: BTreeMap::new(),
            started_at: now,
            last_beat: now,
            beat_ms: beat.as_millis() as u64,
            stopping: false,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(beat_loop(
            conn.clone(),
            keys.clone(),
            entry,
            process.queues,
            beat,
            shutdown,
            stop.clone(),
        ));
        Self {
            conn,
            keys,
            id: process.id,
            stop,
            task,
        }
    }

    /// Stops beating and deletes the entry, so the process leaves the registry at once
    /// instead of after its time to live. Best effort: if Redis does not answer, the entry
    /// expires by itself.
    pub async fn withdraw(mut self) {
        self.stop.cancel();
        // After the loop ended no beat can write the entry back.
        let _ = (&mut self.task).await;
        let removed: redis::RedisResult<()> = redis::pipe()
            .cmd("DEL")
            .arg(self.keys.process(&self.id))
            .ignore()
            .cmd("ZREM")
            .arg(&self.keys.index)
            .arg(&self.id)
            .ignore()
            .query_async(&mut self.conn)
            .await;
        match removed {
            Ok(()) => tracing::debug!(process = %self.id, "left the process registry"),
            Err(e) => {
                tracing::warn!(process = %self.id, error = %e, "could not leave the process registry; the entry expires by itself")
            }
        }
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn beat_loop(
    mut conn: RedisConn,
    keys: RegistryKeys,
    mut entry: ProcessEntry,
    queues: Vec<(QueueName, BusySlots)>,
    beat: Duration,
    shutdown: CancellationToken,
    stop: CancellationToken,
) {
    let ttl = beat * BEATS_TO_LIVE;
    let key = keys.process(&entry.id);
    let mut ticks = tokio::time::interval(beat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            // Say so at once: an operator watching a drain sees it start.
            () = shutdown.cancelled(), if !entry.stopping => entry.stopping = true,
            _ = ticks.tick() => {}
        }
        entry.last_beat = Utc::now();
        entry.busy_slots = queues
            .iter()
            .map(|(queue, busy)| (queue.as_str().to_owned(), busy.get()))
            .collect();
        let Ok(json) = serde_json::to_string(&entry) else {
            continue;
        };
        let written: redis::RedisResult<()> = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .cmd("ZADD")
            .arg(&keys.index)
            .arg(entry.last_beat.timestamp_millis())
            .arg(&entry.id)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = written {
            // The shared connection reconnects by itself; the next beat tries again.
            tracing::debug!(process = %entry.id, error = %e, "process beat failed; will retry");
        }
    }
}
