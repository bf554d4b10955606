//! A server process `agentq dev` is responsible for: spawned in its own process group (so a
//! terminal's Ctrl+C reaches only `agentq dev`, which stops it after the app), or adopted
//! by pid from an earlier run; waited on until usable; stopped with its clean-shutdown
//! signal, and killed only when that takes too long.

use std::fs::{self, File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

use super::postgres::read_postmaster_pid;
use super::redis::redis_answers_ping;
use super::signals::{process_is_alive, send_signal};
use super::urls::Endpoint;
use super::{POLL_INTERVAL, START_TIMEOUT, STOP_TIMEOUT};

/// When a freshly started server counts as usable.
pub(super) enum Readiness<'a> {
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
pub(super) struct PrivateServer {
    name: &'static str,
    pub(super) pid: u32,
    /// `None` for a server adopted from an earlier run: not our child, known by pid only.
    child: Option<Child>,
    /// The signal that asks for a quick, clean shutdown (`SIGINT` is PostgreSQL's fast mode).
    stop_signal: Signal,
    stopped: bool,
}

impl PrivateServer {
    /// Spawns `command` in its own process group (so a terminal's Ctrl+C reaches only
    /// `agentq dev`, which stops the server after the app) and kills it if it is dropped.
    pub(super) fn spawn(
        name: &'static str,
        mut command: Command,
        stop_signal: Signal,
    ) -> Result<Self> {
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

    pub(super) fn adopt(name: &'static str, pid: u32, stop_signal: Signal) -> Self {
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
    pub(super) async fn wait_ready(
        &mut self,
        readiness: Readiness<'_>,
        port: u16,
        log: &Path,
    ) -> Result<()> {
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
    pub(super) async fn stop(mut self) {
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

/// A port that was free a moment ago. Another process could take it before the server
/// binds it; the server then fails to start and says so, which is rare enough locally.
pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("looking for a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

pub(super) fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

pub(super) fn log_tail(path: &Path) -> String {
    let text = fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
