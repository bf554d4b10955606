//! One log line per job run, at the default level (ARCHITECTURE.md §12).
//!
//! When a handler returns, the [`AckLayer`](super::AckLayer) settles the entry and writes
//! `job finished` with the ids an operator searches by as fields, never inside the message:
//!
//! | field | what |
//! | --- | --- |
//! | `queue` | `turns`, `tools`, `mail` |
//! | `job.id` | the stream entry id (also the apalis task id) |
//! | `attempt` | this run, from 1 (a retried job counts up) |
//! | `turn.id`, `tool_call.id`, `notification.id` | the row the job names (one of them) |
//! | `chat.id` | the chat, once the handler knows it (not for mail) |
//! | `outcome` | how the run ended, in the handler's words (see below) |
//! | `duration_ms` | how long the handler ran |
//! | `error` | on a failed run only: what failed |
//!
//! The handler fills a [`JobReport`] as it learns things: the chat when it acquires its
//! row, the outcome when it commits (`completed`, `tool_step`, `failed`, `succeeded`,
//! `parked`, `sent`, `skipped` for a duplicate, ...). A handler that returns an error gets
//! the queue's decision as its outcome (`retried` or `dead_lettered`) and the line is a
//! warning. A handler that reports nothing logs `ok`.
//!
//! The line's target is `agentq::jobs`, so a busy deployment that wants only failed jobs
//! sets `--log info,agentq::jobs=warn`.

use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{JobSubject, backend::Ticket};

/// What a handler tells its job's log line; cheap to clone, shared with the ack layer (it
/// is the job's ticket, the one piece of data its task carries). The ticket also holds the
/// job's concurrency slot until its last clone drops, so a handler keeps no clone past its
/// own return.
#[derive(Debug, Clone)]
pub struct JobReport(pub(super) Arc<Ticket>);

/// The handler's side of the line.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Reported {
    pub(super) chat_id: Option<Uuid>,
    pub(super) outcome: Option<&'static str>,
}

impl JobReport {
    /// The chat the job works on.
    pub fn chat(&self, chat_id: Uuid) {
        self.update(|r| r.chat_id = Some(chat_id));
    }

    /// How the run ended (a short snake_case word); the last call wins.
    pub fn outcome(&self, outcome: &'static str) {
        self.update(|r| r.outcome = Some(outcome));
    }

    fn update(&self, change: impl FnOnce(&mut Reported)) {
        change(&mut self.0.reported());
    }
}

/// One finished run, as the ack layer saw it.
pub(super) struct FinishedJob<'a> {
    pub(super) queue: &'static str,
    pub(super) entry_id: &'a str,
    /// Failed runs before this one.
    pub(super) attempt: u32,
    pub(super) subject: JobSubject,
    pub(super) report: Reported,
    pub(super) duration: Duration,
}

impl FinishedJob<'_> {
    /// Writes the job's line: `info` when the handler succeeded, `warn` with `error` and the
    /// queue's decision (`retried`, `dead_lettered`) as the outcome when it failed.
    pub(super) fn log(&self, failure: Option<(&'static str, &dyn std::fmt::Display)>) {
        let (turn, tool_call, notification) = match self.subject {
            JobSubject::Turn(id) => (Some(id), None, None),
            JobSubject::ToolCall(id) => (None, Some(id), None),
            JobSubject::Notification(id) => (None, None, Some(id)),
        };
        let shown = |id: Option<Uuid>| id.map(tracing::field::display);
        let duration_ms = self.duration.as_secs_f64() * 1000.0;
        let duration_ms = (duration_ms * 1000.0).round() / 1000.0;
        match failure {
            None => tracing::info!(
                target: "agentq::jobs",
                queue = self.queue,
                job.id = self.entry_id,
                attempt = self.attempt + 1,
                turn.id = shown(turn),
                tool_call.id = shown(tool_call),
                notification.id = shown(notification),
                chat.id = shown(self.report.chat_id),
                outcome = self.report.outcome.unwrap_or("ok"),
                duration_ms,
                "job finished"
            ),
            Some((decision, error)) => tracing::warn!(
                target: "agentq::jobs",
                queue = self.queue,
                job.id = self.entry_id,
                attempt = self.attempt + 1,
                turn.id = shown(turn),
                tool_call.id = shown(tool_call),
                notification.id = shown(notification),
                chat.id = shown(self.report.chat_id),
                outcome = decision,
                duration_ms,
                error = %error,
                "job finished"
            ),
        }
    }
}
