//! The recovery job (ARCHITECTURE.md §7), every few seconds: re-enqueues turns and tool calls
//! whose job was lost (Redis down when the API enqueued, a dropped entry) or whose worker
//! died (lease expired), fails those that lost their worker too often with `worker_lost`,
//! fails turns whose client tool results never came, and nudges outbox emails that are due
//! (a retry's backoff ran out, or their `SendMail` job was lost). Every step is a
//! conditional update in PostgreSQL, so replicas racing on it do no harm.

use std::time::Duration;

use agentq_core::{
    events::EventPublisher,
    outcome::{ChatOutcome, FollowUps},
    queue::{Producer, RunToolCall, RunTurn, SendMail},
    store::{RecoveryLimits, Store},
};

use crate::SchedulerConfig;

/// Why a recovery tick stopped; the next tick starts over (every step is conditional, so
/// what this one did stays done).
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// PostgreSQL failed while finding or moving lost work.
    #[error("recovery could not read or update the database: {0}")]
    Store(#[from] agentq_core::StoreError),
    /// Redis failed while re-enqueueing jobs.
    #[error("recovery could not enqueue jobs: {0}")]
    Enqueue(#[from] redis::RedisError),
}

/// One recovery tick; returns how many items it acted on.
pub async fn recover(
    store: &Store,
    producer: &Producer,
    events: &EventPublisher,
    config: &SchedulerConfig,
) -> Result<usize, RecoveryError> {
    let turns = recover_turns(store, producer, events, config).await?;
    let emails = nudge_emails(store, producer, config).await?;
    let titles = nudge_titles(store, producer, config).await?;
    Ok(turns + emails + titles)
}

/// Re-sends the job of the turn whose chat still waits for a generated title (its nudge
/// seems lost): the job finds the turn finished and generates the title.
async fn nudge_titles(
    store: &Store,
    producer: &Producer,
    config: &SchedulerConfig,
) -> Result<usize, RecoveryError> {
    let turns = store
        .nudge_pending_titles(Duration::from_secs(config.stale_secs), config.batch)
        .await?;
    let jobs: Vec<RunTurn> = turns.iter().map(|&turn_id| RunTurn { turn_id }).collect();
    producer.enqueue_many(&jobs).await?;
    Ok(jobs.len())
}

/// Enqueues `SendMail` for outbox rows that are due and whose last nudge seems lost.
async fn nudge_emails(
    store: &Store,
    producer: &Producer,
    config: &SchedulerConfig,
) -> Result<usize, RecoveryError> {
    let due = store
        .nudge_due_notifications(Duration::from_secs(config.stale_secs), config.batch)
        .await?;
    let jobs: Vec<SendMail> = due
        .iter()
        .map(|&notification_id| SendMail { notification_id })
        .collect();
    producer.enqueue_many(&jobs).await?;
    Ok(jobs.len())
}

/// Turns and tool calls: lost jobs re-enqueued, lost workers' work re-run or failed.
async fn recover_turns(
    store: &Store,
    producer: &Producer,
    events: &EventPublisher,
    config: &SchedulerConfig,
) -> Result<usize, RecoveryError> {
    let limits = RecoveryLimits {
        stale_after: Duration::from_secs(config.stale_secs),
        batch: config.batch,
        max_attempts: config.max_attempts,
    };
    let Some(found) = store.recover(limits).await? else {
        return Ok(0);
    };
    // Lost jobs are sent again as they are; what recovery itself finished or failed is
    // announced like any other outcome, and every job goes out in one batch per queue.
    let mut jobs = FollowUps {
        turns: found
            .turns
            .iter()
            .map(|&turn_id| RunTurn { turn_id })
            .collect(),
        tool_calls: Vec::new(),
    };
    let failed = found.failed.len();
    let fanned_in = found.fanned_in.into_iter().map(ChatOutcome::FannedIn);
    let ended = found.failed.into_iter().map(|failed| {
        tracing::warn!(chat.id = %failed.chat_id, kind = ?failed.error.kind, error = %failed.error, "recovery failed a turn");
        ChatOutcome::TurnFinished {
            chat_id: failed.chat_id,
            error: Some(failed.error),
            outcome: Box::new(failed.outcome),
        }
    });
    for outcome in fanned_in.chain(ended) {
        outcome.publish(events);
        jobs.extend(outcome.follow_ups());
    }
    jobs.tool_calls.extend(
        found
            .tool_calls
            .iter()
            .map(|&tool_call_id| RunToolCall { tool_call_id }),
    );
    jobs.enqueue(producer).await?;
    Ok(jobs.len() + failed)
}
