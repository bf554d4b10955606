//! `queue`: agentq's own queue, as one worker process runs it. A burst is enqueued with the
//! producer's pipelined `XADD`s, then drained by one consumer with the worker's
//! concurrency and a no-op handler; the drain stops when every job ran or at the time bound.
//! The ceiling and peer scenarios do exactly this work (same payload, burst, concurrency,
//! handler and stop rule), so their figures divide.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use agentq_core::{
    config::{self, QueueConfig},
    queue::{Consumer, ConsumerOptions, Producer, QueueKeys, QueueName, RunTurn, run_jobs},
    redis_conn::RedisClient,
    shutdown::CancellationToken,
};
use uuid::Uuid;

use super::{
    ceiling::{RUNS, median},
    keys,
};
use crate::common::{Ctx, Row, n};

pub const ABOUT: &str = "agentq's queue: enqueue a burst of 100,000 no-op jobs (pipelined \
XADD, 10,000 per round trip), then drain it with one consumer (concurrency 1,024, the \
default fetch batch); also a 5,000 burst, the size apalis-redis can drain. Target: drain >= \
2/3 of the ceiling scenario and >= 1.2x every peer.";

/// The burst every queue scenario drains.
pub const BURST: usize = 100_000;
/// A burst apalis-redis can drain (it wedges above ~8,000 due jobs).
pub const SMALL_BURST: usize = 5_000;
/// Jobs held at once by the draining consumer.
pub const CONCURRENCY: usize = 1024;
/// Jobs per enqueue round trip.
pub const ENQUEUE_CHUNK: usize = 10_000;

/// The time bound of one drain.
pub fn drain_limit(ctx: &Ctx) -> Duration {
    ctx.pick(Duration::from_secs(20), Duration::from_secs(60))
}

/// The jobs of a burst: what a turn's nudge carries.
pub fn jobs(count: usize) -> Vec<RunTurn> {
    (0..count)
        .map(|_| RunTurn {
            turn_id: Uuid::new_v4(),
        })
        .collect()
}

/// The options of a worker's consumer on `prefix`'s turns queue.
pub fn consumer_options(prefix: &str, name: &str, concurrency: usize) -> ConsumerOptions {
    let queue: QueueConfig = config::defaults();
    ConsumerOptions {
        keys: QueueKeys::new(prefix, QueueName::Turns),
        consumer: name.to_owned(),
        concurrency,
        fetch_batch: queue.fetch_batch,
        lease: Duration::from_secs(queue.lease_secs),
        max_deliveries: queue.max_deliveries,
        max_attempts: queue.max_attempts,
        block: Duration::from_millis(500),
        max_len: 0,
    }
}

/// What one burst measured.
pub struct Burst {
    pub enqueue_rate: f64,
    pub drain_rate: f64,
    pub drained: usize,
}

/// Enqueues `count` jobs under `prefix`, then drains them within `limit`.
pub async fn burst(
    ctx: &Ctx,
    prefix: &str,
    count: usize,
    limit: Duration,
) -> anyhow::Result<Burst> {
    let client = RedisClient::open(ctx.redis_url())?;
    let producer = Producer::new(client.shared()?, prefix, 0);
    let jobs = jobs(count);
    let started = Instant::now();
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        producer.enqueue_many(chunk).await?;
    }
    let enqueue_rate = count as f64 / started.elapsed().as_secs_f64();

    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let consumer = Consumer::start(
        client.shared()?,
        client.blocking()?,
        consumer_options(prefix, "bench-burst", CONCURRENCY),
        stop.clone(),
    );
    let counter = done.clone();
    let started = Instant::now();
    let runner = run_jobs("bench-burst", consumer, move |_job: RunTurn| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok(()) }
    });
    let deadline = started + limit;
    while done.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let drained = done.load(Ordering::Relaxed);
    let drain_rate = drained as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), runner).await;
    Ok(Burst {
        enqueue_rate,
        drain_rate,
        drained,
    })
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let limit = drain_limit(&ctx);
    let (mut enqueues, mut drains, mut drained) = (Vec::new(), Vec::new(), BURST);
    for _ in 0..RUNS {
        let big = burst(&ctx, &ctx.prefix("q"), BURST, limit).await?;
        enqueues.push(big.enqueue_rate);
        drains.push(big.drain_rate);
        drained = drained.min(big.drained);
    }
    let (enqueue_rate, drain_rate) = (median(enqueues), median(drains.clone()));
    let small = burst(&ctx, &ctx.prefix("q"), SMALL_BURST, limit).await?;
    ctx.record(keys::QUEUE_ENQUEUE, enqueue_rate);
    let mut rows = vec![Row::new(
        "queue",
        "enqueue 100,000 jobs, pipelined (10,000 per round trip; median of 3)",
        format!("{} jobs/s", n(enqueue_rate)),
        "-",
        None,
    )];
    if drained == BURST {
        ctx.record(keys::QUEUE_DRAIN, drain_rate);
    }
    rows.push(Row::new(
        "queue",
        "drain 100,000 no-op jobs (1 consumer, concurrency 1,024; median of 3)",
        if drained == BURST {
            format!(
                "{} jobs/s (runs: {})",
                n(drain_rate),
                drains.iter().map(|d| n(*d)).collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("only {drained} of {BURST} within {} s", limit.as_secs())
        },
        ">= 2/3 of the ceiling; >= 1.2× every peer (ratios below)",
        (drained != BURST).then_some(false),
    ));
    if small.drained == SMALL_BURST {
        ctx.record(keys::QUEUE_DRAIN_SMALL, small.drain_rate);
    }
    rows.push(Row::new(
        "queue",
        "drain 5,000 no-op jobs (the burst apalis-redis can drain)",
        format!(
            "{} jobs/s ({} of {SMALL_BURST})",
            n(small.drain_rate),
            small.drained
        ),
        "-",
        None,
    ));
    Ok(rows)
}
