//! Per-user tokens for MCP servers (issue #12, item 4; ARCHITECTURE.md §3): a user's OAuth
//! tokens for each `oauth2` server, the authorization-code flows in progress, the user's
//! OIDC tokens for `user_oidc` servers, and the OIDC client that refreshes them.
//!
//! Every token arrives sealed (`core::secrets`) and leaves only inside a [`StoredTokens`]
//! that a worker opens to call a server; nothing here is shown by the API.
//!
//! # Refreshing without losing a rotated refresh token
//!
//! An authorization server that rotates refresh tokens accepts each one once. Two workers
//! that both find a token expired must not both spend the same refresh token, or the second
//! fails (and some servers then revoke the whole grant). So a refresh happens under
//! [`Store::lock_user_token`]: a transaction holding the token's row `FOR UPDATE`. The
//! second worker waits for the lock, then sees the new, unexpired token and uses it. The
//! lock is held across one HTTP request to the token endpoint, which its caller bounds
//! (`core::oauth`'s timeout), so a slow issuer delays that user's calls only.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// Whose token, for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserTokenKey {
    /// A user's token for one `oauth2` MCP server.
    McpServer {
        /// The server.
        server_id: Uuid,
        /// The user.
        user_id: Uuid,
    },
    /// A user's OIDC token, for every `user_oidc` server.
    Oidc {
        /// The user.
        user_id: Uuid,
    },
}

impl UserTokenKey {
    /// The table, and the `WHERE` clause naming the row by `$1` (and `$2`).
    fn table_and_filter(&self) -> (&'static str, &'static str) {
        match self {
            UserTokenKey::McpServer { .. } => {
                ("mcp_oauth_tokens", "server_id = $1 AND user_id = $2")
            }
            UserTokenKey::Oidc { .. } => ("user_oidc_tokens", "user_id = $1"),
        }
    }

    /// How many parameters the key takes (`$1`, or `$1` and `$2`).
    fn arity(&self) -> usize {
        match self {
            UserTokenKey::McpServer { .. } => 2,
            UserTokenKey::Oidc { .. } => 1,
        }
    }

    /// A statement with the key bound as `$1` (and `$2`).
    fn bind_args<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match *self {
            UserTokenKey::McpServer { server_id, user_id } => query.bind(server_id).bind(user_id),
            UserTokenKey::Oidc { user_id } => query.bind(user_id),
        }
    }

    /// The query with the key bound as `$1` (and `$2`).
    fn bind<'q>(
        &self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, StoredTokens, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, StoredTokens, sqlx::postgres::PgArguments> {
        match *self {
            UserTokenKey::McpServer { server_id, user_id } => query.bind(server_id).bind(user_id),
            UserTokenKey::Oidc { user_id } => query.bind(user_id),
        }
    }
}

/// A user's stored tokens, sealed.
#[derive(Clone, sqlx::FromRow)]
pub struct StoredTokens {
    /// The sealed access token.
    pub access_token_ciphertext: Vec<u8>,
    /// The sealed refresh token, when the issuer gave one.
    pub refresh_token_ciphertext: Option<Vec<u8>>,
    /// When the access token expires (`None`: the issuer did not say).
    pub expires_at: Option<DateTime<Utc>>,
    /// Scopes granted (as the issuer reported them).
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field(
                "has_refresh_token",
                &self.refresh_token_ciphertext.is_some(),
            )
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl StoredTokens {
    /// Whether the access token expires within `margin` of `now` (never, without an
    /// expiry).
    pub fn expires_within(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.expires_at.is_some_and(|at| at <= now + margin)
    }
}

/// A flow in progress, as the callback reads it back.
#[derive(Clone, sqlx::FromRow)]
pub struct OAuthFlow {
    /// The server being connected.
    pub server_id: Uuid,
    /// The user who started the flow.
    pub user_id: Uuid,
    /// The sealed PKCE verifier.
    pub code_verifier_ciphertext: Vec<u8>,
    /// The redirect URI sent with the authorization request (the token request repeats it).
    pub redirect_uri: String,
    /// When the state stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// The OIDC client `user_oidc` tokens are refreshed with.
#[derive(Clone, sqlx::FromRow)]
pub struct OidcClient {
    /// The issuer's token endpoint (`None`: not configured, tokens are never refreshed).
    pub token_url: Option<String>,
    /// The client id.
    pub client_id: Option<String>,
    /// The sealed client secret (`None`: a public client).
    pub client_secret_ciphertext: Option<Vec<u8>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A token row held `FOR UPDATE` while its holder refreshes it (see the module page).
/// Dropping it without [`LockedUserToken::replace`] rolls back and releases the lock.
pub struct LockedUserToken {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    key: UserTokenKey,
    /// The tokens as they are now, read under the lock.
    pub tokens: StoredTokens,
}

impl LockedUserToken {
    /// Saves the refreshed tokens and releases the lock.
    pub async fn replace(mut self, new: &StoredTokens) -> Result<(), StoreError> {
        let (table, filter) = self.key.table_and_filter();
        let n = self.key.arity();
        let sql = format!(
            "UPDATE {table} SET access_token_ciphertext = ${}, refresh_token_ciphertext = ${},
                 expires_at = ${}, scopes = ${}, updated_at = now()
             WHERE {filter}",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        );
        self.key
            .bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .bind(&new.access_token_ciphertext)
            .bind(&new.refresh_token_ciphertext)
            .bind(new.expires_at)
            .bind(&new.scopes)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Forgets the tokens (the issuer refused to refresh them, so they are dead and the
    /// user must connect again) and releases the lock.
    pub async fn delete(mut self) -> Result<(), StoreError> {
        let (table, filter) = self.key.table_and_filter();
        let sql = format!("DELETE FROM {table} WHERE {filter}");
        self.key
            .bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Releases the lock without changing anything.
    pub async fn release(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

const TOKEN_COLUMNS: &str = "access_token_ciphertext, refresh_token_ciphertext, expires_at, scopes";

/// Most flows one user may have in progress; starting another forgets the oldest.
pub const MAX_PENDING_FLOWS_PER_USER: i64 = 10;

impl Store {
    /// The user's stored tokens, without a lock (`None`: none stored).
    pub async fn user_token(&self, key: UserTokenKey) -> Result<Option<StoredTokens>, StoreError> {
        let (table, filter) = key.table_and_filter();
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM {table} WHERE {filter}");
        Ok(key
            .bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The user's stored tokens with their row locked until the returned guard is
    /// replaced or released (`None`: none stored, nothing locked).
    pub async fn lock_user_token(
        &self,
        key: UserTokenKey,
    ) -> Result<Option<LockedUserToken>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (table, filter) = key.table_and_filter();
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM {table} WHERE {filter} FOR UPDATE");
        let found = key
            .bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
            .fetch_optional(&mut *tx)
            .await?;
        Ok(found.map(|tokens| LockedUserToken { tx, key, tokens }))
    }

    /// Stores (or replaces) the user's tokens.
    pub async fn save_user_token(
        &self,
        key: UserTokenKey,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        let (table, conflict) = match key {
            UserTokenKey::McpServer { .. } => {
                ("mcp_oauth_tokens (server_id, user_id", "server_id, user_id")
            }
            UserTokenKey::Oidc { .. } => ("user_oidc_tokens (user_id", "user_id"),
        };
        let n = key.arity();
        let keys = (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {table}, access_token_ciphertext, refresh_token_ciphertext, expires_at, scopes)
             VALUES ({keys}, ${}, ${}, ${}, ${})
             ON CONFLICT ({conflict}) DO UPDATE SET
                 access_token_ciphertext = excluded.access_token_ciphertext,
                 refresh_token_ciphertext = excluded.refresh_token_ciphertext,
                 expires_at = excluded.expires_at, scopes = excluded.scopes, updated_at = now()",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        );
        key.bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .bind(&tokens.access_token_ciphertext)
            .bind(&tokens.refresh_token_ciphertext)
            .bind(tokens.expires_at)
            .bind(&tokens.scopes)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the user's tokens; whether there were any.
    pub async fn delete_user_token(&self, key: UserTokenKey) -> Result<bool, StoreError> {
        let (table, filter) = key.table_and_filter();
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE {filter}"
        )));
        Ok(key
            .bind_args(query)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    /// The `oauth2` servers `user_id` holds tokens for.
    pub async fn connected_mcp_server_ids(&self, user_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT server_id FROM mcp_oauth_tokens WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Records a flow `user_id` starts for `server_id`, under the SHA-256 of its state.
    /// Expired flows of anyone and all but the newest [`MAX_PENDING_FLOWS_PER_USER`] of the
    /// user's are forgotten first, so the table stays small whatever clients do.
    pub async fn begin_oauth_flow(
        &self,
        state_sha256: &str,
        flow: &OAuthFlow,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // One user's starts take turns (a transaction-scoped advisory lock on the user), and
        // each touches only that user's flows: concurrent starts deleting overlapping rows
        // in different orders deadlocked.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
            .bind(flow.user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mcp_oauth_states WHERE user_id = $1 AND expires_at < now()")
            .bind(flow.user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM mcp_oauth_states WHERE user_id = $1 AND state_sha256 IN (
                 SELECT state_sha256 FROM mcp_oauth_states WHERE user_id = $1
                 ORDER BY created_at DESC OFFSET $2)",
        )
        .bind(flow.user_id)
        .bind(MAX_PENDING_FLOWS_PER_USER - 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO mcp_oauth_states (state_sha256, server_id, user_id,
                 code_verifier_ciphertext, redirect_uri, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(state_sha256)
        .bind(flow.server_id)
        .bind(flow.user_id)
        .bind(&flow.code_verifier_ciphertext)
        .bind(&flow.redirect_uri)
        .bind(flow.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the flow recorded under `state_sha256`, deleting it so the state works once
    /// (`None`: unknown or already used). An expired flow is returned (and deleted) too; the
    /// caller tells the user it expired.
    pub async fn take_oauth_flow(
        &self,
        state_sha256: &str,
    ) -> Result<Option<OAuthFlow>, StoreError> {
        Ok(sqlx::query_as(
            "DELETE FROM mcp_oauth_states WHERE state_sha256 = $1
             RETURNING server_id, user_id, code_verifier_ciphertext, redirect_uri, expires_at",
        )
        .bind(state_sha256)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The OIDC client `user_oidc` tokens are refreshed with.
    pub async fn oidc_client(&self) -> Result<OidcClient, StoreError> {
        Ok(sqlx::query_as(
            "SELECT token_url, client_id, client_secret_ciphertext, updated_at
             FROM oidc_client WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Replaces the OIDC client settings (the caller merged a change first).
    pub async fn set_oidc_client(&self, client: &OidcClient) -> Result<OidcClient, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE oidc_client SET token_url = $1, client_id = $2, client_secret_ciphertext = $3,
                 updated_at = now()
             WHERE id = 1
             RETURNING token_url, client_id, client_secret_ciphertext, updated_at",
        )
        .bind(&client.token_url)
        .bind(&client.client_id)
        .bind(&client.client_secret_ciphertext)
        .fetch_one(&self.pool)
        .await?)
    }
}
