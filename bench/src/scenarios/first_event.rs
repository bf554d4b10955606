//! `first_event`: `POST /chats` -> the first SSE `message_part` at the client, with one
//! echo worker process and the API in this process. Open loop: a new probe (create the
//! chat, open its stream, wait for the first delta) starts every 10 ms whatever the
//! earlier ones are doing, so slow answers do not slow the offered load. At saturation:
//! 64 clients each run probes back to back (closed loop), so the system runs at what it
//! can take.

use std::time::{Duration, Instant};

use crate::{
    common::{Ctx, Row, Stack, first_delta, http, ms, n, p50_p99},
    scenarios::turns::echo_stack,
};

pub const ABOUT: &str = "POST /chats -> first SSE message_part at the client, 1 echo worker \
process: p50/p99 at a steady 100 turns/s offered open-loop (5 s quick, 30 s full), and at \
saturation (64 clients running probes back to back). Target: p99 <= 25 ms open-loop.";

const SATURATION_CLIENTS: usize = 64;

/// Starts a probe every `every` for `length`; returns the latencies and the failures.
async fn probes(stack: &Stack, every: Duration, length: Duration) -> (Vec<Duration>, usize) {
    let client = http();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    while started.elapsed() < length {
        tick.tick().await;
        let (client, base, token) = (client.clone(), stack.base().to_owned(), stack.token.clone());
        tasks.push(tokio::spawn(async move {
            first_delta(&client, &base, &token).await
        }));
    }
    let (mut samples, mut failed) = (Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok(Ok(d)) => samples.push(d),
            _ => failed += 1,
        }
    }
    (samples, failed)
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let length = ctx.pick(Duration::from_secs(5), Duration::from_secs(30));
    let (stack, procs) = echo_stack(&ctx, "first", 1).await?;
    let mut rows = Vec::new();

    let (mut samples, failed) = probes(&stack, Duration::from_millis(10), length).await;
    let (_, p99, text) = p50_p99(&mut samples);
    rows.push(Row::new(
        "first_event",
        "POST /chats -> first SSE delta, 100 turns/s offered open-loop",
        format!("{text}; {failed} failed"),
        "p99 <= 25 ms",
        Some(failed == 0 && ms(p99) <= 25.0),
    ));

    // Saturation: 64 clients, each creating a chat and waiting for its first delta, back
    // to back (closed loop: the offered load is what the system can take).
    let client = http();
    let started = Instant::now();
    let load: Vec<_> = (0..SATURATION_CLIENTS)
        .map(|_| {
            let (client, base, token) =
                (client.clone(), stack.base().to_owned(), stack.token.clone());
            tokio::spawn(async move {
                let (mut samples, mut failed) = (Vec::new(), 0usize);
                while started.elapsed() < length && samples.len() + failed < 10_000 {
                    match first_delta(&client, &base, &token).await {
                        Ok(d) => samples.push(d),
                        Err(_) => failed += 1,
                    }
                }
                (samples, failed)
            })
        })
        .collect();
    let (mut samples, mut failed) = (Vec::new(), 0);
    for task in load {
        let (mut s, f) = task.await?;
        samples.append(&mut s);
        failed += f;
    }
    let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
    let (_, _, text) = p50_p99(&mut samples);
    rows.push(Row::new(
        "first_event",
        "POST /chats -> first SSE delta at saturation (64 closed-loop clients)",
        format!("{text}; {failed} failed; {} turns/s", n(rate)),
        "reported",
        None,
    ));
    drop(procs);
    Ok(rows)
}
