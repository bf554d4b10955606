//! `/admin/scheduler`: the scheduler's named jobs. Ledger jobs (`maintenance`) are read
//! from the tick ledger (`scheduler_ticks`, ARCHITECTURE.md §10): their cron expression in
//! words, the last tick's start, duration, outcome or error, and the next firing the
//! scheduler computed when that tick finished. The interval jobs (`recovery`, `diff
//! refresh`) keep no ledger (they run every few seconds); the page names them with the
//! live scheduler processes that run them.

use agentq_core::{
    queue::{self, ProcessKind},
    store::LatestTick,
};
use axum::extract::State;
use maud::{Markup, html};

use super::{
    PageError, cron_words,
    layout::{self, Nav},
    session::AdminSession,
};
use crate::ApiState;

/// `GET /admin/scheduler`.
pub async fn page(
    State(state): State<ApiState>,
    session: AdminSession,
) -> Result<Markup, PageError> {
    let ticks = state.store.latest_ticks().await?;
    let mut conn = state.redis_conn.clone();
    let schedulers: Vec<_> = queue::live_processes(&mut conn, &state.prefix)
        .await?
        .into_iter()
        .filter(|p| p.kind == ProcessKind::Scheduler)
        .collect();
    let body = html! {
        section {
            h2 { "Cron jobs" }
            @if ticks.is_empty() {
                p.empty { "No tick has run yet. The first `maintenance` tick runs at its schedule's next firing (by default every 10 minutes)." }
            } @else {
                table #ticks {
                    thead { tr {
                        th { "Job" } th { "Schedule" } th { "Last tick" } th.num { "Duration" }
                        th { "What it did" } th { "Next tick" }
                    } }
                    tbody {
                        @for tick in &ticks { (tick_row(tick)) }
                    }
                }
            }
        }
        section {
            h2 { "Interval jobs" }
            table #interval-jobs {
                thead { tr { th { "Job" } th { "Runs" } th { "What it does" } } }
                tbody {
                    tr {
                        th scope="row" { "recovery" }
                        td { "every few seconds (" code { "--recovery-interval-secs" } ", default 2 s)" }
                        td { "re-sends the jobs of turns, tool calls and emails whose worker was lost or whose job never arrived; fails those past their attempts" }
                    }
                    tr {
                        th scope="row" { "diff refresh" }
                        td { "every " code { "--diff-refresh-interval-secs" } ", when a GitHub token is set" }
                        td { "brings reported pull requests' diff statuses up to date" }
                    }
                }
            }
        }
        section {
            h2 { "Scheduler processes (" (schedulers.len()) ")" }
            @if schedulers.is_empty() {
                p.warn { "No scheduler process is live: nothing recovers lost work or runs maintenance." }
            } @else {
                ul {
                    @for p in &schedulers {
                        li { code { (p.id) } " on " (p.hostname) ", last beat " (layout::ago(p.last_beat)) }
                    }
                }
            }
        }
    };
    Ok(layout::page("Scheduler", Nav::Scheduler, &session, body))
}

fn tick_row(tick: &LatestTick) -> Markup {
    let duration = tick
        .finished_at
        .map(|f| (f - tick.started_at).num_milliseconds().max(0) as u64);
    html! {
        tr data-job=(tick.job) {
            th scope="row" { (tick.job) }
            td {
                @if let Some(cron) = &tick.schedule {
                    (cron_words::describe(cron)) br; code.muted { (cron) }
                } @else {
                    span.muted { "not recorded (tick run by hand)" }
                }
            }
            td {
                time datetime=(tick.started_at.to_rfc3339()) { (layout::stamp(tick.started_at)) }
                br; span.muted { (layout::ago(tick.started_at)) ", by " (tick.runner) }
            }
            td.num {
                @match duration {
                    Some(ms) => (layout::millis(ms)),
                    None => span.warn { "running" },
                }
            }
            td {
                @if let Some(error) = &tick.error {
                    span.warn { "failed: " (error) }
                } @else if let Some(outcome) = &tick.outcome {
                    (outcome_words(outcome))
                } @else {
                    "–"
                }
            }
            td {
                @match tick.next_tick_at {
                    Some(next) => {
                        time datetime=(next.to_rfc3339()) { (layout::stamp(next)) }
                        br; span.muted { (layout::until(next)) }
                    }
                    None => "–",
                }
            }
        }
    }
}

/// An outcome document as `archived 3 · emails queued 1 · purged chats 0`: numbers of
/// nested objects are flattened with their path.
fn outcome_words(outcome: &serde_json::Value) -> String {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, v) in fields {
                    let name = name.replace('_', " ");
                    let path = if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix} {name}")
                    };
                    walk(&path, v, out);
                }
            }
            other => out.push(format!("{prefix} {other}")),
        }
    }
    let mut out = Vec::new();
    walk("", outcome, &mut out);
    out.join(" · ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_outcome_reads_as_a_line() {
        let outcome = serde_json::json!({"archived": 3, "purged": {"chats": 0, "debug_runs": 2}});
        assert_eq!(
            super::outcome_words(&outcome),
            "archived 3 · purged chats 0 · purged debug runs 2"
        );
    }
}
