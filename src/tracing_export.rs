//! Optional OpenTelemetry trace export over OTLP/HTTP (protobuf), for operators who follow
//! a turn across the API, the queue and the workers in Jaeger, Tempo or Honeycomb.
//!
//! Off unless `--otlp-endpoint` is set. The spans are the ones the logs already have
//! (`request` with its `request_id`, `turn` and `tool_call` with `chat.id` and `turn.id`,
//! `send_mail` with `notification.id`, ...), so traces and log lines name the same ids.
//! Spans are batched on a background thread and sent with a blocking HTTP client there,
//! never on the async runtime; the exporter is built before the runtime starts and shut
//! down (flushing what is buffered) after it stops. The standard `OTEL_EXPORTER_OTLP_*`
//! variables for headers, timeout and compression apply too.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};

/// OTLP settings, shared by every subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct OtlpConfig {
    /// Base URL of an OTLP/HTTP collector, e.g. `http://otel-collector:4318`; traces go to
    /// `<url>/v1/traces` as protobuf. Unset: no traces are exported. It may carry
    /// credentials (`https://user:key@...`, `?api_key=...`), so it is never printed whole.
    #[arg(
        long = "otlp-endpoint",
        env = "AGENTQ_OTLP_ENDPOINT",
        global = true,
        hide_env_values = true
    )]
    pub endpoint: Option<agentq_core::secrets::SecretUrl>,
    /// `service.name` of the exported spans; defaults to `agentq-<subcommand>`.
    #[arg(
        long = "otlp-service-name",
        env = "AGENTQ_OTLP_SERVICE_NAME",
        global = true
    )]
    pub service_name: Option<String>,
}

/// A running exporter; [`TraceExport::shutdown`] flushes it.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Builds the exporter when an endpoint is configured, and the `tracing` layer that
    /// feeds it.
    pub fn start<S>(
        config: &OtlpConfig,
        default_service: &str,
    ) -> anyhow::Result<Option<(Self, impl tracing_subscriber::Layer<S>)>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let Some(endpoint) = config
            .endpoint
            .as_ref()
            .map(|e| e.expose())
            .filter(|e| !e.trim().is_empty())
        else {
            return Ok(None);
        };
        let url = format!("{}/v1/traces", endpoint.trim().trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build()
            .map_err(|e| {
                let endpoint = agentq_core::db::redact_url(endpoint);
                anyhow::anyhow!("invalid --otlp-endpoint `{endpoint}`: {e}")
            })?;
        let service = config
            .service_name
            .clone()
            .unwrap_or_else(|| default_service.to_owned());
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build())
            .with_batch_exporter(exporter)
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("agentq"));
        Ok(Some((Self { provider }, layer)))
    }

    /// Sends what is still buffered and stops the exporter (call outside the runtime).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("agentq: exporting the last traces failed: {e}");
        }
    }
}
