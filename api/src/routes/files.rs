//! `/api/v1/chats/{chat_id}/files`: the files linked to a chat, such as the plans a chat in
//! plan mode proposed (`kind: plan`, ARCHITECTURE.md §7). Owner-only: someone else's chat,
//! or a file the chat does not link, is a 404.

use agentq_core::domain::ChatFile;
use axum::{Json, extract::State};
use serde::Serialize;

use crate::{
    ApiState,
    auth::OwnedChat,
    error::{ApiError, ErrorBody, OrNotFound},
    extract::{ChatAndFileIds, ChatId},
};

/// The files of a chat.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatFileList {
    /// Newest first, at most 200, without their content.
    pub files: Vec<ChatFile>,
}

/// `GET /api/v1/chats/{chat_id}/files`.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/files",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 200, description = "The chat's files, newest first (at most 200), without content.", body = ChatFileList),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn list_files(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
) -> Result<Json<ChatFileList>, ApiError> {
    Ok(Json(ChatFileList {
        files: state.store.chat_files(chat_id).await?,
    }))
}

/// `GET /api/v1/chats/{chat_id}/files/{file_id}`: one file with its content as text.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/files/{file_id}",
    tag = "chats",
    params(ChatAndFileIds),
    responses(
        (status = 200, description = "The file, with `content` (UTF-8 text; absent when the content is not text).", body = ChatFile),
        (status = 400, description = "`chat_id` or `file_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat or file, not the caller's, or not linked to the chat.", body = ErrorBody),
    )
)]
pub async fn get_file(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
    ChatAndFileIds(_, file_id): ChatAndFileIds,
) -> Result<Json<ChatFile>, ApiError> {
    Ok(Json(
        state
            .store
            .chat_file(chat_id, file_id)
            .await
            .or_not_found("file")?,
    ))
}
