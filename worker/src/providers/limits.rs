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

/// The longest any of the time limits is taken to be: "no limit" in practice, yet far
/// enough from overflow that `now + limit` is always an instant.
const LONGEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl ProviderLimits {
    /// The limits a worker's provider settings name.
    pub fn from_config(config: &ProviderConfig) -> Self {
        let secs = |s: u64| Duration::from_secs(s).min(LONGEST);
        Self {
            startup_timeout: secs(config.startup_timeout_secs),
            silence_timeout: secs(config.silence_timeout_secs),
            attempt_deadline: secs(config.attempt_deadline_secs.max(1)),
            error_body_timeout: secs(config.error_body_timeout_secs),
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

#[cfg(test)]
mod tests {
    use agentq_core::config::defaults;

    use super::*;

    #[test]
    fn the_defaults_are_the_settings_defaults() {
        let config: ProviderConfig = defaults();
        assert_eq!(
            ProviderLimits::from_config(&config),
            ProviderLimits::default()
        );
    }

    #[test]
    fn settings_too_large_for_an_instant_are_clamped() {
        let mut config: ProviderConfig = defaults();
        config.startup_timeout_secs = u64::MAX;
        config.silence_timeout_secs = u64::MAX;
        config.attempt_deadline_secs = u64::MAX;
        config.error_body_timeout_secs = u64::MAX;
        let limits = ProviderLimits::from_config(&config);
        let now = tokio::time::Instant::now();
        for limit in [
            limits.startup_timeout,
            limits.silence_timeout,
            limits.attempt_deadline,
            limits.error_body_timeout,
        ] {
            assert_eq!(limit, LONGEST);
            let _later = now + limit;
        }
    }
}
