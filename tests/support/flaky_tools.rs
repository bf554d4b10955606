//! A tools-queue consumer in the test process whose handler fails until told otherwise:
//! how the dead-letter tests (API, dashboard, Redis Cluster) get a job into the dead
//! letters and then see a retry run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use agentq_core::{
    config::{self, QueueConfig},
    queue::{Consumer, ConsumerOptions, QueueKeys, QueueName, RunToolCall, run_jobs},
    shutdown::CancellationToken,
};

use super::app::TestApp;

/// Starts consumer `flaky` on the app's tools queue (2 attempts, 3 deliveries): each run
/// counts in `runs` and fails with "the tool backend is down" until `healthy` is set. The
/// returned task ends once `stop` is cancelled and running jobs settled.
pub fn flaky_tools_consumer(
    app: &TestApp,
    healthy: Arc<AtomicBool>,
    runs: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let queue: QueueConfig = config::defaults();
    let consumer = Consumer::start(
        app.services.redis.shared().unwrap(),
        app.services.redis.blocking().unwrap(),
        ConsumerOptions {
            keys: QueueKeys::new(&app.prefix, QueueName::Tools),
            consumer: "flaky".into(),
            concurrency: 4,
            fetch_batch: queue.fetch_batch,
            lease: Duration::from_secs(5),
            max_deliveries: 3,
            max_attempts: 2,
            block: Duration::from_millis(200),
            max_len: 0,
        },
        stop,
    );
    run_jobs("flaky", consumer, move |_job: RunToolCall| {
        let (h, r) = (healthy.clone(), runs.clone());
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            if h.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("the tool backend is down".into())
            }
        }
    })
}
