//! `tools`: turns whose first step asks for 4 parallel builtin tool calls
//! (`current_time`) and whose second step answers. The provider is a local fake
//! ([`crate::fake_provider`]) that also times the fan-in: from the moment it sent a turn's
//! tool calls to the moment the worker asks for the next step with all four results.
//!
//! The fan-in is timed twice. First at a steady offered rate well under saturation (open
//! loop: a turn starts every 50 ms whatever the others do), which is what one turn's tools
//! cost in time on a machine with room. Then in the burst that gives turns/s: every client
//! posts its turns back to back without waiting for their answers, so the turns queue fills
//! and a fan-in there mostly times that backlog (the step after the tool calls is a turns
//! job like any other, enqueued behind every turn posted before it), not the fan-in itself.

use std::time::{Duration, Instant};

use agentq_core::config::{self, ApiConfig};

use crate::{
    common::{Ctx, Row, Stack, create_chat, http, n, p50_p99, wait_until},
    fake_provider::{Behavior, FakeProvider},
    procs::Agentq,
    scenarios::turns::{drive, warm_up},
};

pub const ABOUT: &str = "turns with 4 parallel builtin tool calls each (a local fake \
OpenAI answers the first step with 4 current_time calls, the second with text), 1 worker \
process: the fan-in latency (tool calls sent -> next step requested with the 4 results) at \
20 turns/s offered open-loop (5 s quick, 20 s full), then a burst of 300 turns (quick) or \
2,000 (full) from 64 clients: turns/s and the fan-in behind the backlog. Target: reported.";

/// The open loop's offered rate: a turn every 50 ms (20 turns/s), about a sixth of what one
/// worker process does in the burst here (125-136 turns/s in full mode, bench/RESULTS.md).
const OPEN_LOOP_EVERY: Duration = Duration::from_millis(50);

/// Starts a turn every [`OPEN_LOOP_EVERY`] for `length`, then waits (at most 30 s) until
/// every turn that started has both its answers, and until no fan-in has come in for a
/// second (a `POST /chats` the client gave up on may still have started its turn): an
/// error otherwise, so that no open-loop turn's fan-in lands in the burst's window.
/// Returns how many started and how many failed.
async fn open_loop(
    stack: &Stack,
    fake: &FakeProvider,
    length: Duration,
) -> anyhow::Result<(usize, usize)> {
    let client = http();
    let before = stack.services.store.count_assistant_messages().await?;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(OPEN_LOOP_EVERY);
    let started = Instant::now();
    while started.elapsed() < length {
        tick.tick().await;
        let (client, base, token) = (client.clone(), stack.base().to_owned(), stack.token.clone());
        let i = tasks.len();
        tasks.push(tokio::spawn(async move {
            create_chat(&client, &base, &token, &format!("open loop {i}")).await
        }));
    }
    let mut failed = 0;
    for task in tasks.iter_mut() {
        if !matches!(task.await, Ok(Ok(_))) {
            failed += 1;
        }
    }
    let expected = before + 2 * (tasks.len() - failed) as i64;
    let answered = stack
        .answered(expected, Duration::from_secs(30), Duration::from_millis(20))
        .await;
    anyhow::ensure!(
        answered,
        "the open loop's {} turns were not all answered within 30 s",
        tasks.len()
    );
    // The first look only notes the count; quiet means a second with none new.
    let mut seen = usize::MAX;
    let quiet = wait_until(Duration::from_secs(30), Duration::from_secs(1), || {
        let now = fake.fan_in().len();
        let still = now == seen;
        seen = now;
        async move { still }
    })
    .await;
    anyhow::ensure!(quiet, "fan-ins kept coming 30 s after the open loop");
    Ok((tasks.len(), failed))
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let turns = ctx.pick(300, 2_000);
    let limit = ctx.pick(Duration::from_secs(60), Duration::from_secs(180));
    let fake = FakeProvider::start(Behavior::ToolCalls { calls: 4 }).await?;
    let db = ctx.fresh_db("tools", 40).await?;
    let prefix = ctx.prefix("tools");
    let stack = Stack::new(&ctx, &db, &prefix, Some(config::defaults::<ApiConfig>())).await?;
    let worker = Agentq::openai_worker(&ctx, &db, &prefix, &fake.base_url, &[])?;
    // Each tool turn commits two assistant messages (the calls, then the answer).
    warm_up(&stack, 10, 2).await?;
    let warm = fake.fan_in().len();
    let (offered, failed) = open_loop(
        &stack,
        &fake,
        ctx.pick(Duration::from_secs(5), Duration::from_secs(20)),
    )
    .await?;
    let mut steady = fake.fan_in()[warm..].to_vec();
    let (_, _, steady_text) = p50_p99(&mut steady);
    let burst_from = fake.fan_in().len();
    let (rate, answered, cpu) = drive(&stack, turns, 2, limit).await?;
    drop(worker);
    let mut fan_in = fake.fan_in()[burst_from..].to_vec();
    let (_, _, text) = p50_p99(&mut fan_in);
    Ok(vec![
        Row::new(
            "tools",
            format!(
                "fan-in: tool calls sent -> next step requested with the 4 results, {} turns/s offered open-loop",
                1_000 / OPEN_LOOP_EVERY.as_millis()
            ),
            format!("{steady_text}; {offered} turns started, {failed} failed"),
            "reported",
            None,
        ),
        Row::new(
            "tools",
            "turns with 4 parallel builtin tool calls, 1 worker process",
            format!("{} turns/s ({answered} turns); {cpu}", n(rate)),
            "reported",
            None,
        ),
        Row::new(
            "tools",
            "fan-in in the burst (the next step queued behind every turn posted before it)",
            text,
            "reported",
            None,
        ),
    ])
}
