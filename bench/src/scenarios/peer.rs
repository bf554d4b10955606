//! `peer`: apalis-redis 1.0 doing exactly the work of the `queue` scenario: the same
//! payload (a `RunTurn` as JSON), the same bursts (100,000, and 5,000, which it can
//! drain), the same concurrency (1,024 jobs at once), a no-op handler and the same stop
//! rule (every job ran, or the time bound). Once with its defaults, once with the best
//! tuning its documentation offers. It is known to wedge on a backlog above ~8,000 due
//! jobs (its `fetch_next.lua` unpacks every due id: "too many results to unpack"), so a run
//! is bounded in time and reports what it drained; its keys live under the scenario's
//! prefix and are deleted after.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use agentq_core::queue::RunTurn;
use apalis_core::{
    backend::{TaskSink, ext::BackendExt},
    worker::{builder::WorkerBuilder, context::WorkerContext},
};
use apalis_redis::{Config, RedisStorage};

use super::{keys, queue};
use crate::common::{Ctx, Row, n};

pub const ABOUT: &str = "apalis-redis 1.0 on the work of `queue` (same payload, 100,000 and \
5,000 bursts pushed 10,000 per push_bulk, concurrency 1,024, no-op handler, same stop rule), \
with its defaults and tuned (batch 200 like agentq's fetch, lock_tasks, emit_events and \
persist_results off, 1 ms poll interval); each drain bounded (15 s quick, 60 s full) and \
reported as \"wedged after N drained of M\" when it stops making progress. Gives agentq / \
peer.";

/// What one apalis-redis run did.
struct PeerRun {
    enqueue_rate: f64,
    pushed: usize,
    drained: usize,
    drain_rate: f64,
    /// The worker stopped with an error, or made no progress for the stall bound.
    wedged: Option<String>,
}

/// No progress for this long ends a run as wedged.
const STALL: Duration = Duration::from_secs(5);

/// Its defaults, or the best tuning its documentation offers for short jobs: a fetch batch
/// the size of agentq's, no per-job lock (an `LREM` over the ready list per job), no
/// pubsub events, no stored results. (The poll interval, set in [`peer_run`], matters only
/// once the queue is empty.)
fn config(namespace: &str, tuned: bool) -> Config {
    let config = Config::default().queue(namespace);
    if tuned {
        config
            .batch_size(200)
            .lock_tasks(false)
            .emit_events(false)
            .persist_results(false)
    } else {
        config
    }
}

/// Runs `$backend` with the scenario's concurrency and a no-op handler counting into
/// `$done`; gives the task running the worker and its context. A macro because the tuned
/// backend (wrapped in `poll_with_interval`) is another type.
macro_rules! spawn_worker {
    ($backend:expr, $done:expr, $name:expr) => {{
        let counter = $done.clone();
        let context = WorkerContext::new($name);
        let worker = WorkerBuilder::new(context.clone())
            .backend($backend)
            .layer(tower::limit::ConcurrencyLimitLayer::new(queue::CONCURRENCY))
            .build(move |_job: RunTurn| {
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok::<(), apalis_core::error::BoxDynError>(()) }
            });
        let running: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>> =
            Box::pin(async move { worker.run().await.map_err(|e| e.to_string()) });
        (running, context)
    }};
}

async fn peer_run(
    ctx: &Ctx,
    tuned: bool,
    count: usize,
    limit: Duration,
) -> anyhow::Result<PeerRun> {
    let prefix = ctx.prefix("peer");
    let namespace = format!("{prefix}:apalis");
    let conn = apalis_redis::connect(ctx.redis_url()).await?;
    let mut storage = RedisStorage::<RunTurn>::new(conn).with_config(config(&namespace, tuned));

    let jobs = queue::jobs(count);
    let started = Instant::now();
    let mut pushed = 0;
    for chunk in jobs.chunks(queue::ENQUEUE_CHUNK) {
        if started.elapsed() > limit {
            break;
        }
        storage
            .push_bulk(chunk.to_vec())
            .await
            .map_err(|e| anyhow::anyhow!("apalis-redis push_bulk: {e:?}"))?;
        pushed += chunk.len();
    }
    let enqueue_rate = pushed as f64 / started.elapsed().as_secs_f64();

    let done = Arc::new(AtomicUsize::new(0));
    let name = format!("bench-peer-{prefix}");
    let started = Instant::now();
    let (mut running, context) = if tuned {
        spawn_worker!(
            storage.poll_with_interval(Duration::from_millis(1)),
            done,
            name.as_str()
        )
    } else {
        spawn_worker!(storage, done, name.as_str())
    };
    let mut wedged = None;
    let mut finished = false;
    let mut last = (0, Instant::now());
    loop {
        let drained = done.load(Ordering::Relaxed);
        if drained >= pushed || started.elapsed() > limit {
            break;
        }
        if drained != last.0 {
            last = (drained, Instant::now());
        } else if last.1.elapsed() > STALL && started.elapsed() > STALL {
            wedged = Some(format!("no job ran for {} s", STALL.as_secs()));
            break;
        }
        tokio::select! {
            ended = &mut running => {
                finished = true;
                wedged = Some(match ended {
                    Ok(()) => "its worker stopped".to_owned(),
                    Err(e) => format!("its worker failed: {e}"),
                });
                break;
            }
            _ = tokio::time::sleep(Duration::from_micros(500)) => {}
        }
    }
    let drained = done.load(Ordering::Relaxed);
    let drain_rate = drained as f64 / started.elapsed().as_secs_f64();
    let _ = context.stop();
    // Dropped after 5 s if it has not stopped by then.
    if !finished {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut running).await;
    }
    drop(running);
    Ok(PeerRun {
        enqueue_rate,
        pushed,
        drained,
        drain_rate,
        wedged,
    })
}

/// apalis' worker future is not `Send` as the compiler sees it (a higher-ranked lifetime in
/// its error conversion), so the peer runs on its own thread and runtime (two worker
/// threads, as the main one has on this machine).
pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(run_here(ctx)));
        let _ = tx.send(result);
    });
    rx.await?
}

async fn run_here(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let limit = ctx.pick(Duration::from_secs(15), Duration::from_secs(60));
    let mut rows = Vec::new();
    for tuned in [false, true] {
        let label = if tuned { "tuned" } else { "defaults" };
        for count in [queue::BURST, queue::SMALL_BURST] {
            let run = peer_run(&ctx, tuned, count, limit).await?;
            let complete = run.drained == count && run.pushed == count;
            let measured = if complete {
                format!("{} jobs/s", n(run.drain_rate))
            } else {
                match &run.wedged {
                    Some(why) => format!(
                        "wedged after {} drained of {} ({why})",
                        n(run.drained as f64),
                        n(run.pushed as f64)
                    ),
                    None => format!(
                        "only {} drained of {} within {} s",
                        n(run.drained as f64),
                        n(run.pushed as f64),
                        limit.as_secs()
                    ),
                }
            };
            // A burst it cannot drain counts as 0 jobs/s against agentq.
            let rate = if complete { run.drain_rate } else { 0.0 };
            match (tuned, count == queue::BURST) {
                (false, true) => ctx.record(keys::PEER_DEFAULT_BIG, rate),
                (true, true) => {
                    ctx.record(keys::PEER_TUNED_BIG, rate);
                    ctx.record(keys::PEER_ENQUEUE, run.enqueue_rate);
                }
                (false, false) => ctx.record(keys::PEER_DEFAULT_SMALL, rate),
                (true, false) => ctx.record(keys::PEER_TUNED_SMALL, rate),
            }
            rows.push(Row::new(
                "peer",
                format!(
                    "apalis-redis 1.0 {label}: drain {} no-op jobs (concurrency 1,024)",
                    n(count as f64)
                ),
                format!("{measured}; pushed at {} jobs/s", n(run.enqueue_rate)),
                "agentq >= 1.2× (ratios below)",
                None,
            ));
            ctx.cleanup().await;
        }
    }
    Ok(rows)
}
