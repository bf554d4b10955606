//! Instructions at three levels (issue #12, item 2; ARCHITECTURE.md §7): the site's system
//! prompt (`/api/v1/admin/system-prompt`, site owners), each user's own
//! (`/api/v1/users/me/instructions`) and each chat's (`instructions` on chat create, checked
//! here). The worker composes them, in that order, into every step's system message.
//!
//! Each is free text up to [`MAX_INSTRUCTIONS_BYTES`]: it is sent on every step of every
//! turn, so its size is paid for again and again. U+0000 is stored as U+FFFD, as in
//! messages; an empty text means none.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};

use crate::{
    ApiState,
    auth::{CurrentUser, SiteOwner},
    error::{ApiError, ErrorBody},
    extract::JsonBody,
};

/// Largest site prompt, user instructions or chat instructions, in bytes.
pub const MAX_INSTRUCTIONS_BYTES: usize = 32 * 1024;

/// 400 naming `field` when `text` is over [`MAX_INSTRUCTIONS_BYTES`].
fn check_size(field: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_INSTRUCTIONS_BYTES {
        return Err(ApiError::invalid(
            field,
            format!(
                "is {} bytes; instructions may take at most {MAX_INSTRUCTIONS_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// A chat's `instructions` on create, checked: `None` when absent or blank.
pub(crate) fn chat_instructions(text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        Some(text) if !text.trim().is_empty() => {
            check_size("instructions", &text)?;
            Ok(Some(text))
        }
        _ => Ok(None),
    }
}

/// The caller's personal instructions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInstructions {
    /// Added to the system message of each of the caller's chats, after the site's system
    /// prompt and before the chat's own instructions ('' when none).
    pub instructions: String,
}

/// Body of `PUT /api/v1/users/me/instructions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInstructionsBody {
    /// The new instructions ('' removes them).
    #[schema(required = true, nullable = false, max_length = 32768)]
    instructions: Option<String>,
}

/// `GET /api/v1/users/me/instructions`.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/instructions",
    tag = "users",
    responses((status = 200, description = "The caller's instructions.", body = UserInstructions))
)]
pub async fn get_user_instructions(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<UserInstructions>, ApiError> {
    Ok(Json(UserInstructions {
        instructions: state.store.user_instructions(user.id).await?,
    }))
}

/// `PUT /api/v1/users/me/instructions`: applies from the next step of every chat of the
/// caller's, running ones included.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/instructions",
    tag = "users",
    request_body = UserInstructionsBody,
    responses(
        (status = 200, description = "The instructions as stored.", body = UserInstructions),
        (status = 400, description = "`instructions` is missing or over 32 KiB.", body = ErrorBody),
    )
)]
pub async fn put_user_instructions(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<UserInstructionsBody>,
) -> Result<Json<UserInstructions>, ApiError> {
    let text = body
        .instructions
        .ok_or_else(|| ApiError::invalid("instructions", "is required ('' removes them)"))?;
    check_size("instructions", &text)?;
    Ok(Json(UserInstructions {
        instructions: state.store.set_user_instructions(user.id, &text).await?,
    }))
}

/// The site's system prompt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SystemPrompt {
    /// First in the system message of every chat ('' when none).
    pub system_prompt: String,
}

/// Body of `PUT /api/v1/admin/system-prompt`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemPromptBody {
    /// The new prompt ('' removes it).
    #[schema(required = true, nullable = false, max_length = 32768)]
    system_prompt: Option<String>,
}

/// `GET /api/v1/admin/system-prompt` (site owners).
#[utoipa::path(
    get,
    path = "/api/v1/admin/system-prompt",
    tag = "admin",
    responses(
        (status = 200, description = "The site's system prompt.", body = SystemPrompt),
        (status = 403, description = "Only site owners read it.", body = ErrorBody),
    )
)]
pub async fn get_system_prompt(
    State(state): State<ApiState>,
    _owner: SiteOwner,
) -> Result<Json<SystemPrompt>, ApiError> {
    Ok(Json(SystemPrompt {
        system_prompt: state.store.site_system_prompt().await?,
    }))
}

/// `PUT /api/v1/admin/system-prompt` (site owners): applies from the next step of every
/// chat, running ones included.
#[utoipa::path(
    put,
    path = "/api/v1/admin/system-prompt",
    tag = "admin",
    request_body = SystemPromptBody,
    responses(
        (status = 200, description = "The prompt as stored.", body = SystemPrompt),
        (status = 400, description = "`system_prompt` is missing or over 32 KiB.", body = ErrorBody),
        (status = 403, description = "Only site owners change it.", body = ErrorBody),
    )
)]
pub async fn put_system_prompt(
    State(state): State<ApiState>,
    _owner: SiteOwner,
    JsonBody(body): JsonBody<SystemPromptBody>,
) -> Result<Json<SystemPrompt>, ApiError> {
    let text = body
        .system_prompt
        .ok_or_else(|| ApiError::invalid("system_prompt", "is required ('' removes it)"))?;
    check_size("system_prompt", &text)?;
    Ok(Json(SystemPrompt {
        system_prompt: state.store.set_site_system_prompt(&text).await?,
    }))
}
