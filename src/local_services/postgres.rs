//! The private PostgreSQL: a data directory initialized once (trust on loopback, C
//! locale), a server on a free 127.0.0.1 port, reused when an earlier `agentq dev` left it
//! running, and run as the `postgres` OS user when `agentq dev` runs as root, because
//! PostgreSQL refuses to run as root.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, lchown};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::{Uid, User};
use tokio::process::Command;

use super::binaries::PostgresBinaries;
use super::private_server::{PrivateServer, Readiness, free_port, open_log};
use super::signals::process_is_alive;
use super::urls::Endpoint;

/// Starts (or reuses) the private PostgreSQL kept in `root`: `root/data` is its data
/// directory, `root/socket` its Unix socket directory, `root/postgres.log` its log.
pub(super) async fn start_postgres(
    binaries: &PostgresBinaries,
    root: &Path,
) -> Result<(PrivateServer, u16)> {
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
pub(super) async fn initdb(
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
pub(super) async fn reuse_running_postgres(pgdata: &Path) -> Option<(PrivateServer, u16)> {
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
pub(super) struct PostmasterPid {
    pub(super) pid: u32,
    pub(super) port: u16,
    pub(super) ready: bool,
}

pub(super) fn read_postmaster_pid(pgdata: &Path) -> Option<PostmasterPid> {
    parse_postmaster_pid(&fs::read_to_string(pgdata.join("postmaster.pid")).ok()?)
}

pub(super) fn parse_postmaster_pid(text: &str) -> Option<PostmasterPid> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    Some(PostmasterPid {
        pid: lines.first()?.parse().ok()?,
        port: lines.get(3)?.parse().ok()?,
        ready: lines.get(7) == Some(&"ready"),
    })
}

/// Unix socket paths are limited to about 100 bytes; with a deep data directory PostgreSQL
/// would refuse to start, so it then gets no Unix socket at all (everything here uses TCP).
pub(super) fn socket_dir_argument(socket_dir: &Path) -> &std::ffi::OsStr {
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
pub(super) struct OsUser {
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
pub(super) fn postgres_os_user() -> Result<Option<OsUser>> {
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
pub(super) fn chown_tree(path: &Path, user: OsUser) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
