//! `/api/v1/files`: upload a file, read it back (issue #14, item 3; ARCHITECTURE.md §3).
//!
//! An upload is the raw body (its `Content-Type` a hint, its name from `?name=` or the
//! `Content-Disposition` filename) or `multipart/form-data` with one part named `file`
//! (and optional `name` and `organization_id` fields). At most [`MAX_FILE_BYTES`]: this
//! route reads its body with its own limit, not the server's smaller `max_body_bytes`, and
//! answers 413 past it. What the file is comes from its bytes (`crate::file_type`); content
//! of another type is a 415 naming the accepted ones.
//!
//! A file is read by its owner or by the owner of a chat that links it; anyone else gets
//! the 404 of a file that does not exist. Messages reference files by id (`file_ids`,
//! `routes::chats`, `routes::messages`), which links them to the chat.

use agentq_core::domain::{FileMeta, MAX_FILE_BYTES, MAX_MESSAGE_FILES, OrganizationRole};
use axum::{
    Json,
    body::Body,
    extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody, OrNotFound, refuse_control_chars},
    extract::{FileId, QueryParams},
    file_type,
};

/// Room for a multipart body's boundaries, part headers and small fields around a file of
/// [`MAX_FILE_BYTES`].
const MULTIPART_OVERHEAD: usize = 64 * 1024;
/// Longest file name, in characters.
const MAX_NAME_CHARS: usize = 255;
/// The name of a file uploaded without one.
const DEFAULT_NAME: &str = "upload";

/// Query of `POST /api/v1/files`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name (a raw upload; else the `Content-Disposition` filename, else
    /// `upload`). Path components are dropped; at most 255 characters.
    pub name: Option<String>,
    /// An organization where the caller has `agents-access`: the file can then be attached
    /// only to chats of that organization. Absent: to any of the caller's chats.
    pub organization_id: Option<Uuid>,
}

/// `POST /api/v1/files`: stores a file of the caller's.
#[utoipa::path(
    post,
    path = "/api/v1/files",
    tag = "files",
    params(UploadQuery),
    request_body(
        description = "The file as the raw body (any `Content-Type`), or a multipart form with one part `file` (its filename the name) and optional fields `name` and `organization_id`.",
        content(
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 201, description = "Stored; `mimetype` is what the bytes are, whatever was declared.", body = FileMeta),
        (status = 400, description = "A field or parameter is invalid (`name`, `organization_id`, a multipart body without a `file` part); `validations` names it.", body = ErrorBody),
        (status = 413, description = "The file is larger than 10 MiB.", body = ErrorBody),
        (status = 415, description = "The content is not PNG, JPEG, GIF, WebP, PDF, JSON, CSV, markdown or plain text; the message names the accepted types.", body = ErrorBody),
    )
)]
pub async fn upload_file(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    QueryParams(query): QueryParams<UploadQuery>,
    mut request: Request,
) -> Result<(StatusCode, Json<FileMeta>), ApiError> {
    let headers = request.headers().clone();
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    let is_multipart = content_type
        .as_deref()
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    let upload = if is_multipart {
        DefaultBodyLimit::max(MAX_FILE_BYTES + MULTIPART_OVERHEAD).apply(&mut request);
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::invalid("body", e.body_text()))?;
        read_multipart(multipart).await?
    } else {
        if content_length(&headers).is_some_and(|n| n > MAX_FILE_BYTES as u64) {
            return Err(too_large());
        }
        // Any failure to read the body is reported as the limit: a client whose connection
        // broke reads no answer anyway.
        let bytes = axum::body::to_bytes(request.into_body(), MAX_FILE_BYTES)
            .await
            .map_err(|_| too_large())?;
        Upload {
            bytes: bytes.to_vec(),
            declared: content_type,
            name: header_text(&headers, header::CONTENT_DISPOSITION)
                .as_deref()
                .and_then(disposition_filename),
            organization_id: None,
        }
    };
    let name = file_name(query.name.or(upload.name))?;
    let organization_id = match query.organization_id.or(upload.organization_id) {
        Some(org) => {
            let orgs = state
                .store
                .organizations_with_role(user.id, OrganizationRole::AgentsAccess)
                .await?;
            if !orgs.contains(&org) {
                return Err(ApiError::invalid(
                    "organization_id",
                    "is not an organization where you have agents-access",
                ));
            }
            Some(org)
        }
        None => None,
    };
    let mimetype = file_type::sniff(&upload.bytes, upload.declared.as_deref(), &name)
        .map_err(|e| ApiError::UnsupportedMediaType(e.to_string()))?;
    let file = state
        .store
        .store_upload(user.id, organization_id, &name, mimetype, &upload.bytes)
        .await?;
    Ok((StatusCode::CREATED, Json(file)))
}

/// What a request uploads.
struct Upload {
    bytes: Vec<u8>,
    declared: Option<String>,
    name: Option<String>,
    organization_id: Option<Uuid>,
}

/// The `file` part of a multipart body (exactly one), with the optional `name` and
/// `organization_id` fields.
async fn read_multipart(mut multipart: Multipart) -> Result<Upload, ApiError> {
    let mut upload: Option<Upload> = None;
    let mut name = None;
    let mut organization_id = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let field_name = field.name().unwrap_or_default().to_owned();
        match field_name.as_str() {
            "file" => {
                if upload.is_some() {
                    return Err(ApiError::invalid("file", "must be sent once"));
                }
                let declared = field.content_type().map(str::to_owned);
                let part_name = field.file_name().map(str::to_owned);
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if bytes.len() + chunk.len() > MAX_FILE_BYTES {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                upload = Some(Upload {
                    bytes,
                    declared,
                    name: part_name,
                    organization_id: None,
                });
            }
            "name" => name = Some(field.text().await.map_err(multipart_error)?),
            "organization_id" => {
                let text = field.text().await.map_err(multipart_error)?;
                organization_id = Some(
                    text.trim()
                        .parse::<Uuid>()
                        .map_err(|_| ApiError::invalid("organization_id", "must be a UUID"))?,
                );
            }
            other => {
                return Err(ApiError::invalid(
                    other.to_owned(),
                    "is not a field of an upload (send `file`, and optionally `name` and `organization_id`)",
                ));
            }
        }
    }
    let mut upload = upload.ok_or_else(|| {
        ApiError::invalid(
            "file",
            "is required: send the file as the part named `file`",
        )
    })?;
    upload.name = name.or(upload.name);
    upload.organization_id = organization_id;
    Ok(upload)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::invalid("body", e.body_text())
    }
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge {
        limit: MAX_FILE_BYTES,
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_text(headers, header::CONTENT_LENGTH)?
        .trim()
        .parse()
        .ok()
}

/// The `filename` parameter of a `Content-Disposition` header (`attachment;
/// filename="a.png"`), quoted or not. (`filename*`, the RFC 8187 form, is not read: send
/// `?name=` for a name that is not ASCII.)
fn disposition_filename(value: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("filename") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some(value.to_owned())
    })
}

/// The stored name: the last path component of what was sent (a browser or a client may
/// send a whole path), not blank, at most [`MAX_NAME_CHARS`], no control characters.
fn file_name(sent: Option<String>) -> Result<String, ApiError> {
    let Some(sent) = sent else {
        return Ok(DEFAULT_NAME.to_owned());
    };
    let name = sent.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if name.is_empty() {
        return Ok(DEFAULT_NAME.to_owned());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    refuse_control_chars("name", name)?;
    Ok(name.to_owned())
}

/// `GET /api/v1/files/{file_id}`: the file's bytes.
#[utoipa::path(
    get,
    path = "/api/v1/files/{file_id}",
    tag = "files",
    params(FileId),
    responses(
        (status = 200, description = "The content, with the stored `Content-Type`, `Content-Disposition: attachment` naming the file and `X-Content-Type-Options: nosniff`.", content_type = "*/*", body = serde_json::Value),
        (status = 400, description = "`file_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such file, or the caller neither owns it nor owns a chat that links it.", body = ErrorBody),
    )
)]
pub async fn download_file(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    FileId(file_id): FileId,
) -> Result<Response, ApiError> {
    let file = state
        .store
        .file_content_for_reader(file_id, user.id)
        .await
        .or_not_found("file")?;
    let content_type = HeaderValue::from_str(&file.mimetype)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&file.name))
        .unwrap_or(HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("private")),
        ],
        Body::from(file.content),
    )
        .into_response())
}

/// `attachment` with the name twice: an ASCII fallback (`filename`) and the exact name
/// percent-encoded as UTF-8 (`filename*`, RFC 8187), so no name breaks the header.
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/v1/files/{file_id}/metadata`: what the file is, without its bytes.
#[utoipa::path(
    get,
    path = "/api/v1/files/{file_id}/metadata",
    tag = "files",
    params(FileId),
    responses(
        (status = 200, description = "The file's metadata.", body = FileMeta),
        (status = 400, description = "`file_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such file, or the caller neither owns it nor owns a chat that links it.", body = ErrorBody),
    )
)]
pub async fn file_metadata(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    FileId(file_id): FileId,
) -> Result<Json<FileMeta>, ApiError> {
    Ok(Json(
        state
            .store
            .file_for_reader(file_id, user.id)
            .await
            .or_not_found("file")?,
    ))
}

/// Checks the `file_ids` of a message to a chat of `organization_id`: at most
/// [`MAX_MESSAGE_FILES`], each an upload of `owner`'s, of that organization or none. A
/// 400 names the offending entry (`file_ids[2]`).
pub(crate) async fn check_file_ids(
    state: &ApiState,
    owner: Uuid,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Ok(());
    }
    if ids.len() > MAX_MESSAGE_FILES {
        return Err(ApiError::invalid(
            "file_ids",
            format!("must hold at most {MAX_MESSAGE_FILES} files"),
        ));
    }
    let files = state.store.uploads_of(owner, ids).await?;
    for (i, id) in ids.iter().enumerate() {
        let Some(file) = files.iter().find(|f| f.id == *id) else {
            return Err(ApiError::invalid(
                format!("file_ids[{i}]"),
                format!("names no file of yours ({id}); upload it with POST /api/v1/files"),
            ));
        };
        if let Some(org) = file.organization_id
            && org != organization_id
        {
            return Err(ApiError::invalid(
                format!("file_ids[{i}]"),
                format!(
                    "names a file of organization {org}; this chat is in organization {organization_id}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disposition_header_names_the_file() {
        assert_eq!(
            disposition_filename("attachment; filename=\"a b.png\""),
            Some("a b.png".into())
        );
        assert_eq!(
            disposition_filename("form-data; name=x; FILENAME=plain.txt"),
            Some("plain.txt".into())
        );
        assert_eq!(disposition_filename("inline"), None);
    }

    #[test]
    fn names_lose_their_path_and_keep_their_letters() {
        assert_eq!(
            file_name(Some("C:\\Users\\me\\a.png".into())).unwrap(),
            "a.png"
        );
        assert_eq!(
            file_name(Some("../../etc/passwd".into())).unwrap(),
            "passwd"
        );
        assert_eq!(file_name(None).unwrap(), "upload");
        assert_eq!(file_name(Some("dir/".into())).unwrap(), "upload");
        assert!(file_name(Some("a\nb".into())).is_err());
        assert!(file_name(Some("x".repeat(256))).is_err());
    }

    #[test]
    fn a_served_name_cannot_break_the_header() {
        assert_eq!(
            content_disposition("résumé \"final\".pdf"),
            "attachment; filename=\"r_sum_ _final_.pdf\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
    }
}
