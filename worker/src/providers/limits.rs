//! What bounds one provider attempt, so that no provider, however it misbehaves, can hold a
//! turn step (and its worker slot, lease and paid tokens) without end: the time to the
//! first byte, silence in a started stream, the attempt as a whole, the reading of an error
//! body, and the size of the answer.
//!
//! The settings come from [`ProviderConfig`]; the adapters enforce them in the shared
//! attempt path ([`super::attempt`]) and read loop ([`super::sse`]).

use std::time::Duration;

use agentq_core::config::ProviderConfig;

/// The most of an error body that is read: enough for any provider's JSON error, and the
/// detail shown to users is shorter still.
pub const ERROR_BODY_MAX_BYTES: usize = 64 * 1024;

/// Bounds of one provider attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    /// No response headers within this: a `startup_timeout` (retried).
    pub startup_timeout: Duration,
    /// A started stream silent for this long: a `stream_silence_timeout` (retried).
    pub silence_timeout: Duration,
    /// From sending the request to the end of the answer: past it a `timeout` (not retried:
    /// a provider that streams for this long would do it again).
    pub attempt_deadline: Duration,
    /// Reading a non-success answer's body; what arrived by then is kept.
    pub error_body_timeout: Duration,
    /// Text, reasoning and tool calls (ids, names, arguments) of one answer, in bytes.
    pub max_answer_bytes: usize,
}

impl ProviderLimits {
    /// The limits a worker's provider settings name.
    pub fn from_config(config: &ProviderConfig) -> Self {
        Self {
            startup_timeout: Duration::from_secs(config.startup_timeout_secs),
            silence_timeout: Duration::from_secs(config.silence_timeout_secs),
            attempt_deadline: Duration::from_secs(config.attempt_deadline_secs.max(1)),
            error_body_timeout: Duration::from_secs(config.error_body_timeout_secs),
            max_answer_bytes: config.max_answer_bytes.max(1),
        }
    }
}

impl Default for ProviderLimits {
    /// The documented defaults (the same as a worker's flags without values).
    fn default() -> Self {
        Self {
            startup_timeout: Duration::from_secs(60),
            silence_timeout: Duration::from_secs(120),
            attempt_deadline: Duration::from_secs(600),
            error_body_timeout: Duration::from_secs(10),
            max_answer_bytes: 4 * 1024 * 1024,
        }
    }
}
