//! Real `agentq worker` processes, for tests that kill one or need several.

use std::process::{Child, Command, Stdio};

use super::app::TestApp;

/// A worker process pointed at a test app's database, Redis prefix and fake provider.
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Starts `agentq worker` with the app's settings, short leases (3 s turns, 2 s queue
    /// entries) so takeovers are quick, plus `extra` flags.
    pub fn spawn(app: &TestApp, extra: &[&str]) -> Self {
        let mut flags = vec!["--turn-lease-secs", "3", "--queue-lease-secs", "2"];
        flags.extend_from_slice(extra);
        Self::spawn_with_default_leases(app, &flags)
    }

    /// Starts `agentq worker` with the app's settings and the default leases, plus `extra`.
    pub fn spawn_with_default_leases(app: &TestApp, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_agentq"))
            .arg("worker")
            .args(["--database-url", &app.database_url()])
            .args([
                "--redis-url",
                &super::redis_url(),
                "--redis-prefix",
                &app.prefix,
            ])
            .args([
                "--provider",
                "openai",
                "--openai-base-url",
                &app.fake.base_url,
                "--openai-api-key",
                "sk-test-secret",
            ])
            .args(["--model", "fake-gpt", "--queues", "turns,tools"])
            .args(extra)
            .env("AGENTQ_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("agentq worker starts");
        Self { child }
    }

    /// SIGKILL: the process dies holding whatever it holds.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.child.wait().expect("worker exits")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
