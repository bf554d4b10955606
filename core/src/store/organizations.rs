//! Organizations and their members (issue #15, items 1 and 6; ARCHITECTURE.md §11.2).
//!
//! An organization groups users and their chats. A member holds roles in it:
//! `agents-access` lets them create and run chats there, `organization-admin` lets them
//! manage its members and read its usage. Site owners manage every organization; the API
//! decides who may call what, this module only reads and writes the rows.
//!
//! Deleting an organization that still has members, chats, MCP servers or is the
//! auto-grant organization is refused with the reason: a chat's organization is a
//! foreign key that would otherwise take the chats with it.

use uuid::Uuid;

use super::Store;
use crate::{
    StoreError,
    domain::{Membership, OrganizationRole, OrganizationSummary},
};

const SUMMARY: &str = "SELECT o.id, o.name, o.created_at,
        (SELECT count(*) FROM organization_members m WHERE m.organization_id = o.id) AS members,
        (SELECT count(*) FROM chats c WHERE c.organization_id = o.id) AS chats
     FROM organizations o";

const MEMBERSHIP: &str =
    "SELECT m.organization_id, o.name AS organization_name, m.user_id, u.email,
        m.roles, m.created_at
     FROM organization_members m
     JOIN organizations o ON o.id = m.organization_id
     JOIN users u ON u.id = m.user_id";

impl Store {
    /// Every organization, by name.
    pub async fn list_organizations(&self) -> Result<Vec<OrganizationSummary>, StoreError> {
        Ok(
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUMMARY} ORDER BY o.name")))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One organization.
    pub async fn get_organization(&self, id: Uuid) -> Result<OrganizationSummary, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUMMARY} WHERE o.id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Creates an organization; [`StoreError::Duplicate`] naming `name` when taken.
    pub async fn create_organization(&self, name: &str) -> Result<OrganizationSummary, StoreError> {
        let id: Uuid =
            sqlx::query_scalar("INSERT INTO organizations (id, name) VALUES ($1, $2) RETURNING id")
                .bind(Uuid::now_v7())
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
        self.get_organization(id).await
    }

    /// Renames an organization; [`StoreError::Duplicate`] naming `name` when taken.
    pub async fn rename_organization(
        &self,
        id: Uuid,
        name: &str,
    ) -> Result<OrganizationSummary, StoreError> {
        let done = sqlx::query("UPDATE organizations SET name = $2 WHERE id = $1")
            .bind(id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_organization(id).await
    }

    /// Deletes an empty organization. [`StoreError::Conflict`] says what keeps it (members,
    /// chats, MCP servers, the auto-grant setting). The row is locked first, so a chat or a
    /// member added meanwhile (whose foreign key locks the row too) waits and then fails,
    /// rather than being deleted with it.
    pub async fn delete_organization(&self, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let found: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::NotFound);
        }
        let (members, chats, servers, auto_grant): (i64, i64, i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM organization_members WHERE organization_id = $1),
                    (SELECT count(*) FROM chats WHERE organization_id = $1),
                    (SELECT count(*) FROM mcp_servers WHERE organization_id = $1),
                    EXISTS (SELECT 1 FROM site_config
                            WHERE auto_grant_agents_access_organization_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let mut reasons = Vec::new();
        if members > 0 {
            reasons.push(format!("{members} members (remove them first)"));
        }
        if chats > 0 {
            reasons.push(format!(
                "{chats} chats (deleting it would delete them; their owners delete them first)"
            ));
        }
        if servers > 0 {
            reasons.push(format!(
                "{servers} MCP servers (delete them or make them site-wide first)"
            ));
        }
        if auto_grant {
            reasons.push(
                "it is the site's `auto_grant_agents_access_organization_id` (change the setting first)"
                    .to_owned(),
            );
        }
        if !reasons.is_empty() {
            return Err(StoreError::Conflict(format!(
                "the organization is not empty: it has {}",
                reasons.join(", ")
            )));
        }
        sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The members of `org`, by email.
    pub async fn organization_members(&self, org: Uuid) -> Result<Vec<Membership>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{MEMBERSHIP} WHERE m.organization_id = $1 ORDER BY u.email"
        )))
        .bind(org)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The organizations `user` belongs to, by name.
    pub async fn user_memberships(&self, user: Uuid) -> Result<Vec<Membership>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{MEMBERSHIP} WHERE m.user_id = $1 ORDER BY o.name"
        )))
        .bind(user)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One membership (`None`: `user` is not a member of `org`).
    pub async fn membership(
        &self,
        org: Uuid,
        user: Uuid,
    ) -> Result<Option<Membership>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{MEMBERSHIP} WHERE m.organization_id = $1 AND m.user_id = $2"
        )))
        .bind(org)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Makes `user` a member of `org` holding exactly `roles` (added if not a member,
    /// roles replaced if one). [`StoreError::UnknownReference`] naming `user_id` for a user
    /// that does not exist, [`StoreError::NotFound`] for an organization that does not.
    pub async fn set_member_roles(
        &self,
        org: Uuid,
        user: Uuid,
        roles: &[OrganizationRole],
    ) -> Result<Membership, StoreError> {
        let mut names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let org_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
                .bind(org)
                .fetch_one(&self.pool)
                .await?;
        if !org_exists {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO organization_members (organization_id, user_id, roles) VALUES ($1, $2, $3)
             ON CONFLICT (organization_id, user_id) DO UPDATE SET roles = EXCLUDED.roles",
        )
        .bind(org)
        .bind(user)
        .bind(&names)
        .execute(&self.pool)
        .await?;
        self.membership(org, user)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Removes `user` from `org` (their chats there stay theirs, but they can start no
    /// more work in them); `false` when they were not a member.
    pub async fn remove_member(&self, org: Uuid, user: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2",
        )
        .bind(org)
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
