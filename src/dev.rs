//! `agentq dev`: the whole system in one process for a newcomer's machine.
//!
//! Uses the local PostgreSQL and Redis, or private ones under `--data-dir` when none answers;
//! creates the database and migrates; creates a local owner and keeps its token in
//! `<data-dir>/dev-token` so restarts print the same one; picks the built-in echo model when
//! no provider key is configured; prints the address, the token and a curl line.

use std::{path::PathBuf, time::Duration};

use agentq_core::{
    auth::hash_token,
    config::{
        ApiConfig, DatabaseConfig, MailConfig, ProviderConfig, ProviderKind, QueueConfig,
        RedisConfig, SecretsConfig, TokenConfig, WorkerConfig,
    },
    db,
    secrets::{SecretBox, write_private_file},
    services::Services,
    shutdown::{CancellationToken, wait_for_signal},
    store::Store,
};
use agentq_scheduler::SchedulerConfig;
use anyhow::Context;

use crate::{
    admin::{join_organization, mint_token},
    local_services::LocalServices,
    process,
};

/// Settings of `agentq dev`: everything the three processes take, plus where local state goes.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Where private databases, the dev token and emails (`<data-dir>/mail/*.eml`, unless
    /// `--smtp-url` is set) are kept.
    #[arg(long, env = "AGENTQ_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    redis: RedisConfig,
    #[command(flatten)]
    queue: QueueConfig,
    #[command(flatten)]
    api: ApiConfig,
    #[command(flatten)]
    worker: WorkerConfig,
    #[command(flatten)]
    provider: ProviderConfig,
    #[command(flatten)]
    mail: MailConfig,
    #[command(flatten)]
    scheduler: SchedulerConfig,
    #[command(flatten)]
    secrets: SecretsConfig,
}

/// Runs `agentq dev` until Ctrl+C.
pub async fn run(mut args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let local = LocalServices::ensure(
        args.database.url.expose(),
        args.redis.url.expose(),
        &args.data_dir,
    )
    .await?;
    args.database.url = local.database_url.as_str().into();
    args.redis.url = local.redis_url.as_str().into();

    if db::create_database_if_missing(&args.database).await? {
        tracing::info!(database = %args.database.url.redacted(), "created the database");
    }
    let pool = db::connect(&args.database).await?;
    db::migrate(&pool).await?;
    let secrets = match args.secrets.secret_box()? {
        Some(b) => b,
        None => dev_secret_box(&args.data_dir)?,
    };
    let services = Services::new(
        pool,
        args.redis.url.expose(),
        &args.redis.prefix,
        args.queue.max_len,
    )?
    .with_event_limits(args.redis.events.limits())
    .with_secrets(Some(secrets));
    let token = dev_token(&services.store, &args.data_dir, &args.api.tokens).await?;

    let no_key = args.provider.openai_api_key.is_none()
        && args.provider.openai_base_url == "https://api.openai.com/v1";
    if args.provider.kind == ProviderKind::Openai && no_key {
        args.provider.kind = ProviderKind::Echo;
    }

    if args.mail.smtp_url.is_none() && args.mail.mail_dir.is_none() {
        args.mail.mail_dir = Some(args.data_dir.join("mail"));
    }
    if args.mail.base_url == "http://127.0.0.1:8080" {
        args.mail.base_url = format!("http://{}", args.api.listen);
    }
    let mail_to = match (&args.mail.smtp_url, &args.mail.mail_dir) {
        (Some(_), _) => "SMTP (--smtp-url)".to_owned(),
        (None, Some(dir)) => format!("{}/*.eml", dir.display()),
        (None, None) => "nowhere".to_owned(),
    };

    let shutdown = CancellationToken::new();
    let address = args.api.listen;
    let server = process::start_api(&services, args.api, &args.queue, shutdown.clone()).await?;
    let worker = process::start_worker(
        &services,
        &args.worker,
        &args.queue,
        &args.provider,
        &args.mail,
        shutdown.clone(),
    )?;
    let scheduler =
        process::start_scheduler(&services, args.scheduler, &args.queue, shutdown.clone());

    let model = match args.provider.kind {
        ProviderKind::Echo => {
            "echo (built in; set AGENTQ_OPENAI_API_KEY or AGENTQ_OPENAI_BASE_URL for a real model)"
                .to_owned()
        }
        ProviderKind::Openai | ProviderKind::OpenaiCompat | ProviderKind::Openrouter => format!(
            "{} at {}",
            args.provider.model, args.provider.openai_base_url
        ),
        ProviderKind::Anthropic => format!(
            "{} at {}",
            args.provider.model, args.provider.anthropic_base_url
        ),
        // Not a flag value: Bedrock is configured as a stored provider.
        ProviderKind::Bedrock => "bedrock (stored providers only)".to_owned(),
    };
    println!(
        "\nagentq dev is running\n  API:    http://{address}\n  token:  {token}\n  model:  {model}\n  email:  {mail_to}\n\nTry:\n  curl -s -X POST http://{address}/api/v1/chats -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{\"message\":\"hello\"}}'\n  curl -N http://{address}/api/v1/chats/<id>/stream -H 'Authorization: Bearer {token}'\n\nCtrl+C stops everything.\n"
    );

    wait_for_signal().await;
    tracing::info!("stopping");
    shutdown.cancel();
    process::drain(worker, Duration::from_secs(args.worker.drain_secs)).await;
    let _ = server.await;
    let _ = scheduler.await;
    services.events.flush().await;
    services.store.close().await;
    local.stop().await;
    Ok(())
}

/// The key sealing provider secrets in dev: kept in `<data-dir>/secret-key` (mode 0600),
/// made on first run.
fn dev_secret_box(data_dir: &std::path::Path) -> anyhow::Result<SecretBox> {
    let path = data_dir.join("secret-key");
    let key = match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
        _ => {
            let k = SecretBox::generate_key_hex();
            write_private_file(&path, &format!("{k}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            k
        }
    };
    Ok(SecretBox::from_hex(&key)?)
}

/// The local owner's token: reused from `<data-dir>/dev-token` while it is valid, else a
/// new one is created and saved there, mode 0600 (the database keeps only its digest).
async fn dev_token(
    store: &Store,
    data_dir: &std::path::Path,
    tokens: &TokenConfig,
) -> anyhow::Result<String> {
    let path = data_dir.join("dev-token");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_owned();
        if !saved.is_empty() && store.api_token_is_valid(&hash_token(&saved)).await? {
            return Ok(saved);
        }
    }
    let user = store.ensure_user("dev@localhost", true).await?;
    join_organization(store, user, "local", true).await?;
    let token = mint_token(store, user, "agentq dev", tokens.expires_at(None)).await?;
    write_private_file(&path, &format!("{token}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}
