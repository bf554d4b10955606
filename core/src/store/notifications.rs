//! The email outbox (ARCHITECTURE.md §4.4): every email is a row before it
//! is a message. A `SendMail` job is a nudge; the row's status says what happened:
//!
//! `queued` --claim--> `sending` --sent--> `sent` (never sent again)
//!                     `sending` --retry--> `queued` (after a backoff)
//!                     `sending` --give up--> `failed` (error kept)
//!
//! A `sending` row whose lease expired (its worker died) can be claimed again. Each
//! transition is one statement that names its from-state and reports whether it won.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// An email to write to the outbox.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// The user it is for (the row goes when the user does).
    pub user_id: Uuid,
    /// Their address.
    pub recipient: String,
    /// Template name (`notifications::render` knows it).
    pub template: &'static str,
    /// Everything the template needs, fixed now.
    pub payload: Value,
    /// Unique: a second row with the same key is silently not written.
    pub dedupe_key: String,
}

/// An outbox row claimed for one delivery attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxEmail {
    /// The row.
    pub id: Uuid,
    /// Where it goes.
    pub recipient: String,
    /// Its template.
    pub template: String,
    /// Its payload.
    pub payload: Value,
    /// This attempt's number (1 for the first).
    pub attempts: i32,
}

/// Writes outbox rows in the caller's transaction; rows whose dedupe key exists are skipped.
/// Returns the ids written. The rows count as nudged now: the caller enqueues their jobs.
pub(crate) async fn insert_notifications(
    tx: &mut sqlx::PgConnection,
    rows: &[NewNotification],
) -> Result<Vec<Uuid>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let users: Vec<Uuid> = rows.iter().map(|r| r.user_id).collect();
    let recipients: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    let templates: Vec<&str> = rows.iter().map(|r| r.template).collect();
    let payloads: Vec<Value> = rows.iter().map(|r| r.payload.clone()).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.dedupe_key.as_str()).collect();
    Ok(sqlx::query_scalar(
        "INSERT INTO notification_messages
            (id, user_id, recipient, template, payload, dedupe_key, nudged_at, nudges)
         SELECT *, now(), 1 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::text[])
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&recipients)
    .bind(&templates)
    .bind(&payloads)
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?)
}

impl Store {
    /// Takes a row for one delivery attempt: a `queued` row that is due, or a `sending`
    /// row whose worker's lease expired. `None`: already sent, failed, not yet due or being
    /// sent by a live worker (a duplicate nudge).
    pub async fn claim_notification(
        &self,
        id: Uuid,
        lease: Duration,
    ) -> Result<Option<OutboxEmail>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE notification_messages
             SET status = 'sending', attempts = attempts + 1, nudges = 0,
                 lease_expires_at = now() + make_interval(secs => $2), updated_at = now()
             WHERE id = $1
               AND ((status = 'queued' AND next_attempt_at <= now())
                    OR (status = 'sending' AND lease_expires_at < now()))
             RETURNING id, recipient, template, payload, attempts",
        )
        .bind(id)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `sending` -> `sent`, if the row is still held by the claim that made attempt
    /// `attempt` (a sender whose lease expired and was re-claimed changes nothing).
    pub async fn mark_notification_sent(&self, id: Uuid, attempt: i32) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE notification_messages
             SET status = 'sent', sent_at = now(), lease_expires_at = NULL, updated_at = now()
             WHERE id = $1 AND status = 'sending' AND attempts = $2",
        )
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `sending` -> `queued`, due again at `retry_at`; the error is kept for operators.
    /// Only for the claim that made attempt `attempt`.
    pub async fn retry_notification(
        &self,
        id: Uuid,
        attempt: i32,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE notification_messages
             SET status = 'queued', error = $3, next_attempt_at = $4, nudged_at = NULL,
                 nudges = 0, lease_expires_at = NULL, updated_at = now()
             WHERE id = $1 AND status = 'sending' AND attempts = $2",
        )
        .bind(id)
        .bind(attempt)
        .bind(error)
        .bind(retry_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `sending` -> `failed`, for good. Only for the claim that made attempt `attempt`.
    pub async fn fail_notification(
        &self,
        id: Uuid,
        attempt: i32,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE notification_messages
             SET status = 'failed', error = $3, lease_expires_at = NULL, updated_at = now()
             WHERE id = $1 AND status = 'sending' AND attempts = $2",
        )
        .bind(id)
        .bind(attempt)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Rows that are due (or whose sender died) and whose last nudge seems lost: marks them
    /// nudged now and returns them, for recovery to enqueue `SendMail`. A nudge counts as
    /// lost after `stale`, doubling with each nudge that went unanswered (at most 64 times
    /// `stale`), so rows nobody sends (no worker has a mail transport) do not flood the
    /// mail stream.
    pub async fn nudge_due_notifications(
        &self,
        stale: Duration,
        batch: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE notification_messages SET nudged_at = now(), nudges = nudges + 1
             WHERE id IN (
                SELECT id FROM notification_messages
                WHERE ((status = 'queued' AND next_attempt_at <= now())
                       OR (status = 'sending' AND lease_expires_at < now()))
                  AND (nudged_at IS NULL
                       OR nudged_at < now() - make_interval(secs => $1 * power(2, least(greatest(nudges - 1, 0), 6))))
                ORDER BY next_attempt_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(stale.as_secs_f64())
        .bind(batch)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether `user` gets archive digests.
    pub async fn archive_digest_enabled(&self, user: Uuid) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT digest_emails_enabled FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Turns `user`'s archive digests on or off.
    pub async fn set_archive_digest(&self, user: Uuid, enabled: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET digest_emails_enabled = $2 WHERE id = $1")
            .bind(user)
            .bind(enabled)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
