//! Runs a queue's jobs on an apalis worker over a [`Consumer`], with the shutdown order
//! that loses nothing: intake loops stop taking entries, then the apalis worker finishes
//! the jobs it started, then upkeep flushes the last acks.

use std::future::Future;

use apalis_core::{
    error::BoxDynError,
    task::data::Data,
    worker::{builder::WorkerBuilder, context::WorkerContext},
};

use super::{Consumer, Job, JobReport, StreamBackend};

/// Spawns an apalis worker named `name` running `handler` for each job of `consumer`.
/// The returned task ends after the consumer's shutdown token is cancelled and every
/// started job is settled. Entries fetched but not started stay pending under this
/// consumer and are taken over by live consumers after the lease.
pub fn run_jobs<J, F, Fut>(
    name: &str,
    consumer: Consumer,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    J: Job,
    F: Fn(J) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    run_reported_jobs(name, consumer, move |job: J, _| handler(job))
}

/// [`run_jobs`] with a handler that also gets its job's [`JobReport`], to name the chat
/// and the outcome on the job's log line.
pub fn run_reported_jobs<J, F, Fut>(
    name: &str,
    mut consumer: Consumer,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    J: Job,
    F: Fn(J, JobReport) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let (intake, upkeep) = consumer.take_tasks();
    let backend = StreamBackend::<J>::new(consumer);
    let context = WorkerContext::new(name);
    let worker = WorkerBuilder::new(context.clone())
        .backend(backend)
        .build(move |job: J, report: Data<JobReport>| handler(job, (*report).clone()));
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
