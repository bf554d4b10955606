//! `pickup`: how soon an idle worker starts a job. One job at a time is enqueued to a
//! consumer blocked in `XREADGROUP`, and the time from just before the `XADD` to the
//! handler's start is one sample.
//!
//! Its floor, measured the same way in the same run: the same `XADD` to a bare
//! `XREADGROUP ... BLOCK` on a dedicated connection (agentq's connection settings, no queue
//! logic, no handler), from just before the `XADD` to the read's return. What agentq adds
//! on top is the difference.

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
to a consumer blocked in XREADGROUP: p50/p99 over 500 samples (quick) or 2,000 (full); \
beside it its floor, the same XADD to a bare blocked XREADGROUP on its own connection (no \
queue logic), and what agentq adds. Target: p99 <= 0.5 ms.";

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
    let (p50, p99, text) = p50_p99(&mut all);
    let mut bare = floor(&ctx, samples).await?;
    let (floor_p50, floor_p99, floor_text) = p50_p99(&mut bare);
    Ok(vec![
        Row::new(
            "pickup",
            "enqueue -> idle worker starts the job",
            text,
            "p99 <= 0.5 ms",
            Some(ms(p99) <= 0.5),
        ),
        Row::new(
            "pickup",
            "floor: XADD -> a bare XREADGROUP BLOCK on its own connection returns (no queue logic)",
            floor_text,
            "-",
            None,
        ),
        Row::new(
            "ratio",
            "agentq pickup - floor",
            format!(
                "p50 {:+.2} ms, p99 {:+.2} ms",
                ms(p50) - ms(floor_p50),
                ms(p99) - ms(floor_p99)
            ),
            "-",
            None,
        ),
    ])
}

/// `samples` pickups by a bare reader: from just before an `XADD` of a job's payload to the
/// return of the `XREADGROUP ... BLOCK` that was waiting for it, one at a time, 3 ms apart.
async fn floor(ctx: &Ctx, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let client = RedisClient::open(ctx.redis_url())?;
    let stream = format!("{}:floor", ctx.prefix("pf"));
    let mut writer = client.shared()?;
    let mut reader = client
        .reader("bench-pickup-floor", Duration::from_secs(1))
        .await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut writer)
        .await?;
    let (read_tx, mut read_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let read_loop = {
        let stream = stream.clone();
        tokio::spawn(async move {
            loop {
                let read: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg("g")
                        .arg("c")
                        .arg("COUNT")
                        .arg(1)
                        .arg("BLOCK")
                        .arg(500)
                        .arg("STREAMS")
                        .arg(&stream)
                        .arg(">")
                        .query_async(&mut reader)
                        .await;
                let at = Instant::now();
                match read {
                    Ok(Some(reply)) if !reply.keys.is_empty() => {
                        if read_tx.send(at).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
    };
    let payload = serde_json::to_string(&RunTurn {
        turn_id: Uuid::new_v4(),
    })?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let sent = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("job")
            .arg(&payload)
            .arg("attempt")
            .arg(0)
            .query_async(&mut writer)
            .await?;
        let read = tokio::time::timeout(Duration::from_secs(5), read_rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the bare reader read nothing in 5 s"))?
            .ok_or_else(|| anyhow::anyhow!("the bare reader stopped"))?;
        took.push(read.saturating_duration_since(sent));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    read_loop.abort();
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut writer)
        .await?;
    Ok(took)
}
