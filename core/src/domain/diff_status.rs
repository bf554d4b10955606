//! Where a chat's work stands in git (`chat_diff_statuses`; ARCHITECTURE.md §3): the remote,
//! the branch and the pull request an integration reported, which the chat list's `pr:`,
//! `repo:`, `pr_title:` and `pr_status:` search (`crate::chat_query`).

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
