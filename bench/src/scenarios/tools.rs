//! `tools`: turns whose first step asks for 4 parallel builtin tool calls
//! (`current_time`) and whose second step answers. The provider is a local fake
//! ([`crate::fake_provider`]) that also times the fan-in: from the moment it sent a turn's
//! tool calls to the moment the worker asks for the next step with all four results.

use std::time::Duration;

use agentq_core::config::{self, ApiConfig};

use crate::{
    common::{Ctx, Row, Stack, n, p50_p99},
    fake_provider::{Behavior, FakeProvider},
    procs::Agentq,
    scenarios::turns::{drive, warm_up},
};

pub const ABOUT: &str = "turns with 4 parallel builtin tool calls each (a local fake \
OpenAI answers the first step with 4 current_time calls, the second with text), 1 worker \
process, 64 clients; 300 turns (quick) or 2,000 (full): turns/s and fan-in latency (tool \
calls sent -> next step requested with the 4 results). Target: reported.";

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let turns = ctx.pick(300, 2_000);
    let limit = ctx.pick(Duration::from_secs(60), Duration::from_secs(180));
    let fake = FakeProvider::start(Behavior::ToolCalls { calls: 4 }).await?;
    let db = ctx.fresh_db("tools", 40).await?;
    let prefix = ctx.prefix("tools");
    let stack = Stack::new(&ctx, &db, &prefix, Some(config::defaults::<ApiConfig>())).await?;
    let worker = Agentq::openai_worker(&ctx, &db, &prefix, &fake.base_url, &[])?;
    warm_up(&stack, 10).await?;
    // Each tool turn commits two assistant messages (the calls, then the answer).
    let (rate, answered, cpu) = drive(&stack, turns, 2, limit).await?;
    drop(worker);
    let mut fan_in = fake.fan_in();
    let (_, _, text) = p50_p99(&mut fan_in);
    Ok(vec![
        Row::new(
            "tools",
            "turns with 4 parallel builtin tool calls, 1 worker process",
            format!("{} turns/s ({answered} turns); {cpu}", n(rate)),
            "reported",
            None,
        ),
        Row::new(
            "tools",
            "fan-in: tool calls sent -> next step requested with the 4 results",
            text,
            "reported",
            None,
        ),
    ])
}
