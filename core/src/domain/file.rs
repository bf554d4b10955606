//! Files (`files`, `chat_file_links`; ARCHITECTURE.md §3): uploads (`POST /api/v1/files`,
//! kind `file`) that messages reference, and the plans `propose_plan` stores (kind `plan`).
//! A file lives while some chat links it; an upload no chat links goes with retention
//! (`chat_retention_days`, `store::retention`).

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

/// The most bytes one uploaded file may hold (`POST /api/v1/files`).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// The most uploaded files (kind `file`) linked to one chat; plans a chat proposed do not
/// count. A message that references more is still accepted, without the files past the
/// limit, and its response carries a warning naming them.
pub const MAX_CHAT_FILE_LINKS: i64 = 50;

/// The most files one message may reference (`file_ids`).
pub const MAX_MESSAGE_FILES: usize = 10;

/// A file's metadata: what an upload returns, `GET /api/v1/files/{id}/metadata` reads and a
/// chat's `files` list.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileMeta {
    /// Id.
    pub id: Uuid,
    /// Name (the uploaded file name, or a plan's title).
    pub name: String,
    /// Media type, sniffed from the content when uploaded.
    pub mimetype: String,
    /// Size of the content in bytes.
    pub size: i64,
    /// What the file is.
    pub kind: FileKind,
    /// The organization the uploader named: the file is linked only to chats of it.
    pub organization_id: Option<Uuid>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// A file's content with what serving or sending it needs.
#[derive(Clone, sqlx::FromRow)]
pub struct FileContent {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Media type.
    pub mimetype: String,
    /// The bytes.
    pub content: Vec<u8>,
}

impl std::fmt::Debug for FileContent {
    /// Without the bytes: a file may be megabytes, and it is the user's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileContent")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("mimetype", &self.mimetype)
            .field("size", &self.content.len())
            .finish()
    }
}

/// A file a message referenced but the chat did not link, because it already linked
/// [`MAX_CHAT_FILE_LINKS`] uploads: the message was accepted without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileLinkWarning {
    /// `file_link_limit`.
    pub code: String,
    /// The file left out.
    pub file_id: Uuid,
    /// What happened, for people.
    pub message: String,
}

impl FileLinkWarning {
    /// The warning for `file_id`, left out at the link limit.
    pub fn link_limit(file_id: Uuid) -> Self {
        Self {
            code: "file_link_limit".into(),
            file_id,
            message: format!(
                "file {file_id} was not attached: the chat already has {MAX_CHAT_FILE_LINKS} \
                 uploaded files, the most a chat may link; the message was sent without it"
            ),
        }
    }
}
