//! Real `agentq` child processes (workers, schedulers) on a test app's database and Redis
//! prefix, for tests that kill one or need several. One type, so every test stops its
//! children the same way: SIGKILL on drop, SIGTERM when a test checks a clean exit.

use std::process::{Child, Command, ExitStatus, Stdio};

use super::app::TestApp;

/// An `agentq <role>` process pointed at a test app's database and Redis prefix.
pub struct AgentqProcess {
    child: Child,
}

/// A worker process (see [`AgentqProcess::worker`]).
pub type WorkerProcess = AgentqProcess;

impl AgentqProcess {
    /// Starts `agentq <role>` with the app's database and Redis prefix, plus `extra` flags.
    pub fn spawn(app: &TestApp, role: &str, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_agentq"))
            .arg(role)
            .args(["--database-url", &app.database_url()])
            .args([
                "--redis-url",
                &super::redis_url(),
                "--redis-prefix",
                &app.prefix,
            ])
            .args(extra)
            .env("AGENTQ_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("agentq {role} starts: {e}"));
        Self { child }
    }

    /// Starts `agentq worker` on the app's fake provider with short leases (3 s turns, 2 s
    /// queue entries) so takeovers are quick, plus `extra` flags.
    pub fn worker(app: &TestApp, extra: &[&str]) -> Self {
        let mut flags = vec!["--turn-lease-secs", "3", "--queue-lease-secs", "2"];
        flags.extend_from_slice(extra);
        Self::worker_with_default_leases(app, &flags)
    }

    /// Starts `agentq worker` on the app's fake provider with the default leases, plus
    /// `extra` flags.
    pub fn worker_with_default_leases(app: &TestApp, extra: &[&str]) -> Self {
        let mut flags = vec![
            "--provider",
            "openai",
            "--openai-base-url",
            &app.fake.base_url,
            "--openai-api-key",
            "sk-test-secret",
            "--model",
            "fake-gpt",
            "--queues",
            "turns,tools",
        ];
        flags.extend_from_slice(extra);
        Self::spawn(app, "worker", &flags)
    }

    /// Starts `agentq scheduler` with maintenance on `cron` and recovery every second.
    pub fn scheduler(app: &TestApp, cron: &str) -> Self {
        Self::spawn(
            app,
            "scheduler",
            &["--maintenance-cron", cron, "--recovery-interval-secs", "1"],
        )
    }

    /// SIGKILL: the process dies holding whatever it holds.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.child.wait().expect("the process exits")
    }
}

impl Drop for AgentqProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
