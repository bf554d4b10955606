//! Users as site owners administer them (issue #15, item 1; ARCHITECTURE.md §11.2): list,
//! read, change a site role. Creating a user and changing its status live with
//! authentication in `identity.rs`, which every way of making a user goes through.

use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{SiteRole, UserSummary},
};

const COLUMNS: &str = "id, email, name, site_role, status, created_at";

impl Store {
    /// A page of users in id order (creation order), after `after_id`.
    pub async fn list_users(
        &self,
        limit: i64,
        after_id: Option<Uuid>,
    ) -> Result<Vec<UserSummary>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
        )))
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One user.
    pub async fn get_user(&self, id: Uuid) -> Result<UserSummary, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Sets a user's site role. Demoting the last active site owner is
    /// [`StoreError::Conflict`]: nobody could administer the site any more. The check and
    /// the change are one statement under a lock on the owners, so two owners demoting
    /// each other at once cannot both win.
    pub async fn set_site_role(&self, id: Uuid, role: SiteRole) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let owners: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE site_role = 'owner' AND status = 'active' FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
        if role == SiteRole::Member && owners == [id] {
            return Err(StoreError::Conflict(
                "this is the last active site owner; make someone else an owner first".into(),
            ));
        }
        let done = sqlx::query("UPDATE users SET site_role = $2 WHERE id = $1")
            .bind(id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Active site owners other than `id` (a suspension must leave at least one).
    pub async fn other_active_site_owners(&self, id: Uuid) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE site_role = 'owner' AND status = 'active' AND id <> $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }
}
