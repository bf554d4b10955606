//! Uploaded files (issue #14, item 3; ARCHITECTURE.md §3): storing an upload, reading it
//! back for the people who may, linking the files a message references to its chat, and
//! loading what a request to the model carries.
//!
//! Who may read a file: its owner (the uploader), and the owner of any chat that links it.
//! Anyone else gets [`StoreError::NotFound`], the same as for a file that does not exist,
//! so ids cannot be probed.
//!
//! Linking happens in the transaction that accepts the message ([`link_message_files_in`],
//! under the chat's row lock), so a chat never passes [`MAX_CHAT_FILE_LINKS`] uploads
//! however many messages race: a message past the limit is still accepted, without the
//! files that did not fit, and the caller is told which.

use uuid::Uuid;

use super::{Store, pg_text};
use crate::{
    StoreError,
    domain::{FileContent, FileMeta, MAX_CHAT_FILE_LINKS, MessagePart},
};

/// The columns of a [`FileMeta`] from `files f`.
const META_COLUMNS: &str = "f.id, f.name, f.media_type AS mimetype, \
     octet_length(f.content)::bigint AS size, f.kind, f.organization_id, f.created_at";

/// The most files a chat's `files` list shows (its uploads are at most
/// [`MAX_CHAT_FILE_LINKS`]; the rest are plans).
const MAX_CHAT_FILES_LISTED: i64 = 200;

/// `$2` may read file `f`: they own it, or own a chat that links it.
const READER: &str = "(f.owner_id = $2 OR EXISTS (
        SELECT 1 FROM chat_file_links l JOIN chats c ON c.id = l.chat_id
        WHERE l.file_id = f.id AND c.owner_id = $2))";

/// What linking a message's files did.
#[derive(Debug, Clone, Default)]
pub struct LinkedFiles {
    /// A `file` part per referenced file the chat links (now or already), in the order
    /// referenced: they go into the message's content.
    pub parts: Vec<MessagePart>,
    /// Referenced files left out because the chat already links
    /// [`MAX_CHAT_FILE_LINKS`] uploads.
    pub not_linked: Vec<Uuid>,
}

impl Store {
    /// Stores an upload of `owner`'s, kind `file`, with the media type the API sniffed.
    pub async fn store_upload(
        &self,
        owner: Uuid,
        organization_id: Option<Uuid>,
        name: &str,
        mimetype: &str,
        content: &[u8],
    ) -> Result<FileMeta, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO files AS f (id, owner_id, organization_id, name, media_type, content, kind)
             VALUES ($1, $2, $3, $4, $5, $6, 'file')
             RETURNING {META_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(owner)
        .bind(organization_id)
        .bind(pg_text(name))
        .bind(mimetype)
        .bind(content)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A file's metadata if `reader` may read it (see the module page), else
    /// [`StoreError::NotFound`].
    pub async fn file_for_reader(
        &self,
        file_id: Uuid,
        reader: Uuid,
    ) -> Result<FileMeta, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {META_COLUMNS} FROM files f WHERE f.id = $1 AND {READER}"
        )))
        .bind(file_id)
        .bind(reader)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// A file's content if `reader` may read it, else [`StoreError::NotFound`].
    pub async fn file_content_for_reader(
        &self,
        file_id: Uuid,
        reader: Uuid,
    ) -> Result<FileContent, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT f.id, f.name, f.media_type AS mimetype, f.content
             FROM files f WHERE f.id = $1 AND {READER}"
        )))
        .bind(file_id)
        .bind(reader)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// The uploads among `ids` that `owner` owns (kind `file`; plans are not referenced by
    /// messages), in no particular order: the API compares them with what a message asks
    /// for.
    pub async fn uploads_of(&self, owner: Uuid, ids: &[Uuid]) -> Result<Vec<FileMeta>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {META_COLUMNS} FROM files f
             WHERE f.id = ANY($1) AND f.owner_id = $2 AND f.kind = 'file'"
        )))
        .bind(ids)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The files a chat links (uploads and plans), newest first, at most 200.
    pub async fn chat_file_metas(&self, chat_id: Uuid) -> Result<Vec<FileMeta>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {META_COLUMNS} FROM files f JOIN chat_file_links l ON l.file_id = f.id
             WHERE l.chat_id = $1 ORDER BY f.created_at DESC, f.id DESC LIMIT $2"
        )))
        .bind(chat_id)
        .bind(MAX_CHAT_FILES_LISTED)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The sizes of the files among `ids` that `chat_id` links, for the worker to choose
    /// what one request carries before it loads any content.
    pub async fn linked_file_sizes(
        &self,
        chat_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT f.id, octet_length(f.content)::bigint FROM files f
             JOIN chat_file_links l ON l.file_id = f.id AND l.chat_id = $1
             WHERE f.id = ANY($2)",
        )
        .bind(chat_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The content of the files among `ids` that `chat_id` links (a file unlinked since,
    /// or gone, is left out).
    pub async fn linked_file_contents(
        &self,
        chat_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<FileContent>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT f.id, f.name, f.media_type AS mimetype, f.content FROM files f
             JOIN chat_file_links l ON l.file_id = f.id AND l.chat_id = $1
             WHERE f.id = ANY($2)",
        )
        .bind(chat_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Links the uploads `file_ids` (the API checked that `owner` owns each and that its
/// organization fits the chat's) to `chat_id`, and returns the `file` parts of the message
/// that references them. A file the chat already links takes no new link; past
/// [`MAX_CHAT_FILE_LINKS`] uploads a file is not linked and not referenced, and is named in
/// [`LinkedFiles::not_linked`]. The caller holds the chat's row lock (or created the chat
/// in this transaction), so the count cannot change underneath. A file that vanished since
/// the API's check is [`StoreError::UnknownReference`] on `file_ids`.
pub(super) async fn link_message_files_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    owner: Uuid,
    file_ids: &[Uuid],
) -> Result<LinkedFiles, StoreError> {
    if file_ids.is_empty() {
        return Ok(LinkedFiles::default());
    }
    let metas: Vec<FileMeta> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {META_COLUMNS} FROM files f
         WHERE f.id = ANY($1) AND f.owner_id = $2 AND f.kind = 'file'"
    )))
    .bind(file_ids)
    .bind(owner)
    .fetch_all(&mut *tx)
    .await?;
    let (linked, mut count): (Vec<Uuid>, i64) = sqlx::query_as(
        "SELECT
            coalesce((SELECT array_agg(file_id) FROM chat_file_links
                      WHERE chat_id = $1 AND file_id = ANY($2)), '{}'),
            (SELECT count(*) FROM chat_file_links l JOIN files f ON f.id = l.file_id
             WHERE l.chat_id = $1 AND f.kind = 'file')",
    )
    .bind(chat_id)
    .bind(file_ids)
    .fetch_one(&mut *tx)
    .await?;
    let mut out = LinkedFiles::default();
    let mut new_links = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in file_ids {
        if !seen.insert(*id) {
            continue;
        }
        let meta = metas
            .iter()
            .find(|m| m.id == *id)
            .ok_or(StoreError::UnknownReference { field: "file_ids" })?;
        if !linked.contains(id) {
            if count >= MAX_CHAT_FILE_LINKS {
                out.not_linked.push(*id);
                continue;
            }
            count += 1;
            new_links.push(*id);
        }
        out.parts.push(MessagePart::File {
            file_id: meta.id,
            name: meta.name.clone(),
            mimetype: meta.mimetype.clone(),
            size: meta.size,
        });
    }
    if !new_links.is_empty() {
        sqlx::query(
            "INSERT INTO chat_file_links (chat_id, file_id)
             SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(chat_id)
        .bind(&new_links)
        .execute(&mut *tx)
        .await?;
    }
    Ok(out)
}
