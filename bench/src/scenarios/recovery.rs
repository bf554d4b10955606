//! `recovery`: a worker process is SIGKILLed while it holds 100 turns mid-answer; how long
//! until another worker has finished all of them, at the default settings (10 s turn
//! lease, recovery every 2 s by an `agentq scheduler` process). The provider is a local
//! fake that holds every answer until the kill, then answers at once.

use std::time::{Duration, Instant};

use agentq_core::config::{self, ApiConfig};

use crate::{
    common::{Ctx, Row, Stack, create_chat, http, wait_until},
    fake_provider::{Behavior, FakeProvider},
    procs::Agentq,
};

pub const ABOUT: &str = "SIGKILL an `agentq worker` process holding 100 turns mid-answer \
(a local fake provider holds the answers), with a second worker and an `agentq scheduler` \
running at default settings (10 s turn lease, recovery every 2 s): time from the kill until \
all 100 turns are answered. Target: <= 15 s.";

const TURNS: usize = 100;

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let fake = FakeProvider::start(Behavior::Stall).await?;
    let db = ctx.fresh_db("recovery", 20).await?;
    let prefix = ctx.prefix("recovery");
    let stack = Stack::new(&ctx, &db, &prefix, Some(config::defaults::<ApiConfig>())).await?;
    // Concurrency above 100 so one process holds them all; every lease and interval at
    // its default.
    let mut doomed = Agentq::openai_worker(
        &ctx,
        &db,
        &prefix,
        &fake.base_url,
        &["--concurrency", "128"],
    )?;
    let _scheduler = Agentq::spawn(&ctx, "scheduler", &db, &prefix, &[])?;
    let client = http();
    for i in 0..TURNS {
        create_chat(&client, stack.base(), &stack.token, &format!("recover {i}")).await?;
    }
    let fake_ref = &fake;
    let held = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async move { fake_ref.held() >= TURNS },
    )
    .await;
    anyhow::ensure!(
        held,
        "the worker held {} of {TURNS} turns after 30 s",
        fake.held()
    );
    let _survivor = Agentq::openai_worker(
        &ctx,
        &db,
        &prefix,
        &fake.base_url,
        &["--concurrency", "128"],
    )?;
    // Give the survivor time to start, so its start-up is not counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    doomed.kill();
    let killed = Instant::now();
    fake.release();
    let store = stack.services.store.clone();
    let limit = ctx.pick(Duration::from_secs(60), Duration::from_secs(120));
    let done = wait_until(limit, Duration::from_millis(20), || {
        let store = store.clone();
        async move {
            store
                .count_assistant_messages()
                .await
                .is_ok_and(|c| c >= TURNS as i64)
        }
    })
    .await;
    let took = killed.elapsed();
    let answered = stack.services.store.count_assistant_messages().await?;
    Ok(vec![Row::new(
        "recovery",
        "SIGKILL a worker holding 100 turns -> all answered by another (default settings)",
        if done {
            format!("{:.1} s", took.as_secs_f64())
        } else {
            format!(
                "only {answered} of {TURNS} answered after {:.0} s",
                took.as_secs_f64()
            )
        },
        "<= 15 s",
        Some(done && took <= Duration::from_secs(15)),
    )])
}
