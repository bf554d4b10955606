//! Where a chat's work stands in git (`chat_diff_statuses`; ARCHITECTURE.md §3): the remote,
//! the branch and the pull request an integration reported (`PUT
//! /api/v1/chats/{id}/diff-status`), which the chat list's `pr:`, `repo:`, `pr_title:` and
//! `pr_status:` search (`crate::chat_query`) and the scheduler's refresher keeps current from
//! the GitHub REST API (ARCHITECTURE.md §10).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A pull request's state (`chat_diff_statuses.pr_state`, CHECK `open`, `closed`, `merged`);
/// a draft is an open PR with `pr_draft` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PrState {
    /// Open (a draft or ready for review).
    Open,
    /// Closed without merging.
    Closed,
    /// Merged.
    Merged,
}

/// A chat's diff status as reported: every field optional but the draft flag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiffStatus {
    /// The repository's `origin` remote (`https://github.com/acme/api.git`).
    pub git_remote_origin: Option<String>,
    /// The branch the chat works on.
    pub git_branch: Option<String>,
    /// The pull request's URL.
    pub pr_url: Option<String>,
    /// Its number.
    pub pr_number: Option<i32>,
    /// Its title.
    pub pr_title: Option<String>,
    /// Its state.
    pub pr_state: Option<PrState>,
    /// Whether it is a draft.
    pub pr_draft: bool,
    /// Lines added.
    pub additions: Option<i32>,
    /// Lines deleted.
    pub deletions: Option<i32>,
    /// Files changed.
    pub changed_files: Option<i32>,
}

/// A chat's diff status as `GET /api/v1/chats/{id}` shows it: what was reported, as the
/// refresher last corrected it, and when each happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatDiffStatus {
    /// The remote, the branch and the pull request.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub status: DiffStatus,
    /// When an integration last reported it (a report replaces every field).
    pub reported_at: DateTime<Utc>,
    /// When GitHub last answered for the pull request; `null`: as reported.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Why the last refresh failed (`not_found`: GitHub does not know the pull request, or
    /// the token may not see it; `http_<status>`, `unreachable`, `bad_response`); `null`
    /// when it did not, or none ran.
    pub refresh_error: Option<String>,
    /// Last change, by a report or a refresh.
    pub updated_at: DateTime<Utc>,
}

/// The `host[:port]` of an `http(s)` URL as `chat_diff_statuses.pr_host` stores it
/// (lowercase, the port only when it is not the scheme's default): the key the refresher
/// claims its own host's pull requests by. `None` for anything else.
pub fn pr_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())?
        .to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

#[cfg(test)]
mod tests {
    use super::pr_host;

    #[test]
    fn the_pr_host_is_the_lowercase_host_and_a_non_default_port() {
        assert_eq!(
            pr_host("https://GitHub.com/acme/api/pull/1").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            pr_host("https://github.com:443/acme/api/pull/1").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            pr_host("http://127.0.0.1:8081/acme/api/pull/1").as_deref(),
            Some("127.0.0.1:8081")
        );
        assert_eq!(pr_host("git@github.com:acme/api.git"), None);
        assert_eq!(pr_host("ftp://github.com/acme"), None);
    }
}
