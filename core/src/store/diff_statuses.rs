//! Diff statuses (`chat_diff_statuses`, ARCHITECTURE.md §3 and §10): what an integration
//! reports about a chat's git remote, branch and pull request, and what the scheduler's
//! refresher learns from the GitHub REST API afterwards.
//!
//! A row's refresh cycle, each arrow one function here:
//!
//! ```text
//! report_diff_status ──> due (next_refresh_at = now, no claim)
//! due ──claim_due_diff_statuses──> claimed (refresh_claim = tick, next_refresh_at = lease end)
//! claimed ──record_pr_refreshed──> due later (open, closed) | never again (merged)
//! claimed ──record_pr_refresh_failed──> due after a backoff (404 `not_found`: a long one)
//! claimed ──release_claimed_diff_statuses──> due when a rate limit resets (not a failure)
//! ```
//!
//! The claim takes rows with `FOR UPDATE SKIP LOCKED` and commits at once, moving
//! `next_refresh_at` a lease ahead: concurrent ticks (any number of schedulers) take
//! disjoint rows, and a tick that dies leaves its rows due again when the lease ends. Every
//! outcome names the tick's claim in its `WHERE`; a report made while the refresher waited
//! for GitHub clears the claim, so the older answer is dropped instead of overwriting it.
//! Only rows whose `pr_host` is the refresher's GitHub host are ever claimed: a pull
//! request elsewhere stays as reported.
//!
//! A GitHub API that asks us to wait (a rate limit, a refused token) is recorded in
//! `github_api_backoffs`, so every scheduler process waits, not just the one that was told.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, pg_text};
use crate::{
    StoreError,
    domain::{ChatDiffStatus, DiffStatus, PrState, pr_host},
};

const VIEW_COLUMNS: &str = "git_remote_origin, git_branch, pr_url, pr_number, pr_title, pr_state, pr_draft, \
     additions, deletions, changed_files, reported_at, refreshed_at, refresh_error, updated_at";

/// A row the refresher claimed: the pull request to ask GitHub about.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDiffStatus {
    /// The chat.
    pub chat_id: Uuid,
    /// The pull request's URL on the refresher's host.
    pub pr_url: String,
    /// Refreshes of the row that failed in a row before this one.
    pub refresh_failures: i32,
}

/// What GitHub says about a pull request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshedPr {
    /// Its number.
    pub number: i32,
    /// Its title.
    pub title: String,
    /// Open, closed or merged.
    pub state: PrState,
    /// Whether it is a draft.
    pub draft: bool,
    /// Lines added.
    pub additions: i32,
    /// Lines deleted.
    pub deletions: i32,
    /// Files changed.
    pub changed_files: i32,
}

/// Why a GitHub API asked us to wait (`github_api_backoffs.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum GithubBackoffReason {
    /// A primary or secondary rate limit (403 or 429).
    RateLimit,
    /// The token was refused (401): every request would be.
    Unauthorized,
}

impl Store {
    /// Replaces the diff status of `owner`'s chat with `status` as an integration reported
    /// it, and makes it due for a refresh at once when its PR URL is an http(s) URL (the
    /// refresher still refreshes only its own host's). A refresh in flight loses its claim.
    /// Someone else's chat, or none: [`StoreError::NotFound`].
    pub async fn report_diff_status(
        &self,
        chat_id: Uuid,
        owner: Uuid,
        status: &DiffStatus,
    ) -> Result<ChatDiffStatus, StoreError> {
        let host = status.pr_url.as_deref().and_then(pr_host);
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO chat_diff_statuses (chat_id, git_remote_origin, git_branch, pr_url,
                    pr_number, pr_title, pr_state, pr_draft, additions, deletions, changed_files,
                    pr_host, reported_at, refreshed_at, next_refresh_at, refresh_claim,
                    refresh_failures, refresh_error, updated_at)
             SELECT c.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text, now(), NULL,
                    CASE WHEN $13::text IS NOT NULL THEN now() END, NULL, 0, NULL, now()
             FROM chats c WHERE c.id = $1 AND c.owner_id = $2
             ON CONFLICT (chat_id) DO UPDATE SET
                    git_remote_origin = EXCLUDED.git_remote_origin,
                    git_branch = EXCLUDED.git_branch, pr_url = EXCLUDED.pr_url,
                    pr_number = EXCLUDED.pr_number, pr_title = EXCLUDED.pr_title,
                    pr_state = EXCLUDED.pr_state, pr_draft = EXCLUDED.pr_draft,
                    additions = EXCLUDED.additions, deletions = EXCLUDED.deletions,
                    changed_files = EXCLUDED.changed_files, pr_host = EXCLUDED.pr_host,
                    reported_at = EXCLUDED.reported_at, refreshed_at = NULL,
                    next_refresh_at = EXCLUDED.next_refresh_at, refresh_claim = NULL,
                    refresh_failures = 0, refresh_error = NULL, updated_at = EXCLUDED.updated_at
             RETURNING {VIEW_COLUMNS}"
        )))
        .bind(chat_id)
        .bind(owner)
        .bind(status.git_remote_origin.as_deref().map(pg_text))
        .bind(status.git_branch.as_deref().map(pg_text))
        .bind(status.pr_url.as_deref().map(pg_text))
        .bind(status.pr_number)
        .bind(status.pr_title.as_deref().map(pg_text))
        .bind(status.pr_state)
        .bind(status.pr_draft)
        .bind(status.additions)
        .bind(status.deletions)
        .bind(status.changed_files)
        .bind(host)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// The chat's diff status, if one was reported (the caller checked the chat is theirs).
    pub async fn chat_diff_status(
        &self,
        chat_id: Uuid,
    ) -> Result<Option<ChatDiffStatus>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VIEW_COLUMNS} FROM chat_diff_statuses WHERE chat_id = $1"
        )))
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Claims at most `batch` rows of `host` due at `now`, oldest first, skipping rows
    /// another tick holds, for the claim `claim`: each is due again at `lease_until` unless
    /// an outcome is recorded first. Commits before returning, so no lock is held while
    /// GitHub answers.
    pub async fn claim_due_diff_statuses(
        &self,
        host: &str,
        now: DateTime<Utc>,
        batch: i64,
        claim: Uuid,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueDiffStatus>, StoreError> {
        Ok(sqlx::query_as(
            "WITH due AS (
                SELECT chat_id FROM chat_diff_statuses
                WHERE pr_host = $1 AND next_refresh_at <= $2
                ORDER BY next_refresh_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED
             )
             UPDATE chat_diff_statuses d SET refresh_claim = $4, next_refresh_at = $5
             FROM due WHERE d.chat_id = due.chat_id
             RETURNING d.chat_id, d.pr_url, d.refresh_failures",
        )
        .bind(host)
        .bind(now)
        .bind(batch)
        .bind(claim)
        .bind(lease_until)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records what GitHub said about the claimed row's pull request at `now`: state,
    /// draft, title, number and counts replace the reported ones. The row is due again at
    /// `next` (`None`: never, for a merged pull request). `false` when the claim was lost
    /// (a report replaced the row meanwhile, or the chat is gone).
    pub async fn record_pr_refreshed(
        &self,
        chat_id: Uuid,
        claim: Uuid,
        pr: &RefreshedPr,
        now: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chat_diff_statuses SET pr_number = $3, pr_title = $4, pr_state = $5,
                    pr_draft = $6, additions = $7, deletions = $8, changed_files = $9,
                    refreshed_at = $10, updated_at = $10, next_refresh_at = $11,
                    refresh_claim = NULL, refresh_failures = 0, refresh_error = NULL
             WHERE chat_id = $1 AND refresh_claim = $2",
        )
        .bind(chat_id)
        .bind(claim)
        .bind(pr.number)
        .bind(pg_text(&pr.title))
        .bind(pr.state)
        .bind(pr.draft)
        .bind(pr.additions)
        .bind(pr.deletions)
        .bind(pr.changed_files)
        .bind(now)
        .bind(next)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that refreshing the claimed row failed with `error` (`not_found`,
    /// `http_502`, ...): the reported fields stay, the failure count grows, and the row is
    /// due again at `retry_at` (`None`: never, until a report). `false` when the claim was
    /// lost.
    pub async fn record_pr_refresh_failed(
        &self,
        chat_id: Uuid,
        claim: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chat_diff_statuses SET refresh_error = $3, next_refresh_at = $4,
                    refresh_failures = refresh_failures + 1, refresh_claim = NULL
             WHERE chat_id = $1 AND refresh_claim = $2",
        )
        .bind(chat_id)
        .bind(claim)
        .bind(pg_text(error))
        .bind(retry_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands back every row `claim` still holds, due at `at` (when a rate limit resets):
    /// they were not tried, so nothing counts as a failure. Returns how many.
    pub async fn release_claimed_diff_statuses(
        &self,
        claim: Uuid,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE chat_diff_statuses SET next_refresh_at = $2, refresh_claim = NULL
             WHERE refresh_claim = $1",
        )
        .bind(claim)
        .bind(at)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Until when the GitHub API at `api_url` asked us to wait, and why; `None` when it
    /// never did (a past time means the wait is over).
    pub async fn github_backoff(
        &self,
        api_url: &str,
    ) -> Result<Option<(DateTime<Utc>, GithubBackoffReason)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT until, reason FROM github_api_backoffs WHERE api_url = $1")
                .bind(api_url)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records that the GitHub API at `api_url` asked us to wait until `until`. A later
    /// time already recorded (another process was told to wait longer) is kept.
    pub async fn set_github_backoff(
        &self,
        api_url: &str,
        until: DateTime<Utc>,
        reason: GithubBackoffReason,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO github_api_backoffs (api_url, until, reason) VALUES ($1, $2, $3)
             ON CONFLICT (api_url) DO UPDATE SET
                until = GREATEST(github_api_backoffs.until, EXCLUDED.until),
                reason = CASE WHEN EXCLUDED.until >= github_api_backoffs.until
                              THEN EXCLUDED.reason ELSE github_api_backoffs.reason END,
                updated_at = now()",
        )
        .bind(api_url)
        .bind(until)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
