//! agentq-scheduler: periodic maintenance and recovery (DESIGN.md §5).
//!
//! This version runs the recovery tick: every few seconds it re-enqueues turns and tool
//! calls whose job was lost (Redis down when the API enqueued, a dropped entry) or whose
//! worker died (lease expired), fails those that lost their worker too often with
//! `worker_lost`, and fails turns whose client tool results never came. Any number of scheduler replicas may run; an advisory lock makes each
//! tick run once cluster-wide. The cron jobs of §5 (archive, digests, retention) follow.

pub mod archive;
pub mod retention;

use std::time::Duration;

use agentq_core::{
    domain::ChatStatus,
    events::{ChatEvent, EventPublisher},
    queue::{Producer, RunToolCall, RunTurn},
    store::{RecoveryLimits, Store},
};
use tokio_util::sync::CancellationToken;

/// How recovery behaves.
#[derive(Debug, Clone, clap::Args)]
pub struct RecoveryConfig {
    /// Seconds between recovery ticks.
    #[arg(
        long = "recovery-interval-secs",
        env = "AGENTQ_RECOVERY_INTERVAL_SECS",
        default_value_t = 5
    )]
    pub interval_secs: u64,
    /// A queued turn whose job was sent this many seconds ago without a worker taking it is
    /// sent again (duplicates are harmless: only one delivery acquires the turn).
    #[arg(
        long = "recovery-stale-secs",
        env = "AGENTQ_RECOVERY_STALE_SECS",
        default_value_t = 30
    )]
    pub stale_secs: u64,
    /// Most turns recovered per tick.
    #[arg(
        long = "recovery-batch",
        env = "AGENTQ_RECOVERY_BATCH",
        default_value_t = 1000
    )]
    pub batch: i64,
    /// Times a turn or tool call may lose its worker before it fails with `worker_lost`.
    #[arg(
        id = "recovery_max_attempts",
        long = "recovery-max-attempts",
        env = "AGENTQ_RECOVERY_MAX_ATTEMPTS",
        default_value_t = 3
    )]
    pub max_attempts: i32,
    /// Seconds between maintenance ticks (auto-archive now; retention and digests next).
    #[arg(
        long = "maintenance-interval-secs",
        env = "AGENTQ_MAINTENANCE_INTERVAL_SECS",
        default_value_t = 600
    )]
    pub maintenance_interval_secs: u64,
}

/// Runs recovery ticks until `shutdown` is cancelled.
pub async fn run(
    store: Store,
    producer: Producer,
    events: EventPublisher,
    config: RecoveryConfig,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
    let mut maintenance =
        tokio::time::interval(Duration::from_secs(config.maintenance_interval_secs.max(1)));
    // A tick that overran is not replayed in a burst.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {},
            _ = maintenance.tick() => {
                maintain(&store, chrono::Utc::now()).await;
                continue;
            }
            _ = shutdown.cancelled() => break,
        }
        let started = std::time::Instant::now();
        let result = recover(&store, &producer, &events, &config).await;
        agentq_core::metrics::recovery_tick(started.elapsed(), *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(items = n, "recovery re-enqueued or failed lost work"),
            Err(e) => tracing::warn!(error = %e, "recovery tick failed; will retry"),
        }
    }
}

/// One maintenance tick as of `now`: retention first, then auto-archive, so a chat is
/// never archived and deleted in the same tick.
pub async fn maintain(store: &Store, now: chrono::DateTime<chrono::Utc>) {
    if let Err(e) = retention::purge_expired(store, now).await {
        tracing::warn!(error = %e, "retention tick failed; will retry");
    }
    if let Err(e) = archive::archive_idle_chats(store, now).await {
        tracing::warn!(error = %e, "auto-archive tick failed; will retry");
    }
}

/// One recovery tick; returns how many items it acted on.
pub async fn recover(
    store: &Store,
    producer: &Producer,
    events: &EventPublisher,
    config: &RecoveryConfig,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let limits = RecoveryLimits {
        stale_after: Duration::from_secs(config.stale_secs),
        batch: config.batch,
        max_attempts: config.max_attempts,
    };
    let Some(found) = store.recover(limits).await? else {
        return Ok(0);
    };
    let mut turns: Vec<RunTurn> = found
        .turns
        .iter()
        .map(|&turn_id| RunTurn { turn_id })
        .collect();
    for fan_in in &found.fanned_in {
        events.publish(
            fan_in.chat_id,
            ChatEvent::Message {
                message: Box::new(fan_in.results.clone()),
            },
        );
        events.publish(
            fan_in.chat_id,
            ChatEvent::Status {
                status: ChatStatus::Pending,
                chat_id: fan_in.chat_id,
            },
        );
        turns.push(RunTurn {
            turn_id: fan_in.turn_id,
        });
    }
    for failed in &found.failed {
        tracing::warn!(chat.id = %failed.chat_id, kind = ?failed.error.kind, error = %failed.error, "recovery failed a turn");
        events.publish(
            failed.chat_id,
            ChatEvent::Error {
                error: failed.error.clone(),
            },
        );
        if let Some(message) = &failed.outcome.promoted {
            events.publish(
                failed.chat_id,
                ChatEvent::Message {
                    message: Box::new(message.clone()),
                },
            );
        }
        events.publish(
            failed.chat_id,
            ChatEvent::Status {
                status: failed.outcome.status,
                chat_id: failed.chat_id,
            },
        );
        turns.extend(
            failed
                .outcome
                .next_turn_id
                .map(|turn_id| RunTurn { turn_id }),
        );
    }
    let calls: Vec<RunToolCall> = found
        .tool_calls
        .iter()
        .map(|&tool_call_id| RunToolCall { tool_call_id })
        .collect();
    producer.enqueue_many(&turns).await?;
    producer.enqueue_many(&calls).await?;
    Ok(turns.len() + calls.len() + found.failed.len())
}
