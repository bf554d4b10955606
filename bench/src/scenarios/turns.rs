//! `turns`: `POST /chats` -> assistant message committed, end to end, with the built-in
//! echo model (instant answers) and 1, 2 and 4 `agentq worker` processes (default
//! settings). The API serves in this process; 64 clients create chats as fast as they are
//! answered; the rate counts from the first POST to the last assistant message committed.

use std::time::{Duration, Instant};

use agentq_core::config::{self, ApiConfig};

use crate::{
    common::{Ctx, Row, Stack, cpu_by_command, cpu_per_item, cpu_share, create_chat, http, n},
    procs::Agentq,
};

pub const ABOUT: &str = "POST /chats -> assistant message committed, built-in echo model \
(instant), 64 concurrent clients, API in the bench process, 1, 2 and 4 `agentq worker` \
processes (default concurrency 64 each; 20 PostgreSQL connections each, 12 for four, so \
all fit in PostgreSQL's default 100); 2,000 turns per run (quick) or 10,000 (full). \
Target: >= 700 turns/s; 2 processes >= 1.7x one where the cores allow (the row says what \
took the CPU).";

const CLIENTS: usize = 64;

/// The bench's own pool (the in-process API): see [`echo_stack`].
const BENCH_CONNECTIONS: u32 = 40;

/// PostgreSQL connections the worker processes of one run share. A worker opens up to 20
/// by default; four of them plus the bench's 40 would ask for 120, past PostgreSQL's
/// default `max_connections` of 100: connections are then refused ("too many clients"),
/// jobs fail with pool timeouts and are retried with backoff, and a turn whose hand-back
/// failed too waits for recovery, which this scenario does not run. So the workers split
/// this budget (20 each up to two, 12 each for four), leaving room for other clients.
const WORKER_CONNECTIONS: u32 = 48;

/// Starts `workers` echo worker processes on a fresh stack and waits until they answer.
pub async fn echo_stack(
    ctx: &Ctx,
    tag: &str,
    workers: usize,
) -> anyhow::Result<(Stack, Vec<Agentq>)> {
    echo_stack_serving(ctx, tag, workers, config::defaults()).await
}

/// [`echo_stack`] with the in-process API configured by `api`.
pub async fn echo_stack_serving(
    ctx: &Ctx,
    tag: &str,
    workers: usize,
    api: ApiConfig,
) -> anyhow::Result<(Stack, Vec<Agentq>)> {
    let db = ctx.fresh_db(tag, BENCH_CONNECTIONS).await?;
    let prefix = ctx.prefix(tag);
    let stack = Stack::new(ctx, &db, &prefix, Some(api)).await?;
    let pool = (WORKER_CONNECTIONS / workers.max(1) as u32).min(20);
    let procs = (0..workers)
        .map(|_| Agentq::echo_worker(ctx, &db, &prefix, pool))
        .collect::<anyhow::Result<Vec<_>>>()?;
    warm_up(&stack, 20, 1).await?;
    Ok((stack, procs))
}

/// Creates `count` chats and waits (at most 30 s) until each has committed its `answers`
/// assistant messages: the workers are up, and no warm-up turn is still running when the
/// measures start.
pub async fn warm_up(stack: &Stack, count: usize, answers: usize) -> anyhow::Result<()> {
    let client = http();
    let before = stack.services.store.count_assistant_messages().await?;
    for i in 0..count {
        create_chat(&client, stack.base(), &stack.token, &format!("warm up {i}")).await?;
    }
    let ready = stack
        .answered(
            before + (count * answers) as i64,
            Duration::from_secs(30),
            Duration::from_millis(20),
        )
        .await;
    anyhow::ensure!(
        ready,
        "the workers did not answer {count} warm-up chats within 30 s"
    );
    Ok(())
}

/// Drives `turns` turns through the stack with [`CLIENTS`] clients, each turn committing
/// `answers` assistant messages; returns (turns/s, turns answered, CPU shares).
pub async fn drive(
    stack: &Stack,
    turns: usize,
    answers: usize,
    limit: Duration,
) -> anyhow::Result<(f64, usize, String)> {
    let client = http();
    let per_client = turns.div_ceil(CLIENTS);
    let total = per_client * CLIENTS;
    let before = stack.services.store.count_assistant_messages().await?;
    let cpu = cpu_by_command();
    let started = Instant::now();
    let deadline = started + limit;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, base, token) =
                (client.clone(), stack.base().to_owned(), stack.token.clone());
            tokio::spawn(async move {
                for i in 0..per_client {
                    if Instant::now() > deadline {
                        break;
                    }
                    if let Err(e) =
                        create_chat(&client, &base, &token, &format!("client {c} turn {i}")).await
                    {
                        eprintln!("   create failed: {e}");
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await?;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    stack
        .answered(
            before + (total * answers) as i64,
            left,
            Duration::from_millis(50),
        )
        .await;
    let wall = started.elapsed();
    let answered =
        (stack.services.store.count_assistant_messages().await? - before) as usize / answers.max(1);
    let after = cpu_by_command();
    let share = format!(
        "{}; per turn: {}",
        cpu_share(&cpu, &after, wall),
        cpu_per_item(&cpu, &after, answered)
    );
    Ok((answered as f64 / wall.as_secs_f64(), answered, share))
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let turns = ctx.pick(2_000, 10_000);
    let limit = ctx.pick(Duration::from_secs(60), Duration::from_secs(180));
    let mut rows = Vec::new();
    let mut one = None;
    for workers in [1usize, 2, 4] {
        let (stack, procs) = echo_stack(&ctx, &format!("turns{workers}"), workers).await?;
        let (rate, answered, cpu) = drive(&stack, turns, 1, limit).await?;
        drop(procs);
        drop(stack);
        ctx.cleanup().await;
        let scaling = match one {
            None => {
                one = Some(rate);
                if answered == turns.div_ceil(CLIENTS) * CLIENTS {
                    ctx.record(super::keys::TURNS_ONE, rate);
                }
                String::new()
            }
            Some(base) => format!("; {:.2}× one process", rate / base),
        };
        let (target, met) = match workers {
            2 => (
                ">= 700 turns/s; >= 1.7× one process where the cores allow",
                rate >= 700.0 && one.is_some_and(|b| rate >= 1.7 * b),
            ),
            _ => (">= 700 turns/s", rate >= 700.0),
        };
        rows.push(Row::new(
            "turns",
            format!("POST /chats -> assistant message committed, echo model, {workers} worker process(es)"),
            format!(
                "{} turns/s ({answered} of {} turns, {CLIENTS} clients{scaling}); {cpu}",
                n(rate),
                turns.div_ceil(CLIENTS) * CLIENTS
            ),
            target,
            Some(met),
        ));
    }
    Ok(rows)
}
