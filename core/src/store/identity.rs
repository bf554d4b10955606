//! Organizations, users, memberships and API tokens.
//!
//! Authentication ([`Store::authenticate`]) takes a token digest to the user behind it, and
//! refuses nothing itself: the API decides what a revoked, expired or suspended caller sees.
//! Routes that start work (a turn, tool results, a stream) call [`Store::chat_work_access`]
//! so a user whose `agents-access` was removed stops at once, not when a token expires.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{ApiTokenInfo, AuthenticatedUser, OrganizationRole, TokenScope, UserStatus},
};

/// Whether a user may start work in a chat (see [`Store::chat_work_access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatAccess {
    /// The user owns the chat and holds `agents-access` in its organization.
    Allowed,
    /// No such chat, or someone else's (the two look the same to the caller).
    NotFound,
    /// The user owns the chat but no longer holds `agents-access` in its organization.
    MissingAgentsAccess {
        /// The chat's organization.
        organization_id: Uuid,
    },
}

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
    /// `site_owner` promotes an existing user too, never demotes. A user created here
    /// joins the auto-grant organization as [`Store::create_user`] says.
    pub async fn ensure_user(&self, email: &str, site_owner: bool) -> Result<Uuid, StoreError> {
        let role = if site_owner { "owner" } else { "member" };
        let id: Uuid = sqlx::query_scalar(
            "WITH u AS (
                INSERT INTO users (id, email, site_role) VALUES ($1, $2, $3)
                ON CONFLICT (lower(email)) DO UPDATE
                  SET site_role = CASE WHEN EXCLUDED.site_role = 'owner' THEN 'owner' ELSE users.site_role END
                RETURNING id, (xmax = 0) AS inserted
             ), grant_access AS (
                INSERT INTO organization_members (organization_id, user_id, roles)
                SELECT s.auto_grant_agents_access_organization_id, u.id, ARRAY['agents-access']
                FROM u, site_config s
                WHERE u.inserted AND s.id = 1 AND s.auto_grant_agents_access_organization_id IS NOT NULL
                ON CONFLICT DO NOTHING
             )
             SELECT id FROM u",
        )
        .bind(Uuid::now_v7())
        .bind(email)
        .bind(role)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Creates the user with this email; `None` when one exists already (case-insensitive),
    /// which is left untouched. In the same statement the new user joins the organization
    /// the site setting `auto_grant_agents_access_organization_id` names, with
    /// `agents-access` (ARCHITECTURE.md §11.2), so every way of creating a user (the CLI,
    /// the admin API) grants it alike.
    pub async fn create_user(
        &self,
        email: &str,
        site_owner: bool,
    ) -> Result<Option<Uuid>, StoreError> {
        self.create_named_user(email, "", site_owner).await
    }

    /// [`Store::create_user`] with a display name.
    pub async fn create_named_user(
        &self,
        email: &str,
        name: &str,
        site_owner: bool,
    ) -> Result<Option<Uuid>, StoreError> {
        let role = if site_owner { "owner" } else { "member" };
        Ok(sqlx::query_scalar(
            "WITH u AS (
                INSERT INTO users (id, email, name, site_role) VALUES ($1, $2, $3, $4)
                ON CONFLICT (lower(email)) DO NOTHING
                RETURNING id
             ), grant_access AS (
                INSERT INTO organization_members (organization_id, user_id, roles)
                SELECT s.auto_grant_agents_access_organization_id, u.id, ARRAY['agents-access']
                FROM u, site_config s
                WHERE s.id = 1 AND s.auto_grant_agents_access_organization_id IS NOT NULL
                ON CONFLICT DO NOTHING
             )
             SELECT id FROM u",
        )
        .bind(Uuid::now_v7())
        .bind(email)
        .bind(name)
        .bind(role)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The id of the user with this email (case-insensitive).
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Suspends, deletes or reactivates a user; `false` when there is no such user.
    pub async fn set_user_status(
        &self,
        user: Uuid,
        status: UserStatus,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET status = $2 WHERE id = $1")
            .bind(user)
            .bind(status.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `user` exists and is `active` (not suspended or deleted).
    pub async fn user_is_active(&self, user: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND status = 'active')",
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Takes `role` away from `user` in `org` (the membership stays); `false` when the user
    /// did not hold it.
    pub async fn remove_member_role(
        &self,
        org: Uuid,
        user: Uuid,
        role: OrganizationRole,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE organization_members SET roles = array_remove(roles, $3)
             WHERE organization_id = $1 AND user_id = $2 AND $3 = ANY(roles)",
        )
        .bind(org)
        .bind(user)
        .bind(role.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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

    /// Stores a token digest for `user`; the secret itself is never stored. The token
    /// carries every right its user has.
    pub async fn create_api_token(
        &self,
        user: Uuid,
        name: &str,
        secret_sha256: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Uuid, StoreError> {
        self.create_scoped_api_token(user, name, secret_sha256, expires_at, None)
            .await
    }

    /// [`Store::create_api_token`] limited to `scopes` (`None`: every right its user has).
    pub async fn create_scoped_api_token(
        &self,
        user: Uuid,
        name: &str,
        secret_sha256: &str,
        expires_at: Option<DateTime<Utc>>,
        scopes: Option<&[TokenScope]>,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        let scopes: Option<Vec<&str>> = scopes.map(|s| s.iter().map(|s| s.as_str()).collect());
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, secret_sha256, expires_at, scopes)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(user)
        .bind(name)
        .bind(secret_sha256)
        .bind(expires_at)
        .bind(scopes)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Whether a token with this digest would authenticate an active user (lets `agentq dev`
    /// reuse its token).
    pub async fn api_token_is_valid(&self, secret_sha256: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id
                            WHERE t.secret_sha256 = $1 AND t.revoked_at IS NULL
                              AND (t.expires_at IS NULL OR t.expires_at > now())
                              AND u.status = 'active')",
        )
        .bind(secret_sha256)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The user behind an unexpired, unrevoked token, in one round trip, whatever the user's
    /// status (the caller refuses inactive users with a reason); `last_used_at` is refreshed
    /// at most once a minute so authentication does not write on every request.
    pub async fn authenticate(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        Ok(sqlx::query_as(
            "WITH t AS (
                SELECT id, user_id, last_used_at, scopes, expires_at FROM api_tokens
                WHERE secret_sha256 = $1 AND revoked_at IS NULL
                  AND (expires_at IS NULL OR expires_at > now())
             ), touch AS (
                UPDATE api_tokens SET last_used_at = now() FROM t
                WHERE api_tokens.id = t.id
                  AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds')
             )
             SELECT u.id, u.email, u.site_role, u.status, t.scopes AS token_scopes,
                    t.expires_at AS token_expires_at
             FROM users u JOIN t ON t.user_id = u.id",
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

    /// `user`'s tokens that are not revoked (expired ones included, so the list explains why
    /// a token stopped working), newest first.
    pub async fn list_api_tokens(&self, user: Uuid) -> Result<Vec<ApiTokenInfo>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at, expires_at, last_used_at, scopes FROM api_tokens
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One of `user`'s unrevoked tokens.
    pub async fn get_api_token(&self, user: Uuid, token: Uuid) -> Result<ApiTokenInfo, StoreError> {
        sqlx::query_as(
            "SELECT id, name, created_at, expires_at, last_used_at, scopes FROM api_tokens
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(token)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Revokes `user`'s token `token`: it authenticates nothing from now on. `false` when
    /// `user` has no such unrevoked token. `user = None` revokes any user's (operators).
    pub async fn revoke_api_token(
        &self,
        user: Option<Uuid>,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now()
             WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND revoked_at IS NULL",
        )
        .bind(token)
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `user` may start work (a turn, tool results, a stream) in `chat`: it must own
    /// the chat and hold `agents-access` in the chat's organization now, not only when the
    /// chat was created.
    pub async fn chat_work_access(&self, chat: Uuid, user: Uuid) -> Result<ChatAccess, StoreError> {
        let row: Option<(Uuid, bool)> = sqlx::query_as(
            "SELECT c.organization_id,
                    EXISTS (SELECT 1 FROM organization_members m
                            WHERE m.organization_id = c.organization_id AND m.user_id = $2
                              AND 'agents-access' = ANY(m.roles))
             FROM chats c WHERE c.id = $1 AND c.owner_id = $2",
        )
        .bind(chat)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => ChatAccess::NotFound,
            Some((_, true)) => ChatAccess::Allowed,
            Some((organization_id, false)) => ChatAccess::MissingAgentsAccess { organization_id },
        })
    }
}
