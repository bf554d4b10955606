//! Signing in to the dashboard: an admin API token pasted once, then a signed cookie.
//!
//! The cookie never holds the token. It holds the token's SHA-256 digest (the value
//! `api_tokens` stores) and an HMAC of it under a key shared by every API process (kept in
//! Redis, `queue::dashboard_session_key`). Every request checks the signature, then looks
//! the digest up again, so a token that is revoked or expires, a user who is suspended or
//! who stops being a site owner, is signed out on their next request. The HMAC makes a
//! leaked `api_tokens` table useless for forging sessions.
//!
//! CSRF: every form carries `csrf`, an HMAC of the session under the same key (so it needs
//! no storage and changes with the session); a POST without the right one is refused with
//! 403. The sign-in form, which has no session yet, uses a double-submit nonce: a random
//! value in a short-lived cookie and in the form, which must match. Cookies are `HttpOnly`,
//! `SameSite=Strict`, scoped to `/admin`, and `Secure` when the request came over TLS as
//! a proxy reports it (`X-Forwarded-Proto: https` or `Forwarded: proto=https`).

use agentq_core::{auth::hash_token, domain::AuthenticatedUser, queue};
use axum::{
    Form,
    extract::{FromRequestParts, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{AppendHeaders, IntoResponse, Redirect, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::Sha256;

use super::{PageError, layout};
use crate::{ApiState, access_log::Caller};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "agentq_admin";
/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "agentq_admin_login";

/// A signed-in site owner; add it to a dashboard handler's arguments. Without a valid
/// session the request is sent to the sign-in page (303); a session whose user is no
/// longer a site owner gets 403.
pub struct AdminSession {
    /// The site owner.
    pub user: AuthenticatedUser,
    /// The token every form of this session must send back as `csrf`.
    pub csrf: String,
}

impl AdminSession {
    /// `Ok` when `sent` is this session's CSRF token; a 403 page otherwise.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), PageError> {
        match sent {
            Some(sent) if same(sent.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(PageError::Forbidden(
                "this form was not sent from this dashboard session (its CSRF token is \
                 missing or wrong); reload the page and try again"
                    .into(),
            )),
        }
    }
}

impl FromRequestParts<ApiState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/admin/login").into_response();
        let Some(cookie) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let key = session_key(state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Some(digest) = verify_session(&key, &cookie) else {
            return Err(to_login());
        };
        let user = state
            .store
            .authenticate(&digest)
            .await
            .map_err(|e| PageError::from(e).into_response())?;
        let Some(user) = user else {
            // Revoked or expired: the cookie is worthless now.
            return Err((clear_cookie(SESSION_COOKIE, &parts.headers), to_login()).into_response());
        };
        Caller::authenticated(parts, user.id);
        tracing::Span::current().record("user.id", tracing::field::display(user.id));
        if !user.is_site_owner() || user.status != agentq_core::domain::UserStatus::Active {
            return Err(PageError::Forbidden(not_owner()).into_response());
        }
        Ok(AdminSession {
            csrf: sign(&key, "csrf", &digest),
            user,
        })
    }
}

fn not_owner() -> String {
    "only site owners may use the operator dashboard: sign in with a site owner's API token".into()
}

/// The shared signing key, read from Redis once per process.
async fn session_key(state: &ApiState) -> Result<Vec<u8>, PageError> {
    state
        .dashboard
        .session_key
        .get_or_try_init(|| async {
            let mut conn = state.redis_conn.clone();
            let fresh: [u8; 32] = rand::random();
            queue::dashboard_session_key(&mut conn, &state.prefix, fresh).await
        })
        .await
        .cloned()
        .map_err(|e| PageError::Unavailable(format!("Redis is not reachable: {e}")))
}

/// Hex HMAC-SHA256 of `purpose` and `data` under `key`.
fn sign(key: &[u8], purpose: &str, data: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The token digest a session cookie names, when its signature holds.
fn verify_session(key: &[u8], cookie: &str) -> Option<String> {
    let (digest, signature) = cookie.split_once('.')?;
    same(
        sign(key, "session", digest).as_bytes(),
        signature.as_bytes(),
    )
    .then(|| digest.to_owned())
}

/// Equality in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name`, if sent.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether the client reached us over TLS, as the proxy in front reports it.
fn behind_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        });
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

/// A `Set-Cookie` header for `name=value` with the dashboard's attributes.
fn set_cookie(
    name: &str,
    value: &str,
    max_age_secs: u64,
    request: &HeaderMap,
) -> AppendHeaders<[(header::HeaderName, HeaderValue); 1]> {
    let secure = if behind_tls(request) { "; Secure" } else { "" };
    let value = format!(
        "{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    );
    AppendHeaders([(
        header::SET_COOKIE,
        HeaderValue::from_str(&value).expect("cookie values are hex"),
    )])
}

fn clear_cookie(
    name: &str,
    request: &HeaderMap,
) -> AppendHeaders<[(header::HeaderName, HeaderValue); 1]> {
    set_cookie(name, "", 0, request)
}

/// How long a session cookie lasts (the token's own expiry and revocation still apply).
const SESSION_SECS: u64 = 12 * 3600;

/// `GET /admin/login`: the sign-in form, with a fresh double-submit nonce.
pub async fn login_page(headers: HeaderMap) -> Response {
    login_form(StatusCode::OK, None, &headers)
}

fn login_form(status: StatusCode, problem: Option<&str>, headers: &HeaderMap) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let body: Markup = html! {
        form.login method="post" action="/admin/login" {
            h1 { "agentq operator dashboard" }
            @if let Some(problem) = problem {
                p.problem role="alert" { (problem) }
            }
            label for="token" { "Admin API token" }
            input #token type="password" name="token" autocomplete="off" required autofocus;
            input type="hidden" name="csrf" value=(nonce);
            p.hint { "A site owner's token (" code { "aq_..." } "). It is checked, then only its hash is kept, in a signed cookie." }
            button type="submit" { "Sign in" }
        }
    };
    (
        status,
        set_cookie(LOGIN_COOKIE, &nonce, 600, headers),
        layout::bare("Sign in", body),
    )
        .into_response()
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: Option<String>,
}

/// `POST /admin/login`: checks the token; a site owner's gets a session cookie.
pub async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let nonce = cookie(&headers, LOGIN_COOKIE);
    let nonce_matches = matches!((&nonce, &form.csrf), (Some(n), Some(c)) if !n.is_empty() && same(n.as_bytes(), c.as_bytes()));
    if !nonce_matches {
        return Err(PageError::Forbidden(
            "this sign-in form was not sent from the dashboard's sign-in page (its CSRF token \
             is missing or wrong); open /admin/login and try again"
                .into(),
        ));
    }
    let digest = hash_token(form.token.trim());
    let Some(user) = state.store.authenticate(&digest).await? else {
        return Ok(login_form(
            StatusCode::UNAUTHORIZED,
            Some("That token is invalid or expired, or was revoked."),
            &headers,
        ));
    };
    if !user.is_site_owner() || user.status != agentq_core::domain::UserStatus::Active {
        return Ok(login_form(
            StatusCode::FORBIDDEN,
            Some(&not_owner()),
            &headers,
        ));
    }
    let key = session_key(&state).await?;
    let session = format!("{digest}.{}", sign(&key, "session", &digest));
    tracing::info!(user.id = %user.id, "dashboard sign-in");
    Ok((
        set_cookie(SESSION_COOKIE, &session, SESSION_SECS, &headers),
        clear_cookie(LOGIN_COOKIE, &headers),
        Redirect::to("/admin"),
    )
        .into_response())
}

/// The fields every dashboard form sends.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: Option<String>,
}

/// `POST /admin/logout`: forgets the session cookie.
pub async fn logout(
    session: AdminSession,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    Ok((
        clear_cookie(SESSION_COOKIE, &headers),
        Redirect::to("/admin/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_holds_only_when_signed_with_the_key() {
        let key = [7u8; 32];
        let digest = hash_token("aq_secret");
        let cookie = format!("{digest}.{}", sign(&key, "session", &digest));
        assert_eq!(verify_session(&key, &cookie), Some(digest.clone()));
        assert_eq!(verify_session(&[8u8; 32], &cookie), None);
        let forged = format!("{digest}.{}", sign(&key, "csrf", &digest));
        assert_eq!(
            verify_session(&key, &forged),
            None,
            "a CSRF token is no session"
        );
        assert!(!cookie.contains("aq_secret"));
    }

    #[test]
    fn tls_is_read_from_the_proxy_headers() {
        let mut headers = HeaderMap::new();
        assert!(!behind_tls(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(behind_tls(&headers));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert!(behind_tls(&headers));
        let set = set_cookie("a", "b", 1, &headers);
        assert!(set.0[0].1.to_str().unwrap().ends_with("; Secure"));
    }
}
