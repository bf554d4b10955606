//! Settings of the property tests named `fuzz_*` (docs/fuzzing.md): hostile input for the
//! parsers that read what clients, providers and MCP servers send. Each runs few enough
//! cases for CI; `PROPTEST_CASES=100000` runs the long form. Failures are not written to
//! `proptest-regressions/` files: a crash found becomes a named `#[test]` with its minimal
//! input, next to the code it broke.

use proptest::test_runner::Config;

/// `ci_cases` cases, or as many as `PROPTEST_CASES` says.
pub(crate) fn config(ci_cases: u32) -> Config {
    // `Config::default()` reads the `PROPTEST_*` variables.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = ci_cases;
    }
    config.failure_persistence = None;
    config
}
