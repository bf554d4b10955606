//! `memory`: resident memory (VmRSS in /proc/PID/status) of an `agentq worker` process
//! holding 1,000 turns in flight (a local fake provider holds every answer), and of an
//! `agentq api` process holding 5,000 open SSE streams (on 5,000 chats).

use std::time::Duration;

use agentq_core::config::{self, ApiConfig};
use futures::StreamExt;

use crate::{
    common::{Ctx, Row, Stack, create_chat, http, rss_mib, wait_until},
    fake_provider::{Behavior, FakeProvider},
    procs::Agentq,
};

pub const ABOUT: &str = "VmRSS of an `agentq worker` process with 1,000 turns in flight \
(--concurrency 1000, a local fake provider holding every answer), and of an `agentq api` \
process with 5,000 open SSE streams on 5,000 chats. Target: <= 150 MB; <= 300 MB.";

const IN_FLIGHT: usize = 1_000;
const STREAMS: usize = 5_000;

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![worker_rss(&ctx).await?];
    ctx.cleanup().await;
    rows.push(api_rss(&ctx).await?);
    Ok(rows)
}

async fn worker_rss(ctx: &Ctx) -> anyhow::Result<Row> {
    let fake = FakeProvider::start(Behavior::Stall).await?;
    let db = ctx.fresh_db("memworker", 40).await?;
    let prefix = ctx.prefix("memw");
    let stack = Stack::new(ctx, &db, &prefix, Some(config::defaults::<ApiConfig>())).await?;
    let worker = Agentq::openai_worker(
        ctx,
        &db,
        &prefix,
        &fake.base_url,
        &["--concurrency", "1000"],
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib(worker.pid())?;
    let client = http();
    let created = futures::stream::iter(0..IN_FLIGHT)
        .map(|i| {
            let (client, base, token) =
                (client.clone(), stack.base().to_owned(), stack.token.clone());
            async move { create_chat(&client, &base, &token, &format!("in flight {i}")).await }
        })
        .buffer_unordered(64)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    let fake_ref = &fake;
    let held = wait_until(
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async move { fake_ref.held() >= IN_FLIGHT },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = rss_mib(worker.pid())?;
    let in_flight = fake.held();
    fake.release();
    drop(worker);
    Ok(Row::new(
        "memory",
        "worker process RSS with 1,000 turns in flight",
        format!(
            "{busy:.0} MiB with {in_flight} in flight ({idle:.0} MiB idle; {created} chats created){}",
            if held {
                ""
            } else {
                "; not all reached the provider within 60 s"
            }
        ),
        "<= 150 MB",
        Some(held && busy * 1.048_576 <= 150.0),
    ))
}

async fn api_rss(ctx: &Ctx) -> anyhow::Result<Row> {
    let db = ctx.fresh_db("memapi", 20).await?;
    let prefix = ctx.prefix("mema");
    let stack = Stack::new(ctx, &db, &prefix, None).await?;
    let api = Agentq::api(
        ctx,
        &db,
        &prefix,
        &["--sse-max-streams-per-user", "0", "--sse-max-streams", "0"],
    )
    .await?;
    let base = api.base.clone().unwrap_or_default();
    let idle = rss_mib(api.pid())?;
    let client = http();
    // No worker runs: the chats stay queued and their streams idle.
    let chats: Vec<uuid::Uuid> = futures::stream::iter(0..STREAMS)
        .map(|i| {
            let (client, base, token) = (client.clone(), base.clone(), stack.token.clone());
            async move { create_chat(&client, &base, &token, &format!("stream {i}")).await }
        })
        .buffer_unordered(64)
        .filter_map(|r| futures::future::ready(r.ok()))
        .collect()
        .await;
    let streams: Vec<reqwest::Response> = futures::stream::iter(chats)
        .map(|id| {
            let (client, base, token) = (client.clone(), base.clone(), stack.token.clone());
            async move {
                client
                    .get(format!("{base}/api/v1/chats/{id}/stream"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(600))
                    .send()
                    .await
            }
        })
        .buffer_unordered(100)
        .filter_map(|r| futures::future::ready(r.ok().filter(|r| r.status() == 200)))
        .collect()
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = rss_mib(api.pid())?;
    let open = streams.len();
    drop(streams);
    drop(api);
    Ok(Row::new(
        "memory",
        "API process RSS with 5,000 open SSE streams",
        format!("{busy:.0} MiB with {open} streams open ({idle:.0} MiB idle)"),
        "<= 300 MB",
        Some(open >= STREAMS && busy * 1.048_576 <= 300.0),
    ))
}
