//! Auto-archive (DESIGN.md §5): idle root chats are archived by the UTC day of their last
//! activity, so every chat of one day goes together on the first tick after midnight UTC.
//! Children follow their root. Archiving restarts the retention clock (`archived_at`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Store;
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

impl Store {
    /// Archives at most `limit` root chats, oldest activity first, whose last activity is
    /// before `cutoff` and that are not pinned and not pending, running, paused or waiting
    /// for an action; their children follow. Returns the archived roots.
    pub async fn archive_idle_roots(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ArchivedChat>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let roots: Vec<ArchivedChat> = sqlx::query_as(
            "UPDATE chats SET archived = true, archived_at = now(), updated_at = now()
             WHERE id IN (
                SELECT id FROM chats
                WHERE parent_chat_id IS NULL AND NOT archived AND pin_order IS NULL
                  AND last_activity_at < $1
                  AND status NOT IN ('pending', 'running', 'paused', 'requires_action')
                ORDER BY last_activity_at, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
             RETURNING id, owner_id, title, last_activity_at",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<Uuid> = roots.iter().map(|r| r.id).collect();
        sqlx::query(
            "UPDATE chats SET archived = true, archived_at = now(), updated_at = now()
             WHERE root_chat_id = ANY($1) AND NOT archived",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut roots = roots;
        roots.sort_by_key(|r| (r.last_activity_at, r.id));
        Ok(roots)
    }
}
