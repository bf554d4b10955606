//! `/admin/dead-letters`: every queue's dead letters with their last error and delivery
//! count, and forms to retry or drop one or all of them. The actions call the same
//! `core::queue` functions as `POST /api/v1/admin/queues/{queue}/dead-letters/...`; each
//! form carries the session's CSRF token and answers with a redirect back to the list
//! (POST, redirect, GET), so a reload never repeats an action.

use agentq_core::queue::{self, DeadLetter, QueueName};
use axum::{
    Form,
    extract::{Path, Query, State},
    response::Redirect,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    PageError,
    layout::{self, Nav},
    session::{AdminSession, CsrfForm},
};
use crate::ApiState;

/// Dead letters listed per queue.
const SHOWN: usize = 100;

/// What the last action did, echoed after its redirect.
#[derive(Debug, Deserialize)]
pub struct Done {
    retried: Option<usize>,
    dropped: Option<usize>,
}

/// `GET /admin/dead-letters`.
pub async fn page(
    State(state): State<ApiState>,
    session: AdminSession,
    Query(done): Query<Done>,
) -> Result<Markup, PageError> {
    let mut conn = state.redis_conn.clone();
    let stats = queue::queue_stats(&mut conn, &state.prefix).await?;
    let mut sections = Vec::new();
    for name in QueueName::ALL {
        let letters = queue::dead_letters(&mut conn, &state.prefix, name, None, SHOWN).await?;
        let total = stats
            .iter()
            .find(|s| s.queue == name.as_str())
            .map_or(letters.len() as u64, |s| s.dead_letters);
        sections.push(queue_section(name, total, &letters, &session.csrf));
    }
    let body = html! {
        @if let Some(n) = done.retried {
            p.notice role="status" { "Retried " (n) " dead letter" @if n != 1 { "s" } ": back on the queue." }
        }
        @if let Some(n) = done.dropped {
            p.notice role="status" { "Dropped " (n) " dead letter" @if n != 1 { "s" } "." }
        }
        p.hint { "A job lands here when its handler failed too often or its deliveries ran out. Retrying puts it back on its queue with its attempts reset; the work it points at is re-checked in PostgreSQL, so a retry never doubles anything." }
        @for section in sections { (section) }
    };
    Ok(layout::page(
        "Dead letters",
        Nav::DeadLetters,
        &session,
        body,
    ))
}

fn queue_section(queue: QueueName, total: u64, letters: &[DeadLetter], csrf: &str) -> Markup {
    let name = queue.as_str();
    html! {
        section #{"queue-" (name)} {
            h2 { (name) " (" (total) ")" }
            @if letters.is_empty() {
                p.empty { "No dead letters." }
            } @else {
                div.actions {
                    form method="post" action={"/admin/dead-letters/" (name) "/retry"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Retry all " (total) }
                    }
                    form method="post" action={"/admin/dead-letters/" (name) "/drop"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button.danger type="submit" { "Drop all " (total) }
                    }
                }
                @if total > letters.len() as u64 {
                    p.hint { "Showing the oldest " (letters.len()) "." }
                }
                table.dead-letters {
                    thead { tr {
                        th { "Id" } th { "Job" } th.num { "Deliveries" } th { "Last error" } th { "" }
                    } }
                    tbody {
                        @for letter in letters {
                            tr data-dead-letter=(letter.id) {
                                td { code { (letter.id) } }
                                td { code.job { (job_summary(&letter.job)) } }
                                td.num { (letter.attempt) }
                                td.error { (letter.reason) }
                                td.row-actions {
                                    form method="post" action={"/admin/dead-letters/" (name) "/" (letter.id) "/retry"} {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { "Retry" }
                                    }
                                    form method="post" action={"/admin/dead-letters/" (name) "/" (letter.id) "/drop"} {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.danger type="submit" { "Drop" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The job's JSON on one line, cut to 160 characters.
fn job_summary(job: &serde_json::Value) -> String {
    let text = job.to_string();
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn queue_named(name: &str) -> Result<QueueName, PageError> {
    QueueName::parse(name).ok_or_else(|| PageError::NotFound(format!("no queue named `{name}`")))
}

fn entry_id(id: &str) -> Result<(), PageError> {
    agentq_core::events::history::StreamId::parse(id)
        .map(|_| ())
        .ok_or_else(|| PageError::NotFound(format!("no dead letter `{id}`")))
}

fn back(what: &str, n: usize) -> Redirect {
    Redirect::to(&format!("/admin/dead-letters?{what}={n}"))
}

/// `POST /admin/dead-letters/{queue}/retry`: every dead letter of the queue back on it.
pub async fn retry_all(
    State(state): State<ApiState>,
    session: AdminSession,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    let mut conn = state.redis_conn.clone();
    let n = queue::retry_dead_letters(&mut conn, &state.prefix, queue_named(&name)?, &[]).await?;
    tracing::info!(user.id = %session.user.id, queue = name, retried = n, "dashboard: dead letters retried");
    Ok(back("retried", n))
}

/// `POST /admin/dead-letters/{queue}/drop`: drops every dead letter of the queue.
pub async fn drop_all(
    State(state): State<ApiState>,
    session: AdminSession,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    let mut conn = state.redis_conn.clone();
    let n = queue::drop_dead_letters(&mut conn, &state.prefix, queue_named(&name)?, &[]).await?;
    tracing::info!(user.id = %session.user.id, queue = name, dropped = n, "dashboard: dead letters dropped");
    Ok(back("dropped", n))
}

/// A 404 page when a one-letter action found nothing to act on.
fn one_found(n: usize, name: &str, id: &str) -> Result<(), PageError> {
    if n == 0 {
        return Err(PageError::NotFound(format!(
            "no dead letter `{id}` in queue `{name}` (retried or dropped already?)"
        )));
    }
    Ok(())
}

/// `POST /admin/dead-letters/{queue}/{id}/retry`.
pub async fn retry_one(
    State(state): State<ApiState>,
    session: AdminSession,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    let queue = queue_named(&name)?;
    entry_id(&id)?;
    let mut conn = state.redis_conn.clone();
    let n = queue::retry_dead_letters(&mut conn, &state.prefix, queue, std::slice::from_ref(&id))
        .await?;
    one_found(n, &name, &id)?;
    tracing::info!(user.id = %session.user.id, queue = name, dead_letter = id, "dashboard: dead letter retried");
    Ok(back("retried", n))
}

/// `POST /admin/dead-letters/{queue}/{id}/drop`.
pub async fn drop_one(
    State(state): State<ApiState>,
    session: AdminSession,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    let queue = queue_named(&name)?;
    entry_id(&id)?;
    let mut conn = state.redis_conn.clone();
    let n = queue::drop_dead_letters(&mut conn, &state.prefix, queue, std::slice::from_ref(&id))
        .await?;
    one_found(n, &name, &id)?;
    tracing::info!(user.id = %session.user.id, queue = name, dead_letter = id, "dashboard: dead letter dropped");
    Ok(back("dropped", n))
}
