//! agentq-bench: measures agentq on this machine against the targets of issue #17, beside a
//! peer queue (apalis-redis) and the ceiling of the Redis commands a job costs.
//!
//! Each scenario is one module under [`scenarios`]; each is bounded in time and count, runs
//! against the local PostgreSQL (a fresh database per scenario, dropped after) and Redis (a
//! fresh key prefix, deleted after), and returns rows. The rows, the ratios between scenarios
//! and the machine, date, commit and command are printed and written to `bench/RESULTS.md`.
//!
//! `cargo run --release -p agentq-bench -- --help` lists the scenarios.

mod common;
mod fake_provider;
mod procs;
mod scenarios;
mod smtp_sink;

use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use common::{Ctx, Mode, Row};

/// Throughput and latency of agentq on this machine (issue #17), with a peer queue and
/// the Redis ceiling measured in the same run.
///
/// Every scenario runs against the local PostgreSQL (a fresh database `agentq_bench_*`
/// per scenario, dropped after) and Redis (a fresh key prefix, deleted after). Worker and
/// API processes are the release `agentq` binary next to this one: build both with
/// `cargo build --release -p agentq -p agentq-bench --locked`.
///
/// Quick mode (`--quick`) runs every scenario in under 5 minutes on 2 cores; the full mode
/// (the default) uses the sizes (1,000,000 chats, 10,000 digests, longer runs) and
/// takes about 15 minutes.
///
/// To look into a surprising run: `AGENTQ_BENCH_KEEP=1` keeps every scenario's database
/// and Redis keys (their names are printed) instead of dropping them, and
/// `AGENTQ_BENCH_CHILD_LOG=<filter>` (e.g. `info`, `agentq_core=debug`) sets `AGENTQ_LOG`
/// of the worker, API and scheduler processes (default `warn`; they log to stderr).
#[derive(Parser, Debug)]
#[command(name = "agentq-bench", after_long_help = scenarios::help())]
pub struct Args {
    /// Smaller sizes and shorter runs: all scenarios in under 5 minutes.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (comma separated; see the list below).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// PostgreSQL server; each scenario creates (and drops) its own database there.
    #[arg(
        long,
        env = "AGENTQ_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Redis server.
    #[arg(
        long,
        env = "AGENTQ_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// The `agentq` binary started as worker, API and scheduler processes (default: the
    /// one next to this binary).
    #[arg(long, env = "AGENTQ_BENCH_AGENTQ_BIN")]
    agentq_bin: Option<std::path::PathBuf>,
    /// A note printed under the header of the results (e.g. "other builds were running").
    #[arg(long, default_value = "")]
    note: String,
    /// Where to write the results (nothing written when empty).
    #[arg(long, default_value = "bench/RESULTS.md")]
    out: String,
}

/// The allocator of the `agentq` binary, so the API served in this process runs as it does
/// there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let wanted: Vec<&scenarios::Scenario> = if args.only.is_empty() {
        scenarios::ALL.iter().collect()
    } else {
        let mut picked = Vec::new();
        for name in &args.only {
            let found = scenarios::ALL
                .iter()
                .find(|s| s.name == name.as_str())
                .with_context(|| {
                    format!(
                        "no scenario {name:?}; scenarios: {}",
                        scenarios::ALL
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            picked.push(found);
        }
        picked
    };
    let agentq_bin = match &args.agentq_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary's directory")?
            .join("agentq"),
    };
    let ctx = Ctx::new(
        if args.quick { Mode::Quick } else { Mode::Full },
        &args.database_url,
        &args.redis_url,
        agentq_bin,
    );
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for scenario in wanted {
        eprintln!("== {} ==", scenario.name);
        let at = Instant::now();
        match (scenario.run)(ctx.clone()).await {
            Ok(mut got) => rows.append(&mut got),
            Err(e) => rows.push(Row::new(
                scenario.name,
                "failed",
                format!("error: {e:#}"),
                "-",
                None,
            )),
        }
        eprintln!(
            "   {} done in {:.1} s",
            scenario.name,
            at.elapsed().as_secs_f64()
        );
        ctx.cleanup().await;
    }
    rows.extend(scenarios::ratios(&ctx.figures()));
    let report = common::render(&args, &rows, started.elapsed());
    println!("{report}");
    if !args.out.is_empty() {
        std::fs::write(&args.out, report).with_context(|| format!("writing {}", args.out))?;
    }
    Ok(())
}
