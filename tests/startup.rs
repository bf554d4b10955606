//! Processes refuse an unmigrated database and say what to run; a database on this
//! machine is reached without TLS unless the URL asks for it; a worker's connections plan
//! each statement once.

use std::process::Command;

use agentq_core::db;

/// The test database's URL, from the server URL the tests run against.
fn url_of(pool: &sqlx::PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let name = pool.connect_options().get_database().unwrap().to_owned();
    let base = server
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(server);
    format!("{base}/{name}")
}

#[sqlx::test(migrations = false)]
async fn an_unmigrated_database_is_refused_with_the_command_to_run(pool: sqlx::PgPool) {
    let error = db::ensure_migrated(&pool).await.unwrap_err().to_string();
    assert!(error.contains("run `agentq migrate`"), "{error}");

    // The real binary exits non-zero and says the same.
    let output = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args([
            "api",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url_of(&pool),
        ])
        .env("AGENTQ_LOG", "error")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("agentq migrate"), "{stderr}");

    // `agentq migrate` fixes it.
    let migrate = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(["migrate", "--database-url", &url_of(&pool)])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    db::ensure_migrated(&pool).await.unwrap();
}

/// Whether the connection of `pool` is encrypted (`pg_stat_ssl` of its own backend).
async fn encrypted(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_database_on_this_machine_is_reached_without_tls_unless_the_url_asks(pool: sqlx::PgPool) {
    if std::env::var_os("PGSSLMODE").is_some() {
        eprintln!("PGSSLMODE is set: it decides, so there is no default to check");
        return;
    }
    let url = url_of(&pool);
    let connect = |url: String| async move {
        let mut config: agentq_core::config::DatabaseConfig = agentq_core::config::defaults();
        config.url = url.as_str().into();
        config.max_connections = 1;
        db::connect(&config).await.unwrap()
    };
    // The driver's default (`prefer`) would use TLS wherever the server offers it.
    let plain = connect(url.clone()).await;
    assert!(!encrypted(&plain).await, "a loopback connection used TLS");
    let server_offers_tls: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&pool)
        .await
        .unwrap();
    if server_offers_tls == "on" {
        // An sslmode the URL names is kept.
        let asked = connect(format!("{url}?sslmode=require")).await;
        assert!(encrypted(&asked).await, "sslmode=require was not honoured");
        let prefer = connect(format!("{url}?sslmode=prefer")).await;
        assert!(
            encrypted(&prefer).await,
            "an explicit sslmode=prefer was overridden"
        );
    }
}

#[sqlx::test]
async fn worker_connections_plan_each_statement_once_unless_an_operator_says(pool: sqlx::PgPool) {
    let url = url_of(&pool);
    let mode = |url: String, plans: db::Plans| async move {
        let mut config: agentq_core::config::DatabaseConfig = agentq_core::config::defaults();
        config.url = url.as_str().into();
        config.max_connections = 1;
        let pool = db::connect_planning(&config, plans).await.unwrap();
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        mode
    };
    assert_eq!(
        mode(url.clone(), db::Plans::Generic).await,
        "force_generic_plan"
    );
    assert_eq!(mode(url.clone(), db::Plans::PerValues).await, "auto");
    // An operator's setting wins: in the URL's options, or on the database.
    assert_eq!(
        mode(
            format!("{url}?options=-c%20plan_cache_mode%3Dforce_custom_plan"),
            db::Plans::Generic
        )
        .await,
        "force_custom_plan"
    );
    let name = pool.connect_options().get_database().unwrap().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" SET plan_cache_mode = force_custom_plan"
    )))
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        mode(url.clone(), db::Plans::Generic).await,
        "force_custom_plan"
    );
}

#[test]
fn help_documents_settings_and_hides_secrets() {
    let output = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(["worker", "--help"])
        .env("AGENTQ_OPENAI_API_KEY", "sk-super-secret")
        .env("AGENTQ_DATABASE_URL", "postgres://u:pw-secret@db/agentq")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in [
        "--database-url",
        "AGENTQ_REDIS_URL",
        "--concurrency",
        "--queue-lease-secs",
        "--openai-api-key",
        "[default: 64]",
    ] {
        assert!(help.contains(setting), "help lacks {setting}");
    }
    assert!(!help.contains("sk-super-secret"));
    assert!(!help.contains("pw-secret"));
}

#[test]
fn a_config_file_sits_below_environment_and_flags() {
    let dir = std::env::temp_dir().join(format!("agentq-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agentq.toml");
    std::fs::write(
        &file,
        "redis_prefix = \"from-file\"\nmodel = \"file-model\"\nopenai_api_key = \"sk-from-file\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args([
            "admin",
            "config",
            "--config",
            file.to_str().unwrap(),
            "--model",
            "flag-model",
        ])
        .env_remove("AGENTQ_REDIS_PREFIX")
        .env_remove("AGENTQ_MODEL")
        .env_remove("AGENTQ_OPENAI_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("redis_prefix = \"from-file\""), "{stdout}");
    assert!(
        stdout.contains("model = \"flag-model\""),
        "the flag wins: {stdout}"
    );
    assert!(
        stdout.contains("openai_api_key = \"(set, hidden)\""),
        "{stdout}"
    );
    assert!(!stdout.contains("sk-from-file"));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "redis_prefix = [").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_agentq"))
        .args(["admin", "config", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}
