//! Organizations, users, memberships and API tokens.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{AuthenticatedUser, OrganizationRole},
};

impl Store {
    /// Returns the organization named `name`, creating it when missing.
    pub async fn ensure_organization(&self, name: &str) -> Result<Uuid, StoreError> {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO organizations (id, name) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
             RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Returns the user with this email (case-insensitive), creating it when missing.
    /// `site_owner` promotes an existing user too, never demotes.
    pub async fn ensure_user(&self, email: &str, site_owner: bool) -> Result<Uuid, StoreError> {
        let role = if site_owner { "owner" } else { "member" };
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO users (id, email, site_role) VALUES ($1, $2, $3)
             ON CONFLICT (lower(email)) DO UPDATE
               SET site_role = CASE WHEN EXCLUDED.site_role = 'owner' THEN 'owner' ELSE users.site_role END
             RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(email)
        .bind(role)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Adds `user` to `org` with `roles` (merged with roles it already has).
    pub async fn add_member(
        &self,
        org: Uuid,
        user: Uuid,
        roles: &[OrganizationRole],
    ) -> Result<(), StoreError> {
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        sqlx::query(
            "INSERT INTO organization_members (organization_id, user_id, roles) VALUES ($1, $2, $3)
             ON CONFLICT (organization_id, user_id) DO UPDATE
               SET roles = ARRAY(SELECT DISTINCT unnest(organization_members.roles || EXCLUDED.roles))",
        )
        .bind(org)
        .bind(user)
        .bind(&roles)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a token digest for `user`; the secret itself is never stored.
    pub async fn create_api_token(
        &self,
        user: Uuid,
        name: &str,
        secret_sha256: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO api_tokens (id, user_id, name, secret_sha256, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(user)
            .bind(name)
            .bind(secret_sha256)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// Whether an unexpired token with this digest exists (lets `agentq dev` reuse its token).
    pub async fn api_token_is_valid(&self, secret_sha256: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE secret_sha256 = $1
                            AND (expires_at IS NULL OR expires_at > now()))",
        )
        .bind(secret_sha256)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The user behind an unexpired token, in one round trip; `last_used_at` is refreshed at
    /// most once a minute so authentication does not write on every request.
    pub async fn authenticate(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        Ok(sqlx::query_as(
            "WITH t AS (
                SELECT id, user_id, last_used_at FROM api_tokens
                WHERE secret_sha256 = $1 AND (expires_at IS NULL OR expires_at > now())
             ), touch AS (
                UPDATE api_tokens SET last_used_at = now() FROM t
                WHERE api_tokens.id = t.id
                  AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds')
             )
             SELECT u.id, u.email, u.site_role FROM users u JOIN t ON t.user_id = u.id",
        )
        .bind(secret_sha256)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Organizations where `user` holds `role`.
    pub async fn organizations_with_role(
        &self,
        user: Uuid,
        role: OrganizationRole,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT organization_id FROM organization_members
             WHERE user_id = $1 AND $2 = ANY(roles) ORDER BY organization_id",
        )
        .bind(user)
        .bind(role.as_str())
        .fetch_all(&self.pool)
        .await?)
    }
}
