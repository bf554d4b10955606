//! Log output: human-readable for terminals, JSON for log pipelines; optionally the same
//! spans exported as OpenTelemetry traces ([`crate::tracing_export`]). At the default
//! `info`, the API writes one line per request (`agentq::access`) and workers one line
//! per job (`agentq::jobs`), with their ids as fields in both formats (ARCHITECTURE.md §12).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::tracing_export::{OtlpConfig, TraceExport};

/// The `--log-format` choices.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; returns the trace exporter when `--otlp-endpoint` is set
/// (shut it down at exit so the last spans are sent).
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp: &OtlpConfig,
    service: &str,
) -> anyhow::Result<Option<TraceExport>> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log filter `{filter}`: {e}"))?;
    let (export, traces) = match TraceExport::start(otlp, service)? {
        Some((export, layer)) => (Some(export), Some(layer)),
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(filter).with(traces);
    // Colours only on a terminal: in a file or a log pipeline the escape codes would sit
    // between every field name and its value, and `grep route=` would find nothing.
    let colours = std::io::stdout().is_terminal();
    match format {
        LogFormat::Human => registry
            .with(fmt::layer().with_target(false).with_ansi(colours))
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .init(),
    }
    Ok(export)
}
