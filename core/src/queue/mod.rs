//! `core::queue`: agentq's job queue on Redis Streams, run by apalis 1.0 workers.
//!
//! ARCHITECTURE.md §6 is the contract. A job carries ids only and is an idempotent nudge: the
//! state it points at lives in PostgreSQL, so a lost, duplicated or replayed job never loses
//! or doubles anything. Each queue is one stream with one consumer group:
//!
//! - enqueue: `XADD` ([`Producer`]), many at once in one pipeline;
//! - fetch: `XREADGROUP COUNT <free slots> BLOCK` on a dedicated connection, so an idle
//!   worker wakes within milliseconds and a busy one takes a batch per round trip;
//! - done: `XACK` + `XDEL` for many ids per pipelined round trip;
//! - a consumer that dies: its entries idle past the lease are taken over with
//!   `XAUTOCLAIM`; live holders reset the idle clock with `XCLAIM ... JUSTID` heartbeats;
//! - an entry delivered more than `max_deliveries` times, or whose handler failed
//!   `max_attempts` times, moves to the dead-letter stream;
//! - retries wait in a sorted set that a script moves to the stream when due;
//! - Redis errors make loops back off and reconnect, never exit.
//!
//! [`StreamBackend`] plugs this into apalis as its backend, so workers get apalis' runtime
//! (tower layers, graceful shutdown) without apalis-redis' defects (ARCHITECTURE.md §6).
//! Each run ends with one log line ([`job_log`]). The process registry ([`registry`],
//! ARCHITECTURE.md §6.1) lives here too: it is how queue consumers tell a dead consumer
//! name from a live one.

mod admin;
mod backend;
mod consumer;
pub mod entries;
mod job;
pub mod job_log;
mod keys;
mod producer;
pub mod registry;
mod runner;

pub use admin::{
    ConsumerStats, DeadLetter, LiveConsumer, QueueCounters, QueueStats, dashboard_session_key,
    dead_letters, drop_dead_letters, queue_counters, queue_stats, retry_dead_letters,
};
pub use backend::{AckLayer, AckService, QueueError, StreamBackend};
pub use consumer::{BusySlots, Consumer, ConsumerOptions, Delivery};
pub use job::{Job, JobSubject, QueueName, RunToolCall, RunTurn, SendMail};
pub use job_log::JobReport;
pub use keys::{
    CHAT_EVENT_SHARDS, QueueKeys, RegistryKeys, chat_event_shard, chat_event_shard_tag,
    chat_events_key, chat_events_wake_key, chat_list_events_key, rate_limit_key,
};
pub use producer::Producer;
pub use registry::{
    Announcement, Process, ProcessEntry, ProcessKind, live_processes,
    prune::{prune_dead_consumers, prune_loop},
};
pub use runner::{run_jobs, run_reported_jobs};

/// A unique name for this process: role, host, pid and a random suffix, so two processes
/// never share a pending-entries list. It is also the process's id in the registry.
pub fn consumer_name(role: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{role}-{}-{}-{}",
        hostname(),
        std::process::id(),
        &suffix[..8]
    )
}

/// This machine's host name (`HOSTNAME` when the OS does not say; `local` when neither).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".into())
}
