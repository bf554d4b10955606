//! `ceiling`: the Redis commands one job costs in agentq's queue (core/src/queue/), issued
//! the way agentq pipelines them and with no queue logic at all, so "agentq / ceiling" says
//! how much of Redis' speed on this machine the queue keeps. Per job agentq issues:
//!
//! - enqueue: one `XADD <stream> * job <json> attempt 0`, 10,000 per pipelined round trip
//!   (`Producer::enqueue_many`);
//! - fetch: its share of one `XREADGROUP GROUP g c COUNT <fetch batch> BLOCK .. STREAMS s >`
//!   on the consumer's own connection (`fetch_loop`);
//! - settle: its id in one `XACK` and one `XDEL` of up to 1,024 ids, pipelined together on
//!   the shared connection (`flush_acks`), concurrently with the next reads.
//!
//! Heartbeats (`XCLAIM JUSTID` every third of the 30 s lease), `XAUTOCLAIM` and the
//! delayed-retry script run on timers, not per job, and are left out. Here a reader loop
//! and an acker loop do exactly those per-job commands; a job counts when its read returns
//! (as a no-op handler runs in the queue scenario), same burst, same stop rule.
//!
//! The machine's speed drifts by more than the margins measured here (its own ceiling runs
//! span ±20 % within a minute), so each ceiling burst is paired with one of agentq's queue
//! bursts run right beside it, in alternating order (with an odd number of pairs the
//! ceiling goes first once more), and "agentq / ceiling" is the median of the pairs' ratios
//! rather than one median divided by another taken a minute apart.

use std::time::{Duration, Instant};

use agentq_core::{
    config::{self, QueueConfig},
    queue::{QueueKeys, QueueName},
};
use redis::streams::StreamReadReply;
use tokio::sync::mpsc;

use super::{keys, queue};
use crate::common::{Ctx, Row, n};

pub const ABOUT: &str = "the Redis commands one agentq job costs, pipelined as agentq \
pipelines them, with no queue logic: XADD (10,000 per pipeline), XREADGROUP COUNT <fetch \
batch> on its own connection, XACK + XDEL of up to 1,024 ids per pipeline on another, \
concurrently; same 100,000 burst and stop rule as `queue`. Each of its 7 bursts is paired \
with one of agentq's queue bursts run beside it, in alternating order: agentq / ceiling is \
the median of the pairs' ratios.";

/// Runs of each measure; the median is reported (the machine is noisy).
pub const RUNS: usize = 3;

/// Ceiling bursts, each paired with an agentq queue burst run beside it.
pub const PAIRS: usize = 7;

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let fetch_batch = config::defaults::<QueueConfig>().fetch_batch;
    let limit = queue::drain_limit(&ctx);
    let (mut enqueues, mut drains, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ceiling_complete, mut agentq_complete) = (true, true);
    for pair in 0..PAIRS {
        // Alternate which of the two goes first, so neither always gets the warmer machine.
        let agentq_first = pair % 2 == 1;
        let ((enqueue_rate, drain_rate, drained), agentq) = if agentq_first {
            let agentq = queue::burst(&ctx, &ctx.prefix("q"), queue::BURST, limit).await?;
            (once(&ctx, fetch_batch).await?, agentq)
        } else {
            let ceiling = once(&ctx, fetch_batch).await?;
            let agentq = queue::burst(&ctx, &ctx.prefix("q"), queue::BURST, limit).await?;
            (ceiling, agentq)
        };
        enqueues.push(enqueue_rate);
        drains.push(drain_rate);
        ceiling_complete &= drained == queue::BURST;
        // A burst agentq did not drain within the bound counts at the rate it reached, which
        // is lower: its pair shows as a miss rather than vanishing.
        agentq_complete &= agentq.drained == queue::BURST;
        if drain_rate > 0.0 {
            ratios.push((agentq.drain_rate / drain_rate, agentq.drain_rate));
        }
    }
    let (enqueue_rate, drain_rate) = (median(enqueues), median(drains.clone()));
    let paired = median(ratios.iter().map(|(r, _)| *r).collect());
    ctx.record(keys::CEILING_ENQUEUE, enqueue_rate);
    // A ceiling burst cut off by the time bound would make agentq look closer to it than it
    // is: no ratio then.
    if ceiling_complete {
        ctx.record(keys::CEILING_DRAIN, drain_rate);
        ctx.record(keys::CEILING_PAIRED, paired);
    }
    Ok(vec![
        Row::new(
            "ceiling",
            format!("XADD 100,000 jobs, 10,000 per pipeline (median of {PAIRS})"),
            format!("{} jobs/s", n(enqueue_rate)),
            "-",
            None,
        ),
        Row::new(
            "ceiling",
            format!(
                "drain 100,000: XREADGROUP COUNT {fetch_batch} + XACK/XDEL per 1,024, no queue logic (median of {PAIRS})"
            ),
            format!(
                "{} jobs/s (runs: {}){}",
                n(drain_rate),
                drains.iter().map(|d| n(*d)).collect::<Vec<_>>().join(", "),
                if ceiling_complete {
                    ""
                } else {
                    "; a ceiling run did not drain everything within the bound"
                }
            ),
            "-",
            None,
        ),
        Row::new(
            "ceiling",
            format!(
                "agentq's queue drain (as `queue`) run beside each ceiling drain, in alternating order ({PAIRS} pairs)"
            ),
            format!(
                "agentq / ceiling per pair: {}; agentq {} jobs/s (median){}",
                ratios
                    .iter()
                    .map(|(r, _)| format!("{r:.2}×"))
                    .collect::<Vec<_>>()
                    .join(", "),
                n(median(ratios.iter().map(|(_, a)| *a).collect())),
                match (ceiling_complete, agentq_complete) {
                    (false, _) => "; no ratio recorded: a ceiling run was cut off by the bound",
                    (true, false) =>
                        "; agentq did not drain a burst within the bound (counted at its rate)",
                    (true, true) => "",
                }
            ),
            "-",
            None,
        ),
    ])
}

/// One burst: (enqueue jobs/s, drain jobs/s, jobs drained).
async fn once(ctx: &Ctx, fetch_batch: usize) -> anyhow::Result<(f64, f64, usize)> {
    let prefix = ctx.prefix("c");
    let qkeys = QueueKeys::new(&prefix, QueueName::Turns);
    let client = redis::Client::open(ctx.redis_url())?;
    let mut shared = client.get_multiplexed_async_connection().await?;
    let mut blocking = client.get_multiplexed_async_connection().await?;

    let jobs = queue::jobs(queue::BURST);
    let started = Instant::now();
    for chunk in jobs.chunks(queue::ENQUEUE_CHUNK) {
        let mut pipe = redis::pipe();
        for job in chunk {
            let payload = serde_json::to_string(job)?;
            pipe.cmd("XADD")
                .arg(&qkeys.stream)
                .arg("*")
                .arg("job")
                .arg(payload)
                .arg("attempt")
                .arg(0);
        }
        let _: Vec<String> = pipe.query_async(&mut shared).await?;
    }
    let enqueue_rate = queue::BURST as f64 / started.elapsed().as_secs_f64();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&qkeys.stream)
        .arg(&qkeys.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut shared)
        .await?;

    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let acker = {
        let (stream, group) = (qkeys.stream.clone(), qkeys.group.clone());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(1024);
            while rx.recv_many(&mut batch, 1024).await > 0 {
                let mut pipe = redis::pipe();
                pipe.cmd("XACK")
                    .arg(&stream)
                    .arg(&group)
                    .arg(&batch)
                    .ignore();
                pipe.cmd("XDEL").arg(&stream).arg(&batch).ignore();
                let _: Result<(), _> = pipe.query_async(&mut shared).await;
                batch.clear();
            }
        })
    };
    let limit = queue::drain_limit(ctx);
    let started = Instant::now();
    let mut drained = 0;
    while drained < queue::BURST && started.elapsed() < limit {
        let reply: StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&qkeys.group)
            .arg("bench-ceiling")
            .arg("COUNT")
            .arg(fetch_batch)
            .arg("BLOCK")
            .arg(500)
            .arg("STREAMS")
            .arg(&qkeys.stream)
            .arg(">")
            .query_async(&mut blocking)
            .await?;
        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            drained += 1;
            let _ = tx.send(entry.id);
        }
    }
    let drain_rate = drained as f64 / started.elapsed().as_secs_f64();
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), acker).await;

    Ok((enqueue_rate, drain_rate, drained))
}
