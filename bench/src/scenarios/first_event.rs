//! `first_event`: `POST /chats` -> the first SSE `message_part` at the client, with one
//! echo worker process and the API in this process. Open loop: a new probe (create the
//! chat, open its stream, wait for the first delta) starts every 10 ms whatever the
//! earlier ones are doing, so slow answers do not slow the offered load. At saturation:
//! 64 clients each run probes back to back (closed loop), so the system runs at what it
//! can take.
//!
//! All probes use the one bench user. Its per-user limits are meant for one person, not
//! for a load generator standing in for many: the stack already turns the per-user rate
//! limits off (site config `chats_per_minute` and `stream_connects_per_minute` = 0), and
//! this scenario's API runs with `--sse-max-streams-per-user 0` (no cap on one user's open
//! streams; the per-process cap of 10,000 stays). With the default cap of 20, every probe
//! opened while 20 others were still open was refused with 429: every failure of the runs
//! with that cap (bench/RESULTS.md). Each row counts its failures by cause (HTTP
//! status and the `limit` a 429 names, or the transport error) and splits each probe's
//! time into `POST /chats` and the rest (open the stream, wait for the worker's first
//! event), with the CPU each process took.

use std::time::{Duration, Instant};

use agentq_core::config::{self, ApiConfig};

use crate::{
    common::{
        Ctx, Failures, Probe, Row, Stack, cpu_by_command, cpu_share, first_delta, http, ms, n,
        p50_p99,
    },
    scenarios::turns::echo_stack_serving,
};

pub const ABOUT: &str = "POST /chats -> first SSE message_part at the client, 1 echo worker \
process, API in the bench process with no per-user cap on open streams (one bench user \
stands in for many): p50/p99 at a steady 100 turns/s offered open-loop (5 s quick, 30 s \
full), and at saturation (64 clients running probes back to back); failures counted by \
cause, POST /chats's share and the CPU per process. Target: p99 <= 25 ms open-loop.";

const SATURATION_CLIENTS: usize = 64;

/// Starts a probe every `every` for `length`; returns the probes that saw a delta and the
/// failures.
async fn probes(stack: &Stack, every: Duration, length: Duration) -> (Vec<Probe>, Failures) {
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
    let (mut samples, mut failed) = (Vec::new(), Failures::default());
    for task in tasks {
        match task.await {
            Ok(Ok(probe)) => samples.push(probe),
            Ok(Err(cause)) => failed.add(cause),
            Err(e) => failed.add(crate::common::ProbeFailure(format!("task {e}"))),
        }
    }
    (samples, failed)
}

/// `first delta p50 .., p99 .. (N samples); POST /chats p50 .., p99 ..`, and the p99.
fn latencies(samples: &[Probe]) -> (Duration, String) {
    let mut total: Vec<Duration> = samples.iter().map(|p| p.first_delta).collect();
    let mut create: Vec<Duration> = samples.iter().map(|p| p.create).collect();
    let (_, p99, text) = p50_p99(&mut total);
    let (c50, c99, _) = p50_p99(&mut create);
    (
        p99,
        format!(
            "{text}; of which POST /chats p50 {:.2} ms, p99 {:.2} ms",
            ms(c50),
            ms(c99)
        ),
    )
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let length = ctx.pick(Duration::from_secs(5), Duration::from_secs(30));
    let api = ApiConfig {
        sse_max_streams_per_user: 0,
        ..config::defaults()
    };
    let (stack, procs) = echo_stack_serving(&ctx, "first", 1, api).await?;
    let mut rows = Vec::new();

    let cpu = cpu_by_command();
    let started = Instant::now();
    let (samples, failed) = probes(&stack, Duration::from_millis(10), length).await;
    let share = cpu_share(&cpu, &cpu_by_command(), started.elapsed());
    let (p99, text) = latencies(&samples);
    rows.push(Row::new(
        "first_event",
        "POST /chats -> first SSE delta, 100 turns/s offered open-loop",
        format!("{text}; {failed}; {share}"),
        "p99 <= 25 ms",
        Some(failed.total() == 0 && ms(p99) <= 25.0),
    ));

    // Saturation: 64 clients, each creating a chat and waiting for its first delta, back
    // to back (closed loop: the offered load is what the system can take).
    let client = http();
    let cpu = cpu_by_command();
    let started = Instant::now();
    let load: Vec<_> = (0..SATURATION_CLIENTS)
        .map(|_| {
            let (client, base, token) =
                (client.clone(), stack.base().to_owned(), stack.token.clone());
            tokio::spawn(async move {
                let (mut samples, mut failed) = (Vec::new(), Failures::default());
                while started.elapsed() < length && samples.len() + failed.total() < 10_000 {
                    match first_delta(&client, &base, &token).await {
                        Ok(probe) => samples.push(probe),
                        Err(cause) => failed.add(cause),
                    }
                }
                (samples, failed)
            })
        })
        .collect();
    let (mut samples, mut failed) = (Vec::new(), Failures::default());
    for task in load {
        let (mut s, f) = task.await?;
        samples.append(&mut s);
        failed.merge(f);
    }
    let wall = started.elapsed();
    let share = cpu_share(&cpu, &cpu_by_command(), wall);
    let rate = samples.len() as f64 / wall.as_secs_f64();
    let (_, text) = latencies(&samples);
    rows.push(Row::new(
        "first_event",
        "POST /chats -> first SSE delta at saturation (64 closed-loop clients)",
        format!("{text}; {failed}; {} turns/s; {share}", n(rate)),
        "reported",
        None,
    ));
    drop(procs);
    Ok(rows)
}
