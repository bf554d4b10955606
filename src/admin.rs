//! `agentq admin`: bootstrap identities without the API (there is no user yet to call it).

use agentq_core::{
    auth::generate_token,
    config::{DatabaseConfig, ProviderConfig, RedisConfig},
    db,
    domain::OrganizationRole,
    store::Store,
};
use clap::Subcommand;

/// Admin subcommands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user (and organization) if missing, and print a new API token for it.
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
        /// Days until the token expires; 0 = never.
        #[arg(long, default_value_t = 0)]
        expires_days: u32,
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
        } => {
            if !email.contains('@') {
                anyhow::bail!("--email must be an email address, got `{email}`");
            }
            let store = Store::new(db::connect_migrated(&database).await?);
            let expires = (expires_days > 0)
                .then(|| chrono::Utc::now() + chrono::Duration::days(i64::from(expires_days)));
            let token =
                create_user_with_token(&store, &email, &org, owner, &token_name, expires).await?;
            println!("{token}");
            eprintln!(
                "created or updated user {email} in organization {org}; the token above is shown once"
            );
            Ok(())
        }
        AdminCommand::Config {
            database,
            redis,
            provider,
        } => {
            println!("database_url = {:?}", db::redact_url(&database.url));
            println!("database_max_connections = {}", database.max_connections);
            println!("redis_url = {:?}", db::redact_url(&redis.url));
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

/// Ensures the org, the user and its membership, and returns a fresh token secret.
pub async fn create_user_with_token(
    store: &Store,
    email: &str,
    org: &str,
    owner: bool,
    token_name: &str,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<String> {
    let org_id = store.ensure_organization(org).await?;
    let user_id = store.ensure_user(email, owner).await?;
    let mut roles = vec![OrganizationRole::AgentsAccess];
    if owner {
        roles.push(OrganizationRole::OrganizationAdmin);
    }
    store.add_member(org_id, user_id, &roles).await?;
    let token = generate_token();
    store
        .create_api_token(user_id, token_name, &token.sha256, expires)
        .await?;
    Ok(token.secret)
}
