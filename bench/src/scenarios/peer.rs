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
use apalis_core::worker::{builder::WorkerBuilder, context::WorkerContext};
use apalis_redis::{RedisConfig, RedisStorage};

use super::{keys, queue};
use crate::common::{Ctx, Row, n};

pub const ABOUT: &str = "apalis-redis 1.0 on the work of `queue` (same payload, 100,000 and \
5,000 bursts pushed 10,000 per push_bulk, concurrency 1,024, no-op handler, same stop rule), \
with its defaults and tuned (1 ms poll interval, fetch batch 200 like agentq's); each drain \
bounded (15 s quick, 60 s full) and reported as \"wedged after N drained of M\" when it \
stops making progress. Gives agentq / peer.";

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

fn config(namespace: &str, tuned: bool) -> RedisConfig {
    let config = RedisConfig::new(namespace);
    if tuned {
        config
            .set_poll_interval(Duration::from_millis(1))
            .set_buffer_size(200)
    } else {
        config
    }
}

async fn peer_run(ctx: &Ctx, tuned: bool, count: usize, limit: Duration) -> anyhow::Result<PeerRun> {
    let prefix = ctx.prefix("peer");
    let namespace = format!("{prefix}:apalis");
    let conn = apalis_redis::connect(ctx.redis_url()).await?;
    let mut storage = RedisStorage::new_with_config(conn, config(&namespace, tuned));

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
            .map_err(|e| anyhow::anyhow!("apalis-redis push_bulk: {e}"))?;
        pushed += chunk.len();
    }
    let enqueue_rate = pushed as f64 / started.elapsed().as_secs_f64();

    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let context = WorkerContext::new(format!("bench-peer-{prefix}"));
    let worker = WorkerBuilder::new(context.clone())
        .backend(storage)
        .layer(tower::limit::ConcurrencyLimitLayer::new(queue::CONCURRENCY))
        .build(move |_job: RunTurn| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), apalis_core::error::BoxDynError>(()) }
        });
    let started = Instant::now();
    let mut running = tokio::spawn(async move { worker.run().await.map_err(|e| e.to_string()) });
    let mut wedged = None;
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
                wedged = Some(match ended {
                    Ok(Ok(())) => "its worker stopped".to_owned(),
                    Ok(Err(e)) => format!("its worker failed: {e}"),
                    Err(e) => format!("its worker panicked: {e}"),
                });
                break;
            }
            _ = tokio::time::sleep(Duration::from_micros(500)) => {}
        }
    }
    let drained = done.load(Ordering::Relaxed);
    let drain_rate = drained as f64 / started.elapsed().as_secs_f64();
    let _ = context.stop();
    if tokio::time::timeout(Duration::from_secs(5), &mut running).await.is_err() {
        running.abort();
    }
    Ok(PeerRun {
        enqueue_rate,
        pushed,
        drained,
        drain_rate,
        wedged,
    })
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
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
                format!("apalis-redis 1.0 {label}: drain {} no-op jobs (concurrency 1,024)", n(count as f64)),
                format!("{measured}; pushed at {} jobs/s", n(run.enqueue_rate)),
                "agentq >= 1.2× (ratios below)",
                None,
            ));
            ctx.cleanup().await;
        }
    }
    Ok(rows)
}
