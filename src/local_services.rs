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
//! ```ignore
//! let services = LocalServices::ensure(&config.database_url, &config.redis_url, Path::new("data")).await?;
//! run_everything(&services.database_url, &services.redis_url).await?;
//! services.stop().await;
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use url::{Host, Url};

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

/// Starts (or reuses) the private PostgreSQL kept in `root`: `root/data` is its data
/// directory, `root/socket` its Unix socket directory, `root/postgres.log` its log.
async fn start_postgres(binaries: &PostgresBinaries, root: &Path) -> Result<(PrivateServer, u16)> {
    let pgdata = root.join("data");
    let socket_dir = root.join("socket");
    let log_path = root.join("postgres.log");
    fs::create_dir_all(&socket_dir)
        .with_context(|| format!("creating {}", socket_dir.display()))?;

    if let Some(reused) = reuse_running_postgres(&pgdata).await {
        return Ok(reused);
    }

    let os_user = postgres_os_user()?;
    if let Some(user) = os_user {
        chown_tree(root, user)
            .with_context(|| format!("giving {} to the postgres OS user", root.display()))?;
        user.check_can_write(root).await?;
    }
    let initialized = pgdata.join("PG_VERSION").try_exists().with_context(|| {
        format!(
            "looking into {} (was it created by another user, e.g. an earlier run as root?)",
            pgdata.display()
        )
    })?;
    if !initialized {
        initdb(binaries, &pgdata, root, os_user).await?;
    }

    let port = free_port()?;
    let log = open_log(&log_path)?;
    let mut command = Command::new(&binaries.postgres);
    command
        .arg("-D")
        .arg(&pgdata)
        .arg("-p")
        .arg(port.to_string())
        .args(["-h", "127.0.0.1", "-k"])
        .arg(socket_dir_argument(&socket_dir))
        .current_dir(root)
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(user) = os_user {
        user.apply(&mut command);
    }
    let mut server = PrivateServer::spawn("PostgreSQL", command, Signal::SIGINT)?;
    server
        .wait_ready(
            Readiness::PostgresReady { pgdata: &pgdata },
            port,
            &log_path,
        )
        .await?;
    tracing::info!(
        pid = server.pid,
        port,
        data_dir = %pgdata.display(),
        log = %log_path.display(),
        "started a private PostgreSQL"
    );
    Ok((server, port))
}

/// Creates the data directory: trust authentication on loopback for the `postgres` role,
/// which is what a throwaway developer database wants, and the C locale, which exists on
/// every machine (a missing `LANG` locale is the usual reason `initdb` fails in containers).
async fn initdb(
    binaries: &PostgresBinaries,
    pgdata: &Path,
    root: &Path,
    os_user: Option<OsUser>,
) -> Result<()> {
    let mut command = Command::new(&binaries.initdb);
    command
        .arg("-D")
        .arg(pgdata)
        .args([
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .current_dir(root)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(user) = os_user {
        user.apply(&mut command);
    }
    let output = command
        .output()
        .await
        .with_context(|| format!("running {}", binaries.initdb.display()))?;
    if !output.status.success() {
        bail!(
            "initdb failed ({}) for {}:\n{}{}",
            output.status,
            pgdata.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    tracing::info!(data_dir = %pgdata.display(), "initialized a private PostgreSQL data directory");
    Ok(())
}

/// A PostgreSQL left running on `pgdata` by an earlier `agentq dev` that did not stop it.
/// Starting a second one would fail on the data directory's lock, so it is adopted.
async fn reuse_running_postgres(pgdata: &Path) -> Option<(PrivateServer, u16)> {
    let pid_file = read_postmaster_pid(pgdata)?;
    let port = pid_file.port;
    let running = pid_file.ready
        && process_is_alive(pid_file.pid)
        && Endpoint::loopback(port).accepts_tcp().await;
    if !running {
        return None;
    }
    tracing::info!(
        pid = pid_file.pid,
        port,
        data_dir = %pgdata.display(),
        "reusing the private PostgreSQL left running by an earlier agentq dev"
    );
    Some((
        PrivateServer::adopt("PostgreSQL", pid_file.pid, Signal::SIGINT),
        port,
    ))
}

/// What PostgreSQL's `postmaster.pid` says: line 1 is the pid, line 4 the port, line 8
/// the status, `ready` once it accepts connections.
#[derive(Debug, PartialEq, Eq)]
struct PostmasterPid {
    pid: u32,
    port: u16,
    ready: bool,
}

fn read_postmaster_pid(pgdata: &Path) -> Option<PostmasterPid> {
    parse_postmaster_pid(&fs::read_to_string(pgdata.join("postmaster.pid")).ok()?)
}

fn parse_postmaster_pid(text: &str) -> Option<PostmasterPid> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    Some(PostmasterPid {
        pid: lines.first()?.parse().ok()?,
        port: lines.get(3)?.parse().ok()?,
        ready: lines.get(7) == Some(&"ready"),
    })
}

/// Unix socket paths are limited to about 100 bytes; with a deep data directory PostgreSQL
/// would refuse to start, so it then gets no Unix socket at all (everything here uses TCP).
fn socket_dir_argument(socket_dir: &Path) -> &std::ffi::OsStr {
    const SOCKET_FILE_NAME_LEN: usize = "/.s.PGSQL.65535".len();
    if socket_dir.as_os_str().len() + SOCKET_FILE_NAME_LEN < 100 {
        socket_dir.as_os_str()
    } else {
        tracing::debug!(socket_dir = %socket_dir.display(), "path too long for a Unix socket; TCP only");
        std::ffi::OsStr::new("")
    }
}

/// An OS account to run PostgreSQL as.
#[derive(Debug, Clone, Copy)]
struct OsUser {
    uid: u32,
    gid: u32,
}

impl OsUser {
    fn apply(self, command: &mut Command) {
        command.uid(self.uid).gid(self.gid);
    }

    /// Whether the user can reach and write `dir`: every parent must be open to it too,
    /// which is not the case for a checkout under `/root`.
    async fn check_can_write(self, dir: &Path) -> Result<()> {
        let mut test = Command::new("test");
        test.arg("-w").arg(dir).stdin(Stdio::null());
        self.apply(&mut test);
        let status = test
            .status()
            .await
            .context("running `test -w` as the postgres OS user")?;
        if !status.success() {
            bail!(
                "the private PostgreSQL runs as the `postgres` OS user (PostgreSQL refuses to run \
                 as root), and that user cannot write to {}: a parent directory is closed to \
                 other users. Use a data directory it can reach (e.g. under /var/tmp), run \
                 `agentq dev` as an ordinary user, or point AGENTQ_DATABASE_URL at a running \
                 PostgreSQL.",
                dir.display()
            );
        }
        Ok(())
    }
}

/// PostgreSQL refuses to run as root. When `agentq dev` runs as root (containers, CI
/// machines), the private instance runs as the `postgres` OS user that the PostgreSQL
/// packages create; as anyone else it runs as that user itself (`None`).
fn postgres_os_user() -> Result<Option<OsUser>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(OsUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        _ => bail!(
            "PostgreSQL refuses to run as root, and there is no `postgres` OS user to run the \
             private instance as. Run `agentq dev` as an ordinary user, create that user \
             (`useradd --system --create-home postgres`), or point AGENTQ_DATABASE_URL at a \
             running PostgreSQL."
        ),
    }
}

/// Gives `path` and everything below it to `user`; entries that vanish meanwhile are skipped.
fn chown_tree(path: &Path, user: OsUser) -> io::Result<()> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if metadata.uid() != user.uid || metadata.gid() != user.gid {
        lchown(path, Some(user.uid), Some(user.gid))?;
    }
    if metadata.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// Starts (or reuses) the private Redis kept in `dir`, without persistence: queues and
/// event streams of a local run are disposable, and the database recovers lost jobs.
async fn start_redis(redis_server: &Path, dir: &Path) -> Result<(PrivateServer, u16)> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pid_path = dir.join("redis.pid");
    let port_path = dir.join("redis.port");
    let log_path = dir.join("redis.log");

    if let Some(reused) = reuse_running_redis(&pid_path, &port_path).await {
        return Ok(reused);
    }

    let port = free_port()?;
    let log = open_log(&log_path)?;
    let mut command = Command::new(redis_server);
    command
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--pidfile")
        .arg(pid_path)
        .current_dir(dir)
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut server = PrivateServer::spawn("Redis", command, Signal::SIGTERM)?;
    server
        .wait_ready(Readiness::RedisPong, port, &log_path)
        .await?;
    // Redis writes its pid file itself; the port is ours to remember for a later reuse.
    fs::write(&port_path, port.to_string())
        .with_context(|| format!("writing {}", port_path.display()))?;
    tracing::info!(
        pid = server.pid,
        port,
        dir = %dir.display(),
        log = %log_path.display(),
        "started a private Redis"
    );
    Ok((server, port))
}

/// A Redis left running by an earlier `agentq dev` that did not stop it: reusing it keeps
/// its queues consistent with the database, and nothing is left orphaned.
async fn reuse_running_redis(pid_path: &Path, port_path: &Path) -> Option<(PrivateServer, u16)> {
    let pid: u32 = read_number(pid_path)?;
    let port: u16 = read_number(port_path)?;
    if !(process_is_alive(pid) && redis_answers_ping(port).await) {
        return None;
    }
    tracing::info!(
        pid,
        port,
        "reusing the private Redis left running by an earlier agentq dev"
    );
    Some((PrivateServer::adopt("Redis", pid, Signal::SIGTERM), port))
}

fn read_number<T: FromStr>(path: &Path) -> Option<T> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

async fn redis_answers_ping(port: u16) -> bool {
    let ping = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<_, io::Error>(reply == *b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, ping).await,
        Ok(Ok(true))
    )
}

/// When a freshly started server counts as usable.
enum Readiness<'a> {
    /// PostgreSQL accepts TCP before it accepts logins (during crash recovery, for one);
    /// `postmaster.pid` says `ready` only once it does.
    PostgresReady { pgdata: &'a Path },
    /// Redis answers `-LOADING` until it can serve; `+PONG` means it can.
    RedisPong,
}

impl Readiness<'_> {
    async fn is_ready(&self, port: u16) -> bool {
        match self {
            Self::PostgresReady { pgdata } => {
                read_postmaster_pid(pgdata)
                    .is_some_and(|pid_file| pid_file.ready && pid_file.port == port)
                    && Endpoint::loopback(port).accepts_tcp().await
            }
            Self::RedisPong => redis_answers_ping(port).await,
        }
    }
}

/// A server process that `agentq dev` is responsible for stopping.
struct PrivateServer {
    name: &'static str,
    pid: u32,
    /// `None` for a server adopted from an earlier run: not our child, known by pid only.
    child: Option<Child>,
    /// The signal that asks for a quick, clean shutdown (`SIGINT` is PostgreSQL's fast mode).
    stop_signal: Signal,
    stopped: bool,
}

impl PrivateServer {
    /// Spawns `command` in its own process group (so a terminal's Ctrl+C reaches only
    /// `agentq dev`, which stops the server after the app) and kills it if it is dropped.
    fn spawn(name: &'static str, mut command: Command, stop_signal: Signal) -> Result<Self> {
        command
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting a private {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("the private {name} exited at once"))?;
        Ok(Self {
            name,
            pid,
            child: Some(child),
            stop_signal,
            stopped: false,
        })
    }

    fn adopt(name: &'static str, pid: u32, stop_signal: Signal) -> Self {
        Self {
            name,
            pid,
            child: None,
            stop_signal,
            stopped: false,
        }
    }

    /// Waits until the server is usable, failing early (with the end of its log) when it
    /// exits, and after [`START_TIMEOUT`] when it hangs.
    async fn wait_ready(&mut self, readiness: Readiness<'_>, port: u16, log: &Path) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the private {} exited ({status}) before accepting connections; the end of {}:\n{}",
                    self.name,
                    log.display(),
                    log_tail(log)
                );
            }
            if readiness.is_ready(port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the private {} did not accept connections on 127.0.0.1:{port} within {} s; see {}",
                    self.name,
                    START_TIMEOUT.as_secs(),
                    log.display()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Asks the server to shut down and waits for it, killing it after [`STOP_TIMEOUT`].
    async fn stop(mut self) {
        self.stopped = true;
        let (name, pid) = (self.name, self.pid);
        match self.child.as_mut() {
            Some(child) => {
                if matches!(child.try_wait(), Ok(None)) {
                    send_signal(pid, self.stop_signal);
                    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
                        .await
                        .is_err()
                    {
                        tracing::warn!(pid, "the private {name} did not stop in time; killing it");
                        let _ = child.kill().await;
                    }
                }
            }
            None => {
                send_signal(pid, self.stop_signal);
                let deadline = Instant::now() + STOP_TIMEOUT;
                while process_is_alive(pid) && Instant::now() < deadline {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
        }
        tracing::info!(pid, "stopped the private {name}");
    }
}

impl Drop for PrivateServer {
    // The fallback when `stop` was not called (an error or a panic unwinding `agentq dev`):
    // ask for a clean shutdown and wait a bounded time, blocking, before `kill_on_drop`
    // kills whatever is left.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        match self.child.as_mut() {
            Some(child) => {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                send_signal(self.pid, self.stop_signal);
                let deadline = Instant::now() + STOP_TIMEOUT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(POLL_INTERVAL);
                }
            }
            None => {
                send_signal(self.pid, self.stop_signal);
            }
        }
    }
}

/// Sends `signal` to `pid`; whether it was delivered.
fn send_signal(pid: u32, signal: Signal) -> bool {
    kill(as_pid(pid), signal).is_ok()
}

/// Whether `pid` is a live process we may signal (signal 0 tests without sending).
fn process_is_alive(pid: u32) -> bool {
    kill(as_pid(pid), None).is_ok()
}

fn as_pid(pid: u32) -> Pid {
    // Pids fit in an i32 (the kernel's `pid_t`); a larger value names no process.
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// A port that was free a moment ago. Another process could take it before the server
/// binds it; the server then fails to start and says so, which is rare enough locally.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("looking for a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn log_tail(path: &Path) -> String {
    let text = fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `initdb` and `postgres` taken from one directory, so that their versions match.
struct PostgresBinaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

impl PostgresBinaries {
    /// Looks on PATH first, then where packages keep the server programs off PATH: Debian
    /// under /usr/lib/postgresql/<version>/bin, Homebrew's versioned formulae under opt/.
    /// The newest version wins.
    fn find() -> Option<Self> {
        let mut dirs = path_dirs();
        dirs.extend(newest_first(Path::new("/usr/lib/postgresql"), ""));
        dirs.extend(newest_first(Path::new("/opt/homebrew/opt"), "postgresql"));
        dirs.extend(newest_first(Path::new("/usr/local/opt"), "postgresql"));
        dirs.into_iter().find_map(|dir| {
            let initdb = dir.join("initdb");
            let postgres = dir.join("postgres");
            (is_executable(&initdb) && is_executable(&postgres))
                .then_some(Self { initdb, postgres })
        })
    }
}

fn find_redis_server() -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .chain(
            [
                "/usr/bin",
                "/usr/sbin",
                "/usr/local/bin",
                "/opt/homebrew/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| is_executable(candidate))
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default()
}

/// The `bin` directories of `parent`'s entries whose names start with `prefix`, the
/// highest version number first (`16` before `15`, `postgresql@17` before `postgresql@14`).
fn newest_first(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.starts_with(prefix)
                .then(|| (version_numbers(&name), entry.path().join("bin")))
        })
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, dir)| dir).collect()
}

fn version_numbers(name: &str) -> Vec<u32> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|digits| digits.parse().ok())
        .collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && (metadata.permissions().mode() & 0o111) != 0)
}

/// The URL of the private PostgreSQL: the `postgres` role with trust authentication, and
/// the configured database name, so the caller creates and migrates the same database.
/// Credentials and query parameters of the configured URL do not apply to it.
fn private_postgres_url(configured: &str, port: u16) -> String {
    private_url("postgres://postgres@127.0.0.1", configured, port)
}

/// The URL of the private Redis, keeping the configured database index (`/0`), if any.
fn private_redis_url(configured: &str, port: u16) -> String {
    private_url("redis://127.0.0.1", configured, port)
}

/// `base` on `port` with the path (database name or index) of `configured`.
fn private_url(base: &str, configured: &str, port: u16) -> String {
    let mut url = Url::parse(base).expect("a valid base URL");
    url.set_port(Some(port)).expect("the base URL has a host");
    if let Ok(configured) = Url::parse(configured) {
        url.set_path(configured.path());
    }
    url.into()
}

/// Where a server is expected to listen, as read from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// Reads host and port from `postgres://user:pw@host:port/db`, `redis://host:port/0` and
    /// the like; `default_port` when the URL has none, `localhost` when it has no host.
    ///
    /// Read with `url::Url` rather than `PgConnectOptions`/`redis::ConnectionInfo`: those
    /// fill in what the URL leaves out from `PGHOST`/`PGPORT` and Unix socket defaults,
    /// while the question here is whether the address written in the URL answers.
    fn parse(url: &str, default_port: u16) -> Result<Self, String> {
        let url = Url::parse(url).map_err(|e| e.to_string())?;
        if !url.has_authority() {
            return Err("expected scheme://host[:port]".into());
        }
        let host = match url.host() {
            Some(Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => "localhost".to_owned(),
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
        })
    }

    fn loopback(port: u16) -> Self {
        Self {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port,
        }
    }

    /// Whether a private server may stand in for this address.
    fn is_local(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    }

    async fn accepts_tcp(&self) -> bool {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, connect).await,
            Ok(Ok(_))
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, default_port: u16) -> Endpoint {
        Endpoint::parse(url, default_port).expect("a URL the parser accepts")
    }

    fn at(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn postgres_url_with_user_and_port() {
        assert_eq!(
            endpoint("postgres://postgres@127.0.0.1:5433/agentq", 5432),
            at("127.0.0.1", 5433)
        );
    }

    #[test]
    fn postgres_url_with_password_and_no_port_gets_5432() {
        assert_eq!(
            endpoint("postgres://app:s3cret@db.internal/agentq", 5432),
            at("db.internal", 5432)
        );
        assert_eq!(
            endpoint(
                "postgresql://app:pa:ss@localhost/agentq?sslmode=disable",
                5432
            ),
            at("localhost", 5432)
        );
    }

    #[test]
    fn redis_url_with_port_and_optional_database_index() {
        assert_eq!(
            endpoint("redis://127.0.0.1:6380", 6379),
            at("127.0.0.1", 6380)
        );
        assert_eq!(
            endpoint("redis://127.0.0.1:6380/0", 6379),
            at("127.0.0.1", 6380)
        );
        assert_eq!(endpoint("redis://cache", 6379), at("cache", 6379));
        assert_eq!(endpoint("redis://:pw@cache/2", 6379), at("cache", 6379));
    }

    #[test]
    fn query_strings_and_ipv6_hosts_are_understood() {
        assert_eq!(
            endpoint("postgres://u@db:6000?sslmode=disable", 5432),
            at("db", 6000)
        );
        assert_eq!(
            endpoint("postgres://u@[::1]:5433/agentq", 5432),
            at("::1", 5433)
        );
        assert_eq!(endpoint("redis://[::1]", 6379), at("::1", 6379));
        assert_eq!(endpoint("postgres:///agentq", 5432), at("localhost", 5432));
    }

    #[test]
    fn malformed_urls_are_rejected() {
        assert!(Endpoint::parse("127.0.0.1:5432", 5432).is_err());
        assert!(Endpoint::parse("redis://cache:sixthousand", 6379).is_err());
        assert!(Endpoint::parse("redis://cache:70000", 6379).is_err());
        assert!(Endpoint::parse("redis://[::1", 6379).is_err());
    }

    #[test]
    fn private_postgres_url_keeps_the_database_but_not_the_credentials() {
        assert_eq!(
            private_postgres_url(
                "postgres://app:s3cret@127.0.0.1:5432/agentq?sslmode=require",
                41234
            ),
            "postgres://postgres@127.0.0.1:41234/agentq"
        );
        assert_eq!(
            private_postgres_url("postgres://localhost", 41234),
            "postgres://postgres@127.0.0.1:41234"
        );
    }

    #[test]
    fn private_redis_url_keeps_the_database_index() {
        assert_eq!(
            private_redis_url("redis://:pw@127.0.0.1:6379/3", 40000),
            "redis://127.0.0.1:40000/3"
        );
        assert_eq!(
            private_redis_url("redis://localhost", 40000),
            "redis://127.0.0.1:40000"
        );
    }

    #[test]
    fn only_local_addresses_get_a_private_server() {
        for local in ["localhost", "127.0.0.1", "127.0.1.1", "::1", "0.0.0.0"] {
            assert!(at(local, 1).is_local(), "{local} is local");
        }
        for remote in ["db.internal", "10.0.0.5", "postgres"] {
            assert!(!at(remote, 1).is_local(), "{remote} is not local");
        }
    }

    #[test]
    fn endpoints_display_as_host_and_port() {
        assert_eq!(at("127.0.0.1", 5432).to_string(), "127.0.0.1:5432");
        assert_eq!(at("::1", 6379).to_string(), "[::1]:6379");
    }

    #[test]
    fn postmaster_pid_gives_pid_port_and_readiness() {
        let ready = "11995\n/data/postgres/data\n1795580090\n54999\n/data/postgres/socket\n\
                     127.0.0.1\n 10010703         9\nready   \n";
        assert_eq!(
            parse_postmaster_pid(ready),
            Some(PostmasterPid {
                pid: 11995,
                port: 54999,
                ready: true
            })
        );
        let starting = ready.replace("ready   ", "starting");
        assert_eq!(
            parse_postmaster_pid(&starting).map(|pid_file| pid_file.ready),
            Some(false)
        );
        assert_eq!(parse_postmaster_pid("11995\n"), None);
    }

    #[test]
    fn newer_postgres_versions_sort_first() {
        assert_eq!(version_numbers("15"), [15_u32]);
        assert_eq!(version_numbers("postgresql@17"), [17_u32]);
        assert!(version_numbers("postgresql@17") > version_numbers("postgresql@14"));
        assert!(version_numbers("postgresql@14") > version_numbers("postgresql"));
    }
}
