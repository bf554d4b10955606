//! The bearer token a call to an `oauth2` or `user_oidc` MCP server carries for a user
//! (issue #12, item 4; ARCHITECTURE.md §7): for `oauth2`, the user's token from that
//! server's authorization-code flow; for `user_oidc`, the user's stored OIDC access token.
//! A user without one gets `None`, and the call goes without an `Authorization` header.
//!
//! A token that expires within `core::oauth::EXPIRY_MARGIN_SECS` is refreshed first, with
//! its refresh token at the server's `oauth_token_url` (`oauth2`) or at the OIDC client's
//! token endpoint (`user_oidc`), and the new pair is saved. The refresh happens under the
//! token row's lock (`Store::lock_user_token`): a second worker finding the same token
//! expired waits, then reads the fresh one, so a rotated refresh token is spent once and
//! never lost. A refresh the issuer refuses forgets the dead tokens (the user sees
//! `connected: false` and connects again) and answers the model with a clear tool error.

use agentq_core::{
    oauth::{ClientCredentials, EXPIRY_MARGIN_SECS, TokenEndpoint},
    secrets::SecretBox,
    store::{McpAuthType, McpServerRecord, Store, UserTokenKey},
};
use chrono::Utc;
use uuid::Uuid;

use super::McpError;

/// The token `user_id`'s calls to `server` carry: `None` for other auth types and for a
/// user who stored none (or whose expired token cannot be refreshed for want of a refresh
/// token or a configured token endpoint).
pub async fn user_token(
    store: &Store,
    secrets: Option<&SecretBox>,
    server: &McpServerRecord,
    user_id: Uuid,
) -> Result<Option<String>, McpError> {
    let key = match server.auth_type {
        McpAuthType::Oauth2 => UserTokenKey::McpServer {
            server_id: server.id,
            user_id,
        },
        McpAuthType::UserOidc => UserTokenKey::Oidc { user_id },
        McpAuthType::None | McpAuthType::ApiKey | McpAuthType::CustomHeaders => return Ok(None),
    };
    let config = |detail: String| McpError::Config {
        server: server.slug.clone(),
        detail,
    };
    let unreadable =
        |e: agentq_core::StoreError| config(format!("the user's token cannot be read: {e}"));
    let Some(stored) = store.user_token(key).await.map_err(unreadable)? else {
        return Ok(None);
    };
    let secrets = secrets.ok_or_else(|| config("no AGENTQ_SECRET_KEY is configured".into()))?;
    let open = |sealed: &[u8]| secrets.open(sealed).map_err(|e| config(e.to_string()));
    let margin = chrono::Duration::seconds(EXPIRY_MARGIN_SECS);
    if !stored.expires_within(Utc::now(), margin) {
        return open(&stored.access_token_ciphertext).map(Some);
    }

    // Expired: refresh under the row's lock, after looking again (another worker may have
    // refreshed it while this one waited for the lock).
    let Some(locked) = store.lock_user_token(key).await.map_err(unreadable)? else {
        return Ok(None);
    };
    if !locked.tokens.expires_within(Utc::now(), margin) {
        let token = open(&locked.tokens.access_token_ciphertext);
        locked.release().await.map_err(unreadable)?;
        return token.map(Some);
    }
    let Some(refresh_sealed) = locked.tokens.refresh_token_ciphertext.clone() else {
        locked.release().await.map_err(unreadable)?;
        tracing::info!(mcp_server = %server.slug, user.id = %user_id, "the user's token expired and has no refresh token; calling without one");
        return Ok(None);
    };
    // The client that refreshes: the server's own registration, or the site's OIDC client.
    let (token_url, client_id, secret_sealed) = match key {
        UserTokenKey::McpServer { .. } => (
            server.oauth_token_url.clone(),
            server.oauth_client_id.clone(),
            server.oauth_client_secret_ciphertext.clone(),
        ),
        UserTokenKey::Oidc { .. } => {
            let client = store.oidc_client().await.map_err(unreadable)?;
            (
                client.token_url,
                client.client_id,
                client.client_secret_ciphertext,
            )
        }
    };
    let (Some(token_url), Some(client_id)) = (token_url, client_id) else {
        locked.release().await.map_err(unreadable)?;
        tracing::info!(mcp_server = %server.slug, user.id = %user_id, "the user's token expired and no token endpoint is configured; calling without one");
        return Ok(None);
    };
    let client_secret = secret_sealed.as_deref().map(&open).transpose()?;
    let refresh_token = open(&refresh_sealed)?;
    let refreshed = TokenEndpoint::default()
        .refresh(
            ClientCredentials {
                token_url: &token_url,
                client_id: &client_id,
                client_secret: client_secret.as_deref(),
            },
            &refresh_token,
        )
        .await;
    match refreshed {
        Ok(granted) => {
            let sealed = granted.seal(
                secrets,
                Utc::now(),
                Some(refresh_sealed),
                &locked.tokens.scopes,
            );
            locked.replace(&sealed).await.map_err(unreadable)?;
            tracing::info!(mcp_server = %server.slug, user.id = %user_id, "refreshed the user's token");
            Ok(Some(granted.access_token))
        }
        Err(e) if e.grant_is_dead() => {
            // The grant is dead: forget it so the user sees `connected: false`.
            locked.delete().await.map_err(unreadable)?;
            Err(McpError::Unauthorized {
                server: server.slug.clone(),
                detail: format!(
                    "the user's token expired and could not be refreshed ({e}); the user must connect again"
                ),
            })
        }
        Err(e) => {
            locked.release().await.map_err(unreadable)?;
            Err(McpError::Unreachable {
                server: server.slug.clone(),
                detail: format!("refreshing the user's token failed: {e}"),
            })
        }
    }
}
