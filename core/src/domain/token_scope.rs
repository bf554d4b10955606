//! What an API token may do (issue #15, item 1; ARCHITECTURE.md §11.2).
//!
//! A token made without scopes carries every right its user has. A token made with scopes
//! is limited to them, and a scope never adds a right: the user's role is checked as well,
//! so `admin` on a member's token opens nothing. Each route needs exactly one scope, which
//! the API's extractors check before a handler runs (`api/src/auth.rs`).

use serde::{Deserialize, Serialize};

/// One thing a token may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TokenScope {
    /// Read chats, messages, streams and the caller's own settings.
    #[serde(rename = "chat:read")]
    ChatRead,
    /// Create chats and send messages.
    #[serde(rename = "chat:create")]
    ChatCreate,
    /// Change chats (title, archive, edit, regenerate, interrupt, tool results) and the
    /// caller's own settings.
    #[serde(rename = "chat:update")]
    ChatUpdate,
    /// Delete chats and the caller's own things (skills, connections).
    #[serde(rename = "chat:delete")]
    ChatDelete,
    /// Site administration (`/api/v1/admin/...`) and organization administration
    /// (`/api/v1/organizations/...`), for a user whose role allows it.
    #[serde(rename = "admin")]
    Admin,
}

impl TokenScope {
    /// Every scope, in the order documents list them.
    pub const ALL: [TokenScope; 5] = [
        TokenScope::ChatRead,
        TokenScope::ChatCreate,
        TokenScope::ChatUpdate,
        TokenScope::ChatDelete,
        TokenScope::Admin,
    ];

    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::ChatRead => "chat:read",
            TokenScope::ChatCreate => "chat:create",
            TokenScope::ChatUpdate => "chat:update",
            TokenScope::ChatDelete => "chat:delete",
            TokenScope::Admin => "admin",
        }
    }

    /// The scope stored as `name`, if it is one.
    pub fn from_name(name: &str) -> Option<TokenScope> {
        TokenScope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_reads_back_from_its_name() {
        for scope in TokenScope::ALL {
            assert_eq!(TokenScope::from_name(scope.as_str()), Some(scope));
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::Value::from(scope.as_str())
            );
        }
        assert_eq!(TokenScope::from_name("chat:*"), None);
    }
}
