//! agentq-api: the HTTP API (REST + SSE) over the core store and queue (ARCHITECTURE.md §11).
//!
//! [`router`] builds the whole app from an [`ApiState`]; `main` and the integration tests
//! both call it, so tests exercise exactly what runs in production. The OpenAPI document of
//! the routes ([`openapi::document`]) is generated from the same route list.

pub mod access_cache;
mod access_log;
pub mod auth;
pub mod dashboard;
pub mod error;
mod event_stream;
pub mod extract;
mod file_type;
pub mod idempotency_key;
pub mod open_streams;
pub mod openapi;
mod openapi_links;
mod openapi_sse;
mod request_limits;
mod routes;
mod server;

use std::{sync::Arc, time::Duration};

use agentq_core::shutdown::CancellationToken;
use agentq_core::{
    config::ApiConfig,
    events::{EventHub, EventPublisher, HubConfig},
    queue::Producer,
    rate_limit::RateLimiter,
    store::{SiteConfigCache, Store},
};
use axum::{Router, extract::DefaultBodyLimit};
use open_streams::OpenStreams;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
};

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The database.
    pub store: Store,
    /// Enqueues turns.
    pub producer: Producer,
    /// Publishes chat events.
    pub events: EventPublisher,
    /// The Redis client (dedicated connections are the hub's).
    pub redis: agentq_core::redis_conn::RedisClient,
    /// The process's shared reader of chat event streams; every SSE stream subscribes here.
    pub hub: EventHub,
    /// Open SSE streams, capped per user and per process.
    pub open_streams: Arc<OpenStreams>,
    /// Shared connection for readiness checks.
    pub redis_conn: agentq_core::redis_conn::RedisConn,
    /// Redis key prefix.
    pub prefix: Arc<str>,
    /// API settings.
    pub config: Arc<ApiConfig>,
    /// Cancelled when the server shuts down; ends open SSE streams so a drain completes.
    pub shutdown: CancellationToken,
    /// Seals provider keys before they are stored.
    pub secrets: Option<agentq_core::secrets::SecretBox>,
    /// This process's metrics.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Per-user rate limits (chats, messages, stream connects), shared through Redis.
    pub rate_limiter: RateLimiter,
    /// The operator dashboard's session key and jobs/s history (`/admin`).
    pub dashboard: Arc<dashboard::Dashboard>,
    /// What this process keeps of tokens, memberships and spend limits (§11.3).
    pub access: access_cache::AccessCache,
}

impl ApiState {
    /// The API's state over a process's shared services.
    pub fn new(services: &agentq_core::services::Services, config: ApiConfig) -> Self {
        let hub = EventHub::new(
            services.redis.clone(),
            services.redis_conn.clone(),
            services.prefix.clone(),
            HubConfig {
                subscriber_buffer: config.sse_subscriber_buffer,
                client_name: format!("{}:sse-reader", services.prefix),
                ..HubConfig::default()
            },
        );
        Self {
            hub,
            open_streams: OpenStreams::new(config.sse_max_streams_per_user, config.sse_max_streams),
            store: services.store.clone(),
            producer: services.producer.clone(),
            events: services.events.clone(),
            redis: services.redis.clone(),
            redis_conn: services.redis_conn.clone(),
            prefix: services.prefix.as_str().into(),
            shutdown: CancellationToken::new(),
            secrets: services.secrets.clone(),
            metrics: agentq_core::metrics::install(),
            rate_limiter: RateLimiter::new(
                services.redis_conn.clone(),
                &services.prefix,
                SiteConfigCache::new(
                    services.store.clone(),
                    Duration::from_secs(config.site_config_cache_secs),
                ),
                Duration::from_millis(config.rate_limit_timeout_ms.max(1)),
            ),
            access: access_cache::AccessCache::new(
                &services.store,
                Duration::from_secs(config.access_cache_secs),
            ),
            config: Arc::new(config),
            dashboard: Arc::default(),
        }
    }
}

/// Longest client-sent `x-request-id` that is kept (and written into every log line).
const MAX_REQUEST_ID_LEN: usize = 128;

/// Drops a client's `x-request-id` that is too long or not printable ASCII, so a fresh one
/// is made instead: it is echoed back and written into every log line of the request.
async fn drop_unusable_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let unusable = request.headers().get("x-request-id").is_some_and(|id| {
        id.len() > MAX_REQUEST_ID_LEN || !id.as_bytes().iter().all(u8::is_ascii_graphic)
    });
    if unusable {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// The full router with its middleware.
pub fn router(state: ApiState) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    let (api, _) = routes::routes().split_for_parts();
    let limits = request_limits::RequestLimits::new(
        state.config.max_concurrent_requests,
        Duration::from_secs(state.config.request_timeout_secs.max(1)),
    );
    api.merge(openapi::docs_router())
        .merge(dashboard::router())
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.access.clone(),
            access_cache::forget_after_changes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            request_limits::limit_requests,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            // Every log line of a request carries its id (set or propagated below).
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // `user.id` is recorded by the auth extractor once a token is accepted.
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id, user.id = tracing::field::Empty)
        }))
        // Outside the span (its line carries only its own fields), inside the request id.
        .layer(axum::middleware::from_fn(access_log::access_log))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_request_id))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` is cancelled, then finishes
/// in-flight requests (open SSE streams end at once). Connections that do not send a
/// request's headers within `header_read_timeout_secs` are closed (see `server.rs`).
pub async fn serve(
    mut state: ApiState,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    state.shutdown = shutdown.clone();
    let header_read_timeout = Duration::from_secs(state.config.header_read_timeout_secs.max(1));
    // The dashboard's jobs/s history is this process's own (see `dashboard::throughput`).
    tokio::spawn(dashboard::throughput::sample_loop(
        state.clone(),
        shutdown.clone(),
    ));
    // Each connection gets a cheap clone of the built router (an `Arc`), never a re-resolved
    // one, so an open SSE stream does not hold its own copy of the route table.
    server::serve_http1(listener, router(state), header_read_timeout, shutdown).await
}

/// SSE keep-alive period.
pub(crate) fn keepalive(config: &ApiConfig) -> Duration {
    Duration::from_secs(config.sse_keepalive_secs.max(1))
}
