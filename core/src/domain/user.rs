//! Who is calling: users, their organizations and roles.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Roles a member holds in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum OrganizationRole {
    /// Manages the organization.
    OrganizationAdmin,
    /// May create and run chats.
    AgentsAccess,
}

impl OrganizationRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrganizationRole::OrganizationAdmin => "organization-admin",
            OrganizationRole::AgentsAccess => "agents-access",
        }
    }

    /// The role stored as `name`, if it is one.
    pub fn from_name(name: &str) -> Option<OrganizationRole> {
        [
            OrganizationRole::OrganizationAdmin,
            OrganizationRole::AgentsAccess,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// A user's role on the whole site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SiteRole {
    /// Administers the deployment: settings, providers, users, organizations.
    Owner,
    /// Everyone else; what they may do comes from their organization roles.
    Member,
}

impl SiteRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteRole::Owner => "owner",
            SiteRole::Member => "member",
        }
    }
}

/// Whether a user may use agentq at all; anything but `active` is refused on every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// May call the API.
    Active,
    /// Kept, with its tokens, but refused until reactivated.
    Suspended,
    /// Kept for its chats' history; refused for good.
    Deleted,
}

impl UserStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Deleted => "deleted",
        }
    }
}

/// The user behind a valid API token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthenticatedUser {
    /// User id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// `owner` or `member`.
    pub site_role: String,
    /// Checked on every request: only `active` users get past authentication.
    pub status: UserStatus,
    /// The scopes of the token this request came with; `None`: every right the user has.
    pub token_scopes: Option<Vec<String>>,
    /// When the token stops working; `None`: never.
    pub token_expires_at: Option<DateTime<Utc>>,
}

/// What a token list shows about a token: never its secret, never its digest.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenInfo {
    /// Token id (what `DELETE .../tokens/{token_id}` takes).
    pub id: Uuid,
    /// The name given at creation.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `null`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (refreshed at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// What it may do (`chat:read`, `chat:create`, `chat:update`, `chat:delete`, `admin`);
    /// `null`: everything its user may do.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::domain::TokenScope>>))]
    pub scopes: Option<Vec<String>>,
}

/// A user as the admin API lists them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    /// User id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `owner` or `member`.
    #[cfg_attr(feature = "openapi", schema(value_type = SiteRole))]
    pub site_role: String,
    /// `active`, `suspended` or `deleted`.
    pub status: UserStatus,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// An organization with its head counts.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrganizationSummary {
    /// Organization id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// Members.
    pub members: i64,
    /// Chats (subagent chats included).
    pub chats: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// One user's membership of one organization.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Membership {
    /// The organization.
    pub organization_id: Uuid,
    /// Its name.
    pub organization_name: String,
    /// The member.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// `organization-admin`, `agents-access`, both or none.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<OrganizationRole>))]
    pub roles: Vec<String>,
    /// When they joined.
    pub created_at: DateTime<Utc>,
}

impl AuthenticatedUser {
    /// Site owners administer the whole deployment.
    pub fn is_site_owner(&self) -> bool {
        self.site_role == "owner"
    }

    /// Whether the request's token allows `scope` (a token without scopes allows all).
    /// Says nothing of the user's role, which is checked as well.
    pub fn token_allows(&self, scope: crate::domain::TokenScope) -> bool {
        self.token_scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|s| s == scope.as_str()))
    }
}
