//! Auto-archive (ARCHITECTURE.md §10): idle root chats are archived by the UTC day of their last
//! activity, so every chat of one day goes together on the first tick after midnight UTC.
//! Children follow their root. Archiving restarts the retention clock (`archived_at`).
//!
//! The owners' digest emails are written to the outbox in the same transaction as the
//! archive itself: a crash can lose neither the archive nor its email, and a replayed tick
//! finds nothing left to archive.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Store, notifications::NewNotification};
use crate::StoreError;

/// A root chat a tick archived (what the owner's digest lists).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ArchivedChat {
    /// The chat.
    pub id: Uuid,
    /// Its owner.
    pub owner_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its last activity (newest message of the family, else creation).
    pub last_activity_at: DateTime<Utc>,
}

/// An owner who wants archive digests, and where to send them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DigestRecipient {
    /// The owner.
    pub user_id: Uuid,
    /// Their email address.
    pub email: String,
}

/// What one archive transaction did.
#[derive(Debug, Default)]
pub struct ArchiveResult {
    /// The roots archived, oldest activity first.
    pub archived: Vec<ArchivedChat>,
    /// Outbox rows written (each needs a `SendMail` nudge after commit).
    pub notifications: Vec<Uuid>,
}

impl Store {
    /// Archives at most `limit` root chats, oldest activity first, whose last activity is
    /// before `cutoff` and that are not pinned and neither they nor a subagent chat of theirs
    /// is pending, running or waiting for an action; their children follow. `compose` turns
    /// the archived roots and the owners among them who want digests into outbox rows,
    /// written in the same transaction.
    pub async fn archive_idle_roots<F>(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
        compose: F,
    ) -> Result<ArchiveResult, StoreError>
    where
        F: FnOnce(&[ArchivedChat], &[DigestRecipient]) -> Vec<NewNotification>,
    {
        let mut tx = self.pool.begin().await?;
        let mut roots: Vec<ArchivedChat> = sqlx::query_as(
            "UPDATE chats SET archived = true, archived_at = now(), updated_at = now()
             WHERE id IN (
                SELECT id FROM chats
                WHERE parent_chat_id IS NULL AND NOT archived AND pin_order IS NULL
                  AND last_activity_at < $1
                  AND status NOT IN ('pending', 'running', 'requires_action')
                  -- A family with a busy subagent is not idle. Skipping it also means the
                  -- archive never waits on a child row whose turn is committing (that
                  -- commit's trigger locks the root: the opposite order).
                  AND NOT EXISTS (
                    SELECT 1 FROM chats c WHERE c.root_chat_id = chats.id
                      AND c.status IN ('pending', 'running', 'requires_action'))
                ORDER BY last_activity_at, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
             RETURNING id, owner_id, title, last_activity_at",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if roots.is_empty() {
            return Ok(ArchiveResult::default());
        }
        roots.sort_by_key(|r| (r.last_activity_at, r.id));
        let ids: Vec<Uuid> = roots.iter().map(|r| r.id).collect();
        sqlx::query(
            "UPDATE chats SET archived = true, archived_at = now(), updated_at = now()
             WHERE root_chat_id = ANY($1) AND NOT archived",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        let mut owners: Vec<Uuid> = roots.iter().map(|r| r.owner_id).collect();
        owners.sort();
        owners.dedup();
        let recipients: Vec<DigestRecipient> = sqlx::query_as(
            "SELECT id AS user_id, email FROM users WHERE id = ANY($1) AND digest_emails_enabled",
        )
        .bind(&owners)
        .fetch_all(&mut *tx)
        .await?;
        let outbox = compose(&roots, &recipients);
        let notifications = super::notifications::insert_notifications(&mut tx, &outbox).await?;
        tx.commit().await?;
        Ok(ArchiveResult {
            archived: roots,
            notifications,
        })
    }
}
