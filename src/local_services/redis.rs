//! The private Redis: no persistence (a local run's queues and event streams are
//! disposable, and the database recovers lost jobs), on a free 127.0.0.1 port, reused when
//! an earlier `agentq dev` left it running.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use super::PROBE_TIMEOUT;
use super::private_server::{PrivateServer, Readiness, free_port, open_log};
use super::signals::process_is_alive;

/// Starts (or reuses) the private Redis kept in `dir`, without persistence: queues and
/// event streams of a local run are disposable, and the database recovers lost jobs.
pub(super) async fn start_redis(redis_server: &Path, dir: &Path) -> Result<(PrivateServer, u16)> {
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
pub(super) async fn reuse_running_redis(
    pid_path: &Path,
    port_path: &Path,
) -> Option<(PrivateServer, u16)> {
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

pub(super) fn read_number<T: FromStr>(path: &Path) -> Option<T> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(super) async fn redis_answers_ping(port: u16) -> bool {
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
