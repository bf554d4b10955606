//! `PUT /api/v1/chats/{chat_id}/diff-status`: an integration (the agent's workspace, a CI
//! job, a git hook) reports where the chat's work stands in git: the remote, the branch and
//! the pull request with its state and size. The report replaces the last one; `GET` on the
//! chat shows it, the chat list searches it (`pr:`, `repo:`, `pr_title:`, `pr_status:`),
//! and the scheduler's refresher keeps a pull request on its GitHub host current
//! (ARCHITECTURE.md §10).
//!
//! Everything is checked before it is stored, each failure a 400 naming the field: URLs are
//! http(s) (or, for the remote, the ssh and scp forms git prints) without credentials, text
//! is bounded and free of control characters (U+0000 included, which PostgreSQL cannot
//! store), numbers are non-negative and fit the column.

use agentq_core::domain::{ChatDiffStatus, DiffStatus, PrState};
use axum::{Json, extract::State};
use serde::Deserialize;

use crate::{
    ApiState,
    auth::OwnedChat,
    error::{ApiError, ErrorBody, OrNotFound, refuse_control_chars},
    extract::{ChatId, JsonBody},
};

/// Longest remote origin or PR URL, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// Longest branch name, in bytes (what most file systems allow a ref's file name).
const MAX_BRANCH_BYTES: usize = 255;
/// Longest PR title, in characters (GitHub allows 256).
const MAX_PR_TITLE_CHARS: usize = 1024;
/// Largest number or count: what the integer columns hold.
const MAX_NUMBER: i64 = i32::MAX as i64;

/// Body of `PUT /api/v1/chats/{chat_id}/diff-status`: every field optional; an absent,
/// `null` or blank one is stored as unknown. The report replaces the previous one whole.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffStatusReport {
    /// The repository's `origin` remote as `git remote get-url origin` prints it:
    /// `https://github.com/acme/api.git`, `ssh://git@github.com/acme/api.git` or
    /// `git@github.com:acme/api.git` (at most 2048 bytes; no credentials).
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub git_remote_origin: Option<String>,
    /// The branch the chat works on (at most 255 bytes, no white space or control
    /// characters).
    #[serde(default)]
    #[schema(max_length = 255)]
    pub git_branch: Option<String>,
    /// The pull request's web URL, `http(s)://` (at most 2048 bytes; no credentials).
    /// One on the configured GitHub host is refreshed from the GitHub API.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub pr_url: Option<String>,
    /// Its number (1 to 2147483647).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub pr_number: Option<i64>,
    /// Its title (at most 1024 characters, no control characters).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub pr_title: Option<String>,
    /// `open`, `closed` or `merged`.
    #[serde(default)]
    pub pr_state: Option<PrState>,
    /// Whether it is a draft (only an open pull request can be); absent: `false`.
    #[serde(default)]
    pub pr_draft: Option<bool>,
    /// Lines added (0 to 2147483647).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub additions: Option<i64>,
    /// Lines deleted (0 to 2147483647).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub deletions: Option<i64>,
    /// Files changed (0 to 2147483647).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub changed_files: Option<i64>,
}

/// `PUT /api/v1/chats/{chat_id}/diff-status`.
#[utoipa::path(
    put,
    path = "/api/v1/chats/{chat_id}/diff-status",
    tag = "chats",
    params(ChatId),
    request_body = DiffStatusReport,
    responses(
        (status = 200, description = "The diff status as stored; `GET` on the chat shows it too.", body = ChatDiffStatus),
        (status = 400, description = "A field is invalid (`validations` names it), or an unknown field was sent.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn put_diff_status(
    State(state): State<ApiState>,
    OwnedChat { user, chat_id }: OwnedChat,
    JsonBody(report): JsonBody<DiffStatusReport>,
) -> Result<Json<ChatDiffStatus>, ApiError> {
    let status = report.validate()?;
    let stored = state
        .store
        .report_diff_status(chat_id, user.id, &status)
        .await
        .or_not_found("chat")?;
    Ok(Json(stored))
}

impl DiffStatusReport {
    /// The report as the store takes it, or a 400 naming the first bad field.
    fn validate(self) -> Result<DiffStatus, ApiError> {
        let pr_state = self.pr_state;
        let pr_draft = self.pr_draft.unwrap_or(false);
        if pr_draft && pr_state.is_some_and(|s| s != PrState::Open) {
            return Err(ApiError::invalid(
                "pr_draft",
                "only an open pull request can be a draft",
            ));
        }
        Ok(DiffStatus {
            git_remote_origin: present(self.git_remote_origin)
                .map(check_remote_origin)
                .transpose()?,
            git_branch: present(self.git_branch).map(check_branch).transpose()?,
            pr_url: present(self.pr_url)
                .map(|url| check_http_url("pr_url", url))
                .transpose()?,
            pr_number: bounded("pr_number", self.pr_number, 1)?,
            pr_title: present(self.pr_title).map(check_title).transpose()?,
            pr_state,
            pr_draft,
            additions: bounded("additions", self.additions, 0)?,
            deletions: bounded("deletions", self.deletions, 0)?,
            changed_files: bounded("changed_files", self.changed_files, 0)?,
        })
    }
}

/// The trimmed text, `None` when absent or blank.
fn present(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// `value` when it lies in `min..=MAX_NUMBER`, as the column's type.
fn bounded(field: &str, value: Option<i64>, min: i64) -> Result<Option<i32>, ApiError> {
    match value {
        None => Ok(None),
        Some(n) if (min..=MAX_NUMBER).contains(&n) => Ok(Some(n as i32)),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("must be between {min} and {MAX_NUMBER}"),
        )),
    }
}

/// Bounded and free of control characters (U+0000 included).
fn check_text(field: &str, text: &str, max_bytes: usize) -> Result<(), ApiError> {
    if text.len() > max_bytes {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max_bytes} bytes"),
        ));
    }
    refuse_control_chars(field, text)
}

/// An `http(s)://` URL with a host and without credentials (it is shown to the chat's
/// owner and stored as given). The checks MCP server URLs get, with this route's wording
/// for credentials first.
fn check_http_url(field: &str, url: String) -> Result<String, ApiError> {
    check_text(field, &url, MAX_URL_BYTES)?;
    if url::Url::parse(&url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
        return Err(ApiError::invalid(
            field,
            "must not hold credentials (a user name or a token before `@`)",
        ));
    }
    super::mcp_servers::changes::check_url(field, url)
}

/// A git remote: an http(s) URL as [`check_http_url`] takes it, `ssh://` or `git://` with
/// at most a user name, or the scp form `[user@]host:path`.
fn check_remote_origin(origin: String) -> Result<String, ApiError> {
    const FIELD: &str = "git_remote_origin";
    check_text(FIELD, &origin, MAX_URL_BYTES)?;
    if origin.contains(char::is_whitespace) {
        return Err(ApiError::invalid(FIELD, "must not contain white space"));
    }
    let lower = origin.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return check_http_url(FIELD, origin);
    }
    if lower.starts_with("ssh://") || lower.starts_with("git://") {
        return match url::Url::parse(&origin) {
            Ok(u) if u.password().is_some() => Err(ApiError::invalid(
                FIELD,
                "must not hold a password or token",
            )),
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) && u.path().len() > 1 => {
                Ok(origin)
            }
            _ => Err(remote_origin_shape()),
        };
    }
    // The scp form: `[user@]host:path`, where the host holds no `/` (else git reads a
    // local path) and nothing precedes it but a user name without a password. Without a
    // user, the host must hold a dot, so that `javascript:...` or `data:...` (which a page
    // showing the remote might make a link of) is never taken for one.
    let (before, path) = origin.split_once(':').ok_or_else(remote_origin_shape)?;
    let (host, has_user) = match before.rsplit_once('@') {
        Some((user, host)) if !user.is_empty() && !user.contains(':') => (host, true),
        Some(_) => return Err(remote_origin_shape()),
        None => (before, false),
    };
    let host_ok = !host.is_empty()
        && (has_user || host.contains('.'))
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if host_ok && !path.is_empty() && !path.starts_with("//") {
        Ok(origin)
    } else {
        Err(remote_origin_shape())
    }
}

fn remote_origin_shape() -> ApiError {
    ApiError::invalid(
        "git_remote_origin",
        "must be a git remote URL: https://host/owner/repo.git, ssh://git@host/owner/repo.git \
         or git@host:owner/repo.git",
    )
}

fn check_branch(branch: String) -> Result<String, ApiError> {
    check_text("git_branch", &branch, MAX_BRANCH_BYTES)?;
    if branch.contains(char::is_whitespace) {
        return Err(ApiError::invalid(
            "git_branch",
            "must not contain white space (git branch names cannot)",
        ));
    }
    Ok(branch)
}

fn check_title(title: String) -> Result<String, ApiError> {
    if title.chars().count() > MAX_PR_TITLE_CHARS {
        return Err(ApiError::invalid(
            "pr_title",
            format!("must be at most {MAX_PR_TITLE_CHARS} characters"),
        ));
    }
    refuse_control_chars("pr_title", &title)?;
    Ok(title)
}

#[cfg(test)]
mod tests {
    use super::check_remote_origin;

    #[test]
    fn remotes_take_the_forms_git_prints() {
        for ok in [
            "https://github.com/acme/api.git",
            "http://ghe.example.com/acme/api",
            "ssh://git@github.com/acme/api.git",
            "ssh://git@ghe.example.com:2222/acme/api.git",
            "git://example.com/acme/api.git",
            "git@github.com:acme/api.git",
            "github.com:acme/api.git",
        ] {
            assert!(check_remote_origin(ok.into()).is_ok(), "{ok}");
        }
        for bad in [
            "https://x-access-token:ghp_secret@github.com/acme/api.git",
            "https://ghp_secret@github.com/acme/api.git",
            "ssh://git:secret@github.com/acme/api.git",
            "file:///srv/git/api.git",
            "/srv/git/api.git",
            "api",
            "git@:acme/api.git",
            "user:pw@github.com:acme/api.git",
            "javascript:alert(1)//x",
            "git@github.com:",
            "data:text/html,x",
        ] {
            assert!(check_remote_origin(bad.into()).is_err(), "{bad}");
        }
    }
}
