//! Bulk fixtures for benchmarks: many rows in a few set-based statements, written here so
//! the SQL (and the statuses it writes) stays in the store. Not used by any process.

use chrono::{DateTime, Utc};

use super::Store;
use crate::StoreError;

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
        sqlx::query("ANALYZE chats").execute(&self.pool).await?;
        Ok(())
    }
}
