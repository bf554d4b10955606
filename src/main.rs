//! `agentq`: one binary, one subcommand per process kind (ARCHITECTURE.md §1).
//!
//! This file is the command line only; [`process`] starts the parts, [`dev`] runs them
//! all together, [`admin`] bootstraps identities.

mod admin;
mod dev;
mod local_services;
mod logging;
mod process;
mod tracing_export;

use std::path::PathBuf;

use agentq_core::config::{ApiConfig, DatabaseConfig, QueueConfig, RedisConfig, SecretsConfig};
use clap::{Parser, Subcommand};

/// agentq: a backend for AI coding-agent chats. Every setting is a flag with an
/// `AGENTQ_*` environment fallback; a TOML file (`--config`) sits below both.
#[derive(Parser, Debug)]
#[command(name = "agentq", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// TOML file of settings: keys are the AGENTQ_* variable names without the prefix, in
    /// lower case (`database_url = "..."`, `worker_concurrency = 8`); flags and environment
    /// variables override it.
    #[arg(long, env = "AGENTQ_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format: `human` or `json`.
    #[arg(
        long,
        env = "AGENTQ_LOG_FORMAT",
        default_value = "human",
        global = true
    )]
    log_format: logging::LogFormat,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `agentq_worker=debug,info`.
    #[arg(
        long = "log",
        env = "AGENTQ_LOG",
        default_value = "info,sqlx=warn",
        global = true
    )]
    log_filter: String,
    #[command(flatten)]
    otlp: tracing_export::OtlpConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API (REST + SSE).
    Api {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        redis: RedisConfig,
        #[command(flatten)]
        queue: QueueConfig,
        #[command(flatten)]
        api: ApiConfig,
        #[command(flatten)]
        secrets: SecretsConfig,
    },
    /// Run queue workers: chat turns, tool calls and outgoing email.
    Worker(Box<process::WorkerArgs>),
    /// Run the scheduler: maintenance on its cron (retention, auto-archive, digest emails)
    /// and recovery of lost work.
    Scheduler(Box<process::SchedulerArgs>),
    /// Run API, worker and scheduler in one process on local PostgreSQL and Redis (started
    /// privately under the data directory when none answers); prints a ready API token.
    Dev(Box<dev::DevArgs>),
    /// Apply database migrations.
    Migrate {
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Bootstrap and inspect: users, organizations, tokens, configuration.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

/// mimalloc instead of glibc's malloc: a turn allocates and frees many small buffers on
/// several threads, and glibc's arenas cost about 7 % of the machine's CPU in the turns
/// benchmark (bench/RESULTS.md, session 23). `main` turns transparent huge pages off.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // No transparent huge pages, whatever the host's setting: with them mimalloc's arenas
    // held 40 % more memory (bench/RESULTS.md, sessions 16 and 23). Best effort: a kernel
    // without the setting runs as it would.
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Two TLS providers are compiled in (via different crates); pick one before any TLS use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The config file feeds the environment, which clap reads; so it is loaded first.
    if let Some(path) = config_file_from_args() {
        agentq_core::config::apply_config_file(&path)?;
    }
    let cli = Cli::parse();
    let service = format!("agentq-{}", cli.command.name());
    let traces = logging::init(cli.log_format, &cli.log_filter, &cli.otlp, &service)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(cli.command));
    drop(runtime);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    result
}

impl Command {
    /// The subcommand's name, for the default OpenTelemetry `service.name`.
    fn name(&self) -> &'static str {
        match self {
            Command::Api { .. } => "api",
            Command::Worker(_) => "worker",
            Command::Scheduler(_) => "scheduler",
            Command::Dev(_) => "dev",
            Command::Migrate { .. } => "migrate",
            Command::Admin { .. } => "admin",
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Api {
            database,
            redis,
            queue,
            api,
            secrets,
        } => process::run_api(database, redis, queue, api, secrets).await,
        Command::Worker(args) => process::run_worker(*args).await,
        Command::Scheduler(args) => process::run_scheduler(*args).await,
        Command::Dev(args) => dev::run(*args).await,
        Command::Migrate { database } => process::migrate(database).await,
        Command::Admin { command } => admin::run(command).await,
    }
}

/// `--config FILE`, `--config=FILE` or `AGENTQ_CONFIG`, read before clap so the file can
/// supply defaults to every other flag.
fn config_file_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("AGENTQ_CONFIG").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
