//! `agentq admin`: bootstrap identities without the API (there is no user yet to call it),
//! and manage tokens and users when the API cannot (a lost or leaked token).
//!
//! `create-user` creates a user once: run again for the same email it changes nothing,
//! says so and exits non-zero, so a script cannot mint a second token without meaning to.
//! Another token for an existing user is `admin tokens create --email ...`.
//!
//! `rotate-key` re-seals every stored secret (provider keys and headers, users' provider
//! keys, MCP secrets and tokens, OIDC tokens) from the previous `AGENTQ_SECRET_KEY` to a
//! new one, in batches, one transaction each; run again after a failure, it picks up where
//! it stopped (ARCHITECTURE.md §11).

use agentq_core::{
    auth::generate_token,
    config::{DatabaseConfig, ProviderConfig, RedisConfig, SecretsConfig, TokenConfig},
    db,
    domain::{OrganizationRole, UserStatus},
    store::Store,
};
use anyhow::Context;
use clap::Subcommand;
use uuid::Uuid;

/// Admin subcommands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user (and its organization if missing) and print an API token for it. Fails
    /// when the user exists: use `admin tokens create` for another token.
    CreateUser {
        #[command(flatten)]
        database: DatabaseConfig,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Organization name; created if missing. The user gets agents-access there.
        #[arg(long)]
        org: String,
        /// Make the user a site owner and an organization admin.
        #[arg(long)]
        owner: bool,
        /// A name for the token, shown in token lists.
        #[arg(long, default_value = "cli")]
        token_name: String,
        /// Days until the token expires; 0 = never; default `--token-expiry-days`.
        #[arg(long)]
        expires_days: Option<u32>,
        #[command(flatten)]
        tokens: TokenConfig,
    },
    /// List, create or revoke a user's API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Suspend, delete or reactivate a user: anything but `active` is refused on every route.
    SetUserStatus {
        #[command(flatten)]
        database: DatabaseConfig,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// `active`, `suspended` or `deleted`.
        #[arg(long, value_parser = parse_status)]
        status: UserStatus,
    },
    /// Re-seal every stored secret under a new key: `--secret-key` / `AGENTQ_SECRET_KEY` is
    /// the new key, `--previous-secret-key` / `AGENTQ_PREVIOUS_SECRET_KEY` the old one. Run
    /// the API and workers with both set meanwhile (they read either, write the new one);
    /// drop the previous key once this reports no unreadable value. Safe to run again.
    RotateKey {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        secrets: SecretsConfig,
        /// Rows re-sealed per transaction.
        #[arg(long, default_value_t = 500)]
        batch: u32,
    },
    /// Print the effective configuration (flags, environment, config file), secrets hidden.
    Config {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        redis: RedisConfig,
        #[command(flatten)]
        provider: ProviderConfig,
    },
}

/// `agentq admin tokens ...`.
#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// The user's tokens that are not revoked: id, name, created, expires, last used. Never
    /// the secret (it is not stored).
    List {
        #[command(flatten)]
        database: DatabaseConfig,
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Create another token for an existing user and print it (shown once).
    Create {
        #[command(flatten)]
        database: DatabaseConfig,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// A name for the token, shown in token lists.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until the token expires; 0 = never; default `--token-expiry-days`.
        #[arg(long)]
        expires_days: Option<u32>,
        #[command(flatten)]
        tokens: TokenConfig,
    },
    /// Revoke a token by its id (from `tokens list`): it gets 401 from now on.
    Revoke {
        #[command(flatten)]
        database: DatabaseConfig,
        /// The token's id.
        #[arg(long)]
        id: Uuid,
    },
}

fn parse_status(text: &str) -> Result<UserStatus, String> {
    match text {
        "active" => Ok(UserStatus::Active),
        "suspended" => Ok(UserStatus::Suspended),
        "deleted" => Ok(UserStatus::Deleted),
        other => Err(format!(
            "`{other}` is not a status: active, suspended or deleted"
        )),
    }
}

/// Runs an admin subcommand.
pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser {
            database,
            email,
            org,
            owner,
            token_name,
            expires_days,
            tokens,
        } => {
            if !email.contains('@') {
                anyhow::bail!("--email must be an email address, got `{email}`");
            }
            let store = Store::new(db::connect_migrated(&database, db::Plans::PerValues).await?);
            let Some(user_id) = store.create_user(&email, owner).await? else {
                anyhow::bail!(
                    "user {email} already exists; nothing was changed and no token was made. \
                     For another token run `agentq admin tokens create --email {email}`"
                );
            };
            join_organization(&store, user_id, &org, owner).await?;
            let expires = tokens.expires_at(expires_days);
            let token = mint_token(&store, user_id, &token_name, expires).await?;
            println!("{token}");
            eprintln!(
                "created user {email} in organization {org}; the token above is shown once ({})",
                expiry_text(expires)
            );
            Ok(())
        }
        AdminCommand::Tokens { command } => run_tokens(command).await,
        AdminCommand::SetUserStatus {
            database,
            email,
            status,
        } => {
            let store = Store::new(db::connect_migrated(&database, db::Plans::PerValues).await?);
            let user = existing_user(&store, &email).await?;
            store.set_user_status(user, status).await?;
            eprintln!("user {email} is now {}", status.as_str());
            Ok(())
        }
        AdminCommand::RotateKey {
            database,
            secrets,
            batch,
        } => rotate_key(database, secrets, batch).await,
        AdminCommand::Config {
            database,
            redis,
            provider,
        } => {
            println!("database_url = {:?}", database.url.redacted());
            println!("database_max_connections = {}", database.max_connections);
            println!("redis_url = {:?}", redis.url.redacted());
            if let Some(urls) = &redis.cluster_urls {
                println!("redis_cluster_urls = {:?}", urls.redacted());
            }
            println!("redis_prefix = {:?}", redis.prefix);
            println!("provider = {:?}", provider.kind);
            println!("openai_base_url = {:?}", provider.openai_base_url);
            println!(
                "openai_api_key = {}",
                if provider.openai_api_key.is_some() {
                    "\"(set, hidden)\""
                } else {
                    "\"(not set)\""
                }
            );
            println!("model = {:?}", provider.model);
            Ok(())
        }
    }
}

/// `agentq admin rotate-key`: re-seals every sealed column under the new key and prints
/// what it did per table; fails when a value opens under neither key.
async fn rotate_key(
    database: DatabaseConfig,
    secrets: SecretsConfig,
    batch: u32,
) -> anyhow::Result<()> {
    let new = SecretsConfig {
        previous_secret_key: None,
        ..secrets.clone()
    }
    .secret_box()?
    .context("set the new key as --secret-key or AGENTQ_SECRET_KEY")?;
    let old = secrets
        .previous_box()?
        .context("set the old key as --previous-secret-key or AGENTQ_PREVIOUS_SECRET_KEY")?;
    let store = Store::new(db::connect_migrated(&database, db::Plans::PerValues).await?);
    let counts = store.reseal_all(&new.with_previous(&old), batch).await?;
    println!("table\tresealed\talready_current\tunreadable");
    for c in &counts {
        println!(
            "{}\t{}\t{}\t{}",
            c.table, c.resealed, c.current, c.unreadable
        );
    }
    let unreadable: u64 = counts.iter().map(|c| c.unreadable).sum();
    if unreadable > 0 {
        anyhow::bail!(
            "{unreadable} stored values open under neither key and were left as they are; \
             keep AGENTQ_PREVIOUS_SECRET_KEY until they are replaced or removed"
        );
    }
    eprintln!(
        "every stored secret is sealed under the new key; AGENTQ_PREVIOUS_SECRET_KEY can be unset"
    );
    Ok(())
}

async fn run_tokens(command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::List { database, email } => {
            let store = Store::new(db::connect_migrated(&database, db::Plans::PerValues).await?);
            let user = existing_user(&store, &email).await?;
            let tokens = store.list_api_tokens(user).await?;
            println!("id\tname\tcreated_at\texpires_at\tlast_used_at");
            let when = |t: Option<chrono::DateTime<chrono::Utc>>, none: &str| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| none.to_owned())
            };
            for t in tokens {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    when(Some(t.created_at), ""),
                    when(t.expires_at, "never"),
                    when(t.last_used_at, "never"),
                );
            }
            Ok(())
        }
        TokensCommand::Create {
            database,
            email,
            name,
            expires_days,
            tokens,
        } => {
            let store = Store::new(db::connect_migrated(&database, db::Plans::PerValues).await?);
            let user = existing_user(&store, &email).await?;
            let expires = tokens.expires_at(expires_days);
            let token = mint_token(&store, user, &name, expires).await?;
            println!("{token}");
            eprintln!(
                "new token for {email}; shown once ({})",
                expiry_text(expires)
            );
            Ok(())
        }
        TokensCommand::Revoke { database, id } => {
            let store = Store::new(db::connect_migrated(&database, db::Plans::PerValues).await?);
            if !store.revoke_api_token(None, id).await? {
                anyhow::bail!("no unrevoked token has id {id}");
            }
            eprintln!("token {id} is revoked");
            Ok(())
        }
    }
}

async fn existing_user(store: &Store, email: &str) -> anyhow::Result<Uuid> {
    store
        .find_user_by_email(email)
        .await?
        .with_context(|| format!("no user has the email {email}"))
}

fn expiry_text(expires: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match expires {
        Some(t) => format!(
            "expires {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "never expires".to_owned(),
    }
}

/// Makes `user` a member of the organization named `org` (created if missing) with
/// `agents-access`, and `organization-admin` too for an owner.
pub async fn join_organization(
    store: &Store,
    user: Uuid,
    org: &str,
    owner: bool,
) -> anyhow::Result<()> {
    let org_id = store.ensure_organization(org).await?;
    let mut roles = vec![OrganizationRole::AgentsAccess];
    if owner {
        roles.push(OrganizationRole::OrganizationAdmin);
    }
    store.add_member(org_id, user, &roles).await?;
    Ok(())
}

/// Stores a new token for `user` and returns its secret (the database keeps only its digest).
pub async fn mint_token(
    store: &Store,
    user: Uuid,
    name: &str,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<String> {
    let token = generate_token();
    store
        .create_api_token(user, name, &token.sha256, expires)
        .await?;
    Ok(token.secret)
}
