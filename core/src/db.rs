//! Connecting to PostgreSQL and applying the embedded migrations.
//!
//! `agentq migrate` (and `agentq dev`) apply migrations; every other process calls
//! [`connect_migrated`], which refuses to start on a database that lacks them, naming the
//! command to run, instead of failing later on a missing column.

use std::time::Duration;

use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions, PgSslMode},
};

use crate::config::DatabaseConfig;

/// The migrations in `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Why a process could not use the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Connecting failed.
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations are missing or older than this binary.
    #[error(
        "the database is not migrated ({missing} migration(s) pending, newest {newest}); run `agentq migrate` first"
    )]
    NotMigrated {
        /// How many migrations are not applied.
        missing: usize,
        /// Version of the newest embedded migration.
        newest: i64,
    },
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another database error.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

/// How a process's connections plan the statements they prepare (every query is a prepared
/// statement, cached per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// PostgreSQL's default (`plan_cache_mode = auto`): a statement's first five runs on a
    /// connection are planned for their values, and a statement whose generic plan looks
    /// dearer than those stays planned per run. For processes whose statements' best plan
    /// depends on their values: the API's chat search (a trigram or label filter), the
    /// scheduler's scans.
    PerValues,
    /// `plan_cache_mode = force_generic_plan`: each statement is planned once per
    /// connection. For workers, whose statements address rows by id (a turn, a chat, ids
    /// in an array) or a chat's or an owner's few rows, where a plan for the values is
    /// not better and planning is pure cost: the turn acquisition took 1.4 ms to plan,
    /// six times on each new connection, and a read by `id = ANY($1)` was planned on
    /// every run (`bench/RESULTS.md`, "Session 20"). Set by a statement on each new
    /// connection, not as a startup option (connection poolers may refuse those), and only
    /// where nothing else set it: a `plan_cache_mode` from the URL's `options`,
    /// `PGOPTIONS`, `ALTER ROLE`/`ALTER DATABASE` or the server's configuration wins.
    /// Behind a pooler in transaction mode a session's setting outlives the worker's use of
    /// the server connection: give workers a role of their own there and set the mode on
    /// the role (`ALTER ROLE agentq_worker SET plan_cache_mode = force_generic_plan`), or
    /// set `auto` on the shared role to keep every process on the default.
    ///
    /// A worker's pool also checks a connection with a round trip before handing it out
    /// only when it sat idle for over [`CHECK_IDLE_AFTER`] (sqlx checks every one by
    /// default, `test_before_acquire`, and each one it takes back in any case): under
    /// load that check cost each statement a round trip of its own (bench/RESULTS.md,
    /// "Session 22"), and a connection in steady use was checked when it was last given
    /// back. A connection PostgreSQL closed in the second after that check (a restart)
    /// fails the statement that finds it, as a statement in flight at the restart does.
    Generic,
}

/// How long a worker's pooled connection may sit idle before it is checked with a round
/// trip when handed out ([`Plans::Generic`]).
pub(crate) const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The URL's connection settings; a URL that does not parse names itself, redacted.
///
/// A server on this machine (a loopback address, `localhost` or a Unix socket) is reached
/// without TLS unless the URL or `PGSSLMODE` names an `sslmode`: the driver's default,
/// `prefer`, would encrypt every message to a server whose traffic never leaves the
/// machine, which protects nothing and cost PostgreSQL about a fifth of its CPU per turn
/// (`bench/RESULTS.md`, "TLS to a server on this machine"). Any other host keeps the
/// driver's default.
fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, DbError> {
    let url = config.url.expose();
    let options: PgConnectOptions = url.parse().map_err(|source| DbError::Connect {
        url: config.url.redacted(),
        source,
    })?;
    let mode_named = std::env::var_os("PGSSLMODE").is_some() || names_ssl_mode(url);
    let local = options.get_socket().is_some() || on_this_machine(options.get_host());
    Ok(if !mode_named && local {
        tracing::info!(
            host = options.get_host(),
            "PostgreSQL is on this machine: connecting without TLS (name an sslmode in the \
             URL, `?sslmode=prefer` say, to use it: a server that only accepts TLS, or a local \
             port forwarded to another machine, needs it)"
        );
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

/// Whether the URL's query sets `sslmode` (or its alias `ssl-mode`).
fn names_ssl_mode(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("sslmode") || k.eq_ignore_ascii_case("ssl-mode"))
    })
}

/// Whether `host` is this machine: a loopback address, `localhost`, or a Unix socket's
/// directory.
fn on_this_machine(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Opens a pool without checking migrations (for `migrate` itself), planning as PostgreSQL
/// does by default ([`Plans::PerValues`]).
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    connect_planning(config, Plans::PerValues).await
}

/// [`connect`] with its connections planning as `plans` says.
pub async fn connect_planning(config: &DatabaseConfig, plans: Plans) -> Result<PgPool, DbError> {
    let options = connect_options(config)?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10));
    let pool = match plans {
        Plans::PerValues => pool,
        // Only a connection that sat idle is checked before use (see `Plans::Generic`).
        Plans::Generic => pool
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > CHECK_IDLE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(
                        "SELECT set_config('plan_cache_mode', 'force_generic_plan', false)
                     FROM pg_settings WHERE name = 'plan_cache_mode' AND source = 'default'",
                    )
                    .execute(conn)
                    .await
                    .map(drop)
                })
            }),
    };
    pool.connect_with(options)
        .await
        .map_err(|source| DbError::Connect {
            url: config.url.redacted(),
            source,
        })
}

/// Opens a pool whose connections plan as `plans` says, and checks that every embedded
/// migration is applied.
pub async fn connect_migrated(config: &DatabaseConfig, plans: Plans) -> Result<PgPool, DbError> {
    let pool = connect_planning(config, plans).await?;
    ensure_migrated(&pool).await?;
    Ok(pool)
}

/// Fails with [`DbError::NotMigrated`] when an embedded migration is not applied.
pub async fn ensure_migrated(pool: &PgPool) -> Result<(), DbError> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(v) => v,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
    let missing = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count();
    if missing > 0 {
        let newest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default();
        return Err(DbError::NotMigrated { missing, newest });
    }
    Ok(())
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Creates the database named in the URL when it does not exist (used by `agentq dev`).
pub async fn create_database_if_missing(config: &DatabaseConfig) -> Result<bool, DbError> {
    let options = connect_options(config)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.database("postgres"))
        .await
        .map_err(|source| DbError::Connect {
            url: config.url.redacted(),
            source,
        })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&admin)
            .await?;
    }
    admin.close().await;
    Ok(!exists)
}

/// Drops the database `name` on `config`'s server if it exists, closing its connections
/// (`WITH (FORCE)`): benchmarks start from an empty one. Bootstrap, like
/// [`create_database_if_missing`].
pub async fn drop_database_if_exists(config: &DatabaseConfig, name: &str) -> Result<(), DbError> {
    let options = connect_options(config)?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.database("postgres"))
        .await
        .map_err(|source| DbError::Connect {
            url: config.url.redacted(),
            source,
        })?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    admin.close().await;
    Ok(())
}

/// Query parameters whose values are treated as secrets: any name containing one of these
/// (case-insensitive), so `password`, `sslpassword`, `api_key`, `access_token`, `X-Amz-Signature`
/// are all caught. Redacting a harmless value now and then is the price of never logging a
/// real one.
const SECRET_PARAM_HINTS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "sig",
    "credential",
];

/// A URL fit for logs: the password in its user info and the values of secret-looking query
/// parameters (`?password=`, `?key=`, `?token=`, ...) replaced by `***`. Read with
/// `url::Url`, which finds the user info the way the drivers do (up to the last `@` before
/// the host, so a raw `@` in a password or an email in the query changes nothing). Text
/// that does not parse as a URL is not shown: it could hold a password anywhere.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "*** (not a valid URL)".to_owned();
    };
    if url.password().is_some() {
        // Only fails for URLs that cannot have a user info, which then have no password.
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if !value.is_empty() && is_secret_param(&name) {
                    "***".into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAM_HINTS.iter().any(|hint| name.contains(hint))
}

#[cfg(test)]
mod tests {
    use super::{names_ssl_mode, on_this_machine, redact_url};

    #[test]
    fn a_server_on_this_machine_is_told_from_another() {
        for local in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
            "/var/run/postgresql",
        ] {
            assert!(on_this_machine(local), "{local}");
        }
        for remote in [
            "db.example",
            "10.0.0.5",
            "[2001:db8::1]",
            "localhost.example",
            "",
        ] {
            assert!(!on_this_machine(remote), "{remote}");
        }
    }

    #[test]
    fn an_sslmode_in_the_url_is_seen_in_either_spelling() {
        assert!(names_ssl_mode("postgres://h/db?sslmode=require"));
        assert!(names_ssl_mode(
            "postgres://h/db?application_name=a&SSLMODE=disable"
        ));
        assert!(names_ssl_mode("postgres://h/db?ssl-mode=prefer"));
        assert!(!names_ssl_mode("postgres://h/db"));
        assert!(!names_ssl_mode("postgres://h/db?application_name=sslmode"));
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("redis://:pw@h:6379"), "redis://:***@h:6379");
    }

    #[test]
    fn secrets_in_query_strings_are_redacted() {
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require&password=hunter2"),
            "postgres://h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("https://otel.example.com/v1/traces?api_key=abc&token=def&x=1#frag"),
            "https://otel.example.com/v1/traces?api_key=***&token=***&x=1#frag"
        );
        assert_eq!(
            redact_url("smtp://mail:25?tls=required&KEY=k1&auth_token=t2"),
            "smtp://mail:25?tls=required&KEY=***&auth_token=***"
        );
        // Both at once, and a raw `@` in the password.
        let both = redact_url("postgres://u:p@ss@h/db?sslpassword=s3cret");
        assert!(!both.contains("p@ss") && !both.contains("s3cret"), "{both}");
        assert_eq!(both, "postgres://u:***@h/db?sslpassword=***");
        // An email in the query may cost detail, never the password.
        let email = redact_url("postgres://u:pw@h/db?application_name=a@b");
        assert!(!email.contains("pw@"), "{email}");
    }

    #[test]
    fn text_that_is_not_a_url_is_not_shown() {
        let bad_port = redact_url("postgres://u:secret@h:port/db");
        assert!(!bad_port.contains("secret"), "{bad_port}");
    }
}
