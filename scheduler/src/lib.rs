//! agentq-scheduler: the cron loop of ARCHITECTURE.md §10, in UTC.
//!
//! Two named jobs run in every scheduler process:
//! - `maintenance` on a cron schedule (`--maintenance-cron`, default every 10 minutes):
//!   retention purges, then auto-archive with the owners' digest emails
//!   ([`maintenance`]);
//! - `recovery` every few seconds (`--recovery-interval-secs`): lost or orphaned turns,
//!   tool calls and emails are nudged again ([`recovery`]);
//! - `diff refresh` every `--diff-refresh-interval-secs` when a GitHub token is set: the
//!   pull requests of reported diff statuses are brought up to date ([`diff_refresh`]).
//!
//! Any number of replicas may run. A maintenance tick is claimed in the tick ledger under
//! an advisory lock, so each tick runs once cluster-wide and an overrunning tick is never
//! started twice; recovery takes its own advisory lock. After a tick the next firing time
//! is computed from the clock again, so ticks missed while one overran (or while the
//! process was down) are skipped, not replayed in a burst. The clock is injectable
//! ([`clock::Clock`]) so tests decide what "now" is.

pub mod archive;
pub mod clock;
pub mod diff_refresh;
pub mod github;
pub mod maintenance;
pub mod recovery;
pub mod retention;
pub mod schedule;

use std::{sync::Arc, time::Duration};

use agentq_core::{events::EventPublisher, queue::Producer, store::Store};
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, OffsetClock, SystemClock};
pub use diff_refresh::DiffRefreshConfig;
pub use recovery::{RecoveryError, recover};
pub use schedule::{Schedule, ScheduleError};

/// How the scheduler behaves.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerConfig {
    /// When maintenance runs (retention purges, auto-archive, digest emails): a 5-field
    /// crontab expression in UTC (`minute hour day-of-month month day-of-week`; `0 3 * * *`
    /// is daily at 03:00 UTC, `0 9 * * 1` Mondays at 09:00 UTC). An optional leading
    /// seconds field is accepted.
    #[arg(
        long = "maintenance-cron",
        env = "AGENTQ_MAINTENANCE_CRON",
        default_value = "*/10 * * * *"
    )]
    pub maintenance_cron: Schedule,
    /// Seconds between recovery ticks.
    #[arg(
        long = "recovery-interval-secs",
        env = "AGENTQ_RECOVERY_INTERVAL_SECS",
        default_value_t = 2
    )]
    pub interval_secs: u64,
    /// A queued turn (or email) whose job was sent this many seconds ago without a worker
    /// taking it is sent again (duplicates are harmless: only one delivery acquires it).
    #[arg(
        long = "recovery-stale-secs",
        env = "AGENTQ_RECOVERY_STALE_SECS",
        default_value_t = 30
    )]
    pub stale_secs: u64,
    /// Most turns (and emails) recovered per tick.
    #[arg(
        long = "recovery-batch",
        env = "AGENTQ_RECOVERY_BATCH",
        default_value_t = 1000
    )]
    pub batch: i64,
    /// Times a builtin tool call may lose its worker before it fails with an error result
    /// (lost turns are always re-queued; workers cap a step's starts).
    #[arg(
        id = "recovery_max_attempts",
        long = "recovery-max-attempts",
        env = "AGENTQ_RECOVERY_MAX_ATTEMPTS",
        default_value_t = 3
    )]
    pub max_attempts: i32,
    /// The diff-status refresher (GitHub API, token, interval).
    #[command(flatten)]
    pub diff_refresh: DiffRefreshConfig,
}

/// Runs the recovery and maintenance loops until `shutdown` is cancelled; a tick in
/// progress finishes first.
pub async fn run(
    store: Store,
    producer: Producer,
    events: EventPublisher,
    config: SchedulerConfig,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let runner = agentq_core::queue::consumer_name("scheduler");
    let maintenance = tokio::spawn(run_maintenance(
        store.clone(),
        producer.clone(),
        config.maintenance_cron.clone(),
        clock.clone(),
        runner,
        shutdown.clone(),
    ));
    let diff_refresh = tokio::spawn(diff_refresh::run(
        store.clone(),
        config.diff_refresh.clone(),
        clock,
        shutdown.clone(),
    ));
    run_recovery(store, producer, events, config, shutdown).await;
    let _ = maintenance.await;
    let _ = diff_refresh.await;
}

/// The recovery loop: a fixed interval; an overrunning tick delays the next one.
async fn run_recovery(
    store: Store,
    producer: Producer,
    events: EventPublisher,
    config: SchedulerConfig,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {},
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

/// The maintenance loop: sleeps until the schedule's next firing after "now", runs that
/// tick, and asks again, so missed firings are skipped rather than replayed.
async fn run_maintenance(
    store: Store,
    producer: Producer,
    schedule: Schedule,
    clock: Arc<dyn Clock>,
    runner: String,
    shutdown: CancellationToken,
) {
    tracing::info!(cron = schedule.as_str(), "maintenance scheduled (UTC)");
    loop {
        let now = clock.now();
        let Some(tick_at) = schedule.next_after(now) else {
            tracing::warn!(
                cron = schedule.as_str(),
                "maintenance schedule never fires again"
            );
            shutdown.cancelled().await;
            return;
        };
        let wait = (tick_at - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) =
            maintenance::run_scheduled_tick(&store, &producer, Some(&schedule), tick_at, &runner)
                .await
        {
            tracing::warn!(%tick_at, error = %e, "maintenance tick failed; the next firing retries");
        }
    }
}
