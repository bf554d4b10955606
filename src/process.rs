//! Starting each process kind, shared by the single-role commands and `agentq dev`. Each
//! part announces itself in the process registry while it runs (ARCHITECTURE.md §6.1):
//! workers in `agentq_worker::start`, the API and the scheduler here.

use std::time::Duration;

use agentq_api::ApiState;
use agentq_core::{
    config::{
        ApiConfig, DatabaseConfig, MailConfig, MetricsConfig, ProviderConfig, QueueConfig,
        RedisConfig, SecretsConfig, WorkerConfig,
    },
    db,
    queue::{Announcement, Process, ProcessKind, consumer_name},
    services::Services,
    shutdown::{CancellationToken, wait_for_signal},
};
use agentq_scheduler::SchedulerConfig;
use agentq_worker::WorkerHandle;
use anyhow::Context;

/// Connects to a migrated database, its connections planning as `plans` says, and builds
/// the shared services.
pub async fn services(
    database: &DatabaseConfig,
    plans: db::Plans,
    redis: &RedisConfig,
    queue: &QueueConfig,
    secrets: &SecretsConfig,
) -> anyhow::Result<Services> {
    let pool = db::connect_migrated(database, plans).await?;
    let secrets = secrets.secret_box()?;
    Ok(
        Services::new(pool, redis.connection_url(), &redis.prefix, queue.max_len)
            .context("invalid Redis URL")?
            .with_event_limits(redis.events.limits())
            .with_secrets(secrets),
    )
}

/// Announces a process without queues (an API, a scheduler) in the registry until its
/// [`Announcement`] is withdrawn.
fn announce(
    services: &Services,
    kind: ProcessKind,
    queue: &QueueConfig,
    shutdown: CancellationToken,
) -> Announcement {
    Announcement::start(
        services.redis_conn.clone(),
        &services.prefix,
        Process::new(consumer_name(kind.as_str()), kind),
        queue.process_beat(),
        shutdown,
    )
}

/// Binds the API listener and serves until `shutdown`; the process is in the registry
/// until the server has finished its requests.
pub async fn start_api(
    services: &Services,
    config: ApiConfig,
    queue: &QueueConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(address = %config.listen, "API listening");
    let state = ApiState::new(services, config);
    let announcement = announce(services, ProcessKind::Api, queue, shutdown.clone());
    Ok(tokio::spawn(async move {
        if let Err(e) = agentq_api::serve(state, listener, shutdown).await {
            tracing::error!(error = %e, "API server failed");
        }
        announcement.withdraw().await;
    }))
}

/// Starts the queue consumers of a worker.
pub fn start_worker(
    services: &Services,
    worker: &WorkerConfig,
    queue: &QueueConfig,
    provider: &ProviderConfig,
    mail: &MailConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<WorkerHandle> {
    let sender = agentq_worker::MailSender::from_config(services.store.clone(), mail)?;
    let engines = agentq_worker::engine(services, provider, worker)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_mail(sender);
    tracing::info!(worker = %engines.turns.worker_id, queues = ?worker.queues, concurrency = worker.concurrency, "worker started");
    Ok(agentq_worker::start(
        &engines,
        &services.redis,
        &services.prefix,
        worker,
        queue,
        shutdown,
    )?)
}

/// Starts the scheduler's loops (maintenance on its cron, recovery on its interval); the
/// process is in the registry until they have stopped.
pub fn start_scheduler(
    services: &Services,
    scheduler: SchedulerConfig,
    queue: &QueueConfig,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tracing::info!("scheduler started");
    let announcement = announce(services, ProcessKind::Scheduler, queue, shutdown.clone());
    let loops = agentq_scheduler::run(
        services.store.clone(),
        services.producer.clone(),
        services.events.clone(),
        scheduler,
        std::sync::Arc::new(agentq_scheduler::SystemClock),
        shutdown,
    );
    tokio::spawn(async move {
        loops.await;
        announcement.withdraw().await;
    })
}

/// Waits for running work to finish after shutdown, at most `deadline`; what is still
/// running then is handed back to other workers.
pub async fn drain(worker: WorkerHandle, deadline: Duration) {
    let released = worker.drain(deadline).await;
    if released > 0 {
        tracing::warn!(
            deadline_secs = deadline.as_secs(),
            released,
            "turns still running at the drain deadline were handed back to other workers"
        );
    }
}

/// Serves `/metrics` on `--metrics-listen` for a worker or scheduler process.
pub async fn start_metrics(
    services: &Services,
    config: &MetricsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(addr) = config.metrics_listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let handle = agentq_core::metrics::install();
    let (conn, prefix) = (services.redis_conn.clone(), services.prefix.clone());
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (handle, mut conn, prefix) = (handle.clone(), conn.clone(), prefix.clone());
            async move { agentq_core::metrics::render(&handle, &mut conn, &prefix).await }
        }),
    );
    tracing::info!(address = %addr, "metrics listening");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(())
}

/// `agentq api`.
pub async fn run_api(
    database: DatabaseConfig,
    redis: RedisConfig,
    queue: QueueConfig,
    api: ApiConfig,
    secrets: SecretsConfig,
) -> anyhow::Result<()> {
    let services = services(&database, db::Plans::PerValues, &redis, &queue, &secrets).await?;
    let shutdown = CancellationToken::new();
    let server = start_api(&services, api, &queue, shutdown.clone()).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = server.await;
    services.events.flush().await;
    Ok(())
}

/// The settings of `agentq worker`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    redis: RedisConfig,
    #[command(flatten)]
    queue: QueueConfig,
    #[command(flatten)]
    worker: WorkerConfig,
    #[command(flatten)]
    provider: ProviderConfig,
    #[command(flatten)]
    mail: MailConfig,
    #[command(flatten)]
    secrets: SecretsConfig,
    #[command(flatten)]
    metrics: MetricsConfig,
}

/// `agentq worker`.
pub async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let WorkerArgs {
        database,
        redis,
        queue,
        worker,
        provider,
        mail,
        secrets,
        metrics,
    } = args;
    // A worker's statements all address rows by id: planned once per connection.
    let services = services(&database, db::Plans::Generic, &redis, &queue, &secrets).await?;
    let shutdown = CancellationToken::new();
    start_metrics(&services, &metrics, shutdown.clone()).await?;
    let handle = start_worker(
        &services,
        &worker,
        &queue,
        &provider,
        &mail,
        shutdown.clone(),
    )?;
    wait_for_signal().await;
    tracing::info!("stopping: no new jobs; letting running ones finish");
    shutdown.cancel();
    drain(handle, Duration::from_secs(worker.drain_secs)).await;
    services.events.flush().await;
    Ok(())
}

/// The settings of `agentq scheduler`.
#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    redis: RedisConfig,
    #[command(flatten)]
    queue: QueueConfig,
    #[command(flatten)]
    scheduler: SchedulerConfig,
    #[command(flatten)]
    metrics: MetricsConfig,
}

/// `agentq scheduler`.
pub async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let SchedulerArgs {
        database,
        redis,
        queue,
        scheduler,
        metrics,
    } = args;
    let services = services(
        &database,
        db::Plans::PerValues,
        &redis,
        &queue,
        &SecretsConfig {
            secret_key: None,
            previous_secret_key: None,
        },
    )
    .await?;
    let shutdown = CancellationToken::new();
    start_metrics(&services, &metrics, shutdown.clone()).await?;
    let task = start_scheduler(&services, scheduler, &queue, shutdown.clone());
    wait_for_signal().await;
    shutdown.cancel();
    let _ = task.await;
    Ok(())
}

/// `agentq migrate`.
pub async fn migrate(database: DatabaseConfig) -> anyhow::Result<()> {
    let pool = db::connect(&database).await?;
    db::migrate(&pool).await?;
    println!("database migrated ({})", database.url.redacted());
    Ok(())
}
