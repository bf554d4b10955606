//! The recovery job (ARCHITECTURE.md §7), every few seconds: re-enqueues turns and tool calls
//! whose job was lost (Redis down when the API enqueued, a dropped entry) or whose worker
//! died (lease expired), fails those that lost their worker too often with `worker_lost`,
//! fails turns whose client tool results never came, and nudges outbox emails that are due
//! (a retry's backoff ran out, or their `SendMail` job was lost). Every step is a
//! conditional update in PostgreSQL, so replicas racing on it do no harm.

use std::time::Duration;

use agentq_core::{
    domain::ChatStatus,
    events::{ChatEvent, EventPublisher},
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
    Ok(turns + emails)
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
