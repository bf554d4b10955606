//! Private PostgreSQL and Redis for `agentq dev`.
//!
//! `agentq dev` is the one command a newcomer runs (ARCHITECTURE.md §1), so it has to work on a
//! machine where nothing is set up yet. [`LocalServices::ensure`] probes the configured
//! PostgreSQL and Redis addresses: whatever answers there is used as is; whatever does not
//! is replaced by a private instance, started from the locally installed server programs
//! (`initdb`/`postgres`, `redis-server`), kept under the data directory, listening on a free
//! 127.0.0.1 port, and stopped again when `agentq dev` exits. When the programs are
//! missing, the error says what to install.
//!
//! Only `agentq dev` does this. `api`, `worker` and `scheduler` run in deployments, where
//! quietly starting an empty database would hide a misconfiguration, so they just connect.
//! For the same reason a private instance only ever stands in for a local address
//! (localhost, 127.0.0.1, ::1): an unreachable remote server is an error, not a cue.
//!
//! The servers run in their own process group, so the Ctrl+C that a terminal sends to
//! `agentq dev` does not take the database away while the app drains; the app stops them
//! last with [`LocalServices::stop`]. Should `agentq dev` die without stopping them, the
//! next start finds them through their pid files and reuses them instead of failing on a
//! locked data directory.
//!
//! The pieces: [`urls`] reads the configured addresses and builds the private URLs,
//! [`binaries`] finds the server programs, [`postgres`] and [`redis`] start or reuse one
//! server each, [`private_server`] owns a server process until it is stopped, and
//! [`signals`] signals it by pid.
//!
//! ```ignore
//! let services = LocalServices::ensure(&config.database_url, &config.redis_url, Path::new("data")).await?;
//! run_everything(&services.database_url, &services.redis_url).await?;
//! services.stop().await;
//! ```

mod binaries;
mod postgres;
mod private_server;
mod redis;
mod signals;
mod urls;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use binaries::{PostgresBinaries, find_redis_server};
use postgres::start_postgres;
use private_server::PrivateServer;
use redis::start_redis;
use urls::{Endpoint, private_postgres_url, private_redis_url};

/// How long a configured server gets to accept a TCP connection before a private one is used.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a private server gets to become ready after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a private server gets to shut down cleanly before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

const INSTALL_HINT: &str = "Install them (Debian/Ubuntu: `sudo apt-get install postgresql redis-server`; \
     macOS: `brew install postgresql redis`), or point AGENTQ_DATABASE_URL and AGENTQ_REDIS_URL \
     at servers that are running.";

/// The PostgreSQL and Redis that `agentq dev` runs against, and the private servers it
/// started for them, if any.
///
/// Call [`LocalServices::stop`] when the app has shut down. Dropping it stops the private
/// servers as well, but blocks while they shut down, which async code should avoid.
pub struct LocalServices {
    /// The PostgreSQL to use: the configured URL, or the private instance's (same database
    /// name; the caller creates the database if it is missing).
    pub database_url: String,
    /// The Redis to use: the configured URL, or the private instance's.
    pub redis_url: String,
    postgres: Option<PrivateServer>,
    redis: Option<PrivateServer>,
}

impl LocalServices {
    /// Returns the URLs to use. For each of PostgreSQL and Redis: when the host and port of
    /// the given URL accept a TCP connection within a second, the URL is used as is;
    /// otherwise a private instance is started under `data_dir` (`data_dir/postgres`,
    /// `data_dir/redis`) on a free 127.0.0.1 port and its URL is returned. An initialized
    /// PostgreSQL data directory is reused, so local data survives restarts.
    pub async fn ensure(
        database_url: &str,
        redis_url: &str,
        data_dir: &Path,
    ) -> Result<LocalServices> {
        let postgres_at = Endpoint::parse(database_url, 5432)
            .map_err(|e| anyhow!("cannot read host and port from the PostgreSQL URL: {e}"))?;
        let redis_at = Endpoint::parse(redis_url, 6379)
            .map_err(|e| anyhow!("cannot read host and port from the Redis URL: {e}"))?;
        let (postgres_up, redis_up) =
            tokio::join!(postgres_at.accepts_tcp(), redis_at.accepts_tcp());

        for (up, at, name, variable) in [
            (
                postgres_up,
                &postgres_at,
                "PostgreSQL",
                "AGENTQ_DATABASE_URL",
            ),
            (redis_up, &redis_at, "Redis", "AGENTQ_REDIS_URL"),
        ] {
            if up {
                tracing::info!(address = %at, "using the {name} that answers at the configured address");
            } else if !at.is_local() {
                bail!(
                    "{name} at {at} does not accept connections. `agentq dev` starts a private \
                     {name} only in place of a local address (localhost, 127.0.0.1, ::1): start \
                     the server at {at}, or change {variable}."
                );
            }
        }

        // Look for every program that is needed before starting anything, so that one
        // message names all that is missing.
        let postgres_binaries = (!postgres_up).then(PostgresBinaries::find);
        let redis_server = (!redis_up).then(find_redis_server);
        let mut missing = Vec::new();
        if matches!(postgres_binaries, Some(None)) {
            missing.push(format!(
                "nothing answers at {postgres_at} and the PostgreSQL server programs `initdb` \
                 and `postgres` are not installed (looked on PATH and under \
                 /usr/lib/postgresql/*/bin)"
            ));
        }
        if matches!(redis_server, Some(None)) {
            missing.push(format!(
                "nothing answers at {redis_at} and `redis-server` is not installed (looked on PATH)"
            ));
        }
        if !missing.is_empty() {
            bail!(
                "agentq dev needs PostgreSQL and Redis: {}. {INSTALL_HINT}",
                missing.join("; ")
            );
        }

        let data_dir = std::path::absolute(data_dir)
            .with_context(|| format!("resolving the data directory {}", data_dir.display()))?;
        let mut services = LocalServices {
            database_url: database_url.to_owned(),
            redis_url: redis_url.to_owned(),
            postgres: None,
            redis: None,
        };
        if let Some(Some(binaries)) = postgres_binaries {
            let (server, port) = start_postgres(&binaries, &data_dir.join("postgres")).await?;
            services.postgres = Some(server);
            services.database_url = private_postgres_url(database_url, port);
        }
        if let Some(Some(redis_server)) = redis_server {
            // On failure `services` is dropped here, which stops the PostgreSQL just started.
            let (server, port) = start_redis(&redis_server, &data_dir.join("redis")).await?;
            services.redis = Some(server);
            services.redis_url = private_redis_url(redis_url, port);
        }
        Ok(services)
    }

    /// Stops the private servers, waiting for each to shut down cleanly (PostgreSQL
    /// checkpoints; Redis keeps nothing). Servers that were already running are left alone.
    pub async fn stop(self) {
        let LocalServices {
            postgres, redis, ..
        } = self;
        tokio::join!(stop_if_started(postgres), stop_if_started(redis));
    }
}

async fn stop_if_started(server: Option<PrivateServer>) {
    if let Some(server) = server {
        server.stop().await;
    }
}
