//! Spend limits (issue #15, item 4; ARCHITECTURE.md §5): how much a user may spend on
//! model answers per period, and the check that refuses new work past it.
//!
//! A user's spend is the cost of the assistant messages (answers and compaction summaries,
//! superseded ones included: they were paid for) of the chats they own, created inside the
//! current [`SpendPeriod`] (UTC calendar boundaries, one period site-wide). Their limit is,
//! first that exists: their own override (`user_spend_limits`), the smallest override of
//! the organizations they belong to (`organization_spend_limits`: organizations are
//! agentq's groups), the site default (`site_config.spend_limit_micros`); none: no limit.
//!
//! [`refuse_over_limit_in`] runs inside the transaction that accepts a message, or edits
//! or regenerates, and just before the statement that creates a chat (every way a person
//! starts a turn). Costs are known
//! only after an answer, so the check is "spent before this message < limit": the turn
//! that crosses the limit completes, and the next message is refused with a
//! [`StoreError::Conflict`] saying what was spent and when the limit resets. The check
//! takes no lock: two messages sent at the same instant may both pass, which costs at
//! most one more turn, the same as the crossing one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Store;
use crate::{StoreError, domain::SpendPeriod};

/// Which setting a user's limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LimitSource {
    /// The user's own override.
    User,
    /// The smallest override of the user's organizations.
    Organization,
    /// The site default.
    Site,
    /// No limit applies.
    None,
}

/// Where a user stands in the current period.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageStatus {
    /// The site's period.
    pub period: SpendPeriod,
    /// When the current period started (UTC).
    pub period_start: DateTime<Utc>,
    /// When it ends and the limit resets (UTC).
    pub resets_at: DateTime<Utc>,
    /// Cost of the user's assistant messages in the period, micro-dollars.
    pub spent_micros: i64,
    /// The user's limit, micro-dollars (`null`: none).
    pub limit_micros: Option<i64>,
    /// Which setting the limit comes from.
    pub source: LimitSource,
    /// The organization whose override applies (`source` `organization`).
    pub organization_id: Option<Uuid>,
}

impl UsageStatus {
    /// Whether new work is refused: the limit is reached.
    pub fn exceeded(&self) -> bool {
        self.limit_micros
            .is_some_and(|limit| self.spent_micros >= limit)
    }
}

/// An override for one user or organization.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendLimitOverride {
    /// The user or organization.
    pub id: Uuid,
    /// Its limit per period, micro-dollars.
    pub limit_micros: i64,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// Every spend limit of the site.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendLimits {
    /// The period every limit counts over.
    pub period: SpendPeriod,
    /// The site default per user and period, micro-dollars (`null`: none).
    pub default_limit_micros: Option<i64>,
    /// Per-user overrides.
    pub users: Vec<SpendLimitOverride>,
    /// Per-organization overrides.
    pub organizations: Vec<SpendLimitOverride>,
}

/// `micros` as dollars: at least two decimals, up to six (`$1.50`, `$0.000123`).
pub fn format_dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let mut cents = format!("{:06}", m % 1_000_000);
    while cents.len() > 2 && cents.ends_with('0') {
        cents.pop();
    }
    format!("{sign}${}.{cents}", m / 1_000_000)
}

/// The settings that decide a user's limit, with the database's clock.
#[derive(sqlx::FromRow)]
struct LimitRow {
    now: DateTime<Utc>,
    period: SpendPeriod,
    site: Option<i64>,
    own: Option<i64>,
    org: Option<Uuid>,
    org_limit: Option<i64>,
}

/// `user`'s usage status, read in the caller's connection; `always_sum: false` leaves
/// `spent_micros` at 0 when no limit applies.
pub(super) async fn usage_status_in(
    conn: &mut sqlx::PgConnection,
    user: Uuid,
    always_sum: bool,
) -> Result<UsageStatus, StoreError> {
    let row: LimitRow = sqlx::query_as(
        "SELECT now() AS now, s.spend_period AS period, s.spend_limit_micros AS site,
                (SELECT limit_micros FROM user_spend_limits WHERE user_id = $1) AS own,
                o.organization_id AS org, o.limit_micros AS org_limit
         FROM site_config s
         LEFT JOIN LATERAL (
            SELECT l.organization_id, l.limit_micros
            FROM organization_spend_limits l
            JOIN organization_members m ON m.organization_id = l.organization_id
            WHERE m.user_id = $1
            ORDER BY l.limit_micros, l.organization_id LIMIT 1
         ) o ON true
         WHERE s.id = 1",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    let LimitRow {
        now,
        period,
        site,
        own,
        org,
        org_limit,
    } = row;
    let org = org.zip(org_limit);
    let (limit_micros, source, organization_id) = match (own, org, site) {
        (Some(limit), _, _) => (Some(limit), LimitSource::User, None),
        (None, Some((org, limit)), _) => (Some(limit), LimitSource::Organization, Some(org)),
        (None, None, Some(limit)) => (Some(limit), LimitSource::Site, None),
        (None, None, None) => (None, LimitSource::None, None),
    };
    let (period_start, resets_at) = period.bounds(now);
    // Without a limit, the check needs no sum (the status route still shows it).
    let spent_micros: i64 = if limit_micros.is_none() && !always_sum {
        0
    } else {
        sqlx::query_scalar(
            "SELECT coalesce(sum(m.cost_micros), 0)::bigint
         FROM chats c JOIN chat_messages m ON m.chat_id = c.id
         WHERE c.owner_id = $1 AND m.role = 'assistant'
           AND m.created_at >= $2 AND m.created_at < $3",
        )
        .bind(user)
        .bind(period_start)
        .bind(resets_at)
        .fetch_one(&mut *conn)
        .await?
    };
    Ok(UsageStatus {
        period,
        period_start,
        resets_at,
        spent_micros,
        limit_micros,
        source,
        organization_id,
    })
}

/// [`StoreError::Conflict`] when `user` has reached their limit: no new turn for them
/// until it resets. Runs before the write that would start the work (in its transaction,
/// where there is one). `Ok(false)`: no limit applies to `user`.
pub(super) async fn refuse_over_limit_in(
    conn: &mut sqlx::PgConnection,
    user: Uuid,
) -> Result<bool, StoreError> {
    let status = usage_status_in(conn, user, false).await?;
    match status.limit_micros {
        Some(limit) if status.exceeded() => Err(StoreError::Conflict(format!(
            "usage limit exceeded: spent {} of {}, resets at {}",
            format_dollars(status.spent_micros),
            format_dollars(limit),
            status.resets_at.format("%Y-%m-%dT%H:%M:%SZ"),
        ))),
        limit => Ok(limit.is_some()),
    }
}

impl Store {
    /// [`StoreError::Conflict`] when `user` has reached their spend limit, as a new chat
    /// would be refused; `Ok(false)` when no limit applies to them (the API keeps that:
    /// api/src/access_cache.rs).
    pub async fn check_spend_limit(&self, user: Uuid) -> Result<bool, StoreError> {
        refuse_over_limit_in(&mut *self.pool.acquire().await?, user).await
    }

    /// Where `user` stands in the current period.
    pub async fn usage_status(&self, user: Uuid) -> Result<UsageStatus, StoreError> {
        let mut conn = self.pool.acquire().await?;
        usage_status_in(&mut conn, user, true).await
    }

    /// The site's period, default and overrides.
    pub async fn spend_limits(&self) -> Result<SpendLimits, StoreError> {
        let (period, default_limit_micros): (SpendPeriod, Option<i64>) =
            sqlx::query_as("SELECT spend_period, spend_limit_micros FROM site_config WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        let users = sqlx::query_as(
            "SELECT user_id AS id, limit_micros, updated_at FROM user_spend_limits ORDER BY user_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let organizations = sqlx::query_as(
            "SELECT organization_id AS id, limit_micros, updated_at FROM organization_spend_limits
             ORDER BY organization_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(SpendLimits {
            period,
            default_limit_micros,
            users,
            organizations,
        })
    }

    /// Sets the site's period and default limit (`None`: no default).
    pub async fn set_spend_default(
        &self,
        period: SpendPeriod,
        limit_micros: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE site_config SET spend_period = $1, spend_limit_micros = $2, updated_at = now()
             WHERE id = 1",
        )
        .bind(period)
        .bind(limit_micros)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets `user`'s override; [`StoreError::NotFound`] for an unknown user.
    pub async fn set_user_spend_limit(
        &self,
        user: Uuid,
        limit_micros: i64,
    ) -> Result<SpendLimitOverride, StoreError> {
        sqlx::query_as(
            "INSERT INTO user_spend_limits (user_id, limit_micros)
             SELECT id, $2 FROM users WHERE id = $1
             ON CONFLICT (user_id) DO UPDATE SET limit_micros = $2, updated_at = now()
             RETURNING user_id AS id, limit_micros, updated_at",
        )
        .bind(user)
        .bind(limit_micros)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Removes `user`'s override; [`StoreError::NotFound`] when there was none.
    pub async fn delete_user_spend_limit(&self, user: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM user_spend_limits WHERE user_id = $1")
            .bind(user)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Sets `organization`'s override; [`StoreError::NotFound`] for an unknown one.
    pub async fn set_organization_spend_limit(
        &self,
        organization: Uuid,
        limit_micros: i64,
    ) -> Result<SpendLimitOverride, StoreError> {
        sqlx::query_as(
            "INSERT INTO organization_spend_limits (organization_id, limit_micros)
             SELECT id, $2 FROM organizations WHERE id = $1
             ON CONFLICT (organization_id) DO UPDATE SET limit_micros = $2, updated_at = now()
             RETURNING organization_id AS id, limit_micros, updated_at",
        )
        .bind(organization)
        .bind(limit_micros)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Removes `organization`'s override; [`StoreError::NotFound`] when there was none.
    pub async fn delete_organization_spend_limit(
        &self,
        organization: Uuid,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM organization_spend_limits WHERE organization_id = $1")
            .bind(organization)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::format_dollars;

    #[test]
    fn dollars_keep_two_to_six_decimals() {
        assert_eq!(format_dollars(0), "$0.00");
        assert_eq!(format_dollars(1_500_000), "$1.50");
        assert_eq!(format_dollars(123), "$0.000123");
        assert_eq!(format_dollars(12_345_670), "$12.34567");
        assert_eq!(format_dollars(-10_000), "-$0.01");
    }
}
