//! Who is calling: users, their organizations and roles.

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

/// The user behind a valid API token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthenticatedUser {
    /// User id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// `owner` or `member`.
    pub site_role: String,
}

impl AuthenticatedUser {
    /// Site owners administer the whole deployment.
    pub fn is_site_owner(&self) -> bool {
        self.site_role == "owner"
    }
}
