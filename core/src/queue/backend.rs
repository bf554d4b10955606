//! The apalis 1.0 backend over [`Consumer`]: deliveries become apalis tasks, and the
//! [`AckLayer`] settles each entry by the handler's result and writes its log line
//! ([`super::job_log`]).

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use apalis_core::{
    backend::{Backend, BackendConfig, finalize::Ephemeral},
    error::BoxDynError,
    task::{
        Task,
        builder::TaskBuilder,
        task_id::{RandomId, TaskId},
    },
    worker::context::WorkerContext,
};
use tokio::sync::mpsc;

use super::{
    Job, JobReport, JobSubject,
    consumer::{Acker, Consumer, Delivery, Slot},
    job_log::{FinishedJob, Reported},
};

/// Errors the backend reports to apalis: none (decoding failures are dead-lettered and
/// Redis failures retried inside the consumer), so the type has no value.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {}

/// What the ack layer needs to settle an entry, and what the handler tells its log line.
/// It rides in the task's extensions as the one [`JobReport`] (an `Arc`), which the handler
/// and the ack layer share.
#[derive(Debug)]
pub(super) struct Ticket {
    entry_id: String,
    payload: String,
    attempt: u32,
    subject: JobSubject,
    /// What the handler reported ([`JobReport::chat`], [`JobReport::outcome`]).
    reported: Mutex<Reported>,
    // Released (freeing a fetch slot) when the last `Arc` drops, i.e. when the job is done.
    _slot: Slot,
}

impl Ticket {
    /// What the handler reported so far, to read or to change.
    pub(super) fn reported(&self) -> std::sync::MutexGuard<'_, Reported> {
        self.reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An apalis backend reading one queue's [`Consumer`].
pub struct StreamBackend<J> {
    deliveries: mpsc::UnboundedReceiver<Vec<Delivery>>,
    /// The rest of the last batch received.
    pending: std::vec::IntoIter<Delivery>,
    acker: Acker,
    _job: PhantomData<J>,
}

impl<J: Job> StreamBackend<J> {
    /// Wraps a started consumer of `J::QUEUE`.
    pub fn new(consumer: Consumer) -> Self {
        Self {
            deliveries: consumer.deliveries,
            pending: Vec::new().into_iter(),
            acker: consumer.acker,
            _job: PhantomData,
        }
    }
}

impl<J: Job> Backend for StreamBackend<J> {
    type Task = Task<J>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        loop {
            let Some(delivery) = self.pending.next() else {
                let Some(batch) = std::task::ready!(self.deliveries.poll_recv(cx)) else {
                    // The fetch loops stopped (shutdown): the worker drains and exits.
                    return Poll::Ready(None);
                };
                self.pending = batch.into_iter();
                continue;
            };
            match serde_json::from_str::<J>(&delivery.payload) {
                Ok(job) => {
                    let report = JobReport(Arc::new(Ticket {
                        entry_id: delivery.entry_id.clone(),
                        payload: delivery.payload,
                        attempt: delivery.attempt,
                        subject: job.subject(),
                        reported: Mutex::default(),
                        _slot: delivery.slot,
                    }));
                    let task = TaskBuilder::new(job)
                        .task_id(TaskId::from_string(delivery.entry_id))
                        .attempt(delivery.attempt as usize)
                        .data(report)
                        .build();
                    return Poll::Ready(Some(Ok(task)));
                }
                Err(e) => self.acker.dead(
                    &delivery.entry_id,
                    &delivery.payload,
                    delivery.attempt,
                    &format!(
                        "payload does not decode as a {} job: {e}",
                        J::QUEUE.as_str()
                    ),
                ),
            }
        }
    }

    fn poll_close(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

impl<J: Job> BackendConfig for StreamBackend<J> {
    type Args = J;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        AckLayer {
            acker: self.acker.clone(),
            queue: J::QUEUE.as_str(),
        }
    }
}

/// How long ago an entry was added: its id starts with the unix milliseconds of the XADD.
fn waited_since(entry_id: &str) -> std::time::Duration {
    let added_ms: u64 = entry_id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    std::time::Duration::from_millis(now_ms.saturating_sub(added_ms))
}

/// Settles each entry after its handler returns (ack on success, retry with backoff or
/// dead-letter on error) and writes the job's log line.
#[derive(Clone, Debug)]
pub struct AckLayer {
    acker: Acker,
    queue: &'static str,
}

impl<S> tower_layer::Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            acker: self.acker.clone(),
            queue: self.queue,
        }
    }
}

/// The service [`AckLayer`] wraps around a handler.
#[derive(Clone, Debug)]
pub struct AckService<S> {
    inner: S,
    acker: Acker,
    queue: &'static str,
}

impl<S, J> tower_service::Service<Task<J>> for AckService<S>
where
    S: tower_service::Service<Task<J>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxDynError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<J>) -> Self::Future {
        let ticket = task.ctx().data().get::<JobReport>().map(|r| r.0.clone());
        let acker = self.acker.clone();
        let queue = self.queue;
        if let Some(t) = &ticket {
            crate::metrics::job_started(queue, waited_since(&t.entry_id));
        }
        let started = std::time::Instant::now();
        let fut = self.inner.call(task);
        Box::pin(async move {
            let result = fut.await.map_err(Into::into);
            if let Some(t) = ticket {
                let duration = started.elapsed();
                let finished = FinishedJob {
                    queue,
                    entry_id: &t.entry_id,
                    attempt: t.attempt,
                    subject: t.subject,
                    report: *t.reported(),
                    duration,
                };
                let outcome = match &result {
                    Ok(_) => {
                        acker.done(&t.entry_id);
                        finished.log(None);
                        "ok"
                    }
                    Err(e) => {
                        let decision =
                            acker.failed(&t.entry_id, &t.payload, t.attempt, &e.to_string());
                        finished.log(Some((decision, e)));
                        decision
                    }
                };
                crate::metrics::job_finished(queue, outcome, duration);
            }
            result
        })
    }
}
