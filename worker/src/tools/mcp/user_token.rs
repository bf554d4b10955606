//! The per-user token an `oauth2` or `user_oidc` server is called with: the user's token
//! from the server's OAuth flow (`oauth2`), or the chat owner's OIDC access token
//! (`user_oidc`), refreshed when expired. Tokens land with the OAuth flow (issue #12,
//! item 4); until then no user has one, and such a server is called without an
//! `Authorization` header (the documented behaviour for a user without a token).

use agentq_core::{
    secrets::SecretBox,
    store::{McpServerRecord, Store},
};
use uuid::Uuid;

use super::McpError;

/// The bearer token `user_id` calls `server` with (`None`: the user has none, and the call
/// carries no `Authorization` header). Only asked for `oauth2` and `user_oidc` servers.
pub async fn user_token(
    store: &Store,
    secrets: Option<&SecretBox>,
    server: &McpServerRecord,
    user_id: Uuid,
) -> Result<Option<String>, McpError> {
    // Tokens land with the OAuth flow; nothing is stored yet.
    let _ = (store, secrets, server, user_id);
    Ok(None)
}
