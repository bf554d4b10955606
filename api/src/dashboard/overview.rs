//! `GET /admin`: the system at a glance. Per queue its depth (entries in the stream),
//! pending (delivered, not acked), the oldest pending entry's age, delayed retries and dead
//! letters; jobs/s over the last minutes ([`super::throughput`]); the live processes from
//! the registry with their last beat and busy slots; turns by status; emails sent and
//! failed. Every number is read fresh on each request (the page refreshes every 2 s).

use agentq_core::queue::{self, ProcessEntry, QueueStats};
use axum::extract::State;
use maud::{Markup, html};

use super::{
    PageError,
    layout::{self, Nav},
    session::AdminSession,
    throughput,
};
use crate::ApiState;

/// `GET /admin`.
pub async fn page(
    State(state): State<ApiState>,
    session: AdminSession,
) -> Result<Markup, PageError> {
    let mut conn = state.redis_conn.clone();
    let queues = queue::queue_stats(&mut conn, &state.prefix).await?;
    let processes = queue::live_processes(&mut conn, &state.prefix).await?;
    let turns = state.store.count_turns_by_status().await?;
    let emails = state.store.count_emails_by_status().await?;
    let body = html! {
        section {
            h2 { "Queues" }
            (queue_table(&queues))
        }
        section {
            h2 { "Throughput" }
            (throughput::chart(
                &state.dashboard.throughput,
                std::time::Duration::from_millis(state.config.dashboard_sample_ms.max(100)),
            ))
        }
        section {
            h2 { "Live processes (" (processes.len()) ")" }
            (process_table(&processes))
        }
        div.columns {
            section {
                h2 { "Turns by status" }
                (count_table("turns", &turns))
            }
            section {
                h2 { "Emails" }
                (count_table("emails", &emails))
            }
        }
    };
    Ok(layout::page("Overview", Nav::Overview, &session, body))
}

fn queue_table(queues: &[QueueStats]) -> Markup {
    html! {
        table #queues {
            thead { tr {
                th { "Queue" } th.num { "Depth" } th.num { "Pending" } th.num { "Oldest pending" }
                th.num { "Delayed" } th.num { "Dead letters" } th.num { "Live consumers" }
            } }
            tbody {
                @for q in queues {
                    tr data-queue=(q.queue) {
                        th scope="row" { (q.queue) }
                        td.num.depth #{"depth-" (q.queue)} { (q.length) }
                        td.num.pending { (q.pending) }
                        td.num { @if q.pending > 0 { (layout::millis(q.oldest_pending_ms)) } @else { "–" } }
                        td.num { (q.delayed) }
                        td.num.dead {
                            @if q.dead_letters > 0 {
                                a.warn href={"/admin/dead-letters#queue-" (q.queue)} { (q.dead_letters) }
                            } @else { "0" }
                        }
                        td.num { (q.live_consumers.len()) }
                    }
                }
            }
        }
    }
}

fn process_table(processes: &[ProcessEntry]) -> Markup {
    if processes.is_empty() {
        return html! { p.empty { "No process has announced itself in the registry." } };
    }
    html! {
        table #processes {
            thead { tr {
                th { "Process" } th { "Kind" } th { "Host" } th.num { "Pid" } th { "Version" }
                th { "Queues (busy / slots)" } th { "Last beat" } th { "Up since" } th { "State" }
            } }
            tbody {
                @for p in processes {
                    tr data-process=(p.id) {
                        td { code { (p.id) } }
                        td { (p.kind.as_str()) }
                        td { (p.hostname) }
                        td.num { (p.pid) }
                        td { (p.version) }
                        td {
                            @if p.queues.is_empty() { "–" }
                            @for q in &p.queues {
                                span.slot { (q) " " (p.busy_slots.get(q).copied().unwrap_or(0)) "/" (p.concurrency) }
                                " "
                            }
                        }
                        td { time datetime=(p.last_beat.to_rfc3339()) { (layout::ago(p.last_beat)) } }
                        td { (layout::ago(p.started_at)) }
                        td { @if p.stopping { span.warn { "draining" } } @else { "running" } }
                    }
                }
            }
        }
    }
}

fn count_table(what: &str, counts: &[(String, i64)]) -> Markup {
    if counts.is_empty() {
        return html! { p.empty { "No " (what) " yet." } };
    }
    html! {
        table.counts #{(what) "-by-status"} {
            tbody {
                @for (status, n) in counts {
                    tr data-status=(status) {
                        th scope="row" {
                            @if status == "failed" && *n > 0 { span.warn { (status) } } @else { (status) }
                        }
                        td.num { (n) }
                    }
                }
            }
        }
    }
}
