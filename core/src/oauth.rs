//! The client side of OAuth 2.0 that per-user MCP tokens need (issue #12, item 4;
//! ARCHITECTURE.md §11): the API starts an authorization-code flow with PKCE (S256) and
//! exchanges the code; workers refresh expired tokens, for `oauth2` servers at the
//! server's token URL and for `user_oidc` at the configured OIDC client's. Both sides talk
//! to a token endpoint the same way, so the one client lives here.
//!
//! ```text
//!   API    POST …/{id}/oauth/start ─▶ state + PKCE ─▶ {authorize_url}
//!   user   authorize at the server ─▶ GET …/oauth/callback?code&state
//!   API    TokenEndpoint::exchange_code ─▶ tokens sealed in the store
//!   worker TokenEndpoint::refresh (row locked, see store::user_tokens) ─▶ new pair saved
//! ```
//!
//! Every request is bounded: a connect and a total timeout, no redirects (a token request
//! carries the client secret; it goes to the configured URL or nowhere), and a cap on the
//! answer's size. Errors never carry a token or the client secret; what the issuer says in
//! `error_description` is cut short and stripped of control characters before anyone sees it.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{secrets::SecretBox, store::StoredTokens};

/// A token is refreshed when it expires within this many seconds, so it does not run out
/// between the check and the call that carries it.
pub const EXPIRY_MARGIN_SECS: i64 = 30;

/// Longest a request to a token endpoint may take, connection included.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token endpoint answer read, in bytes.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest text of an issuer's error kept for people.
const MAX_ERROR_CHARS: usize = 300;

/// A fresh random value of 32 bytes, URL-safe (43 characters): a state or a PKCE verifier.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Where a token request goes and who makes it.
#[derive(Clone, Copy)]
pub struct ClientCredentials<'a> {
    /// The token endpoint.
    pub token_url: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// The client secret, opened (`None`: a public client, PKCE only).
    pub client_secret: Option<&'a str>,
}

/// What a token endpoint granted.
#[derive(Clone, Deserialize)]
pub struct GrantedTokens {
    /// The access token.
    pub access_token: String,
    /// A refresh token (on a refresh, a rotated one; absent: keep the old one).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds the access token lives.
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// Scopes granted, space-separated.
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for GrantedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantedTokens")
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl GrantedTokens {
    /// The grant sealed for the store, as of `now`. Without a new refresh token the
    /// `previous` one (sealed) is kept, as RFC 6749 §6 allows.
    pub fn seal(
        &self,
        secrets: &SecretBox,
        now: DateTime<Utc>,
        previous_refresh: Option<Vec<u8>>,
        requested_scopes: &[String],
    ) -> StoredTokens {
        StoredTokens {
            access_token_ciphertext: secrets.seal(&self.access_token),
            refresh_token_ciphertext: self
                .refresh_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| secrets.seal(t))
                .or(previous_refresh),
            expires_at: self
                .expires_in
                .and_then(|s| chrono::Duration::try_seconds(s.max(0)))
                .and_then(|d| now.checked_add_signed(d)),
            scopes: match &self.scope {
                Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
                None => requested_scopes.to_vec(),
            },
        }
    }
}

/// Why a token request failed. The text is fit for an API answer or a tool error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OAuthError {
    /// The issuer refused (an OAuth error answer, or an HTTP error status).
    #[error("the token endpoint refused: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The OAuth `error` code (`invalid_grant`, ...) or the HTTP status.
        error: String,
        /// The issuer's `error_description`, shortened.
        description: Option<String>,
    },
    /// The token endpoint could not be reached or did not answer in time.
    #[error("the token endpoint is unreachable: {0}")]
    Unreachable(String),
    /// The answer is not a token response.
    #[error("the token endpoint's answer is not usable: {0}")]
    BadResponse(String),
}

impl OAuthError {
    /// Whether the grant itself is dead (`invalid_grant`: the refresh token is expired,
    /// revoked or spent), so the stored tokens are worth nothing. Anything else (an HTTP
    /// error page, `server_error`, `temporarily_unavailable`, a misconfigured client) says
    /// nothing about the user's grant.
    pub fn grant_is_dead(&self) -> bool {
        matches!(self, Self::Refused { error, .. } if error == "invalid_grant")
    }
}

/// A client of token endpoints, bounded as the module page says. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TokenEndpoint {
    http: reqwest::Client,
}

impl Default for TokenEndpoint {
    fn default() -> Self {
        Self::new(TOKEN_REQUEST_TIMEOUT)
    }
}

impl TokenEndpoint {
    /// A client whose requests take at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("building an HTTP client with these settings cannot fail");
        Self { http }
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3, with the PKCE verifier).
    pub async fn exchange_code(
        &self,
        client: ClientCredentials<'_>,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<GrantedTokens, OAuthError> {
        self.request(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ],
        )
        .await
    }

    /// Trades a refresh token for a new access token (RFC 6749 §6).
    pub async fn refresh(
        &self,
        client: ClientCredentials<'_>,
        refresh_token: &str,
    ) -> Result<GrantedTokens, OAuthError> {
        self.request(
            client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// One token request: the client authenticates in the body (`client_secret_post`).
    async fn request(
        &self,
        client: ClientCredentials<'_>,
        params: &[(&str, &str)],
    ) -> Result<GrantedTokens, OAuthError> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("client_id", client.client_id));
        if let Some(secret) = client.client_secret {
            form.push(("client_secret", secret));
        }
        let body = serde_urlencoded_form(&form);
        let mut response = self
            .http
            .post(client.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| OAuthError::Unreachable(describe(&e)))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| OAuthError::Unreachable(describe(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
                return Err(OAuthError::BadResponse(format!(
                    "larger than {MAX_TOKEN_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            #[derive(Deserialize)]
            struct ErrorAnswer {
                error: String,
                #[serde(default)]
                error_description: Option<String>,
            }
            return Err(match serde_json::from_slice::<ErrorAnswer>(&bytes) {
                Ok(answer) => OAuthError::Refused {
                    error: shorten(&answer.error),
                    description: answer.error_description.as_deref().map(shorten),
                },
                Err(_) => OAuthError::Refused {
                    error: format!("HTTP {}", status.as_u16()),
                    description: None,
                },
            });
        }
        let granted: GrantedTokens = serde_json::from_slice(&bytes).map_err(|_| {
            OAuthError::BadResponse("not a JSON object with an `access_token`".into())
        })?;
        if granted.access_token.is_empty() {
            return Err(OAuthError::BadResponse("an empty `access_token`".into()));
        }
        Ok(granted)
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn serde_urlencoded_form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A transport error without the URL's query (reqwest's text may hold it).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {}s", TOKEN_REQUEST_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "the request failed".into()
    }
}

/// `text` without control characters, at most [`MAX_ERROR_CHARS`] characters.
fn shorten(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s_example() {
        // RFC 7636, Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
    }

    #[test]
    fn a_grant_without_a_new_refresh_token_keeps_the_old_one() {
        let secrets = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
        let now = Utc::now();
        let granted = GrantedTokens {
            access_token: "a".into(),
            refresh_token: None,
            expires_in: Some(60),
            scope: None,
        };
        let sealed = granted.seal(&secrets, now, Some(secrets.seal("r0")), &["read".into()]);
        let refresh = sealed.refresh_token_ciphertext.unwrap();
        assert_eq!(secrets.open(&refresh).unwrap(), "r0");
        assert_eq!(sealed.expires_at, Some(now + chrono::Duration::seconds(60)));
        assert_eq!(sealed.scopes, vec!["read".to_owned()]);
    }
}
