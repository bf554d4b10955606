//! How far a turn may go: provider retries, steps, attempts, the client's tool deadline and
//! the size of what one step may send or ask for (ARCHITECTURE.md §7). One value, set from
//! the worker's flags, read by every step.

use std::time::Duration;

/// How turns retry and how far they go.
#[derive(Debug, Clone, Copy)]
pub struct TurnLimits {
    /// Provider attempts per step (1 + retries) for retryable failures.
    pub max_provider_attempts: u32,
    /// Longest backoff between attempts.
    pub max_backoff: Duration,
    /// Steps (model calls) per turn before it stops with an error.
    pub max_steps: i32,
    /// How long the client has to post results of its own tools.
    pub client_tool_deadline: Duration,
    /// Acquisitions of one step (first run included) before it fails with `worker_lost`.
    pub max_attempts: i32,
    /// Largest conversation, in bytes of JSON, sent to a provider in one request.
    pub max_conversation_bytes: usize,
    /// Share of the model's input budget past which a step compacts first (0.8).
    pub compaction_threshold: f64,
    /// Whether first answers are followed by a generated title (`--generate-titles`).
    pub generate_titles: bool,
    /// Most tool calls one step may ask for; more fail the step.
    pub max_tool_calls_per_step: usize,
}

impl Default for TurnLimits {
    fn default() -> Self {
        Self {
            max_provider_attempts: 6,
            max_backoff: Duration::from_secs(60),
            max_steps: 25,
            client_tool_deadline: Duration::from_secs(300),
            max_attempts: 3,
            max_conversation_bytes: 8 * 1024 * 1024,
            compaction_threshold: 0.8,
            generate_titles: true,
            max_tool_calls_per_step: 64,
        }
    }
}
