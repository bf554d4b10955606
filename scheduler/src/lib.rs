//! agentq-scheduler: periodic maintenance and recovery (DESIGN.md §5).
//!
//! This version runs the recovery tick: every few seconds it re-enqueues turns whose job
//! was lost (Redis down when the API enqueued, a dropped entry) and turns whose worker died
//! (lease expired). Any number of scheduler replicas may run; an advisory lock makes each
//! tick run once cluster-wide. The cron jobs of §5 (archive, digests, retention) follow.

use std::time::Duration;

use agentq_core::{
    queue::{Producer, RunTurn},
    store::Store,
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
}

/// Runs recovery ticks until `shutdown` is cancelled.
pub async fn run(
    store: Store,
    producer: Producer,
    config: RecoveryConfig,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
    // A tick that overran is not replayed in a burst.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {},
            _ = shutdown.cancelled() => break,
        }
        match recover_turns(&store, &producer, &config).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(turns = n, "recovery re-enqueued turns"),
            Err(e) => tracing::warn!(error = %e, "recovery tick failed; will retry"),
        }
    }
}

/// One recovery tick; returns how many turns were enqueued again.
pub async fn recover_turns(
    store: &Store,
    producer: &Producer,
    config: &RecoveryConfig,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let Some(ids) = store
        .turns_to_reenqueue(Duration::from_secs(config.stale_secs), config.batch)
        .await?
    else {
        return Ok(0);
    };
    let jobs: Vec<RunTurn> = ids.into_iter().map(|turn_id| RunTurn { turn_id }).collect();
    producer.enqueue_many(&jobs).await?;
    Ok(jobs.len())
}
