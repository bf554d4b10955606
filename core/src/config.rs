//! Configuration shared by every process: flags with `AGENTQ_*` environment fallbacks.
//!
//! Precedence is flag > environment > TOML file (`--config`, see [`apply_config_file`]) >
//! default. Each group is a `clap::Args` struct so the binary composes them per subcommand
//! and `agentq <cmd> --help` lists every setting with its default. Tests build the same
//! structs with [`defaults`] and override fields.

use std::{net::SocketAddr, path::Path, time::Duration};

use clap::{Args, FromArgMatches};

pub use crate::domain::ProviderKind;
use crate::secrets::{ExposeSecret, SecretString, SecretUrl};

/// Where the source of truth lives.
#[derive(Args, Clone, Debug)]
pub struct DatabaseConfig {
    /// PostgreSQL URL. `agentq dev` creates the database if it is missing. A server on
    /// this machine (loopback, `localhost`, a Unix socket) is reached without TLS unless
    /// the URL's `sslmode` (or `PGSSLMODE`) asks for it; other hosts use TLS when offered.
    /// A worker's connections plan each statement once (`plan_cache_mode`
    /// `force_generic_plan`) unless something else sets `plan_cache_mode` (the URL's
    /// `options`, `PGOPTIONS`, the role, the database, the server).
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "AGENTQ_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/agentq",
        hide_env_values = true
    )]
    pub url: SecretUrl,
    /// Maximum PostgreSQL connections this process opens.
    #[arg(
        long = "database-max-connections",
        env = "AGENTQ_DATABASE_MAX_CONNECTIONS",
        default_value_t = 20
    )]
    pub max_connections: u32,
}

/// Where jobs and live events live.
#[derive(Args, Clone, Debug)]
pub struct RedisConfig {
    /// Redis URL (`redis://` or `rediss://`).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "AGENTQ_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub url: SecretUrl,
    /// Seed nodes of a Redis Cluster, as comma-separated `redis://host:port` URLs; when set,
    /// agentq runs on that cluster instead of `--redis-url` (which may also name a cluster
    /// itself, as `redis+cluster://host1:port1,host2:port2`).
    #[arg(
        long = "redis-cluster-urls",
        env = "AGENTQ_REDIS_CLUSTER_URLS",
        hide_env_values = true
    )]
    pub cluster_urls: Option<SecretUrl>,
    /// Prefix of every Redis key agentq writes; lets several deployments (or tests) share one Redis.
    #[arg(
        long = "redis-prefix",
        env = "AGENTQ_REDIS_PREFIX",
        default_value = "agentq"
    )]
    pub prefix: String,
    /// Limits of the chat event streams this process writes.
    #[command(flatten)]
    pub events: EventConfig,
}

impl RedisConfig {
    /// The URL to connect with: the cluster's seed nodes when `--redis-cluster-urls` is
    /// set, else `--redis-url` (see `crate::redis_conn::RedisClient::open`).
    pub fn connection_url(&self) -> &str {
        self.cluster_urls.as_ref().unwrap_or(&self.url).expose()
    }
}

/// Limits of chat event streams (every process that publishes events reads them).
#[derive(Args, Clone, Debug)]
pub struct EventConfig {
    /// Approximate number of events kept per chat stream (XADD MAXLEN ~).
    #[arg(
        long = "chat-events-max-len",
        env = "AGENTQ_CHAT_EVENTS_MAX_LEN",
        default_value_t = 5_000
    )]
    pub stream_max_len: usize,
    /// Seconds a chat's event stream lives after its last event.
    #[arg(
        long = "chat-events-ttl-secs",
        env = "AGENTQ_CHAT_EVENTS_TTL_SECS",
        default_value_t = 86_400
    )]
    pub stream_ttl_secs: u64,
    /// Largest JSON `data` of one event, in bytes; larger events are cut and flagged
    /// `truncated` (so a chat stream holds at most max-len × this many bytes).
    #[arg(
        long = "event-max-bytes",
        env = "AGENTQ_EVENT_MAX_BYTES",
        default_value_t = 8_192
    )]
    pub max_event_bytes: usize,
    /// Bytes of a message's content a `message` event previews.
    #[arg(
        long = "event-preview-bytes",
        env = "AGENTQ_EVENT_PREVIEW_BYTES",
        default_value_t = 2_048
    )]
    pub preview_bytes: usize,
    /// Bytes of events a process holds waiting for Redis before it drops streamed deltas
    /// (counted in agentq_events_dropped_total; persisted-state events are never dropped).
    #[arg(
        long = "event-publish-buffer-bytes",
        env = "AGENTQ_EVENT_PUBLISH_BUFFER_BYTES",
        default_value_t = 4 << 20
    )]
    pub publish_buffer_bytes: usize,
}

impl EventConfig {
    /// The publisher's limits.
    pub fn limits(&self) -> crate::events::EventLimits {
        crate::events::EventLimits {
            max_len: self.stream_max_len.max(1),
            ttl: Duration::from_secs(self.stream_ttl_secs.max(1)),
            payload: crate::events::PayloadLimits {
                max_event_bytes: self.max_event_bytes,
                preview_bytes: self.preview_bytes,
            },
            publish_buffer_bytes: self.publish_buffer_bytes,
        }
    }
}

/// How the Redis Streams queue delivers, retries and gives up on jobs.
#[derive(Args, Clone, Debug)]
pub struct QueueConfig {
    /// Seconds an entry may sit delivered but unacknowledged (its holder not heartbeating)
    /// before another consumer takes it over with XAUTOCLAIM.
    #[arg(
        long = "queue-lease-secs",
        env = "AGENTQ_QUEUE_LEASE_SECS",
        default_value_t = 30
    )]
    pub lease_secs: u64,
    /// Deliveries without an ack after which an entry moves to the dead-letter stream.
    #[arg(
        long = "queue-max-deliveries",
        env = "AGENTQ_QUEUE_MAX_DELIVERIES",
        default_value_t = 5
    )]
    pub max_deliveries: u32,
    /// Attempts of a job whose handler returns an error (retried with exponential backoff)
    /// before it moves to the dead-letter stream.
    #[arg(
        long = "queue-max-attempts",
        env = "AGENTQ_QUEUE_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub max_attempts: u32,
    /// Largest number of entries one XREADGROUP asks for (bounded by free slots).
    #[arg(
        long = "queue-fetch-batch",
        env = "AGENTQ_QUEUE_FETCH_BATCH",
        default_value_t = 200
    )]
    pub fetch_batch: usize,
    /// Approximate cap of each queue stream (XADD MAXLEN ~); 0 = uncapped. Acked entries are
    /// deleted at once, so this only bounds a backlog nobody consumes.
    #[arg(
        long = "queue-max-len",
        env = "AGENTQ_QUEUE_MAX_LEN",
        default_value_t = 0
    )]
    pub max_len: usize,
    /// Milliseconds between a process's beats in the process registry; a process that
    /// stops beating leaves it three beats later (dead workers' consumer names are pruned
    /// from the queues' group then).
    #[arg(
        long = "process-beat-ms",
        env = "AGENTQ_PROCESS_BEAT_MS",
        default_value_t = 5_000
    )]
    pub process_beat_ms: u64,
}

impl QueueConfig {
    /// The lease as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// The process registry's beat (at least 100 ms).
    pub fn process_beat(&self) -> Duration {
        Duration::from_millis(self.process_beat_ms.max(100))
    }
}

/// Where a worker or scheduler serves `/metrics` (the API serves it on its own port).
#[derive(Args, Clone, Debug)]
pub struct MetricsConfig {
    /// Address for Prometheus to scrape `/metrics`, e.g. `0.0.0.0:9464`; unset: not served.
    #[arg(long = "metrics-listen", env = "AGENTQ_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The key that encrypts secrets at rest (provider keys and headers).
#[derive(Args, Clone, Debug)]
pub struct SecretsConfig {
    /// 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`. Needed to store or
    /// use provider keys kept in the database; `agentq dev` generates one under its data dir.
    #[arg(long = "secret-key", env = "AGENTQ_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<SecretString>,
    /// The key being rotated away from, while `agentq admin rotate-key` runs: values sealed
    /// under it are still read; new ones are sealed under `--secret-key`. Unset it once the
    /// rotation has finished.
    #[arg(
        long = "previous-secret-key",
        env = "AGENTQ_PREVIOUS_SECRET_KEY",
        hide_env_values = true
    )]
    pub previous_secret_key: Option<SecretString>,
}

impl SecretsConfig {
    /// The configured box, if a key is set. A previous key alone is an error (it would be
    /// silently ignored), and each malformed key is reported under its own variable.
    pub fn secret_box(
        &self,
    ) -> Result<Option<crate::secrets::SecretBox>, crate::secrets::SecretError> {
        let previous = self.previous_box()?;
        let current = set(&self.secret_key)
            .map(crate::secrets::SecretBox::from_hex)
            .transpose()?;
        match (current, previous) {
            (None, Some(_)) => Err(crate::secrets::SecretError::PreviousWithoutKey),
            (current, previous) => Ok(current.map(|current| match &previous {
                Some(previous) => current.with_previous(previous),
                None => current,
            })),
        }
    }

    /// The key being rotated away from, alone (for `agentq admin rotate-key`).
    pub fn previous_box(
        &self,
    ) -> Result<Option<crate::secrets::SecretBox>, crate::secrets::SecretError> {
        set(&self.previous_secret_key)
            .map(|k| {
                crate::secrets::SecretBox::from_hex(k)
                    .map_err(|_| crate::secrets::SecretError::BadPreviousKey)
            })
            .transpose()
    }
}

/// A secret setting's value unless it is unset or blank.
fn set(key: &Option<SecretString>) -> Option<&str> {
    key.as_ref()
        .map(ExposeSecret::expose_secret)
        .filter(|k| !k.trim().is_empty())
}

/// The HTTP API.
#[derive(Args, Clone, Debug)]
pub struct ApiConfig {
    /// Address the API listens on.
    #[arg(
        long = "listen",
        env = "AGENTQ_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Lifetime of tokens created through the API.
    #[command(flatten)]
    pub tokens: TokenConfig,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(
        long = "max-body-bytes",
        env = "AGENTQ_MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_body_bytes: usize,
    /// Seconds between SSE keep-alive comments.
    #[arg(
        long = "sse-keepalive-secs",
        env = "AGENTQ_SSE_KEEPALIVE_SECS",
        default_value_t = 15
    )]
    pub sse_keepalive_secs: u64,
    /// Milliseconds between the operator dashboard's samples of the queue counters (its
    /// jobs/s chart keeps the last 120 samples: ten minutes at the default).
    #[arg(
        long = "dashboard-sample-ms",
        env = "AGENTQ_DASHBOARD_SAMPLE_MS",
        default_value_t = 5000
    )]
    pub dashboard_sample_ms: u64,
    /// Seconds a client has to send a request's headers, counted from when the connection
    /// opens or its previous response ends (so it also closes idle keep-alive connections);
    /// then the connection is closed. Keep it above a load balancer's idle timeout.
    #[arg(
        long = "header-read-timeout-secs",
        env = "AGENTQ_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take until its response starts (an event stream: until it
    /// opens; it then lives on); longer ones get a 503.
    #[arg(
        long = "request-timeout-secs",
        env = "AGENTQ_REQUEST_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub request_timeout_secs: u64,
    /// Requests this process works on at once; more get a 503 with `Retry-After` (open
    /// event streams do not count once started; `/healthz`, `/readyz`, `/metrics` never
    /// wait or shed).
    #[arg(
        long = "max-concurrent-requests",
        env = "AGENTQ_MAX_CONCURRENT_REQUESTS",
        default_value_t = 512
    )]
    pub max_concurrent_requests: usize,
    /// Seconds the API reuses the site settings it read (rate limits) before reading them
    /// again in the background; a change made through another replica applies after it.
    #[arg(
        long = "site-config-cache-secs",
        env = "AGENTQ_SITE_CONFIG_CACHE_SECS",
        default_value_t = 5
    )]
    pub site_config_cache_secs: u64,
    /// Seconds the API keeps what it read of a token's user, a user's memberships and
    /// that no spend limit applies to a user; every change to those empties it in every API
    /// process as it commits (ARCHITECTURE.md §11.3). 0 = read them on every request.
    #[arg(
        long = "access-cache-secs",
        env = "AGENTQ_ACCESS_CACHE_SECS",
        default_value_t = 10
    )]
    pub access_cache_secs: u64,
    /// Milliseconds a rate-limit check may wait for Redis; past it the request is let
    /// through (fail open, logged and counted).
    #[arg(
        long = "rate-limit-timeout-ms",
        env = "AGENTQ_RATE_LIMIT_TIMEOUT_MS",
        default_value_t = 250
    )]
    pub rate_limit_timeout_ms: u64,
    /// SSE streams one user may hold open on this process (0 = no cap); past it, 429.
    #[arg(
        long = "sse-max-streams-per-user",
        env = "AGENTQ_SSE_MAX_STREAMS_PER_USER",
        default_value_t = 20
    )]
    pub sse_max_streams_per_user: usize,
    /// SSE streams this process holds open at most (0 = no cap); past it, 429.
    #[arg(
        long = "sse-max-streams",
        env = "AGENTQ_SSE_MAX_STREAMS",
        default_value_t = 10_000
    )]
    pub sse_max_streams: usize,
    /// Seconds after which the server ends an SSE stream; the client reconnects with
    /// Last-Event-ID and is authorized again (0 = no limit).
    #[arg(
        long = "sse-max-lifetime-secs",
        env = "AGENTQ_SSE_MAX_LIFETIME_SECS",
        default_value_t = 1_800
    )]
    pub sse_max_lifetime_secs: u64,
    /// Events buffered per SSE stream; a client that falls further behind catches up
    /// from Redis instead of holding the shared reader.
    #[arg(
        long = "sse-subscriber-buffer",
        env = "AGENTQ_SSE_SUBSCRIBER_BUFFER",
        default_value_t = 256
    )]
    pub sse_subscriber_buffer: usize,
    /// The URL people reach this API at (e.g. `https://agents.example.com`), from which
    /// the OAuth redirect URI of MCP servers is built:
    /// `<base>/api/v1/mcp-servers/oauth/callback`. Unset: `oauth2` servers cannot be
    /// connected (409).
    #[arg(long = "public-base-url", env = "AGENTQ_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
}

/// How long API tokens live.
#[derive(Args, Clone, Debug)]
pub struct TokenConfig {
    /// Days a new API token lives when its creator does not say (`POST
    /// /api/v1/users/me/tokens`, `agentq admin create-user`, `agentq admin tokens create`);
    /// 0 = tokens never expire.
    #[arg(
        long = "token-expiry-days",
        env = "AGENTQ_TOKEN_EXPIRY_DAYS",
        default_value_t = 90
    )]
    pub expiry_days: u32,
}

impl TokenConfig {
    /// When a token created now expires: after `days` when given, else after the default;
    /// `None` (never) when that is 0.
    pub fn expires_at(&self, days: Option<u32>) -> Option<chrono::DateTime<chrono::Utc>> {
        let days = days.unwrap_or(self.expiry_days);
        // An expiry past what a timestamp holds is no expiry at all.
        (days > 0)
            .then(|| {
                chrono::Utc::now().checked_add_signed(chrono::Duration::try_days(i64::from(days))?)
            })
            .flatten()
    }
}

/// Which LLM endpoint turns are sent to (until providers become data in the database).
#[derive(Args, Clone, Debug)]
pub struct ProviderConfig {
    /// `openai` (any OpenAI-compatible Chat Completions server), `anthropic` (the Messages
    /// API) or `echo` (a built-in local model that streams the user's words back; for trying
    /// agentq without a key).
    #[arg(long = "provider", env = "AGENTQ_PROVIDER", default_value = "openai")]
    pub kind: ProviderKind,
    /// Base URL of the OpenAI-compatible API (the path `/chat/completions` is appended).
    #[arg(
        long = "openai-base-url",
        env = "AGENTQ_OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub openai_base_url: String,
    /// API key sent as a bearer token; never printed or logged.
    #[arg(
        long = "openai-api-key",
        env = "AGENTQ_OPENAI_API_KEY",
        hide_env_values = true
    )]
    pub openai_api_key: Option<SecretString>,
    /// Base URL of the Anthropic API (the path `/v1/messages` is appended).
    #[arg(
        long = "anthropic-base-url",
        env = "AGENTQ_ANTHROPIC_BASE_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_base_url: String,
    /// Anthropic API key, sent as `x-api-key`; never printed or logged.
    #[arg(
        long = "anthropic-api-key",
        env = "AGENTQ_ANTHROPIC_API_KEY",
        hide_env_values = true
    )]
    pub anthropic_api_key: Option<SecretString>,
    /// Extra headers sent to the provider on every request, as `Name: value` (repeat the flag,
    /// or separate with commas in the environment). They may carry secrets, so their values
    /// are never printed.
    #[arg(
        long = "provider-header",
        env = "AGENTQ_PROVIDER_HEADERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub provider_headers: Vec<SecretString>,
    /// Model name sent to the provider.
    #[arg(long = "model", env = "AGENTQ_MODEL", default_value = "gpt-4o-mini")]
    pub model: String,
    /// Seconds to wait for the provider's first byte.
    #[arg(
        long = "provider-startup-timeout-secs",
        env = "AGENTQ_PROVIDER_STARTUP_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub startup_timeout_secs: u64,
    /// Seconds of silence in a started stream after which it is abandoned.
    #[arg(
        long = "provider-silence-timeout-secs",
        env = "AGENTQ_PROVIDER_SILENCE_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub silence_timeout_secs: u64,
    /// Seconds one provider attempt may take from sending the request to the end of the
    /// answer, however steadily it streams; past it the step fails with a `timeout` error.
    #[arg(
        long = "provider-attempt-deadline-secs",
        env = "AGENTQ_PROVIDER_ATTEMPT_DEADLINE_SECS",
        default_value_t = 600
    )]
    pub attempt_deadline_secs: u64,
    /// Seconds to read the body of a provider's error answer (at most 64 KiB of it is read).
    #[arg(
        long = "provider-error-body-timeout-secs",
        env = "AGENTQ_PROVIDER_ERROR_BODY_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub error_body_timeout_secs: u64,
    /// Largest answer accepted from a provider in one attempt, in bytes: text, reasoning and
    /// tool calls together. A longer one fails the step.
    #[arg(
        long = "provider-max-answer-bytes",
        env = "AGENTQ_PROVIDER_MAX_ANSWER_BYTES",
        default_value_t = 4_194_304
    )]
    pub max_answer_bytes: usize,
}

impl ProviderConfig {
    /// The extra headers as `Name: value` text, for the client that sends them.
    pub fn exposed_headers(&self) -> Vec<String> {
        self.provider_headers
            .iter()
            .map(|h| h.expose_secret().to_owned())
            .collect()
    }
}

/// How a worker process consumes queues.
#[derive(Args, Clone, Debug)]
pub struct WorkerConfig {
    /// Queues this worker consumes (comma separated): turns, tools, mail.
    #[arg(
        long = "queues",
        env = "AGENTQ_WORKER_QUEUES",
        default_value = "turns,tools,mail",
        value_delimiter = ','
    )]
    pub queues: Vec<String>,
    /// Jobs run at once per queue by this process.
    #[arg(
        long = "concurrency",
        env = "AGENTQ_WORKER_CONCURRENCY",
        default_value_t = 64
    )]
    pub concurrency: usize,
    /// Seconds a running turn's (or tool call's) lease lasts without renewal. One heartbeat
    /// per process renews all its leases every third of it; a killed worker's step is taken
    /// over about this long after it died (plus the recovery interval).
    #[arg(
        long = "turn-lease-secs",
        env = "AGENTQ_TURN_LEASE_SECS",
        default_value_t = 10
    )]
    pub turn_lease_secs: u64,
    /// Times one step of a turn may be started (first run included: handed back on a drain,
    /// released after an error, taken over after a lost worker or a panic) before it fails
    /// with `worker_lost` instead of calling the model again.
    #[arg(
        long = "turn-max-attempts",
        env = "AGENTQ_TURN_MAX_ATTEMPTS",
        default_value_t = 3
    )]
    pub turn_max_attempts: i32,
    /// Largest conversation (bytes of JSON) sent to a model in one request; a longer one
    /// fails the turn with a `context_length` error instead of a provider call.
    #[arg(
        long = "max-conversation-bytes",
        env = "AGENTQ_MAX_CONVERSATION_BYTES",
        default_value_t = 8 * 1024 * 1024
    )]
    pub max_conversation_bytes: usize,
    /// Share of a model's input budget (its `context_limit` less its output reserve), in
    /// percent, past which a step first compacts the older part of the conversation into a
    /// summary (models without a `context_limit` are never compacted).
    #[arg(
        long = "compaction-threshold-percent",
        env = "AGENTQ_COMPACTION_THRESHOLD_PERCENT",
        default_value_t = 80,
        value_parser = clap::value_parser!(u8).range(10..=100)
    )]
    pub compaction_threshold_percent: u8,
    /// Whether a root chat's first answer is followed by a generated title: one short call
    /// of the `title` context's model (else the chat's). `false` keeps the first message's
    /// first 80 characters as the title (a worker with titles off closes the chat's title
    /// request without a call).
    #[arg(
        long = "generate-titles",
        env = "AGENTQ_GENERATE_TITLES",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub generate_titles: bool,
    /// Most tool calls one model step may ask for; a step asking for more fails with a
    /// clear error instead of flooding the shared `tools` queue (or the client).
    #[arg(
        long = "max-tool-calls-per-step",
        env = "AGENTQ_MAX_TOOL_CALLS_PER_STEP",
        default_value_t = 64
    )]
    pub max_tool_calls_per_step: usize,
    /// Provider attempts per turn step for retryable failures (429, 5xx, 529, cut
    /// streams, timeouts), with exponential backoff between them.
    #[arg(
        long = "provider-max-attempts",
        env = "AGENTQ_PROVIDER_MAX_ATTEMPTS",
        default_value_t = 6
    )]
    pub provider_max_attempts: u32,
    /// Longest wait between provider attempts, in seconds (`Retry-After` included).
    #[arg(
        long = "provider-max-backoff-secs",
        env = "AGENTQ_PROVIDER_MAX_BACKOFF_SECS",
        default_value_t = 60
    )]
    pub provider_max_backoff_secs: u64,
    /// Model calls per turn before it stops with an error (each tool round is one).
    #[arg(long = "max-steps", env = "AGENTQ_MAX_STEPS", default_value_t = 25)]
    pub max_steps: i32,
    /// Milliseconds a worker reuses a resolved model row (provider, model, pricing) before
    /// reading it again: saves a database round trip per turn step; an admin's change to a
    /// provider or model reaches running workers within this time. 0 reads it every step.
    #[arg(
        long = "model-cache-ms",
        env = "AGENTQ_MODEL_CACHE_MS",
        default_value_t = 2000
    )]
    pub model_cache_ms: u64,
    /// Seconds a worker waits for a TCP/TLS connection to an MCP server: a server that is
    /// down fails fast instead of eating the call's timeout.
    #[arg(
        long = "mcp-connect-timeout-secs",
        env = "AGENTQ_MCP_CONNECT_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub mcp_connect_timeout_secs: u64,
    /// Seconds listing an MCP server's tools may take, session set-up included; past it the
    /// server's tools are not offered that step.
    #[arg(
        long = "mcp-list-timeout-secs",
        env = "AGENTQ_MCP_LIST_TIMEOUT_SECS",
        default_value_t = 15
    )]
    pub mcp_list_timeout_secs: u64,
    /// Seconds one MCP tool call may take, session set-up included; past it the model gets
    /// a timeout error result and the turn goes on.
    #[arg(
        long = "mcp-call-timeout-secs",
        env = "AGENTQ_MCP_CALL_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub mcp_call_timeout_secs: u64,
    /// Largest MCP tool result accepted, in bytes of its JSON content; a larger one is an
    /// error result (the result is sent to the model on every later step).
    #[arg(
        long = "mcp-max-result-bytes",
        env = "AGENTQ_MCP_MAX_RESULT_BYTES",
        default_value_t = 256 * 1024
    )]
    pub mcp_max_result_bytes: usize,
    /// Largest `tools/list` answer accepted from an MCP server, in bytes.
    #[arg(
        long = "mcp-max-list-bytes",
        env = "AGENTQ_MCP_MAX_LIST_BYTES",
        default_value_t = 1024 * 1024
    )]
    pub mcp_max_list_bytes: usize,
    /// Milliseconds a worker reuses an MCP server's tool list; a change of the server's
    /// config invalidates it at once.
    #[arg(
        long = "mcp-tools-cache-ms",
        env = "AGENTQ_MCP_TOOLS_CACHE_MS",
        default_value_t = 60_000
    )]
    pub mcp_tools_cache_ms: u64,
    /// Seconds the client has to post results of its own tools before the turn fails.
    #[arg(
        long = "client-tool-deadline-secs",
        env = "AGENTQ_CLIENT_TOOL_DEADLINE_SECS",
        default_value_t = 300
    )]
    pub client_tool_deadline_secs: u64,
    /// Milliseconds between checks for interrupt requests of the turns this worker runs.
    #[arg(
        long = "interrupt-poll-ms",
        env = "AGENTQ_INTERRUPT_POLL_MS",
        default_value_t = 250
    )]
    pub interrupt_poll_ms: u64,
    /// Seconds a worker waits for running jobs on SIGTERM before handing them back.
    #[arg(long = "drain-secs", env = "AGENTQ_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,
}

/// How a worker delivers email from the outbox (the `mail` queue).
#[derive(Args, Clone, Debug)]
pub struct MailConfig {
    /// SMTP server for outgoing email: `smtp://host:25` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://host:465` (TLS); credentials as `smtp://user:password@host`.
    /// Unset, and no `--mail-dir`: this worker does not consume the mail queue.
    #[arg(long = "smtp-url", env = "AGENTQ_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretUrl>,
    /// Write each email as an `.eml` file in this directory instead of sending it (`agentq
    /// dev` uses `<data-dir>/mail`). Ignored when `--smtp-url` is set.
    #[arg(long = "mail-dir", env = "AGENTQ_MAIL_DIR")]
    pub mail_dir: Option<std::path::PathBuf>,
    /// The `From:` of every email.
    #[arg(
        id = "mail_from",
        long = "mail-from",
        env = "AGENTQ_MAIL_FROM",
        default_value = "agentq <agentq@localhost>"
    )]
    pub from: String,
    /// Public address of the product: links in emails are `<base-url>/chats/<id>`.
    #[arg(
        long = "base-url",
        env = "AGENTQ_BASE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub base_url: String,
    /// Delivery attempts of one email before it is marked `failed` (permanent SMTP
    /// rejections fail at once).
    #[arg(
        id = "mail_max_attempts",
        long = "mail-max-attempts",
        env = "AGENTQ_MAIL_MAX_ATTEMPTS",
        default_value_t = 8
    )]
    pub max_attempts: i32,
    /// Wait before the second attempt, in seconds; doubles per attempt (with +-20 % jitter),
    /// at most an hour.
    #[arg(
        id = "mail_retry_base_secs",
        long = "mail-retry-base-secs",
        env = "AGENTQ_MAIL_RETRY_BASE_SECS",
        default_value_t = 30
    )]
    pub retry_base_secs: u64,
    /// Seconds one SMTP conversation may take before it counts as failed.
    #[arg(
        id = "mail_timeout_secs",
        long = "mail-timeout-secs",
        env = "AGENTQ_MAIL_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub timeout_secs: u64,
}

/// Builds a config group from its defaults and the environment, as if no flag was given.
/// Tests use it, then override what they need.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("agentq").no_binary_name(true));
    let matches = cmd.get_matches_from(Vec::<String>::new());
    T::from_arg_matches(&matches).expect("defaults of a config group parse")
}

/// Errors reading the optional TOML configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read or parsed.
    #[error("configuration file {path}: {source}")]
    Read {
        /// The file named by `--config`.
        path: String,
        /// Why it failed.
        #[source]
        source: Box<figment::Error>,
    },
    /// A value that is neither a string, number nor boolean.
    #[error("configuration file {path}: key `{key}` must be a string, number or boolean")]
    BadValue {
        /// The file named by `--config`.
        path: String,
        /// The offending key.
        key: String,
    },
}

/// Loads a flat TOML file whose keys are the environment variable names without `AGENTQ_`,
/// lowercased (`database_url = "..."`, `worker_concurrency = 8`), and exports each key as
/// `AGENTQ_<KEY>` unless that variable is already set, so the file sits under the
/// environment and flags in precedence without a second parser for every setting.
pub fn apply_config_file(path: &Path) -> Result<(), ConfigFileError> {
    use figment::{
        Figment,
        providers::{Format, Toml},
        value::{Dict, Value},
    };
    let display = path.display().to_string();
    let dict: Dict = Figment::from(Toml::file_exact(path))
        .extract()
        .map_err(|e| ConfigFileError::Read {
            path: display.clone(),
            source: Box::new(e),
        })?;
    for (key, value) in dict {
        let text = match value {
            Value::String(_, s) => s,
            Value::Num(_, n) => n
                .to_u128()
                .map(|v| v.to_string())
                .or_else(|| n.to_i128().map(|v| v.to_string()))
                .or_else(|| n.to_f64().map(|v| v.to_string()))
                .unwrap_or_default(),
            Value::Bool(_, b) => b.to_string(),
            Value::Array(_, items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            _ => return Err(ConfigFileError::BadValue { path: display, key }),
        };
        let var = format!("AGENTQ_{}", key.to_ascii_uppercase().replace('-', "_"));
        if std::env::var_os(&var).is_none() {
            // SAFETY: called once at start-up from `main`, before any thread is spawned.
            unsafe { std::env::set_var(&var, text) };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(current: Option<&str>, previous: Option<&str>) -> SecretsConfig {
        SecretsConfig {
            secret_key: current.map(|k| SecretString::from(k.to_owned())),
            previous_secret_key: previous.map(|k| SecretString::from(k.to_owned())),
        }
    }

    #[test]
    fn a_malformed_previous_key_is_reported_under_its_own_name() {
        let good = "ab".repeat(32);
        let err = secrets(Some(&good), Some("not-hex"))
            .secret_box()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("AGENTQ_PREVIOUS_SECRET_KEY must be"),
            "{err}"
        );
        let err = secrets(None, Some("short")).previous_box().unwrap_err();
        assert!(
            err.to_string().contains("AGENTQ_PREVIOUS_SECRET_KEY"),
            "{err}"
        );
        let err = secrets(Some("bad"), Some(&good)).secret_box().unwrap_err();
        assert!(
            err.to_string().starts_with("AGENTQ_SECRET_KEY must be"),
            "{err}"
        );
    }

    #[test]
    fn a_previous_key_alone_is_an_error_not_ignored() {
        let good = "cd".repeat(32);
        let err = secrets(None, Some(&good)).secret_box().unwrap_err();
        assert!(matches!(
            err,
            crate::secrets::SecretError::PreviousWithoutKey
        ));
        assert!(
            err.to_string().contains("AGENTQ_SECRET_KEY is not"),
            "{err}"
        );
        assert!(secrets(None, None).secret_box().unwrap().is_none());
        assert!(
            secrets(Some(&good), Some("  "))
                .secret_box()
                .unwrap()
                .is_some()
        );
    }

    /// Parses one config group from command-line flags, as the binary does.
    fn parse<T: Args + FromArgMatches>(args: &[&str]) -> T {
        let cmd = T::augment_args(clap::Command::new("agentq").no_binary_name(true));
        T::from_arg_matches(&cmd.get_matches_from(args)).unwrap()
    }

    #[test]
    fn formatting_parsed_settings_shows_no_secret() {
        let database: DatabaseConfig = parse(&[
            "--database-url",
            "postgres://app:db-pass-1@db:5432/agentq?sslpassword=ssl-pass-2",
        ]);
        let redis: RedisConfig = parse(&["--redis-url", "rediss://:redis-pass-3@cache:6380"]);
        let secrets: SecretsConfig = parse(&[
            "--secret-key",
            "secret-key-4",
            "--previous-secret-key",
            "previous-key-9",
        ]);
        let provider: ProviderConfig = parse(&[
            "--openai-api-key",
            "sk-openai-5",
            "--anthropic-api-key",
            "sk-ant-6",
            "--provider-header",
            "X-Api-Token: header-7",
        ]);
        let mail: MailConfig = parse(&[
            "--smtp-url",
            "smtp://mailer:smtp-pass-8@mail:587?tls=required",
        ]);
        let shown = format!("{database:?} {redis:?} {secrets:?} {provider:?} {mail:?}");
        for secret in [
            "db-pass-1",
            "ssl-pass-2",
            "redis-pass-3",
            "secret-key-4",
            "sk-openai-5",
            "sk-ant-6",
            "header-7",
            "smtp-pass-8",
            "previous-key-9",
        ] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        // What is not secret still helps whoever reads the log.
        assert!(shown.contains("db:5432/agentq"), "{shown}");
        assert!(shown.contains("mail:587"), "{shown}");
        // And the code that connects still gets the real values.
        assert!(database.url.expose().contains("db-pass-1"));
        assert_eq!(provider.exposed_headers(), vec!["X-Api-Token: header-7"]);
        assert_eq!(
            secrets.secret_key.as_ref().map(ExposeSecret::expose_secret),
            Some("secret-key-4")
        );
    }

    #[test]
    fn tokens_expire_after_the_default_unless_it_is_zero() {
        let tokens: TokenConfig = defaults();
        assert_eq!(tokens.expiry_days, 90);
        let at = tokens.expires_at(None).unwrap();
        assert!(
            (at - chrono::Utc::now() - chrono::Duration::days(90))
                .num_seconds()
                .abs()
                < 5
        );
        assert!(tokens.expires_at(Some(1)).unwrap() < at);
        let never = TokenConfig { expiry_days: 0 };
        assert_eq!(never.expires_at(None), None);
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let api: ApiConfig = defaults();
        assert_eq!(api.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            (
                api.header_read_timeout_secs,
                api.request_timeout_secs,
                api.max_concurrent_requests,
                api.site_config_cache_secs,
                api.access_cache_secs,
                api.rate_limit_timeout_ms
            ),
            (30, 30, 512, 5, 10, 250)
        );
        let worker: WorkerConfig = defaults();
        assert_eq!(worker.queues, vec!["turns", "tools", "mail"]);
        let provider: ProviderConfig = defaults();
        assert_eq!(provider.attempt_deadline_secs, 600);
        assert_eq!(provider.error_body_timeout_secs, 10);
        assert_eq!(provider.max_answer_bytes, 4 * 1024 * 1024);
        let redis: RedisConfig = defaults();
        assert_eq!(redis.events.stream_max_len, 5_000);
        let queue: QueueConfig = defaults();
        assert_eq!(queue.process_beat(), Duration::from_secs(5));
        assert_eq!(api.sse_max_streams_per_user, 20);
    }
}
