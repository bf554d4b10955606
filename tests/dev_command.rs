//! `agentq dev`, the one command a newcomer runs, as a real process: it creates its
//! database, prints a token, answers a chat with the built-in model, and stops cleanly on
//! SIGTERM.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use support::{delete_keys, eventually, redis_url, unique_prefix};

#[tokio::test]
async fn agentq_dev_runs_the_whole_system_and_stops_cleanly() {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let base_url = server.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let database = format!(
        "agentq_dev_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let prefix = unique_prefix();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_dir = std::env::temp_dir().join(format!("agentq-dev-test-{prefix}"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .arg("dev")
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &format!("{base_url}/{database}")])
        .args(["--redis-url", &redis_url(), "--redis-prefix", &prefix])
        .env_remove("AGENTQ_OPENAI_API_KEY")
        .env_remove("AGENTQ_OPENAI_BASE_URL")
        .env_remove("AGENTQ_PROVIDER")
        .env("AGENTQ_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The banner names the address and a token.
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut text = String::new();
        for line in lines.by_ref().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl+C") {
                break;
            }
        }
        text
    });
    let banner = tokio::time::timeout(Duration::from_secs(60), banner)
        .await
        .expect("banner within 60 s")
        .unwrap();
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}")),
        "{banner}"
    );
    let token = banner
        .split_whitespace()
        .find(|w| w.starts_with("aq_"))
        .expect("a token in the banner")
        .trim_matches('\'')
        .to_owned();
    assert_eq!(
        std::fs::read_to_string(data_dir.join("dev-token"))
            .unwrap()
            .trim(),
        token
    );
    // The token and the key that seals provider secrets are readable by their owner only.
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["dev-token", "secret-key"] {
            let mode = std::fs::metadata(data_dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file} has mode {:o}", mode & 0o777);
        }
    }

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let created: Value = http
        .post(format!("{base}/api/v1/chats"))
        .bearer_auth(&token)
        .json(&json!({"message": "hello dev"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = created["id"].as_str().unwrap().to_owned();
    let answer = eventually(Duration::from_secs(15), "the echo answer", || async {
        let body: Value = http
            .get(format!("{base}/api/v1/chats/{chat}/messages"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["messages"]
            .as_array()
            .filter(|m| m.len() == 2)
            .map(|m| m[1].clone())
    })
    .await;
    assert_eq!(answer["content"][0]["text"], "You said: hello dev");
    assert_eq!(answer["model"], "echo");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM reaches agentq dev");
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "agentq dev exits 0 on SIGTERM, got {exit:?}"
    );

    delete_keys(&redis_url(), &prefix).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Ok(admin) = sqlx::PgPool::connect(&server).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
}
