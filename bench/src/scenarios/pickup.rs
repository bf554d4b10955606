//! `pickup`: how soon an idle worker starts a job. One job at a time is enqueued to a
//! consumer blocked in `XREADGROUP`, and the time from just before the `XADD` to the
//! handler's start is one sample.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agentq_core::{
    queue::{Consumer, Producer, RunTurn, run_jobs},
    redis_conn::RedisClient,
    shutdown::CancellationToken,
};
use uuid::Uuid;

use super::queue::consumer_options;
use crate::common::{Ctx, Row, ms, p50_p99};

pub const ABOUT: &str = "enqueue -> handler start at idle, one job at a time (3 ms apart) \
to a consumer blocked in XREADGROUP: p50/p99 over 500 samples (quick) or 2,000 (full). \
Target: p99 <= 0.5 ms.";

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let samples = ctx.pick(500, 2_000);
    let client = RedisClient::open(ctx.redis_url())?;
    let prefix = ctx.prefix("p");
    let producer = Producer::new(client.shared()?, prefix.as_str(), 0);
    let sent: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let stop = CancellationToken::new();
    let consumer = Consumer::start(
        client.shared()?,
        client.blocking()?,
        consumer_options(&prefix, "bench-pickup", 64),
        stop.clone(),
    );
    let (s, l) = (sent.clone(), latencies.clone());
    let runner = run_jobs("bench-pickup", consumer, move |job: RunTurn| {
        let started = s.lock().unwrap().get(&job.turn_id).copied();
        if let Some(at) = started {
            l.lock().unwrap().push(at.elapsed());
        }
        async { Ok(()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..samples {
        let id = Uuid::new_v4();
        sent.lock().unwrap().insert(id, Instant::now());
        producer.enqueue(&RunTurn { turn_id: id }).await?;
        // Idle between jobs, so each one finds the worker blocked in XREADGROUP.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), runner).await;
    let mut all = latencies.lock().unwrap().clone();
    anyhow::ensure!(!all.is_empty(), "no pickups measured");
    let (_, p99, text) = p50_p99(&mut all);
    Ok(vec![Row::new(
        "pickup",
        "enqueue -> idle worker starts the job",
        text,
        "p99 <= 0.5 ms",
        Some(ms(p99) <= 0.5),
    )])
}
