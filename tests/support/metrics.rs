//! This test process's Prometheus counters, as `/metrics` would show them. The recorder is
//! the process's, so a count is exact only when the test runs alone in its process (as
//! under nextest).

/// The value of the unlabelled counter `name` (0 before anything counted it).
pub fn counter(name: &str) -> u64 {
    agentq_core::metrics::install()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}
