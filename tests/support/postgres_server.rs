//! A private PostgreSQL on a free port in a temporary directory, for tests that stop or
//! restart the database (never the shared server other tests use). Like `agentq dev`'s
//! (`src/local_services/postgres.rs`) and `.ci/run`'s: `initdb` with trust on loopback and
//! the C locale, run as the `postgres` OS user when the tests run as root, because
//! PostgreSQL refuses to run as root.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// A PostgreSQL server of the test's own, stopped (immediately) and deleted on drop.
pub struct PrivatePostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Initializes a data directory and starts a server on a free port; returns when it
    /// accepts connections.
    pub fn start() -> Self {
        let bindir = postgres_bindir();
        let dir = std::env::temp_dir().join(format!(
            "agentq-test-pg-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = nix::unistd::Uid::effective().is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:", dir.to_str().unwrap()])
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of {} to postgres", dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            port,
            dir,
            bindir,
            as_postgres,
        };
        server.run(
            "initdb",
            &[
                "-D",
                server.data().to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
            ],
        );
        server.start_server();
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`-m immediate`: every connection is cut, as in a crash)
    /// and leaves it stopped until [`PrivatePostgres::start_again`].
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts the stopped server again on the same port and data; returns when it accepts
    /// connections.
    pub fn start_again(&self) {
        self.start_server();
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start_server(&self) {
        let options = format!("-p {} -h 127.0.0.1 -k {}", self.port, self.dir.display());
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                self.dir.join("postgres.log").to_str().unwrap(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Runs one of PostgreSQL's programs (as the `postgres` user when we are root) and
    /// asserts that it succeeded.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bindir.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bindir.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = command
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: from `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn postgres_bindir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
                return dir;
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin)
                .join("pg_ctl")
                .is_file()
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL's binaries (initdb, pg_ctl) are installed")
}
