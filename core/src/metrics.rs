//! Prometheus metrics shared by every process (issue #5). One recorder per process; the
//! API serves it at `/metrics`, workers and schedulers on `--metrics-listen`. Queue gauges
//! (length, pending, oldest pending, delayed, dead letters, consumers) and the live
//! processes of the registry are read from Redis at scrape time, so every process reports
//! the cluster's queues, not just its own view.
//!
//! Names follow Prometheus conventions: `agentq_` prefix, `_total` counters, `_seconds`
//! histograms, labels for queue, outcome, provider and kind.

use std::{sync::OnceLock, time::Duration};

use crate::redis_conn::RedisConn;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle) and starts
/// its upkeep task.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0, 300.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("buckets are valid")
                .install_recorder()
                .expect("one metrics recorder per process");
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// Renders the exposition text after refreshing the queue gauges from Redis.
pub async fn render(handle: &PrometheusHandle, conn: &mut RedisConn, prefix: &str) -> String {
    match crate::queue::queue_stats(conn, prefix).await {
        Ok(queues) => {
            for q in queues {
                gauge!("agentq_queue_length", "queue" => q.queue).set(q.length as f64);
                gauge!("agentq_queue_pending", "queue" => q.queue).set(q.pending as f64);
                // Acked entries are deleted, so what the stream holds beyond the pending
                // entries is what no worker has taken yet: the group's lag.
                gauge!("agentq_queue_lag", "queue" => q.queue)
                    .set(q.length.saturating_sub(q.pending) as f64);
                gauge!("agentq_queue_oldest_pending_seconds", "queue" => q.queue)
                    .set(q.oldest_pending_ms as f64 / 1000.0);
                gauge!("agentq_queue_delayed", "queue" => q.queue).set(q.delayed as f64);
                gauge!("agentq_queue_dead_letters", "queue" => q.queue).set(q.dead_letters as f64);
                gauge!("agentq_queue_consumers", "queue" => q.queue).set(q.consumers.len() as f64);
                gauge!("agentq_queue_live_consumers", "queue" => q.queue)
                    .set(q.live_consumers.len() as f64);
            }
            gauge!("agentq_redis_up").set(1.0);
        }
        Err(_) => gauge!("agentq_redis_up").set(0.0),
    }
    if let Ok(processes) = crate::queue::live_processes(conn, prefix).await {
        use crate::queue::ProcessKind;
        for kind in [
            ProcessKind::Api,
            ProcessKind::Worker,
            ProcessKind::Scheduler,
        ] {
            let live = processes.iter().filter(|p| p.kind == kind).count();
            gauge!("agentq_processes", "kind" => kind.as_str()).set(live as f64);
        }
    }
    handle.render()
}

/// A job finished: `outcome` is `ok`, `retried` or `dead_lettered`.
pub fn job_finished(queue: &'static str, outcome: &'static str, run: Duration) {
    counter!("agentq_jobs_total", "queue" => queue, "outcome" => outcome).increment(1);
    histogram!("agentq_job_run_seconds", "queue" => queue).record(run.as_secs_f64());
}

/// A job started `wait` after it was enqueued.
pub fn job_started(queue: &'static str, wait: Duration) {
    histogram!("agentq_job_wait_seconds", "queue" => queue).record(wait.as_secs_f64());
}

/// A turn step ended: `completed`, `tool_step`, `failed`, `interrupted`.
pub fn turn_step(outcome: &'static str) {
    counter!("agentq_turn_steps_total", "outcome" => outcome).increment(1);
}

/// One lease heartbeat kept `held` leases and found `lost` taken over (or gave them up).
pub fn lease_beat(held: usize, lost: usize) {
    gauge!("agentq_leases_held").set(held as f64);
    if lost > 0 {
        counter!("agentq_leases_lost_total").increment(lost as u64);
    }
}

/// A turn job asked to take its turn (`worker::turn::acquisitions`).
pub fn turn_acquisition_asked() {
    counter!("agentq_turn_acquisitions_total").increment(1);
}

/// The chat list's announcer read the entries of `chats` changed chats in one statement
/// (`events::chat_list_feed`).
pub fn chat_list_read(chats: usize) {
    counter!("agentq_chat_list_reads_total").increment(1);
    counter!("agentq_chat_list_entries_read_total").increment(chats as u64);
}

/// A statement that takes turns ran: a batch, or one turn taken alone.
pub fn turn_acquisition_statement() {
    counter!("agentq_turn_acquisition_statements_total").increment(1);
}

/// A turn step was started more often than allowed and failed without calling its
/// provider again (`reason` is `attempts` or `unsavable`).
pub fn turn_given_up(reason: &'static str) {
    counter!("agentq_turns_given_up_total", "reason" => reason).increment(1);
}

/// A step compacted its conversation into a summary (ARCHITECTURE.md §7).
pub fn compaction() {
    counter!("agentq_compactions_total").increment(1);
}

/// A chat got a generated title.
pub fn title_generated() {
    counter!("agentq_titles_generated_total").increment(1);
}

/// A provider attempt ended; `error_kind` is `None` on success.
pub fn provider_attempt(provider: &str, error_kind: Option<&str>, took: Duration) {
    histogram!("agentq_provider_request_seconds", "provider" => provider.to_owned())
        .record(took.as_secs_f64());
    if let Some(kind) = error_kind {
        counter!("agentq_provider_errors_total", "provider" => provider.to_owned(), "kind" => kind.to_owned()).increment(1);
    }
}

/// An SSE stream opened (`+1`) or closed (`-1`).
pub fn sse_streams(delta: f64) {
    gauge!("agentq_sse_streams_open").increment(delta);
}

/// A recovery tick ran.
pub fn recovery_tick(took: Duration, items: usize) {
    histogram!("agentq_recovery_tick_seconds").record(took.as_secs_f64());
    counter!("agentq_recovered_items_total").increment(items as u64);
}

/// A scheduler tick of `job` ended: `outcome` is `ok`, `failed` or `skipped` (another
/// replica had it).
pub fn scheduler_tick(job: &'static str, outcome: &'static str, took: Duration) {
    counter!("agentq_scheduler_ticks_total", "job" => job, "outcome" => outcome).increment(1);
    if outcome != "skipped" {
        histogram!("agentq_scheduler_tick_seconds", "job" => job).record(took.as_secs_f64());
    }
}

/// Rows a maintenance job changed: `kind` is `archived_chats`, `purged_chats`,
/// `purged_debug_runs` or `purged_files`.
pub fn maintenance_rows(kind: &'static str, rows: u64) {
    counter!("agentq_maintenance_rows_total", "kind" => kind).increment(rows);
}

/// Emails written to the outbox.
pub fn emails_queued(n: usize) {
    counter!("agentq_emails_queued_total").increment(n as u64);
}

/// A delivery attempt ended: `outcome` is `sent`, `retrying` or `failed`.
pub fn email_attempt(outcome: &'static str) {
    counter!("agentq_email_attempts_total", "outcome" => outcome).increment(1);
}

/// An ack batch was given up after its retries: its `entries` will be redelivered.
pub fn ack_batch_abandoned(queue: &'static str, entries: usize) {
    counter!("agentq_ack_batches_abandoned_total", "queue" => queue).increment(1);
    counter!("agentq_ack_entries_abandoned_total", "queue" => queue).increment(entries as u64);
}

/// A chat event was dropped by the publisher under pressure (only `message_part` deltas).
pub fn event_dropped(event: &'static str) {
    counter!("agentq_events_dropped_total", "event" => event).increment(1);
}

/// A chat event was cut to its size cap before it was published.
pub fn event_truncated(event: &'static str) {
    counter!("agentq_events_truncated_total", "event" => event).increment(1);
}

/// An SSE connect was refused at a cap: `limit` is `per_user` or `per_process`.
pub fn sse_refused(limit: &'static str) {
    counter!("agentq_sse_refused_total", "limit" => limit).increment(1);
}

/// An SSE stream was told to reload (`reason`: `trimmed`, `lagged`).
pub fn sse_reset(reason: &'static str) {
    counter!("agentq_sse_resets_total", "reason" => reason).increment(1);
}

/// A subscriber fell behind its buffer and was switched back to reading from Redis.
pub fn sse_lagged() {
    counter!("agentq_sse_lagged_total").increment(1);
}

/// A shared event reader started (`+1`) or stopped (`-1`).
pub fn sse_readers(delta: f64) {
    gauge!("agentq_sse_readers").increment(delta);
}

/// One pull request the diff-status refresher asked GitHub about (`outcome`: `refreshed`,
/// `not_found`, `failed`, `rate_limited`, `unauthorized`, `not_a_pull_request`).
pub fn diff_refresh(outcome: &'static str) {
    counter!("agentq_diff_refreshes_total", "outcome" => outcome).increment(1);
}
