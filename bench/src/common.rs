//! What every scenario shares: the run's context (mode, servers, the figures other
//! scenarios' ratios read), a fresh database and Redis prefix per scenario with their
//! cleanup, the in-process API with a bench user, result rows and the report.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agentq_core::{
    auth::generate_token,
    config::{self, ApiConfig, DatabaseConfig},
    db,
    domain::OrganizationRole,
    services::Services,
    shutdown::CancellationToken,
};
use anyhow::Context;
use uuid::Uuid;

/// Quick (all scenarios in under 5 minutes) or full (the sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Smaller sizes, shorter runs.
    Quick,
    /// The sizes.
    Full,
}

/// The run's context; cheap to clone.
#[derive(Clone)]
pub struct Ctx(Arc<Inner>);

struct Inner {
    mode: Mode,
    database_url: String,
    redis_url: String,
    agentq_bin: std::path::PathBuf,
    figures: Mutex<HashMap<&'static str, f64>>,
    prefixes: Mutex<Vec<String>>,
    databases: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn new(
        mode: Mode,
        database_url: &str,
        redis_url: &str,
        agentq_bin: std::path::PathBuf,
    ) -> Self {
        Self(Arc::new(Inner {
            mode,
            database_url: database_url.to_owned(),
            redis_url: redis_url.to_owned(),
            agentq_bin,
            figures: Mutex::default(),
            prefixes: Mutex::default(),
            databases: Mutex::default(),
        }))
    }

    /// `quick` in quick mode, `full` otherwise.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        match self.0.mode {
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }

    pub fn redis_url(&self) -> &str {
        &self.0.redis_url
    }

    pub fn agentq_bin(&self) -> &std::path::Path {
        &self.0.agentq_bin
    }

    /// Records a figure that [`crate::scenarios::ratios`] divides.
    pub fn record(&self, key: &'static str, value: f64) {
        self.0.figures.lock().unwrap().insert(key, value);
    }

    pub fn figures(&self) -> HashMap<&'static str, f64> {
        self.0.figures.lock().unwrap().clone()
    }

    /// A fresh Redis key prefix, deleted after the scenario.
    pub fn prefix(&self, tag: &str) -> String {
        let prefix = format!("bench{tag}{}", &Uuid::new_v4().simple().to_string()[..8]);
        self.0.prefixes.lock().unwrap().push(prefix.clone());
        prefix
    }

    /// A fresh, migrated database `agentq_bench_<tag>_<random>`, dropped after the scenario.
    pub async fn fresh_db(&self, tag: &str, max_connections: u32) -> anyhow::Result<FreshDb> {
        let name = format!(
            "agentq_bench_{tag}_{}",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let url = database_url_for(&self.0.database_url, &name)?;
        let mut config: DatabaseConfig = config::defaults();
        config.url = url.as_str().into();
        config.max_connections = max_connections;
        self.0.databases.lock().unwrap().push(name.clone());
        db::create_database_if_missing(&config).await?;
        let pool = db::connect(&config).await?;
        db::migrate(&pool).await?;
        Ok(FreshDb { url, pool })
    }

    /// Deletes the scenario's Redis keys and drops its databases (closing what is still
    /// connected to them).
    pub async fn cleanup(&self) {
        let prefixes = std::mem::take(&mut *self.0.prefixes.lock().unwrap());
        if keep() {
            let databases = std::mem::take(&mut *self.0.databases.lock().unwrap());
            eprintln!(
                "   kept (AGENTQ_BENCH_KEEP): databases {} and Redis prefixes {}",
                databases.join(", "),
                prefixes.join(", ")
            );
            return;
        }
        for prefix in prefixes {
            clear_prefix(&self.0.redis_url, &prefix).await;
        }
        let databases = std::mem::take(&mut *self.0.databases.lock().unwrap());
        let mut config: DatabaseConfig = config::defaults();
        config.url = self.0.database_url.as_str().into();
        for name in databases {
            if let Err(e) = db::drop_database_if_exists(&config, &name).await {
                eprintln!("   could not drop database {name}: {e}");
            }
        }
    }
}

/// `database_url` naming `database` instead, its query (`?sslmode=disable`, say) kept.
fn database_url_for(database_url: &str, database: &str) -> anyhow::Result<String> {
    let (path, query) = database_url
        .split_once('?')
        .map_or((database_url, None), |(p, q)| (p, Some(q)));
    let base = path
        .rsplit_once('/')
        .map(|(b, _)| b)
        .context("a database URL ending in /<database>")?;
    Ok(match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    })
}

/// Whether `AGENTQ_BENCH_KEEP` asks to keep each scenario's databases and Redis keys (to
/// inspect a surprising run) instead of dropping them.
fn keep() -> bool {
    std::env::var("AGENTQ_BENCH_KEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A scenario's own database.
pub struct FreshDb {
    /// Its URL, for child processes.
    pub url: String,
    pub pool: sqlx::PgPool,
}

/// One line of the results.
pub struct Row {
    pub scenario: &'static str,
    pub what: String,
    pub measured: String,
    pub target: String,
    /// Whether the target is met (`None`: nothing to meet).
    pub met: Option<bool>,
}

impl Row {
    pub fn new(
        scenario: &'static str,
        what: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) -> Self {
        let row = Self {
            scenario,
            what: what.into(),
            measured: measured.into(),
            target: target.into(),
            met,
        };
        eprintln!("   {}: {} -> {}", row.scenario, row.what, row.measured);
        row
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p` quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `p50 x ms, p99 y ms (n samples)` of unsorted samples.
pub fn p50_p99(samples: &mut [Duration]) -> (Duration, Duration, String) {
    samples.sort();
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    let text = format!(
        "p50 {:.2} ms, p99 {:.2} ms ({} samples)",
        ms(p50),
        ms(p99),
        samples.len()
    );
    (p50, p99, text)
}

/// Thousands separators for counts and rates.
pub fn n(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Polls `check` every `every` until it returns true or `limit` passes; returns whether it did.
pub async fn wait_until<F, Fut>(limit: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Services, a bench user with an API token and no rate limits, and (optionally) the API
/// served in this process.
pub struct Stack {
    pub services: Services,
    pub token: String,
    /// `http://127.0.0.1:<port>` of the in-process API, when started.
    pub base: Option<String>,
    pub stop: CancellationToken,
}

impl Stack {
    /// Sets up the database for load from one user; serves the API here when `serve`.
    pub async fn new(
        ctx: &Ctx,
        db: &FreshDb,
        prefix: &str,
        serve: Option<ApiConfig>,
    ) -> anyhow::Result<Stack> {
        let services = Services::new(db.pool.clone(), ctx.redis_url(), prefix, 0)?;
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
        let base = match serve {
            None => None,
            Some(api) => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let base = format!("http://{}", listener.local_addr()?);
                tokio::spawn(agentq_api::serve(
                    agentq_api::ApiState::new(&services, api),
                    listener,
                    stop.clone(),
                ));
                Some(base)
            }
        };
        Ok(Stack {
            services,
            token: token.secret.clone(),
            base,
            stop,
        })
    }

    pub fn base(&self) -> &str {
        self.base.as_deref().unwrap_or("http://127.0.0.1:0")
    }

    /// Polls every `every`, at most `limit`, until at least `count` assistant messages are
    /// committed; returns whether they were.
    pub async fn answered(&self, count: i64, limit: Duration, every: Duration) -> bool {
        let store = self.services.store.clone();
        wait_until(limit, every, || {
            let store = store.clone();
            async move {
                store
                    .count_assistant_messages()
                    .await
                    .is_ok_and(|c| c >= count)
            }
        })
        .await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An HTTP client for the load: many connections kept alive.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// `POST /api/v1/chats`; returns the chat's id.
pub async fn create_chat(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    message: &str,
) -> anyhow::Result<Uuid> {
    let response = http
        .post(format!("{base}/api/v1/chats"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "message": message }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 201,
        "POST /chats answered {}",
        response.status()
    );
    let chat: serde_json::Value = response.json().await?;
    chat["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("a chat id")
}

/// One [`first_delta`] probe that saw its delta.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// `POST /chats` sent -> first `message_part` read by the client.
    pub first_delta: Duration,
    /// The part of it until `POST /chats` answered (the API and PostgreSQL); the rest is
    /// opening the stream and waiting for the worker's first event.
    pub create: Duration,
}

/// Why a probe failed, as the rows count it: the request and its HTTP status (with the
/// `limit` a 429 names), the kind of transport error, or no delta in time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProbeFailure(pub String);

impl ProbeFailure {
    async fn status(step: &str, response: reqwest::Response) -> Self {
        let status = response.status();
        let limit = if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            body["limit"]
                .as_str()
                .map(|l| format!(" {l}"))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Self(format!("{step} {}{limit}", status.as_u16()))
    }

    fn transport(step: &str, e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect error"
        } else if e.is_body() || e.is_decode() {
            "body error"
        } else {
            "request error"
        };
        Self(format!("{step} {kind}"))
    }
}

/// Failed probes counted by cause: `0 failed`, or `12 failed (GET stream 429
/// sse_max_streams_per_user: 10, POST /chats timeout: 2)`, most frequent first.
#[derive(Debug, Default)]
pub struct Failures(std::collections::BTreeMap<String, usize>);

impl Failures {
    pub fn add(&mut self, cause: ProbeFailure) {
        *self.0.entry(cause.0).or_default() += 1;
    }

    pub fn merge(&mut self, other: Failures) {
        for (cause, count) in other.0 {
            *self.0.entry(cause).or_default() += count;
        }
    }

    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed", self.total())?;
        if self.0.is_empty() {
            return Ok(());
        }
        let mut causes: Vec<(&String, &usize)> = self.0.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let causes: Vec<String> = causes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        write!(f, " ({})", causes.join(", "))
    }
}

/// Creates a chat, opens its SSE stream and waits (at most 10 s) for the first
/// `message_part`; returns the time from the POST to that event at the client, and how
/// long the POST took, or why it failed.
pub async fn first_delta(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<Probe, ProbeFailure> {
    use futures::StreamExt;
    let started = Instant::now();
    let created = http
        .post(format!("{base}/api/v1/chats"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "message": "latency probe" }))
        .send()
        .await
        .map_err(|e| ProbeFailure::transport("POST /chats", &e))?;
    if created.status() != reqwest::StatusCode::CREATED {
        return Err(ProbeFailure::status("POST /chats", created).await);
    }
    let chat: serde_json::Value = created
        .json()
        .await
        .map_err(|e| ProbeFailure::transport("POST /chats", &e))?;
    let create = started.elapsed();
    let id = chat["id"].as_str().unwrap_or_default();
    let response = http
        .get(format!("{base}/api/v1/chats/{id}/stream"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| ProbeFailure::transport("GET stream", &e))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(ProbeFailure::status("GET stream", response).await);
    }
    let mut stream = response.bytes_stream();
    let deadline = started + Duration::from_secs(10);
    let mut seen = String::new();
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.next()).await {
            Err(_) => return Err(ProbeFailure("no delta within 10 s".into())),
            Ok(None) => return Err(ProbeFailure("stream ended before a delta".into())),
            Ok(Some(Err(e))) => return Err(ProbeFailure::transport("GET stream", &e)),
            Ok(Some(Ok(bytes))) => {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if seen.contains("event: message_part") {
                    return Ok(Probe {
                        first_delta: started.elapsed(),
                        create,
                    });
                }
            }
        }
    }
}

/// Deletes every key of `prefix` (plain or as a hash tag).
pub async fn clear_prefix(redis_url: &str, prefix: &str) {
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
            let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await;
        }
    }
}

/// VmRSS of a process, in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/PID/status")?;
    Ok(kib / 1024.0)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The Markdown report: header (machine, date, commit, command), one table of rows.
pub fn render(args: &crate::Args, rows: &[Row], took: Duration) -> String {
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
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty =
        if command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
            ""
        } else {
            " (with uncommitted changes)"
        };
    let redis = command_output("redis-server", &["--version"]);
    let mut command = String::from("cargo run --release -p agentq-bench --");
    if args.quick {
        command.push_str(" --quick");
    }
    if !args.only.is_empty() {
        command.push_str(&format!(" --only {}", args.only.join(",")));
    }
    let mut out = format!(
        "# agentq benchmark results\n\n\
         - date: {} UTC\n\
         - machine: {cores} cores, {cpu}; PostgreSQL and Redis on the same machine ({redis})\n\
         - commit: {commit}{dirty}\n\
         - command: `{command}` ({} mode, {:.0} s); scenarios are described by `--help` and \
         [README.md](README.md)\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        if args.quick { "quick" } else { "full" },
        took.as_secs_f64(),
    );
    if !args.note.is_empty() {
        out.push_str(&format!("- note: {}\n", args.note));
    }
    out.push_str(
        "\n| scenario | measure | measured | target (issue #17) | met |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {met} |\n",
            row.scenario,
            row.what,
            row.measured.replace('|', "/"),
            row.target
        ));
    }
    out
}

/// CPU time (clock ticks) used so far by the processes of this machine, summed by command
/// name (`postgres`, `redis-server`, `agentq`, `agentq-bench`, ...): two snapshots around a
/// run say which process took the cores.
pub fn cpu_by_command() -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... utime stime: fields 14 and 15, counted after the comm.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        *out.entry(comm).or_default() += ticks;
    }
    out
}

/// The CPU seconds each command used between two [`cpu_by_command`] snapshots, largest
/// first. Processes that ended between the snapshots are not counted.
fn cpu_seconds(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Vec<(String, f64)> {
    let ticks_per_sec = 100.0;
    let mut used: Vec<(String, f64)> = after
        .iter()
        .map(|(comm, &t)| {
            let ticks = t.saturating_sub(before.get(comm).copied().unwrap_or(0));
            (comm.clone(), ticks as f64 / ticks_per_sec)
        })
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    used
}

/// "postgres 4.10 ms, agentq 1.20 ms, ..." of CPU per item (`items` turns, say) between
/// two [`cpu_by_command`] snapshots, largest first, the top four: what one item costs each
/// process, so rows of different rates compare.
pub fn cpu_per_item(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    items: usize,
) -> String {
    cpu_seconds(before, after)
        .into_iter()
        .map(|(comm, secs)| (comm, secs * 1000.0 / items.max(1) as f64))
        .filter(|(_, cost)| *cost >= 0.01)
        .take(4)
        .map(|(comm, cost)| format!("{comm} {cost:.2} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "postgres 95%, agentq 60%, ..." of the cores' time between two [`cpu_by_command`]
/// snapshots `wall` apart (100% = one core), largest first, the top four. Processes that
/// ended between the snapshots are not counted.
pub fn cpu_share(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    wall: Duration,
) -> String {
    let shares: Vec<(String, f64)> = cpu_seconds(before, after)
        .into_iter()
        .map(|(comm, secs)| (comm, secs / wall.as_secs_f64().max(0.001) * 100.0))
        .filter(|(_, share)| *share >= 1.0)
        .collect();
    let total: f64 = shares.iter().map(|s| s.1).sum();
    let top: Vec<String> = shares
        .iter()
        .take(4)
        .map(|(comm, share)| format!("{comm} {share:.0}%"))
        .collect();
    format!(
        "CPU {total:.0}% of {}00%: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        top.join(", ")
    )
}
