//! `agentq` child processes (workers, an API, a scheduler) on a scenario's database and
//! Redis prefix, as tests/support/process.rs starts them: they log warnings only (or, to
//! the bench's stderr, what `AGENTQ_BENCH_CHILD_LOG` asks for), and are SIGKILLed when
//! dropped, so a scenario that fails leaves nothing running. The kernel SIGKILLs them too
//! when the bench itself dies (Ctrl-C, a kill, a panic that aborts), when no destructor
//! runs: an orphaned worker would go on taking jobs and CPU from the next run.

use std::{
    os::{fd::AsFd, unix::process::CommandExt},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::common::{Ctx, FreshDb};

/// Has the kernel SIGKILL the child when the bench exits, however it exits (Linux's
/// parent-death signal, set in the child between fork and exec). The signal follows the
/// thread that spawned the child; the bench spawns from its runtime's threads, which live
/// as long as the bench.
fn dies_with_the_bench(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes one system
    // call (prctl), which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// A running `agentq <role>`.
pub struct Agentq {
    child: Child,
    /// `http://127.0.0.1:<port>` of an API process.
    pub base: Option<String>,
}

impl Agentq {
    /// Starts `agentq <role>` on `db` and `prefix` with `extra` flags.
    pub fn spawn(
        ctx: &Ctx,
        role: &str,
        db: &FreshDb,
        prefix: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        // Logs go to stdout; with a filter asked for, to the bench's stderr instead.
        let child_log = std::env::var("AGENTQ_BENCH_CHILD_LOG").ok();
        let stdout = match child_log {
            Some(_) => Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?),
            None => Stdio::null(),
        };
        let mut command = Command::new(ctx.agentq_bin());
        dies_with_the_bench(&mut command);
        let child = command
            .arg(role)
            .args(["--database-url", &db.url])
            .args(["--redis-url", ctx.redis_url(), "--redis-prefix", prefix])
            .args(extra)
            .env_remove("AGENTQ_LOG_FORMAT")
            .env_remove("AGENTQ_CONFIG")
            .env("AGENTQ_LOG", child_log.as_deref().unwrap_or("warn"))
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {} {role} (build it: cargo build --release -p agentq): {e}",
                    ctx.agentq_bin().display()
                )
            })?;
        Ok(Self { child, base: None })
    }

    /// `agentq worker` on the built-in echo model (instant answers), turns and tools
    /// queues, no title generation (its extra provider call would be measured too), at most
    /// `connections` PostgreSQL connections.
    pub fn echo_worker(
        ctx: &Ctx,
        db: &FreshDb,
        prefix: &str,
        connections: u32,
    ) -> anyhow::Result<Self> {
        let connections = connections.to_string();
        Self::spawn(
            ctx,
            "worker",
            db,
            prefix,
            &[
                "--provider",
                "echo",
                "--queues",
                "turns,tools",
                "--generate-titles",
                "false",
                "--database-max-connections",
                &connections,
            ],
        )
    }

    /// `agentq worker` on an OpenAI-compatible server at `base_url`, plus `extra` flags.
    pub fn openai_worker(
        ctx: &Ctx,
        db: &FreshDb,
        prefix: &str,
        base_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut flags = vec![
            "--provider",
            "openai",
            "--openai-base-url",
            base_url,
            "--openai-api-key",
            "sk-bench",
            "--model",
            "fake-gpt",
            "--queues",
            "turns,tools",
            "--generate-titles",
            "false",
        ];
        flags.extend_from_slice(extra);
        Self::spawn(ctx, "worker", db, prefix, &flags)
    }

    /// `agentq api` on a free port, plus `extra` flags; waits until it answers `/healthz`.
    pub async fn api(
        ctx: &Ctx,
        db: &FreshDb,
        prefix: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut flags = vec!["--listen", listen.as_str()];
        flags.extend_from_slice(extra);
        let mut api = Self::spawn(ctx, "api", db, prefix, &flags)?;
        let base = format!("http://{listen}");
        let client = reqwest::Client::new();
        let url = format!("{base}/healthz");
        let up =
            crate::common::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
                let request = client.get(&url).send();
                async move { request.await.is_ok_and(|r| r.status().is_success()) }
            })
            .await;
        anyhow::ensure!(up, "the API process did not serve within 30 s");
        api.base = Some(base);
        Ok(api)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies holding whatever it holds.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agentq {
    fn drop(&mut self) {
        self.kill();
    }
}
