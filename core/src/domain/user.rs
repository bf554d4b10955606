//! Who is calling: users, their organizations and roles.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Roles a member holds in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Whether a user may use agentq at all; anything but `active` is refused on every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
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
}

impl AuthenticatedUser {
    /// Site owners administer the whole deployment.
    pub fn is_site_owner(&self) -> bool {
        self.site_role == "owner"
    }
}
