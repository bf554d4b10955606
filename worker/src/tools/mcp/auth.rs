//! The headers a request to an MCP server carries, by the server's `auth_type`:
//!
//! | `auth_type` | sent |
//! |---|---|
//! | `none` | nothing |
//! | `api_key` | the configured header with the (opened) key |
//! | `custom_headers` | every configured header |
//! | `oauth2`, `user_oidc` | `Authorization: Bearer <token>` with the caller's token; nothing without one |
//!
//! The token for `oauth2` (the user's, from the server's OAuth flow) and `user_oidc` (the
//! chat owner's OIDC access token) is the caller's to find and refresh; this module only
//! sends it.

use std::collections::{BTreeMap, HashMap};

use agentq_core::{
    secrets::SecretBox,
    store::{McpAuthType, McpServerRecord},
};
use reqwest::header::{HeaderName, HeaderValue};

use super::McpError;

/// What one request to a server carries to authenticate.
#[derive(Clone, Default)]
pub struct McpAuth {
    /// A bearer token, sent as `Authorization: Bearer <token>`.
    pub(crate) bearer: Option<String>,
    /// Other headers.
    pub(crate) headers: HashMap<HeaderName, HeaderValue>,
}

impl McpAuth {
    /// A digest of everything the requests carry (hashed with `state`), so that a cached
    /// tool list is shared only by requests with the same credentials: a per-user server
    /// (`oauth2`, `user_oidc`) is listed per user, a shared one once.
    pub(crate) fn digest(&self, state: &std::hash::RandomState) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut headers: Vec<_> = self.headers.iter().collect();
        headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut hasher = state.build_hasher();
        hasher.write_u8(u8::from(self.bearer.is_some()));
        hasher.write(self.bearer.as_deref().unwrap_or_default().as_bytes());
        for (name, value) in headers {
            hasher.write(name.as_str().as_bytes());
            hasher.write_u8(0);
            hasher.write(value.as_bytes());
            hasher.write_u8(0);
        }
        hasher.finish()
    }
}

impl std::fmt::Debug for McpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpAuth")
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl McpAuth {
    /// The headers for `server`: its stored credentials opened with `secrets`, or
    /// `user_token` for `oauth2` and `user_oidc` (ignored for the other types).
    pub fn for_server(
        server: &McpServerRecord,
        secrets: Option<&SecretBox>,
        user_token: Option<&str>,
    ) -> Result<Self, McpError> {
        let config = |detail: &str| McpError::Config {
            server: server.slug.clone(),
            detail: detail.to_owned(),
        };
        let open = |sealed: &[u8]| -> Result<String, McpError> {
            let secrets = secrets.ok_or_else(|| config("no AGENTQ_SECRET_KEY is configured"))?;
            secrets.open(sealed).map_err(|e| config(&e.to_string()))
        };
        let header = |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), McpError> {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config(&format!("`{name}` is not a header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| config(&format!("the value of `{name}` is not a header value")))?;
            value.set_sensitive(true);
            Ok((name, value))
        };
        let mut auth = McpAuth::default();
        match server.auth_type {
            McpAuthType::None => {}
            McpAuthType::ApiKey => {
                let (Some(name), Some(sealed)) =
                    (&server.api_key_header, &server.api_key_ciphertext)
                else {
                    return Err(config("auth_type api_key without a header or a key"));
                };
                let (name, value) = header(name, &open(sealed)?)?;
                auth.headers.insert(name, value);
            }
            McpAuthType::CustomHeaders => {
                let sealed = server
                    .custom_headers_ciphertext
                    .as_ref()
                    .ok_or_else(|| config("auth_type custom_headers without headers"))?;
                let map: BTreeMap<String, String> = serde_json::from_str(&open(sealed)?)
                    .map_err(|_| config("the stored custom headers are not a JSON object"))?;
                for (name, value) in map {
                    let (name, value) = header(&name, &value)?;
                    auth.headers.insert(name, value);
                }
            }
            McpAuthType::Oauth2 | McpAuthType::UserOidc => {
                auth.bearer = user_token
                    .map(|t| t.trim().trim_start_matches("Bearer ").to_owned())
                    .filter(|t| !t.is_empty());
                if let Some(token) = &auth.bearer
                    && HeaderValue::from_str(&format!("Bearer {token}")).is_err()
                {
                    return Err(config("the user's token is not a header value"));
                }
            }
        }
        Ok(auth)
    }
}
