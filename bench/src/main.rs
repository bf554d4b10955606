//! agentq-bench: measures the throughput budget of ARCHITECTURE.md §13 on this machine.
//!
//! It runs the real queue, API and worker in this process against the local PostgreSQL
//! (database `agentq_bench`, recreated) and Redis (a fresh key prefix), prints one table and
//! writes it to `bench/RESULTS.md`. Every loop is bounded in count and time.
//!
//! `cargo run --release -p agentq-bench -- --help`

mod archive;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agentq_core::{
    auth::generate_token,
    config::{
        self, ApiConfig, DatabaseConfig, ProviderConfig, ProviderKind, QueueConfig, WorkerConfig,
    },
    db,
    domain::OrganizationRole,
    queue::{Consumer, ConsumerOptions, Producer, QueueKeys, QueueName, RunTurn, run_jobs},
    redis_conn,
    services::Services,
    shutdown::CancellationToken,
};
use anyhow::Context;
use clap::Parser;
use uuid::Uuid;

/// Throughput and latency of agentq on this machine.
#[derive(Parser, Debug)]
struct Args {
    /// PostgreSQL server; the bench uses (and recreates) the database `agentq_bench` there.
    #[arg(
        long,
        env = "AGENTQ_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/agentq_bench"
    )]
    database_url: String,
    /// Redis server.
    #[arg(
        long,
        env = "AGENTQ_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Jobs in the queue burst.
    #[arg(long, default_value_t = 100_000)]
    burst: usize,
    /// Samples of idle pickup latency.
    #[arg(long, default_value_t = 1_000)]
    pickups: usize,
    /// Turns in the end-to-end run.
    #[arg(long, default_value_t = 5_000)]
    turns: usize,
    /// Concurrent API clients in the end-to-end run.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Chats in the table the maintenance tick runs over.
    #[arg(long, default_value_t = 1_000_000)]
    archive_chats: i64,
    /// Owners of those chats (each archived batch writes one digest per owner in it).
    #[arg(long, default_value_t = 1_000)]
    archive_owners: i64,
    /// Maintenance ticks timed while a full batch is due each time.
    #[arg(long, default_value_t = 10)]
    archive_ticks: usize,
    /// Where to write the results table.
    #[arg(long, default_value = "bench/RESULTS.md")]
    out: String,
}

struct Row {
    what: &'static str,
    target: &'static str,
    measured: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let prefix = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut rows = Vec::new();

    let (burst_rate, enqueue_rate) = queue_burst(&args, &prefix).await?;
    rows.push(Row {
        what: "queue: enqueue, pipelined",
        target: "-",
        measured: format!("{enqueue_rate:.0} jobs/s ({} jobs)", args.burst),
    });
    rows.push(Row {
        what: "queue: drain a burst of no-op jobs",
        target: ">= 100,000 jobs/s",
        measured: format!("{burst_rate:.0} jobs/s ({} jobs)", args.burst),
    });
    let (p50, p99) = pickup_latency(&args, &prefix).await?;
    rows.push(Row {
        what: "queue: enqueue -> idle worker starts the job",
        target: "p99 <= 5 ms",
        measured: format!(
            "p50 {:.2} ms, p99 {:.2} ms ({} samples)",
            ms(p50),
            ms(p99),
            args.pickups
        ),
    });
    let (turns_rate, first_delta) = end_to_end(&args, &prefix).await?;
    rows.push(Row {
        what: "end to end: POST /chats -> assistant message committed (echo model)",
        target: ">= 500 turns/s",
        measured: format!(
            "{turns_rate:.0} turns/s ({} turns, {} clients)",
            args.turns, args.clients
        ),
    });
    rows.push(Row {
        what: "POST /chats -> first SSE delta at the client (echo model)",
        target: "-",
        measured: format!(
            "p50 {:.1} ms, p99 {:.1} ms",
            ms(first_delta.0),
            ms(first_delta.1)
        ),
    });
    let figures = archive::archive_ticks(
        &args.database_url,
        &args.redis_url,
        &format!("{prefix}a"),
        args.archive_chats,
        args.archive_owners,
        args.archive_ticks,
    )
    .await?;
    rows.push(Row {
        what: "maintenance tick, nothing due",
        target: "-",
        measured: format!(
            "{:.1} ms ({} chats, {} owners)",
            ms(figures.idle_tick),
            figures.chats,
            figures.owners
        ),
    });
    let (ticks, mean, archived, digests) = figures.busy;
    rows.push(Row {
        what: "maintenance tick archiving a full batch (limit 1,000) and writing its digests",
        target: "-",
        measured: format!(
            "{:.0} ms per tick; {:.0} chats archived/s; {} digests over {ticks} ticks ({archived} chats)",
            ms(mean),
            archived as f64 / (mean.as_secs_f64() * ticks as f64),
            digests,
        ),
    });
    clear_prefix(&args.redis_url, &prefix).await;

    let table = render(&rows);
    println!("{table}");
    std::fs::write(&args.out, table).with_context(|| format!("writing {}", args.out))?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn consumer_options(prefix: &str, name: &str, concurrency: usize) -> ConsumerOptions {
    let queue: QueueConfig = config::defaults();
    ConsumerOptions {
        keys: QueueKeys::new(prefix, QueueName::Turns),
        consumer: name.to_owned(),
        concurrency,
        fetch_batch: queue.fetch_batch,
        lease: Duration::from_secs(30),
        max_deliveries: 5,
        max_attempts: 5,
        block: Duration::from_millis(500),
        max_len: 0,
    }
}

/// Enqueues a burst, then drains it with one worker process's consumer; returns
/// (drain jobs/s, enqueue jobs/s).
async fn queue_burst(args: &Args, prefix: &str) -> anyhow::Result<(f64, f64)> {
    let client = redis_conn::RedisClient::open(args.redis_url.as_str())?;
    let producer = Producer::new(client.shared()?, format!("{prefix}q"), 0);
    let jobs: Vec<RunTurn> = (0..args.burst)
        .map(|_| RunTurn {
            turn_id: Uuid::new_v4(),
        })
        .collect();
    let started = Instant::now();
    for chunk in jobs.chunks(10_000) {
        producer.enqueue_many(chunk).await?;
    }
    let enqueue_rate = args.burst as f64 / started.elapsed().as_secs_f64();

    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let consumer = Consumer::start(
        client.shared()?,
        client.blocking()?,
        consumer_options(&format!("{prefix}q"), "bench-burst", 1024),
        stop.clone(),
    );
    let counter = done.clone();
    let started = Instant::now();
    let runner = run_jobs("bench-burst", consumer, move |_job: RunTurn| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(std::sync::atomic::Ordering::Relaxed) < args.burst && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let drained = done.load(std::sync::atomic::Ordering::Relaxed);
    let rate = drained as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = runner.await;
    anyhow::ensure!(
        drained == args.burst,
        "only {drained} of {} jobs ran within 120 s",
        args.burst
    );
    Ok((rate, enqueue_rate))
}

/// Enqueues one job at a time to an idle worker and measures until its handler starts.
async fn pickup_latency(args: &Args, prefix: &str) -> anyhow::Result<(Duration, Duration)> {
    let client = redis_conn::RedisClient::open(args.redis_url.as_str())?;
    let prefix = format!("{prefix}p");
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
    for _ in 0..args.pickups {
        let id = Uuid::new_v4();
        sent.lock().unwrap().insert(id, Instant::now());
        producer.enqueue(&RunTurn { turn_id: id }).await?;
        // Idle between jobs, so each one finds the worker blocked in XREADGROUP.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let _ = runner.await;
    let mut all = latencies.lock().unwrap().clone();
    anyhow::ensure!(!all.is_empty(), "no pickups measured");
    all.sort();
    Ok((percentile(&all, 0.50), percentile(&all, 0.99)))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The API and a worker in this process with the echo model; clients create chats
/// concurrently. Returns (turns/s, first-delta latency p50/p99 from a sample of chats).
async fn end_to_end(args: &Args, prefix: &str) -> anyhow::Result<(f64, (Duration, Duration))> {
    let mut database: DatabaseConfig = config::defaults();
    database.url = args.database_url.as_str().into();
    database.max_connections = 40;
    let _ = db::drop_database_if_exists(&database, "agentq_bench").await;
    db::create_database_if_missing(&database).await?;
    let pool = db::connect(&database).await?;
    db::migrate(&pool).await?;
    let prefix = format!("{prefix}e");
    let services = Services::new(pool.clone(), &args.redis_url, &prefix, 0)?;
    // One user drives the whole load: per-user rate limits would measure themselves.
    services
        .store
        .update_site_config(&agentq_core::store::SiteConfigChanges {
            chats_per_minute: Some(0),
            stream_connects_per_minute: Some(0),
            ..Default::default()
        })
        .await?;
    let org = services.store.ensure_organization("bench").await?;
    let user = services.store.ensure_user("bench@localhost", false).await?;
    services
        .store
        .add_member(org, user, &[OrganizationRole::AgentsAccess])
        .await?;
    let token = generate_token();
    services
        .store
        .create_api_token(user, "bench", &token.sha256, None)
        .await?;

    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let api: ApiConfig = config::defaults();
    tokio::spawn(agentq_api::serve(
        agentq_api::ApiState::new(&services, api),
        listener,
        stop.clone(),
    ));
    let mut provider: ProviderConfig = config::defaults();
    provider.kind = ProviderKind::Echo;
    let mut worker: WorkerConfig = config::defaults();
    worker.queues = vec!["turns".into()];
    worker.concurrency = 256;
    let queue: QueueConfig = config::defaults();
    let engines =
        agentq_worker::engine(&services, &provider, &worker).map_err(|e| anyhow::anyhow!("{e}"))?;
    let handle = agentq_worker::start(
        &engines,
        &services.redis,
        &prefix,
        &worker,
        &queue,
        stop.clone(),
    )?;

    // First-delta latency: a few chats, each with its SSE stream opened right after create.
    let http = reqwest::Client::new();
    let mut deltas = Vec::new();
    for _ in 0..50 {
        deltas.push(first_delta(&http, &base, &token.secret).await?);
    }
    deltas.sort();

    let per_client = args.turns / args.clients.max(1);
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let http = http.clone();
            let url = format!("{base}/api/v1/chats");
            let token = token.secret.clone();
            tokio::spawn(async move {
                for i in 0..per_client {
                    let body = serde_json::json!({ "message": format!("client {c} turn {i}") });
                    let response = http.post(&url).bearer_auth(&token).json(&body).send().await;
                    if !matches!(&response, Ok(r) if r.status() == 201) {
                        eprintln!("create failed: {:?}", response.map(|r| r.status()));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await?;
    }
    let expected = (per_client * args.clients + deltas.len()) as i64;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let answered = services.store.count_assistant_messages().await?;
        if answered >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = (per_client * args.clients) as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle.join()).await;
    Ok((rate, (percentile(&deltas, 0.5), percentile(&deltas, 0.99))))
}

/// Creates a chat and waits for the first `message_part` on its stream.
async fn first_delta(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Duration> {
    use futures::StreamExt;
    let started = Instant::now();
    let chat: serde_json::Value = http
        .post(format!("{base}/api/v1/chats"))
        .bearer_auth(token)
        .json(&serde_json::json!({"message": "latency probe"}))
        .send()
        .await?
        .json()
        .await?;
    let id = chat["id"].as_str().context("chat id")?;
    let mut stream = http
        .get(format!("{base}/api/v1/chats/{id}/stream"))
        .bearer_auth(token)
        .send()
        .await?
        .bytes_stream();
    let mut seen = String::new();
    while let Ok(Some(Ok(bytes))) =
        tokio::time::timeout(Duration::from_secs(10), stream.next()).await
    {
        seen.push_str(&String::from_utf8_lossy(&bytes));
        if seen.contains("event: message_part") {
            return Ok(started.elapsed());
        }
    }
    anyhow::bail!("no delta within 10 s")
}

async fn clear_prefix(redis_url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    for pattern in [format!("{prefix}*"), format!("{{{prefix}*")] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
        }
    }
}

fn render(rows: &[Row]) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut out = format!(
        "# agentq benchmark results\n\n{} UTC, {cores} cores ({cpu}), PostgreSQL and Redis on the same machine, release build.\n\
         Produced by `cargo run --release -p agentq-bench`.\n\n| measure | design target | measured |\n|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            row.what, row.target, row.measured
        ));
    }
    out
}
