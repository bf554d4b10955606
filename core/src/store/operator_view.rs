//! What the operator dashboard (`/admin`, ARCHITECTURE.md §11.2) reads from the database:
//! counts of turns and emails by status, the chats left in `error`, the turns recovery
//! started again, and the scheduler's latest ticks. Read-only, one query per panel, each
//! bounded (counts, or a `LIMIT`), so a dashboard left open on a large deployment costs a
//! few index scans every refresh.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// A chat whose last turn failed (`status = 'error'`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatInError {
    /// The chat.
    pub id: Uuid,
    /// Its title ('' when it has none yet).
    pub title: String,
    /// Its owner's email.
    pub owner_email: String,
    /// The `ChatError` it ended with (`kind`, `message`, ...), when recorded.
    pub last_error: Option<Value>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A turn that was started more than once: recovery put it back on the queue after its
/// worker was lost (every start counts one `attempt`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecoveredTurn {
    /// The turn.
    pub id: Uuid,
    /// Its chat.
    pub chat_id: Uuid,
    /// Its status now.
    pub status: String,
    /// Times a worker started it.
    pub attempt: i32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The latest tick of one scheduler job in the tick ledger.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LatestTick {
    /// The job's name (`maintenance`).
    pub job: String,
    /// The cron expression it ran on (UTC), when the scheduler recorded it.
    pub schedule: Option<String>,
    /// The firing time the tick ran for.
    pub tick_at: DateTime<Utc>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished (`None`: still running).
    pub finished_at: Option<DateTime<Utc>>,
    /// What it did (the job's outcome document).
    pub outcome: Option<Value>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The schedule's next firing after this tick finished, as the scheduler computed it.
    pub next_tick_at: Option<DateTime<Utc>>,
    /// The scheduler process that ran it.
    pub runner: String,
}

impl Store {
    /// `(status, count)` of every turn, by status.
    pub async fn count_turns_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT status, count(*) FROM chat_turns GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// `(status, count)` of the email outbox (`queued`, `sending`, `sent`, `failed`).
    pub async fn count_emails_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT status, count(*) FROM notification_messages GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The `limit` most recently changed chats in `error`, with their owner and last error.
    pub async fn chats_in_error(&self, limit: i64) -> Result<Vec<ChatInError>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT c.id, c.title, u.email AS owner_email, c.last_error, c.updated_at
             FROM chats c JOIN users u ON u.id = c.owner_id
             WHERE c.status = 'error'
             ORDER BY c.updated_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The `limit` newest turns created since `since` that a worker started more than once.
    pub async fn recovered_turns(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RecoveredTurn>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, chat_id, status, attempt, created_at FROM chat_turns
             WHERE attempt > 1 AND created_at >= $1
             ORDER BY created_at DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest tick of every job in the ledger, by job name.
    pub async fn latest_ticks(&self) -> Result<Vec<LatestTick>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (job) job, schedule, tick_at, started_at, finished_at, outcome,
                    error, next_tick_at, runner
             FROM scheduler_ticks ORDER BY job, tick_at DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
