//! Real `agentq` child processes (APIs, workers, schedulers) on a test app's database and
//! Redis prefix, for tests that kill one, need several or read what one logs. One type, so
//! every test stops its children the same way: SIGKILL on drop, SIGTERM when a test checks
//! a clean exit.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::app::TestApp;

/// An `agentq <role>` process pointed at a test app's database and Redis prefix.
pub struct AgentqProcess {
    child: Child,
    /// Its stdout (where its log goes), line by line, when it was started logged.
    log: Option<Arc<Mutex<Vec<String>>>>,
    /// `http://127.0.0.1:<port>` of an API process.
    base: Option<String>,
}

/// A worker process (see [`AgentqProcess::worker`]).
pub type WorkerProcess = AgentqProcess;

/// How a logged process writes its log (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable `key=value` lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    fn flag(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl AgentqProcess {
    /// Starts `agentq <role>` with the app's database and Redis prefix, plus `extra` flags;
    /// it logs warnings only, to the test's stderr.
    pub fn spawn(app: &TestApp, role: &str, extra: &[&str]) -> Self {
        Self::start(app, role, extra, None, &[])
    }

    /// Like [`AgentqProcess::spawn`], logging at the default level (`info`) in `format`;
    /// [`AgentqProcess::log_lines`] reads what it wrote.
    pub fn spawn_logged(app: &TestApp, role: &str, extra: &[&str], format: LogFormat) -> Self {
        Self::start(app, role, extra, Some(format), &[])
    }

    fn start(
        app: &TestApp,
        role: &str,
        extra: &[&str],
        logged: Option<LogFormat>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_agentq"));
        command
            .arg(role)
            .args(["--database-url", &app.database_url()])
            .args([
                "--redis-url",
                app.redis_url(),
                "--redis-prefix",
                &app.prefix,
            ])
            .args(extra)
            .env_remove("AGENTQ_LOG_FORMAT")
            .stderr(Stdio::inherit());
        if !env.is_empty() {
            // The child's AWS settings are exactly the test's: none inherited from here.
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("AWS_") {
                    command.env_remove(name);
                }
            }
            command.envs(env.iter().copied());
        }
        match logged {
            None => command.env("AGENTQ_LOG", "warn").stdout(Stdio::null()),
            Some(format) => command
                // The default filter, as an operator runs it.
                .env_remove("AGENTQ_LOG")
                .args(["--log-format", format.flag()])
                .stdout(Stdio::piped()),
        };
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("agentq {role} starts: {e}"));
        let log = child.stdout.take().map(|stdout| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        });
        Self {
            child,
            log,
            base: None,
        }
    }

    /// Starts `agentq api` on a free port, logging in `format`; wait for
    /// [`AgentqProcess::serving`] before sending requests to [`AgentqProcess::base_url`].
    pub fn api(app: &TestApp, format: LogFormat) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut api = Self::spawn_logged(app, "api", &["--listen", &listen], format);
        api.base = Some(format!("http://{listen}"));
        api
    }

    /// An API process's `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        self.base.as_deref().expect("an API process")
    }

    /// Waits until an API process answers `/healthz`.
    pub async fn serving(&self) {
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", self.base_url());
        super::eventually(Duration::from_secs(30), "the API process to serve", || {
            let request = client.get(&url).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
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
        Self::spawn(app, "worker", &Self::worker_flags(app, extra))
    }

    /// [`AgentqProcess::worker`] with `env` added to its environment (the AWS credential
    /// chain's variables, say), which no other test's worker sees; it inherits no other
    /// `AWS_*` variable.
    pub fn worker_with_env(app: &TestApp, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut flags = vec!["--turn-lease-secs", "3", "--queue-lease-secs", "2"];
        flags.extend_from_slice(extra);
        Self::start(app, "worker", &Self::worker_flags(app, &flags), None, env)
    }

    /// [`AgentqProcess::worker`], logging in `format`.
    pub fn worker_logged(app: &TestApp, extra: &[&str], format: LogFormat) -> Self {
        let mut flags = vec!["--turn-lease-secs", "3", "--queue-lease-secs", "2"];
        flags.extend_from_slice(extra);
        Self::spawn_logged(app, "worker", &Self::worker_flags(app, &flags), format)
    }

    fn worker_flags<'a>(app: &'a TestApp, extra: &[&'a str]) -> Vec<&'a str> {
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
            // As in-process workers: tests count the provider's requests.
            "--generate-titles",
            "false",
        ];
        flags.extend_from_slice(extra);
        flags
    }

    /// Starts `agentq worker` consuming only the `mail` queue, sending to the SMTP server
    /// at `smtp_url` and retrying a failed email after about a second.
    pub fn mail_worker(app: &TestApp, smtp_url: &str) -> Self {
        Self::spawn(
            app,
            "worker",
            &[
                "--provider",
                "openai",
                "--openai-base-url",
                &app.fake.base_url,
                "--openai-api-key",
                "sk-test-secret",
                "--queues",
                "mail",
                "--smtp-url",
                smtp_url,
                "--mail-from",
                "agentq <noreply@agents.example.com>",
                "--base-url",
                "https://agents.example.com",
                "--mail-retry-base-secs",
                "1",
                "--mail-timeout-secs",
                "5",
                "--queue-lease-secs",
                "2",
            ],
        )
    }

    /// Starts `agentq scheduler` with maintenance on `cron` and recovery every second.
    pub fn scheduler(app: &TestApp, cron: &str) -> Self {
        Self::spawn(
            app,
            "scheduler",
            &["--maintenance-cron", cron, "--recovery-interval-secs", "1"],
        )
    }

    /// The lines a logged process has written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .as_ref()
            .expect("a process started with spawn_logged")
            .lock()
            .unwrap()
            .clone()
    }

    /// Its exit status, if it has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies holding whatever it holds.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait()
    }

    /// SIGTERM without waiting: the process begins its graceful stop.
    pub fn sigterm(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("the process exits")
    }
}

impl Drop for AgentqProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
