//! Starts the queue consumers of a worker process as apalis workers and drains them on
//! shutdown.

use std::{sync::Arc, time::Duration};

use agentq_core::{
    config::{QueueConfig, WorkerConfig},
    queue::{Consumer, ConsumerOptions, QueueKeys, QueueName, RunTurn, run_jobs},
    redis_conn,
};
use apalis_core::error::BoxDynError;
use tokio_util::sync::CancellationToken;

use crate::turn::TurnEngine;

/// Builds the turn engine over a process's shared services.
pub fn engine(
    services: &agentq_core::services::Services,
    provider: &agentq_core::config::ProviderConfig,
    turn_lease: Duration,
) -> Result<Arc<TurnEngine>, agentq_core::ChatError> {
    Ok(Arc::new(TurnEngine {
        store: services.store.clone(),
        producer: services.producer.clone(),
        events: services.events.clone(),
        provider: crate::providers::Provider::from_config(provider)?,
        model: provider.model.clone(),
        worker_id: agentq_core::queue::consumer_name("worker"),
        lease: turn_lease.max(Duration::from_secs(3)),
    }))
}

/// A running worker process's consumers.
pub struct WorkerHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WorkerHandle {
    /// Waits until every consumer has drained (after the shutdown token was cancelled).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
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

/// Starts one apalis worker per configured queue that has a handler. Runs until `shutdown`
/// is cancelled, then stops fetching, lets running jobs finish, and flushes acks.
pub fn start(
    engine: Arc<TurnEngine>,
    redis: &redis::Client,
    prefix: &str,
    worker: &WorkerConfig,
    queue: &QueueConfig,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, StartError> {
    let mut queues = Vec::new();
    for name in &worker.queues {
        queues.push(QueueName::parse(name).ok_or_else(|| StartError::UnknownQueue(name.clone()))?);
    }
    let shared = redis_conn::shared(redis)?;
    let mut tasks = Vec::new();
    for name in queues {
        match name {
            QueueName::Turns => {
                let options = consumer_options(name, prefix, &engine.worker_id, worker, queue);
                let consumer = Consumer::start(
                    shared.clone(),
                    redis_conn::blocking(redis)?,
                    options,
                    shutdown.clone(),
                );
                let engine = engine.clone();
                tasks.push(run_jobs(
                    &format!("{}-turns", engine.worker_id),
                    consumer,
                    move |job: RunTurn| run_turn(job, engine.clone()),
                ));
            }
            QueueName::Tools | QueueName::Mail => {
                // Their jobs stay in the stream until a worker with their handler consumes them.
                tracing::info!(
                    queue = name.as_str(),
                    "queue has no handler in this version; not consumed"
                );
            }
        }
    }
    Ok(WorkerHandle { tasks })
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

/// The `turns` handler: runs the turn on its own task, so turns use every core and a panic
/// fails one job instead of the worker.
async fn run_turn(job: RunTurn, engine: Arc<TurnEngine>) -> Result<(), BoxDynError> {
    match tokio::spawn(async move { engine.run(job).await }).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Box::new(e)),
        Err(join) => Err(format!("turn panicked: {join}").into()),
    }
}
