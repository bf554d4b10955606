//! Starts the queue consumers of a worker process (apalis workers over `core::queue`),
//! the per-process interrupt poller, its entry in the process registry and the pruning of
//! dead consumer names (ARCHITECTURE.md §6.1), and drains them on shutdown.

use std::{sync::Arc, time::Duration};

use agentq_core::{
    ChatError,
    config::{ProviderConfig, QueueConfig, WorkerConfig},
    queue::{
        Announcement, Consumer, ConsumerOptions, Process, ProcessKind, QueueKeys, QueueName,
        RunToolCall, RunTurn, SendMail, consumer_name, prune_loop, run_reported_jobs,
    },
    redis_conn,
    services::Services,
};
use apalis_core::error::BoxDynError;
use tokio_util::sync::CancellationToken;

use crate::{
    leases::Leases,
    mail::MailSender,
    models::{ModelResolver, ModelTarget},
    providers::{CacheTtl, Provider, ProviderLimits},
    tools::{
        ToolRegistry, ToolRunner,
        mcp::{McpClient, McpLimits, McpTools},
    },
    turn::{Acquisitions, RunningTurns, TurnEngine, TurnLimits},
};

/// What a worker process runs jobs with.
pub struct Engines {
    /// Runs turns.
    pub turns: Arc<TurnEngine>,
    /// Runs tool calls.
    pub tools: Arc<ToolRunner>,
    /// Sends outbox emails; `None` when no mail transport is configured.
    pub mail: Option<Arc<MailSender>>,
}

impl Engines {
    /// Adds the mail sender (see [`MailSender::from_config`]).
    pub fn with_mail(mut self, mail: Option<MailSender>) -> Self {
        self.mail = mail.map(Arc::new);
        self
    }
}

/// Builds the engines over a process's shared services (one consumer name per process).
pub fn engine(
    services: &Services,
    provider: &ProviderConfig,
    worker: &WorkerConfig,
) -> Result<Engines, ChatError> {
    let worker_id = consumer_name("worker");
    let fallback = Provider::from_config(provider)?;
    let lease = Duration::from_secs(worker.turn_lease_secs.max(3));
    // One heartbeat renews every lease of this process, turns and tool calls alike.
    let leases = Leases::start(services.store.clone(), lease);
    // One MCP client per process: turns (offers) and tool calls share its tools-list cache.
    let registry = ToolRegistry::with_mcp(Arc::new(McpTools::new(
        McpClient::new(McpLimits::from_config(worker)),
        services.secrets.clone(),
    )));
    let turns = Arc::new(TurnEngine {
        store: services.store.clone(),
        producer: services.producer.clone(),
        events: services.events.clone(),
        models: ModelResolver::new(
            services.store.clone(),
            services.secrets.clone(),
            ModelTarget {
                provider: fallback.clone(),
                provider_name: fallback.name().to_owned(),
                model: provider.model.clone(),
                max_output_tokens: None,
                context_limit: None,
                pricing: None,
                // No model row to turn it off: the flag-configured model caches.
                cache: Some(CacheTtl::FiveMinutes),
                // No model row to set one: a chat's own level still applies.
                reasoning_effort: None,
            },
            ProviderLimits::from_config(provider),
            Duration::from_millis(worker.model_cache_ms),
        ),
        worker_id: worker_id.clone(),
        lease,
        leases: leases.clone(),
        acquisitions: Acquisitions::start(services.store.clone(), lease),
        limits: TurnLimits {
            max_provider_attempts: worker.provider_max_attempts.max(1),
            max_backoff: Duration::from_secs(worker.provider_max_backoff_secs),
            max_steps: worker.max_steps.max(1),
            client_tool_deadline: Duration::from_secs(worker.client_tool_deadline_secs),
            max_attempts: worker.turn_max_attempts.max(1),
            max_conversation_bytes: worker.max_conversation_bytes,
            compaction_threshold: f64::from(worker.compaction_threshold_percent) / 100.0,
            generate_titles: worker.generate_titles,
            max_tool_calls_per_step: worker.max_tool_calls_per_step.max(1),
        },
        tools: registry.clone(),
        running: RunningTurns::default(),
    });
    let tools = Arc::new(ToolRunner {
        store: services.store.clone(),
        producer: services.producer.clone(),
        events: services.events.clone(),
        tools: registry,
        worker_id,
        lease,
        leases,
    });
    Ok(Engines {
        turns,
        tools,
        mail: None,
    })
}

/// A running worker process's consumers.
pub struct WorkerHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    turns: Arc<TurnEngine>,
    announcement: Announcement,
}

impl WorkerHandle {
    /// Waits until every consumer has drained (after the shutdown token was cancelled),
    /// then leaves the process registry.
    pub async fn join(self) {
        join_all(self.tasks).await;
        self.announcement.withdraw().await;
    }

    /// Waits for the drain at most `deadline`; then hands back the turns still running
    /// (released to `queued`), so other workers finish them without waiting for a lease.
    /// Either way the process then leaves the registry. Returns how many were handed back.
    pub async fn drain(self, deadline: Duration) -> usize {
        let drained = tokio::time::timeout(deadline, join_all(self.tasks))
            .await
            .is_ok();
        let released = if drained {
            0
        } else {
            self.turns.release_running().await
        };
        self.announcement.withdraw().await;
        released
    }
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--queues` named an unknown queue.
    #[error("unknown queue `{0}` in --queues (known: turns, tools, mail)")]
    UnknownQueue(String),
    /// Redis client configuration failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Starts one apalis worker per configured queue that has a handler, announces the
/// process in the registry with those queues, and prunes dead consumer names from their
/// group. Runs until `shutdown` is cancelled, then stops fetching, lets running jobs
/// finish, and flushes acks; [`WorkerHandle::drain`] then leaves the registry.
pub fn start(
    engines: &Engines,
    redis: &redis_conn::RedisClient,
    prefix: &str,
    worker: &WorkerConfig,
    queue: &QueueConfig,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, StartError> {
    let mut queues = Vec::new();
    for name in &worker.queues {
        queues.push(QueueName::parse(name).ok_or_else(|| StartError::UnknownQueue(name.clone()))?);
    }
    let shared = redis.shared()?;
    let worker_id = engines.turns.worker_id.clone();
    let mut tasks = Vec::new();
    let mut consumed = Vec::new();
    for name in queues {
        if name == QueueName::Mail && engines.mail.is_none() {
            // Its jobs wait in the stream for a worker that has a transport.
            tracing::warn!(
                queue = name.as_str(),
                "no --smtp-url or --mail-dir: this worker does not send email"
            );
            continue;
        }
        let options = consumer_options(name, prefix, &worker_id, worker, queue);
        let runner_name = format!("{worker_id}-{}", name.as_str());
        let consumer =
            Consumer::start(shared.clone(), redis.blocking()?, options, shutdown.clone());
        consumed.push((name, consumer.busy.clone()));
        match name {
            QueueName::Turns => {
                let engine = engines.turns.clone();
                tasks.push(run_reported_jobs(
                    &runner_name,
                    consumer,
                    move |job: RunTurn, report| {
                        let engine = engine.clone();
                        // A panic inside a step is caught by `TurnEngine::run`, which hands
                        // back exactly that acquisition; `run_isolated` covers anything else.
                        async move {
                            run_isolated(async move { engine.run(job, &report).await })
                                .await
                                .map_err(BoxDynError::from)
                        }
                    },
                ));
                tasks.push(tokio::spawn(poll_interrupts(
                    engines.turns.clone(),
                    Duration::from_millis(worker.interrupt_poll_ms.max(10)),
                    shutdown.clone(),
                )));
            }
            QueueName::Tools => {
                let runner = engines.tools.clone();
                tasks.push(run_reported_jobs(
                    &runner_name,
                    consumer,
                    move |job: RunToolCall, report| {
                        let runner = runner.clone();
                        async move {
                            run_isolated(async move { runner.run(job, &report).await })
                                .await
                                .map_err(BoxDynError::from)
                        }
                    },
                ));
            }
            QueueName::Mail => {
                let sender = engines.mail.clone().expect("checked above");
                tasks.push(run_reported_jobs(
                    &runner_name,
                    consumer,
                    move |job: SendMail, report| {
                        let sender = sender.clone();
                        async move {
                            run_isolated(async move { sender.run(job, &report).await })
                                .await
                                .map_err(BoxDynError::from)
                        }
                    },
                ));
            }
        }
    }
    let beat = queue.process_beat();
    tasks.push(tokio::spawn(prune_loop(
        shared.clone(),
        prefix.to_owned(),
        consumed.iter().map(|(name, _)| *name).collect(),
        beat,
        shutdown.clone(),
    )));
    let announcement = Announcement::start(
        shared,
        prefix,
        Process {
            id: worker_id,
            kind: ProcessKind::Worker,
            queues: consumed,
            concurrency: worker.concurrency,
        },
        beat,
        shutdown,
    );
    Ok(WorkerHandle {
        tasks,
        turns: engines.turns.clone(),
        announcement,
    })
}

fn consumer_options(
    name: QueueName,
    prefix: &str,
    worker_id: &str,
    worker: &WorkerConfig,
    queue: &QueueConfig,
) -> ConsumerOptions {
    ConsumerOptions {
        keys: QueueKeys::new(prefix, name),
        consumer: worker_id.to_owned(),
        concurrency: worker.concurrency,
        fetch_batch: queue.fetch_batch,
        lease: queue.lease(),
        max_deliveries: queue.max_deliveries,
        max_attempts: queue.max_attempts,
        block: Duration::from_secs(1),
        max_len: queue.max_len,
    }
}

/// How an isolated job failed.
#[derive(Debug, thiserror::Error)]
enum JobFailure<E: std::error::Error + 'static> {
    /// The handler returned an error.
    #[error(transparent)]
    Failed(E),
    /// The handler panicked (its task unwound; its guards ran).
    #[error("job panicked: {0}")]
    Panicked(String),
}

/// Runs a job on its own task, so jobs use every core and a panic fails one job instead of
/// the worker.
async fn run_isolated<E>(
    job: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> Result<(), JobFailure<E>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::spawn(job).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(JobFailure::Failed(e)),
        Err(join) => {
            tracing::error!(error = %join, "job panicked");
            Err(JobFailure::Panicked(join.to_string()))
        }
    }
}

/// One query per poll for the whole process (not per turn): which of my turns were asked to
/// stop? Their streams are cancelled, so an interrupt lands within a poll interval.
async fn poll_interrupts(engine: Arc<TurnEngine>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        if engine.running.is_empty() {
            continue;
        }
        match engine.store.interrupt_requests(&engine.worker_id).await {
            Ok(ids) if !ids.is_empty() => engine.running.interrupt(&ids),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "polling interrupt requests failed"),
        }
    }
}
