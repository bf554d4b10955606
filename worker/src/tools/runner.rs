//! Runs one `RunToolCall` job: acquire the call, run it through the [`ToolRegistry`] from
//! the source its step offered it from (a call that was not offered runs nothing and gets
//! an error result), store the result, and fan in when it was the step's last call
//! (ARCHITECTURE.md §4.3, §7).

use std::time::Duration;

use agentq_core::{
    events::EventPublisher,
    outcome::ChatOutcome,
    queue::{JobReport, Producer, RunToolCall},
    store::Store,
};
use serde_json::json;

use super::{Execution, ToolContext, ToolRegistry};
use crate::leases::{LeaseKind, Leases};
use crate::turn::TurnJobError;

/// Everything a worker needs to run tool calls.
pub struct ToolRunner {
    /// The database.
    pub store: Store,
    /// Enqueues the resumed turn.
    pub producer: Producer,
    /// Publishes chat events.
    pub events: EventPublisher,
    /// Runs a call by name, from its source.
    pub tools: ToolRegistry,
    /// This process's lease-owner name.
    pub worker_id: String,
    /// Lease of a running call.
    pub lease: Duration,
    /// Renews the leases this process holds.
    pub leases: Leases,
}

impl ToolRunner {
    /// Runs the call named by `job`; a duplicate finds nothing to acquire and succeeds.
    /// `report` gets the chat and how the call ended (`succeeded`, `failed` with an error
    /// result, `parked`, `skipped`), for the job's log line.
    #[tracing::instrument(name = "tool_call", skip_all, fields(tool_call.id = %job.tool_call_id, chat.id = tracing::field::Empty))]
    pub async fn run(&self, job: RunToolCall, report: &JobReport) -> Result<(), TurnJobError> {
        // This acquisition's own lease owner (see `TurnEngine::run`).
        let owner = format!("{}/{}", self.worker_id, uuid::Uuid::now_v7().simple());
        let Some(call) = self
            .store
            .acquire_tool_call(job.tool_call_id, &owner, self.lease)
            .await?
        else {
            tracing::debug!("tool call is not queued (duplicate or finished job); nothing to do");
            report.outcome("skipped");
            return Ok(());
        };
        report.chat(call.chat_id);
        tracing::Span::current().record("chat.id", tracing::field::display(call.chat_id));
        // The lease is renewed while the tool runs (so recovery does not run it twice), and
        // only as long as this job does: the guard stops it on every way out.
        let _lease = self.leases.hold(LeaseKind::ToolCall, call.id, &owner);
        let ctx = ToolContext {
            store: &self.store,
            events: &self.events,
            producer: &self.producer,
            lease_owner: &owner,
        };
        let output = match self.tools.execute(&ctx, &call).await? {
            Execution::Done(output) => output,
            // Parked (`wait_agent`): the call's next job finishes it (ARCHITECTURE.md §4.3).
            Execution::Waiting => {
                report.outcome("parked");
                return Ok(());
            }
        };
        let (output, is_error) = match output {
            Ok(output) => (output, false),
            Err(message) => {
                tracing::debug!(tool = %call.name, source = %call.source, error = %message, "tool error result");
                (json!({ "error": message }), true)
            }
        };
        let finished = self
            .store
            .finish_tool_call(&call, &owner, &output, is_error)
            .await?;
        report.outcome(if is_error { "failed" } else { "succeeded" });
        let Some(fan_in) = finished else {
            return Ok(());
        };
        // This was the step's last call: the turn continues with every result.
        ChatOutcome::FannedIn(fan_in)
            .announce(&self.events, &self.producer)
            .await?;
        Ok(())
    }
}
