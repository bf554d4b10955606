//! The diff-status refresher (ARCHITECTURE.md §10): keeps the pull requests integrations
//! reported (`PUT /api/v1/chats/{id}/diff-status`) current from the GitHub REST API, so the
//! chat shows, and the chat list searches (`pr_status:merged`, `pr_title:`), what the pull
//! request is now rather than what it was when it was reported.
//!
//! It runs in every scheduler process, on an interval like recovery, when a GitHub token is
//! configured. Each tick:
//!
//! 1. reads the API's recorded backoff (`Store::github_backoff`): while one holds (any
//!    scheduler was rate limited or had its token refused), the tick asks nothing;
//! 2. claims at most `--diff-refresh-batch` due rows of its GitHub host with `FOR UPDATE
//!    SKIP LOCKED` (`Store::claim_due_diff_statuses`), so replicas take disjoint rows;
//! 3. asks GitHub about each, one request at a time (GitHub asks integrations not to send
//!    concurrent requests, and 5,000 requests an hour is the budget anyway), and records
//!    each answer: the new state, title and counts, due again after
//!    `--diff-refresh-stale-secs` (a merged pull request never again); a 404 marked
//!    `not_found` and left alone for a day; another failure retried with a doubling delay;
//! 4. on a rate limit (or a refused token) records the backoff for every process, hands the
//!    rows it has not asked about back due when the limit resets, and ends the tick.

use std::{sync::Arc, time::Duration};

use agentq_core::{
    StoreError,
    domain::PrState,
    secrets::SecretString,
    store::{DueDiffStatus, GithubBackoffReason, Store},
};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Clock,
    github::{GithubApi, GithubClient, PullAnswer},
};

/// How long a pull request GitHub does not know is left alone: it may come back (a token
/// that gains access to a private repository), but it must not be asked about every tick.
const NOT_FOUND_RETRY: Duration = Duration::from_secs(24 * 3600);
/// Longest delay between retries of a pull request whose refreshes keep failing.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(6 * 3600);

/// How the refresher behaves (flags of `agentq scheduler` and `agentq dev`).
#[derive(Debug, Clone, clap::Args)]
pub struct DiffRefreshConfig {
    /// Base URL of the GitHub REST API whose pull requests the refresher keeps current:
    /// `https://api.github.com`, or GitHub Enterprise Server's `https://<host>/api/v3`.
    /// Only pull request URLs on the matching web host (`github.com`, `<host>`) are
    /// refreshed; others stay as reported.
    #[arg(
        id = "github_api_url",
        long = "github-api-url",
        env = "AGENTQ_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: GithubApi,
    /// GitHub token the refresher authenticates with (a fine-grained token with read
    /// access to pull requests); without one the refresher does not run. Never printed or
    /// logged.
    #[arg(
        id = "github_token",
        long = "github-token",
        env = "AGENTQ_GITHUB_TOKEN",
        hide_env_values = true
    )]
    pub github_token: Option<SecretString>,
    /// Seconds between refresher ticks; 0 turns the refresher off.
    #[arg(
        id = "diff_refresh_interval_secs",
        long = "diff-refresh-interval-secs",
        env = "AGENTQ_DIFF_REFRESH_INTERVAL_SECS",
        default_value_t = 30
    )]
    pub interval_secs: u64,
    /// A pull request refreshed (or reported) this many seconds ago is due again.
    #[arg(
        id = "diff_refresh_stale_secs",
        long = "diff-refresh-stale-secs",
        env = "AGENTQ_DIFF_REFRESH_STALE_SECS",
        default_value_t = 300
    )]
    pub stale_secs: u64,
    /// Most pull requests one tick asks GitHub about.
    #[arg(
        id = "diff_refresh_batch",
        long = "diff-refresh-batch",
        env = "AGENTQ_DIFF_REFRESH_BATCH",
        default_value_t = 25,
        value_parser = clap::value_parser!(i64).range(1..=1000)
    )]
    pub batch: i64,
    /// Seconds one GitHub request may take.
    #[arg(
        id = "github_timeout_secs",
        long = "github-timeout-secs",
        env = "AGENTQ_GITHUB_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub timeout_secs: u64,
}

impl DiffRefreshConfig {
    /// The client the refresher uses; `None` when it is off (no token, or no interval).
    pub fn client(&self) -> Option<GithubClient> {
        let token = self.github_token.clone()?;
        (self.interval_secs > 0).then(|| {
            GithubClient::new(
                self.github_api_url.clone(),
                token,
                Duration::from_secs(self.timeout_secs.max(1)),
            )
        })
    }

    /// How long a claim holds its rows: long enough for a whole batch of slow answers, so
    /// a live tick never has its rows taken, and at least the stale interval.
    fn lease(&self) -> Duration {
        let batch = u64::try_from(self.batch).unwrap_or(1);
        Duration::from_secs(self.stale_secs.max(batch * self.timeout_secs.max(1) + 30))
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Pull requests brought up to date.
    pub refreshed: usize,
    /// Pull requests GitHub does not know (marked `not_found`).
    pub not_found: usize,
    /// Refreshes that failed otherwise (retried later).
    pub failed: usize,
    /// Answers dropped because a report replaced the row while GitHub was asked.
    pub superseded: usize,
    /// Claimed rows handed back untried because GitHub asked us to wait.
    pub released: u64,
    /// Until when GitHub asked us to wait, when it did (in this tick or before).
    pub waiting_until: Option<DateTime<Utc>>,
}

/// One tick as of `now` (tests call it with their own `now`).
pub async fn refresh_tick(
    store: &Store,
    client: &GithubClient,
    config: &DiffRefreshConfig,
    now: DateTime<Utc>,
) -> Result<RefreshOutcome, StoreError> {
    let api = client.api();
    let mut outcome = RefreshOutcome::default();
    if let Some((until, reason)) = store.github_backoff(api.base_url()).await?
        && until > now
    {
        tracing::debug!(%until, ?reason, "GitHub asked us to wait; diff refresh skipped");
        outcome.waiting_until = Some(until);
        return Ok(outcome);
    }
    let claim = Uuid::now_v7();
    let due = store
        .claim_due_diff_statuses(
            api.web_host(),
            now,
            config.batch,
            claim,
            now + chrono_duration(config.lease()),
        )
        .await?;
    for row in due {
        let stop = refresh_one(store, client, config, &row, claim, now, &mut outcome).await?;
        if let Some((until, reason)) = stop {
            store
                .set_github_backoff(api.base_url(), until, reason)
                .await?;
            outcome.released = store.release_claimed_diff_statuses(claim, until).await?;
            outcome.waiting_until = Some(until);
            match reason {
                GithubBackoffReason::RateLimit => tracing::warn!(
                    %until, released = outcome.released,
                    "GitHub rate limit reached; diff refresh waits until it resets"
                ),
                GithubBackoffReason::Unauthorized => tracing::warn!(
                    %until, released = outcome.released,
                    "GitHub refused the token (401); diff refresh waits (check --github-token)"
                ),
            }
            break;
        }
    }
    Ok(outcome)
}

/// Asks about one claimed row and records the answer; `Some` when the tick must stop and
/// every process wait until then.
async fn refresh_one(
    store: &Store,
    client: &GithubClient,
    config: &DiffRefreshConfig,
    row: &DueDiffStatus,
    claim: Uuid,
    now: DateTime<Utc>,
    outcome: &mut RefreshOutcome,
) -> Result<Option<(DateTime<Utc>, GithubBackoffReason)>, StoreError> {
    let metric = agentq_core::metrics::diff_refresh;
    let Some(pull) = client.api().pull_request(&row.pr_url) else {
        // On our host but not a pull request's URL: nothing to ask, ever.
        store
            .record_pr_refresh_failed(row.chat_id, claim, "not_a_pull_request", None)
            .await?;
        outcome.failed += 1;
        metric("not_a_pull_request");
        return Ok(None);
    };
    let answer = client.pull_request(&pull, now).await;
    match answer {
        PullAnswer::Found {
            pr,
            exhausted_until,
        } => {
            let next = (pr.state != PrState::Merged)
                .then(|| now + chrono_duration(Duration::from_secs(config.stale_secs)));
            if store
                .record_pr_refreshed(row.chat_id, claim, &pr, now, next)
                .await?
            {
                outcome.refreshed += 1;
                metric("refreshed");
            } else {
                outcome.superseded += 1;
            }
            Ok(exhausted_until.map(|until| (until, GithubBackoffReason::RateLimit)))
        }
        PullAnswer::NotFound => {
            let retry = now + chrono_duration(NOT_FOUND_RETRY);
            store
                .record_pr_refresh_failed(row.chat_id, claim, "not_found", Some(retry))
                .await?;
            outcome.not_found += 1;
            metric("not_found");
            Ok(None)
        }
        PullAnswer::Failed(code) => {
            let retry = now + chrono_duration(failure_delay(config, row.refresh_failures));
            tracing::debug!(chat.id = %row.chat_id, error = %code, %retry, "diff refresh failed");
            store
                .record_pr_refresh_failed(row.chat_id, claim, &code, Some(retry))
                .await?;
            outcome.failed += 1;
            metric("failed");
            Ok(None)
        }
        PullAnswer::RateLimited { until } => {
            metric("rate_limited");
            Ok(Some((until, GithubBackoffReason::RateLimit)))
        }
        PullAnswer::Unauthorized => {
            metric("unauthorized");
            let until = now + chrono_duration(Duration::from_secs(config.stale_secs.max(60)));
            Ok(Some((until, GithubBackoffReason::Unauthorized)))
        }
    }
}

/// The delay after the `failures + 1`-th failure in a row: the stale interval, doubling,
/// at most [`MAX_FAILURE_DELAY`].
fn failure_delay(config: &DiffRefreshConfig, failures: i32) -> Duration {
    let base = Duration::from_secs(config.stale_secs.max(1));
    let factor = 1u32 << failures.clamp(0, 16);
    base.saturating_mul(factor).min(MAX_FAILURE_DELAY)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The refresher loop: a tick every `--diff-refresh-interval-secs` until `shutdown`; a tick
/// in progress finishes first. Does nothing when no token is configured.
pub async fn run(
    store: Store,
    config: DiffRefreshConfig,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let Some(client) = config.client() else {
        tracing::info!(
            "diff refresh off (set --github-token to keep reported pull requests current)"
        );
        return;
    };
    tracing::info!(
        api = client.api().base_url(),
        host = client.api().web_host(),
        every_secs = config.interval_secs,
        "diff refresh scheduled"
    );
    let mut interval = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {},
            _ = shutdown.cancelled() => return,
        }
        match refresh_tick(&store, &client, &config, clock.now()).await {
            Ok(o) if o.refreshed + o.not_found + o.failed > 0 => tracing::info!(
                refreshed = o.refreshed,
                not_found = o.not_found,
                failed = o.failed,
                "diff statuses refreshed from GitHub"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "diff refresh tick failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_refreshes_back_off_doubling_up_to_six_hours() {
        let config: DiffRefreshConfig = agentq_core::config::defaults();
        let delays: Vec<u64> = (0..10)
            .map(|n| failure_delay(&config, n).as_secs())
            .collect();
        assert_eq!(
            delays,
            [300, 600, 1200, 2400, 4800, 9600, 19200, 21600, 21600, 21600]
        );
    }

    #[test]
    fn the_token_never_prints() {
        let mut config: DiffRefreshConfig = agentq_core::config::defaults();
        config.github_token = Some("ghp_very_secret".into());
        assert!(!format!("{config:?}").contains("ghp_very_secret"));
        let client = config.client().unwrap();
        assert!(!format!("{client:?}").contains("ghp_very_secret"));
    }
}
