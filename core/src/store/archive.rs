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

/// A root the archive statement took, with its owner's address when they want digests.
#[derive(sqlx::FromRow)]
struct ArchivedRoot {
    id: Uuid,
    owner_id: Uuid,
    title: String,
    last_activity_at: DateTime<Utc>,
    digest_email: Option<String>,
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
        // One statement takes the roots, archives their children and names the owners who
        // want digests: one round trip where three were (the children's UPDATE sees the
        // roots through the CTE; they are other rows, so no row is updated twice).
        let rows: Vec<ArchivedRoot> = sqlx::query_as(
            "WITH roots AS (
                UPDATE chats SET archived = true, archived_at = now(), updated_at = now()
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
                RETURNING id, owner_id, title, last_activity_at
             ),
             children AS (
                UPDATE chats SET archived = true, archived_at = now(), updated_at = now()
                WHERE root_chat_id = ANY(ARRAY(SELECT id FROM roots)) AND NOT archived
             )
             SELECT r.id, r.owner_id, r.title, r.last_activity_at, u.email AS digest_email
             FROM roots r LEFT JOIN users u ON u.id = r.owner_id AND u.digest_emails_enabled",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(ArchiveResult::default());
        }
        let mut recipients: Vec<DigestRecipient> = rows
            .iter()
            .filter_map(|r| {
                Some(DigestRecipient {
                    user_id: r.owner_id,
                    email: r.digest_email.clone()?,
                })
            })
            .collect();
        recipients.sort_by_key(|r| r.user_id);
        recipients.dedup_by_key(|r| r.user_id);
        let mut roots: Vec<ArchivedChat> = rows
            .into_iter()
            .map(|r| ArchivedChat {
                id: r.id,
                owner_id: r.owner_id,
                title: r.title,
                last_activity_at: r.last_activity_at,
            })
            .collect();
        roots.sort_by_key(|r| (r.last_activity_at, r.id));
        let outbox = compose(&roots, &recipients);
        let notifications = super::notifications::insert_notifications(&mut tx, &outbox).await?;
        tx.commit().await?;
        Ok(ArchiveResult {
            archived: roots,
            notifications,
        })
    }
}
