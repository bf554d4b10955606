//! Files linked to chats (`files`, `chat_file_links`; ARCHITECTURE.md §3): today the plans
//! `propose_plan` stores, kind `plan`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a file is (`files.kind`, CHECK `file`, `plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FileKind {
    /// Any other file.
    File,
    /// A plan proposed in plan mode (`propose_plan`), markdown.
    Plan,
}

/// A file linked to a chat, as the API returns it; `content` only when one file is read.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatFile {
    /// Id.
    pub id: Uuid,
    /// Name (a plan's title).
    pub name: String,
    /// What the file is.
    pub kind: FileKind,
    /// Media type (`text/markdown` for a plan).
    pub media_type: String,
    /// Size of the content in bytes.
    pub size_bytes: i64,
    /// The content as UTF-8 text (absent in lists, and for content that is not UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(default)]
    pub content: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}
