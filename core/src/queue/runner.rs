//! Runs a queue's jobs on an apalis worker over a [`Consumer`], with the shutdown order
//! that loses nothing: intake loops stop taking entries, then the apalis worker finishes
//! the jobs it started, then upkeep flushes the last acks.

use std::future::Future;

use apalis_core::{
    error::BoxDynError,
    worker::{builder::WorkerBuilder, context::WorkerContext},
};

use super::{Consumer, Job, StreamBackend};

/// Spawns an apalis worker named `name` running `handler` for each job of `consumer`.
/// The returned task ends after the consumer's shutdown token is cancelled and every
/// started job is settled. Entries fetched but not started stay pending under this
/// consumer and are taken over by live consumers after the lease.
pub fn run_jobs<J, F, Fut>(
    name: &str,
    mut consumer: Consumer,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    J: Job,
    F: Fn(J) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let (intake, upkeep) = consumer.take_tasks();
    let backend = StreamBackend::<J>::new(consumer);
    let context = WorkerContext::new(name);
    let worker = WorkerBuilder::new(context.clone())
        .backend(backend)
        .build(move |job: J| handler(job));
    let stopper = tokio::spawn(async move {
        for task in intake {
            let _ = task.await;
        }
        let _ = context.stop();
    });
    let queue = J::QUEUE.as_str();
    tokio::spawn(async move {
        if let Err(e) = worker.run().await {
            tracing::error!(queue, error = %e, "job runner stopped with an error");
        }
        let _ = stopper.await;
        for task in upkeep {
            let _ = task.await;
        }
    })
}
