//! Fixtures for tests and benchmarks, written here so that their SQL stays in the store.
//! Not used by any process.
//!
//! A fixture moves a row through the same transitions a process would (ARCHITECTURE.md
//! §4): it finds the row, then calls the store's transition function, so a test cannot put
//! a chat or a turn into a state the code never produces. What a transition cannot do is
//! move the clock: the `backdate_*` functions set a timestamp to the past, and nothing
//! else. The bulk seeds are the exception: many idle chats in one statement (for the bench,
//! and for paging through a long chat list), and a chat's diff status as an integration
//! would report it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, pg_text};
use crate::{
    StoreError,
    domain::{AcquiredTurn, DiffStatus},
};

impl Store {
    /// One organization (`bench`), `owners` users (`owner<n>@bench.test`) and `chats` idle
    /// root chats (`waiting`) whose last activity is spread over the 60 days before
    /// `until`, then fresh planner statistics.
    pub async fn seed_idle_chats(
        &self,
        owners: i64,
        chats: i64,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO organizations (id, name) VALUES (gen_random_uuid(), 'bench')")
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO users (id, email)
             SELECT gen_random_uuid(), 'owner' || n || '@bench.test' FROM generate_series(1, $1) n",
        )
        .bind(owners)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "WITH owners AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users),
                  org AS (SELECT id FROM organizations WHERE name = 'bench')
             INSERT INTO chats (id, owner_id, organization_id, title, status, last_activity_at)
             SELECT gen_random_uuid(), owners.id, org.id, 'chat ' || g, 'waiting',
                    $3 - (g * 86400 / $1) * interval '1 minute'
             FROM generate_series(1, $1) g
             JOIN owners ON owners.n = g % $2
             CROSS JOIN org",
        )
        .bind(chats)
        .bind(owners)
        .bind(until)
        .execute(&self.pool)
        .await?;
        sqlx::query("ANALYZE chats, title_grams")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `count` idle (`waiting`) root chats of `owner` in `organization_id`, titled
    /// `chat 1`, `chat 2`, ..., all created, updated and last active at the same instant
    /// `at` (so only their ids order them in the list), in one statement. Returns their ids.
    pub async fn seed_root_chats(
        &self,
        owner: Uuid,
        organization_id: Uuid,
        count: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO chats (id, owner_id, organization_id, title, status, last_activity_at, created_at, updated_at)
             SELECT gen_random_uuid(), $1, $2, 'chat ' || g, 'waiting', $4, $4, $4
             FROM generate_series(1, $3) g
             RETURNING id",
        )
        .bind(owner)
        .bind(organization_id)
        .bind(count)
        .bind(at)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records `status` as the chat's diff status (replacing any), as an integration's
    /// report would (issue #14 item 2).
    pub async fn seed_diff_status(
        &self,
        chat_id: Uuid,
        status: &DiffStatus,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chat_diff_statuses (chat_id, git_remote_origin, git_branch, pr_url, pr_number,
                    pr_title, pr_state, pr_draft, additions, deletions, changed_files)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (chat_id) DO UPDATE SET git_remote_origin = $2, git_branch = $3,
                    pr_url = $4, pr_number = $5, pr_title = $6, pr_state = $7, pr_draft = $8,
                    additions = $9, deletions = $10, changed_files = $11, updated_at = now()",
        )
        .bind(chat_id)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the chat's last activity to `at`, as if nothing had happened in it since.
    /// Only the clock moves: the chat keeps its status. A subagent chat's newer activity
    /// still reaches its root (the `chats_touch_root` trigger); an older one does not.
    pub async fn backdate_chat_activity(
        &self,
        chat_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_time(
            "UPDATE chats SET last_activity_at = $2 WHERE id = $1",
            chat_id,
            at,
        )
        .await
    }

    /// Sets when a debug run last changed to `at` (retention's clock for debug runs).
    pub async fn backdate_debug_run(
        &self,
        run_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_time(
            "UPDATE chat_debug_runs SET updated_at = $2 WHERE id = $1",
            run_id,
            at,
        )
        .await
    }

    /// Sets when the jobs of the chat's tool calls were last sent to `at`, as if they had
    /// been lost on the way (recovery sends a stale call's job again).
    pub async fn backdate_tool_call_jobs(
        &self,
        chat_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_time(
            "UPDATE tool_calls SET enqueued_at = $2 WHERE chat_id = $1",
            chat_id,
            at,
        )
        .await
    }

    /// Sets the API token's expiry to `at` (a token that has expired by now).
    pub async fn backdate_api_token_expiry(
        &self,
        token_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_time(
            "UPDATE api_tokens SET expires_at = $2 WHERE id = $1",
            token_id,
            at,
        )
        .await
    }

    /// The chat's queued turn, acquired by `worker` for `lease` ([`Store::acquire_turn`]):
    /// the chat goes `running` as if a worker had taken the turn's job. `None` when no
    /// turn of the chat is queued.
    pub async fn acquire_queued_turn(
        &self,
        chat_id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<AcquiredTurn>, StoreError> {
        let queued: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM chat_turns WHERE chat_id = $1 AND status = 'queued'",
        )
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?;
        match queued {
            Some(turn) => self.acquire_turn(turn, worker, lease).await,
            None => Ok(None),
        }
    }

    /// Leaves the chat's queued turn as a worker that died holding it would: started
    /// `starts` times (each start but the last handed back with [`Store::release_turn`]),
    /// then `running` under `worker` with a lease that has already expired, so recovery
    /// takes it back on its next pass. Returns the turn.
    pub async fn strand_queued_turn(
        &self,
        chat_id: Uuid,
        worker: &str,
        starts: i32,
    ) -> Result<Uuid, StoreError> {
        let starts = starts.max(1);
        let mut turn = None;
        for start in 1..=starts {
            let lease = if start == starts {
                Duration::ZERO
            } else {
                Duration::from_secs(60)
            };
            let acquired = self
                .acquire_queued_turn(chat_id, worker, lease)
                .await?
                .ok_or(StoreError::NotFound)?;
            if start < starts {
                self.release_turn(acquired.id, worker).await?;
            }
            turn = Some(acquired.id);
        }
        turn.ok_or(StoreError::NotFound)
    }

    /// Runs one of the `backdate_*` updates (`$1` names the rows, `$2` is the time); no row
    /// matched is [`StoreError::NotFound`].
    async fn set_time(
        &self,
        update: &'static str,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(update)
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        super::changed_one(done)
    }
}
