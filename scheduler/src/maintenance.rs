//! The maintenance job (ARCHITECTURE.md §10), run on its cron schedule: retention purges first,
//! then auto-archive with its digest emails, so a chat is never archived and deleted in
//! one tick. Each tick is claimed in the tick ledger (`Store::begin_tick`), so any number
//! of scheduler replicas run it once, and what it did is recorded there, logged and counted.

use std::time::Instant;

use agentq_core::{
    StoreError,
    queue::{Producer, SendMail},
    store::Store,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{archive, retention, schedule::Schedule};

/// The ledger name of this job.
pub const JOB: &str = "maintenance";

/// How long the tick ledger remembers ticks.
const LEDGER_DAYS: i64 = 30;

/// What one maintenance tick did.
#[derive(Debug, Default, Serialize)]
pub struct MaintenanceOutcome {
    /// Rows the retention purges deleted.
    pub purged: retention::Purged,
    /// Root chats archived.
    pub archived: usize,
    /// Digest emails written to the outbox.
    pub emails_queued: usize,
}

/// Runs the maintenance tick `tick_at` if no other runner has it; `Ok(None)` when another
/// replica ran (or is running) it.
pub async fn run_tick(
    store: &Store,
    producer: &Producer,
    tick_at: DateTime<Utc>,
    runner: &str,
) -> Result<Option<MaintenanceOutcome>, StoreError> {
    run_scheduled_tick(store, producer, None, tick_at, runner).await
}

/// [`run_tick`] as the scheduler's loop runs it: the ledger row also records `schedule`
/// and its next firing after the tick, which the operator dashboard shows.
pub async fn run_scheduled_tick(
    store: &Store,
    producer: &Producer,
    schedule: Option<&Schedule>,
    tick_at: DateTime<Utc>,
    runner: &str,
) -> Result<Option<MaintenanceOutcome>, StoreError> {
    let started = Instant::now();
    let Some(lease) = store
        .begin_tick(JOB, schedule.map(Schedule::as_str), tick_at, runner)
        .await?
    else {
        agentq_core::metrics::scheduler_tick(JOB, "skipped", started.elapsed());
        tracing::debug!(%tick_at, "maintenance tick taken by another scheduler");
        return Ok(None);
    };
    let result = maintain(store, producer, tick_at).await;
    let took = started.elapsed();
    match result {
        Ok(outcome) => {
            let recorded = serde_json::to_value(&outcome).expect("outcomes serialize");
            lease.finish(&recorded, None, next_firing(schedule)).await?;
            agentq_core::metrics::scheduler_tick(JOB, "ok", took);
            tracing::info!(
                %tick_at,
                took_ms = took.as_millis() as u64,
                archived = outcome.archived,
                emails_queued = outcome.emails_queued,
                purged_chats = outcome.purged.chats,
                purged_debug_runs = outcome.purged.debug_runs,
                purged_files = outcome.purged.files,
                "maintenance tick done"
            );
            Ok(Some(outcome))
        }
        Err(e) => {
            let _ = lease
                .finish(
                    &serde_json::Value::Null,
                    Some(&e.to_string()),
                    next_firing(schedule),
                )
                .await;
            agentq_core::metrics::scheduler_tick(JOB, "failed", took);
            Err(e)
        }
    }
}

/// The schedule's next firing after now (what the dashboard shows as the next tick).
fn next_firing(schedule: Option<&Schedule>) -> Option<DateTime<Utc>> {
    schedule.and_then(|s| s.next_after(Utc::now()))
}

/// The work of one tick as of `tick_at`, without the ledger (tests call it directly).
pub async fn maintain(
    store: &Store,
    producer: &Producer,
    tick_at: DateTime<Utc>,
) -> Result<MaintenanceOutcome, StoreError> {
    let purged = retention::purge_expired(store, tick_at).await?;
    let archived = archive::archive_idle_chats(store, tick_at).await?;
    if !archived.notifications.is_empty() {
        let jobs: Vec<SendMail> = archived
            .notifications
            .iter()
            .map(|&notification_id| SendMail { notification_id })
            .collect();
        // A lost nudge is re-sent by recovery: the rows are already in the outbox.
        if let Err(e) = producer.enqueue_many(&jobs).await {
            tracing::warn!(error = %e, "could not enqueue digest emails; recovery will");
        }
    }
    store
        .prune_ticks(tick_at - chrono::Duration::days(LEDGER_DAYS))
        .await?;
    let m = agentq_core::metrics::maintenance_rows;
    m("purged_debug_runs", purged.debug_runs);
    m("purged_chats", purged.chats);
    m("purged_files", purged.files);
    m("archived_chats", archived.archived.len() as u64);
    agentq_core::metrics::emails_queued(archived.notifications.len());
    Ok(MaintenanceOutcome {
        purged,
        archived: archived.archived.len(),
        emails_queued: archived.notifications.len(),
    })
}
