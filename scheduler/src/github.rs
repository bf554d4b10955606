//! The GitHub REST API as the diff-status refresher uses it (ARCHITECTURE.md §10): one
//! request, `GET {api}/repos/{owner}/{repo}/pulls/{number}`, and what its answer means.
//!
//! The API base URL is configurable, so GitHub Enterprise Server (`https://ghe.example.com/api/v3`)
//! works like github.com (`https://api.github.com`). The web host that pull request URLs
//! live on is derived from it: `api.github.com` serves `github.com` (and `api.<x>.ghe.com`
//! serves `<x>.ghe.com`), an Enterprise `/api/v3` base serves its own host. Only URLs of
//! that host are ever sent here; a pull request elsewhere stays as it was reported.
//!
//! Every answer becomes a [`PullAnswer`]: the pull request, gone (404/410), a rate limit to
//! wait out (403 with `x-ratelimit-remaining: 0` until `x-ratelimit-reset`, 403 or 429
//! with `retry-after`, a 429 or a secondary-limit 403 without either: a minute, as GitHub
//! asks), a refused token (401), or a failure named by a short code. The token is sent as
//! a sensitive header and never appears in an error, a log line or a response.

use std::{str::FromStr, time::Duration};

use agentq_core::{
    domain::{PrState, pr_host},
    secrets::{ExposeSecret, SecretString},
    store::RefreshedPr,
    text::is_forbidden,
};
use chrono::{DateTime, Utc};
use reqwest::{StatusCode, header};
use serde::Deserialize;

/// Largest answer read, in bytes (a pull request's JSON is tens of kilobytes).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long to wait when GitHub says "rate limited" without saying until when.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Longest title kept, in characters (GitHub allows 256).
const MAX_TITLE_CHARS: usize = 1024;

/// A GitHub REST API base URL and the web host its pull requests live on.
#[derive(Debug, Clone)]
pub struct GithubApi {
    base: String,
    web_host: String,
}

/// Why `--github-api-url` was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a GitHub API base URL: expected http(s)://host[/path] without credentials, \
     such as https://api.github.com or https://ghe.example.com/api/v3"
)]
pub struct GithubApiError(String);

impl FromStr for GithubApi {
    type Err = GithubApiError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let refuse = || GithubApiError(raw.to_owned());
        let url = url::Url::parse(raw.trim()).map_err(|_| refuse())?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
        {
            return Err(refuse());
        }
        let api_host = pr_host(url.as_str()).ok_or_else(refuse)?;
        let path = url.path().trim_end_matches('/');
        // github.com and GitHub Enterprise Cloud serve the API from an `api.` host at the
        // root; Enterprise Server serves it under `/api/v3` on the web host itself.
        let web_host = match api_host.strip_prefix("api.") {
            Some(web) if path.is_empty() && web.contains('.') => web.to_owned(),
            _ => api_host,
        };
        Ok(Self {
            base: format!("{}{path}", url.origin().ascii_serialization()),
            web_host,
        })
    }
}

impl GithubApi {
    /// The base URL requests start with (no trailing `/`); also the key of the API's
    /// backoff in `github_api_backoffs`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The `host[:port]` its pull request URLs have (`chat_diff_statuses.pr_host`).
    pub fn web_host(&self) -> &str {
        &self.web_host
    }

    /// The pull request `url` names, when it is one of this host's
    /// (`https://<host>/<owner>/<repo>/pull/<number>`, anything after the number ignored).
    pub fn pull_request(&self, url: &str) -> Option<PullRef> {
        if pr_host(url)? != self.web_host {
            return None;
        }
        let url = url::Url::parse(url).ok()?;
        let mut segments = url.path_segments()?;
        let owner = segments.next().filter(|s| valid_name(s))?;
        let repo = segments.next().filter(|s| valid_name(s))?;
        if segments.next()? != "pull" {
            return None;
        }
        let number = segments.next()?.parse::<i32>().ok().filter(|&n| n > 0)?;
        Some(PullRef {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            number,
        })
    }
}

/// GitHub's owner and repository names: letters, digits, `-`, `_`, `.` (so they go into
/// the API path as they are).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A pull request on the configured host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRef {
    /// The repository's owner.
    pub owner: String,
    /// The repository.
    pub repo: String,
    /// The pull request's number.
    pub number: i32,
}

/// What GitHub answered about one pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullAnswer {
    /// The pull request as it is now; `exhausted_until` when this request spent the last of
    /// the rate limit (`x-ratelimit-remaining: 0`): nothing more until then.
    Found {
        /// What it says.
        pr: RefreshedPr,
        /// When the spent rate limit resets.
        exhausted_until: Option<DateTime<Utc>>,
    },
    /// 404 or 410: no such pull request, or the token may not see its repository.
    NotFound,
    /// Rate limited: nothing more until `until`.
    RateLimited {
        /// When to ask again.
        until: DateTime<Utc>,
    },
    /// 401: the token is refused, so every request would be.
    Unauthorized,
    /// Anything else, as a short code for `chat_diff_statuses.refresh_error`
    /// (`http_502`, `unreachable`, `bad_response`).
    Failed(String),
}

/// A client for one GitHub API with one token.
#[derive(Clone)]
pub struct GithubClient {
    api: GithubApi,
    token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    /// A client of `api` that authenticates with `token`, each request bounded by
    /// `timeout`. Redirects (a renamed repository) are followed within the API's origin
    /// only, so the token never leaves it.
    pub fn new(api: GithubApi, token: SecretString, timeout: Duration) -> Self {
        let origin = url::Url::parse(&api.base).map(|u| u.origin());
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("agentq/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let same_origin = origin.as_ref().is_ok_and(|o| *o == attempt.url().origin());
                if attempt.previous().len() < 3 && same_origin {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .expect("building an HTTP client with these settings cannot fail");
        Self { api, token, http }
    }

    /// The API this client talks to.
    pub fn api(&self) -> &GithubApi {
        &self.api
    }

    /// Asks for `pull`; `now` dates a `retry-after`.
    pub async fn pull_request(&self, pull: &PullRef, now: DateTime<Utc>) -> PullAnswer {
        let url = format!(
            "{}/repos/{}/{}/pulls/{}",
            self.api.base, pull.owner, pull.repo, pull.number
        );
        let mut auth =
            header::HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
                .unwrap_or_else(|_| header::HeaderValue::from_static(""));
        auth.set_sensitive(true);
        let sent = self
            .http
            .get(url)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header(header::AUTHORIZATION, auth)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return PullAnswer::Failed("timeout".into()),
            Err(_) => return PullAnswer::Failed("unreachable".into()),
        };
        let status = response.status();
        let limits = RateLimitHeaders::read(response.headers());
        let Some(body) = read_bounded(response).await else {
            return PullAnswer::Failed("bad_response".into());
        };
        answer(status, &limits, &body, now)
    }
}

/// The rate-limit headers of an answer.
#[derive(Debug, Default)]
struct RateLimitHeaders {
    remaining: Option<u64>,
    reset: Option<i64>,
    retry_after: Option<u64>,
}

impl RateLimitHeaders {
    fn read(headers: &header::HeaderMap) -> Self {
        fn number<T: FromStr>(headers: &header::HeaderMap, name: &str) -> Option<T> {
            headers.get(name)?.to_str().ok()?.trim().parse().ok()
        }
        Self {
            remaining: number(headers, "x-ratelimit-remaining"),
            reset: number(headers, "x-ratelimit-reset"),
            retry_after: number(headers, header::RETRY_AFTER.as_str()),
        }
    }

    /// When the limit resets, if the answer says (`x-ratelimit-reset`, unix seconds); never
    /// before `now`.
    fn reset_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let reset = DateTime::from_timestamp(self.reset?, 0)?;
        Some(reset.max(now + chrono::Duration::seconds(1)))
    }
}

/// Reads at most [`MAX_BODY_BYTES`]; `None` when the body is larger or breaks off.
async fn read_bounded(mut response: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// What an answer means (see the module page).
fn answer(
    status: StatusCode,
    limits: &RateLimitHeaders,
    body: &[u8],
    now: DateTime<Utc>,
) -> PullAnswer {
    match status {
        StatusCode::OK => match parse_pull(body) {
            Some(pr) => PullAnswer::Found {
                pr,
                exhausted_until: (limits.remaining == Some(0))
                    .then(|| limits.reset_at(now))
                    .flatten(),
            },
            None => PullAnswer::Failed("bad_response".into()),
        },
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
            let wait = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
            if let Some(secs) = limits.retry_after {
                PullAnswer::RateLimited {
                    until: wait(Duration::from_secs(secs.max(1))),
                }
            } else if limits.remaining == Some(0) {
                PullAnswer::RateLimited {
                    until: limits
                        .reset_at(now)
                        .unwrap_or_else(|| wait(DEFAULT_RATE_LIMIT_WAIT)),
                }
            } else if status == StatusCode::TOO_MANY_REQUESTS
                || String::from_utf8_lossy(body)
                    .to_ascii_lowercase()
                    .contains("rate limit")
            {
                // A secondary rate limit without headers: GitHub asks for at least a minute.
                PullAnswer::RateLimited {
                    until: wait(DEFAULT_RATE_LIMIT_WAIT),
                }
            } else {
                PullAnswer::Failed("http_403".into())
            }
        }
        StatusCode::UNAUTHORIZED => PullAnswer::Unauthorized,
        StatusCode::NOT_FOUND | StatusCode::GONE => PullAnswer::NotFound,
        other => PullAnswer::Failed(format!("http_{}", other.as_u16())),
    }
}

/// The fields of GitHub's pull request object that a diff status holds.
#[derive(Deserialize)]
struct Pull {
    number: i64,
    title: String,
    state: String,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    additions: Option<i64>,
    #[serde(default)]
    deletions: Option<i64>,
    #[serde(default)]
    changed_files: Option<i64>,
}

fn parse_pull(body: &[u8]) -> Option<RefreshedPr> {
    let pull: Pull = serde_json::from_slice(body).ok()?;
    let state = if pull.merged || pull.merged_at.is_some() {
        PrState::Merged
    } else {
        match pull.state.as_str() {
            "open" => PrState::Open,
            "closed" => PrState::Closed,
            _ => return None,
        }
    };
    let count = |n: Option<i64>| n.unwrap_or(0).clamp(0, i64::from(i32::MAX)) as i32;
    Some(RefreshedPr {
        number: i32::try_from(pull.number).ok().filter(|&n| n > 0)?,
        // Shown in lists and emails like a chat title: control characters become spaces.
        title: pull
            .title
            .chars()
            .map(|c| if is_forbidden(c) { ' ' } else { c })
            .take(MAX_TITLE_CHARS)
            .collect(),
        draft: pull.draft && state == PrState::Open,
        state,
        additions: count(pull.additions),
        deletions: count(pull.deletions),
        changed_files: count(pull.changed_files),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_host_follows_the_api_base_url() {
        let cases = [
            (
                "https://api.github.com",
                "https://api.github.com",
                "github.com",
            ),
            (
                "https://api.github.com/",
                "https://api.github.com",
                "github.com",
            ),
            (
                "https://ghe.example.com/api/v3",
                "https://ghe.example.com/api/v3",
                "ghe.example.com",
            ),
            (
                "https://api.acme.ghe.com",
                "https://api.acme.ghe.com",
                "acme.ghe.com",
            ),
            (
                "http://127.0.0.1:8081/api/v3/",
                "http://127.0.0.1:8081/api/v3",
                "127.0.0.1:8081",
            ),
        ];
        for (raw, base, host) in cases {
            let api: GithubApi = raw.parse().unwrap();
            assert_eq!((api.base_url(), api.web_host()), (base, host), "{raw}");
        }
        for bad in [
            "ftp://api.github.com",
            "https://user:pw@api.github.com",
            "api.github.com",
            "https://api.github.com/?x=1",
        ] {
            assert!(bad.parse::<GithubApi>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_pull_request_urls_of_the_host_are_refreshed() {
        let api: GithubApi = "https://ghe.example.com/api/v3".parse().unwrap();
        assert_eq!(
            api.pull_request("https://GHE.example.com/acme/api/pull/12/files"),
            Some(PullRef {
                owner: "acme".into(),
                repo: "api".into(),
                number: 12
            })
        );
        for other in [
            "https://github.com/acme/api/pull/12",
            "https://ghe.example.com:8443/acme/api/pull/12",
            "https://ghe.example.com/acme/api/issues/12",
            "https://ghe.example.com/acme/api/pull/0",
            "https://ghe.example.com/acme/api/pull/x",
            "https://ghe.example.com/acme/../pull/1",
        ] {
            assert_eq!(api.pull_request(other), None, "{other}");
        }
    }

    #[test]
    fn answers_are_classified() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let none = RateLimitHeaders::default();
        let pull = br#"{"number": 7, "title": "Fix\nit", "state": "closed", "merged": true,
                        "draft": false, "additions": 3, "deletions": -1, "changed_files": 1}"#;
        assert_eq!(
            answer(StatusCode::OK, &none, pull, now),
            PullAnswer::Found {
                pr: RefreshedPr {
                    number: 7,
                    title: "Fix it".into(),
                    state: PrState::Merged,
                    draft: false,
                    additions: 3,
                    deletions: 0,
                    changed_files: 1,
                },
                exhausted_until: None,
            }
        );
        let spent = RateLimitHeaders {
            remaining: Some(0),
            reset: Some(1_800_000_120),
            retry_after: None,
        };
        let reset = DateTime::from_timestamp(1_800_000_120, 0).unwrap();
        assert_eq!(
            answer(StatusCode::FORBIDDEN, &spent, b"{}", now),
            PullAnswer::RateLimited { until: reset }
        );
        let retry = RateLimitHeaders {
            retry_after: Some(30),
            ..RateLimitHeaders::default()
        };
        assert_eq!(
            answer(StatusCode::TOO_MANY_REQUESTS, &retry, b"", now),
            PullAnswer::RateLimited {
                until: now + chrono::Duration::seconds(30)
            }
        );
        assert_eq!(
            answer(
                StatusCode::FORBIDDEN,
                &none,
                br#"{"message": "You have exceeded a secondary rate limit."}"#,
                now
            ),
            PullAnswer::RateLimited {
                until: now + chrono::Duration::seconds(60)
            }
        );
        assert_eq!(
            answer(StatusCode::FORBIDDEN, &none, b"{}", now),
            PullAnswer::Failed("http_403".into())
        );
        assert_eq!(
            answer(StatusCode::UNAUTHORIZED, &none, b"", now),
            PullAnswer::Unauthorized
        );
        assert_eq!(
            answer(StatusCode::NOT_FOUND, &none, b"", now),
            PullAnswer::NotFound
        );
        assert_eq!(
            answer(StatusCode::BAD_GATEWAY, &none, b"", now),
            PullAnswer::Failed("http_502".into())
        );
        assert_eq!(
            answer(StatusCode::OK, &none, b"<html>", now),
            PullAnswer::Failed("bad_response".into())
        );
    }
}
