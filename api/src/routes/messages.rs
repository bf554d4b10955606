//! `/api/v1/chats/{chat_id}/messages`: read the conversation, send a message, edit one
//! (which replaces it and everything after it, and starts a new turn; ARCHITECTURE.md
//! §4.1).

use agentq_core::{
    domain::{FileLinkWarning, Message, MessagePart, PlanMode, Role},
    outcome::ChatOutcome,
    rate_limit::Limit,
    store::{BusyBehavior, EditError, SendOptions, SendOutcome},
};
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chats::{announce, page_limit, validate_message};
use crate::{
    ApiState,
    auth::{OwnedChat, WorkChat},
    error::{ApiError, ErrorBody, OrNotFound},
    extract::{ChatAndMessageIds, ChatId, JsonBody, QueryParams},
};

/// Most bytes of messages (as JSON) one page carries: a page stops before the message that
/// would pass it and returns the cursor, so a chat of long answers cannot make one response
/// (and the memory behind it) grow to `limit` times the largest message. A single message
/// larger than this still comes, alone on its page, so every message can be read.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// Query of `GET .../messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMessagesQuery {
    /// Most messages on the page, 1..=1000 (default 100); a page also stops at about 1 MiB
    /// of messages (a longer message comes alone), with `next_after_id` set.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The last message id of the previous page.
    pub after_id: Option<Uuid>,
    /// `true` also lists the messages an edit or a regenerate replaced (they carry
    /// `superseded_at`); by default only the conversation as the model sees it.
    pub include_superseded: Option<bool>,
}

/// A page of messages, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageList {
    /// Messages.
    pub messages: Vec<Message>,
    /// Cursor for the next page, absent on the last one.
    pub next_after_id: Option<Uuid>,
}

/// `GET /api/v1/chats/{chat_id}/messages`.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/messages",
    tag = "messages",
    params(ChatId, ListMessagesQuery),
    responses(
        (status = 200, description = "A page of messages, oldest first (without superseded ones unless `include_superseded=true`).", body = MessageList),
        (status = 400, description = "`chat_id` or a query parameter is invalid.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn list_messages(
    State(state): State<ApiState>,
    OwnedChat { chat_id, .. }: OwnedChat,
    QueryParams(query): QueryParams<ListMessagesQuery>,
) -> Result<Json<MessageList>, ApiError> {
    let limit = page_limit(query.limit, 100, 1000)?;
    let messages = state
        .store
        .list_messages(
            chat_id,
            query.after_id,
            limit + 1,
            MAX_PAGE_BYTES as i64,
            query.include_superseded.unwrap_or(false),
        )
        .await?;
    Ok(Json(bounded_page(messages, limit as usize, MAX_PAGE_BYTES)))
}

/// The first messages of `fetched` (which holds up to `limit + 1`) that fit `limit` and
/// `max_bytes`, with the cursor when any were left out. The first message always fits.
fn bounded_page(mut fetched: Vec<Message>, limit: usize, max_bytes: usize) -> MessageList {
    let mut bytes = 0;
    let mut keep = 0;
    for message in fetched.iter().take(limit) {
        let size = super::chats::json_len(message);
        if keep > 0 && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        keep += 1;
    }
    let next_after_id = if fetched.len() > keep {
        fetched.truncate(keep);
        fetched.last().map(|m| m.id)
    } else {
        None
    };
    MessageList {
        messages: fetched,
        next_after_id,
    }
}

/// Body of `POST .../messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// The user message (required, not blank).
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 100_000,
        pattern = "\\S"
    )]
    pub message: Option<String>,
    /// `queue` (default) waits for the running turn.
    #[serde(default)]
    pub busy_behavior: Option<BusyBehavior>,
    /// Replaces the chat's choice of MCP servers from this message on (see
    /// `mcp_server_ids` on chat create); absent: the choice stays.
    #[serde(default)]
    pub mcp_server_ids: Option<Vec<Uuid>>,
    /// `plan` puts the chat in plan mode from this message on, `null` leaves it (say so
    /// when answering a proposed plan to have it carried out); absent: unchanged.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<PlanMode>)]
    pub plan_mode: Option<Option<PlanMode>>,
    /// Switches the chat's model from the turn this message starts on (for a message that
    /// waits in the queue: from when it is promoted); absent: the chat keeps its model. A
    /// model that is disabled, or whose provider is, is a 400 naming `model_config_id`.
    #[serde(default)]
    pub model_config_id: Option<Uuid>,
    /// Files the message attaches (ids from `POST /api/v1/files`, at most 10), each the
    /// caller's and, if uploaded for an organization, of this chat's. They are linked to
    /// the chat; past the chat's 50 uploads a file is left out, the message is sent
    /// without it, and `warnings` names it.
    #[serde(default)]
    pub file_ids: Vec<Uuid>,
}

/// Response of `POST .../messages`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SendMessageResponse {
    /// 201: the message started a turn.
    Started {
        /// The persisted message.
        message: Message,
        /// Files of `file_ids` the chat did not link (it already links 50 uploads); absent
        /// when none.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<FileLinkWarning>,
    },
    /// 202: a turn is running; the message waits in the queue.
    Queued {
        /// Id of the queued message.
        queued_message_id: Uuid,
        /// 1-based position.
        position: i64,
        /// As for `started`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<FileLinkWarning>,
    },
}

/// The warnings of the files a message left out at the chat's link limit.
fn link_warnings(not_linked: Vec<Uuid>) -> Vec<FileLinkWarning> {
    not_linked
        .into_iter()
        .map(FileLinkWarning::link_limit)
        .collect()
}

/// Checks a message's `file_ids` against the caller's uploads and the chat's organization.
async fn check_message_files(
    state: &ApiState,
    owner: Uuid,
    chat_id: Uuid,
    file_ids: &[Uuid],
) -> Result<(), ApiError> {
    if file_ids.is_empty() {
        return Ok(());
    }
    let chat = state
        .store
        .get_chat(chat_id, owner)
        .await
        .or_not_found("chat")?;
    super::uploads::check_file_ids(state, owner, chat.organization_id, file_ids).await
}

/// `POST /api/v1/chats/{chat_id}/messages`: 201 when it starts a turn (also the answer to
/// a plan-mode question or plan, `requires_action`), 202 when queued behind a running one,
/// 409 when 20 messages already wait.
#[utoipa::path(
    post,
    path = "/api/v1/chats/{chat_id}/messages",
    tag = "messages",
    params(ChatId),
    request_body = SendMessageRequest,
    responses(
        (status = 201, description = "The message started a turn (`status: started`).", body = SendMessageResponse),
        (status = 202, description = "A turn is running; the message waits in the chat's queue (`status: queued`).", body = SendMessageResponse),
        (status = 400, description = "A field is invalid; `validations` names it.", body = ErrorBody),
        (status = 403, description = "The caller no longer has `agents-access` in the chat's organization.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (status = 409, description = "20 messages already wait in the chat's queue, or the caller's spend limit is reached (the message says until when).", body = ErrorBody),
        (status = 429, description = "Over `messages_per_minute`; `Retry-After` says when to try again.", body = ErrorBody),
    )
)]
pub async fn send_message(
    State(state): State<ApiState>,
    WorkChat(OwnedChat { user, chat_id }): WorkChat,
    JsonBody(body): JsonBody<SendMessageRequest>,
) -> Result<Response, ApiError> {
    state.rate_limiter.check(Limit::Messages, user.id).await?;
    let text = validate_message(body.message)?;
    let busy = body.busy_behavior.unwrap_or_default();
    let mcp_server_ids = match body.mcp_server_ids {
        Some(ids) => {
            let organization = state
                .store
                .get_chat(chat_id, user.id)
                .await
                .or_not_found("chat")?
                .organization_id;
            Some(super::mcp_servers::chosen_mcp_servers(&state, ids, organization).await?)
        }
        None => None,
    };
    if let Some(model_id) = body.model_config_id {
        super::model_contexts::enabled_model(&state, "model_config_id", model_id).await?;
    }
    check_message_files(&state, user.id, chat_id, &body.file_ids).await?;
    let (outcome, not_linked) = state
        .store
        .send_message(
            chat_id,
            user.id,
            &[MessagePart::Text { text }],
            &SendOptions {
                busy,
                mcp_server_ids: mcp_server_ids.as_deref(),
                plan_mode: body.plan_mode,
                model_config_id: body.model_config_id,
                file_ids: &body.file_ids,
            },
        )
        .await
        .or_not_found("chat")?;
    Ok(match outcome {
        SendOutcome::Started { message, turn_id } => {
            announce(
                &state,
                ChatOutcome::TurnStarted {
                    chat_id,
                    message: message.clone(),
                    turn_id,
                },
            )
            .await;
            (
                StatusCode::CREATED,
                Json(SendMessageResponse::Started {
                    message,
                    warnings: link_warnings(not_linked),
                }),
            )
                .into_response()
        }
        SendOutcome::Queued {
            queued_message_id,
            position,
        } => {
            announce(&state, ChatOutcome::MessageQueued { chat_id, position }).await;
            if busy == BusyBehavior::Interrupt {
                // The queued message runs as soon as the interrupted turn stops. Nothing to
                // interrupt (the turn just ended) is fine: the message is queued either way.
                match super::interrupt::interrupt_chat(&state, user.id, chat_id).await {
                    Ok(_) | Err(ApiError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            (
                StatusCode::ACCEPTED,
                Json(SendMessageResponse::Queued {
                    queued_message_id,
                    position,
                    warnings: link_warnings(not_linked),
                }),
            )
                .into_response()
        }
    })
}

/// Body of `PATCH .../messages/{message_id}`: the new text, as when sending a message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessageRequest {
    /// The new text of the user message (required, not blank, at most 100,000
    /// characters).
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 100_000,
        pattern = "\\S"
    )]
    pub message: Option<String>,
    /// The files the new message attaches, as `file_ids` when sending; absent keeps the
    /// edited message's files, `[]` drops them.
    #[serde(default)]
    pub file_ids: Option<Vec<Uuid>>,
}

/// Response of `PATCH .../messages/{message_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EditMessageResponse {
    /// The new user message; it starts the new turn.
    pub message: Message,
    /// The edited message: it and every later message are superseded.
    pub superseded_from_message_id: Uuid,
    /// How many messages were superseded (the edited one included).
    pub superseded_messages: u64,
    /// Files of `file_ids` the chat did not link (it already links 50 uploads); absent
    /// when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FileLinkWarning>,
}

/// `PATCH /api/v1/chats/{chat_id}/messages/{message_id}`: edits a user message of an idle
/// chat. Any user message may be edited: it and every message after it are superseded
/// (kept, with `superseded_at`, but gone from what the model sees and from the default
/// list), and the new text is a new user message that starts a new turn.
#[utoipa::path(
    patch,
    path = "/api/v1/chats/{chat_id}/messages/{message_id}",
    tag = "messages",
    params(ChatAndMessageIds),
    request_body = EditMessageRequest,
    responses(
        (status = 200, description = "The message is replaced and a new turn is queued.", body = EditMessageResponse),
        (status = 400, description = "A field is invalid, or `message_id` names a message that is not the user's; `validations` names the field.", body = ErrorBody),
        (status = 403, description = "The caller no longer has `agents-access` in the chat's organization.", body = ErrorBody),
        (status = 404, description = "No such chat or message, or not the caller's.", body = ErrorBody),
        (status = 409, description = "A turn is unfinished or messages are queued, the subagent chat was closed, the message was already replaced, or the caller's spend limit is reached.", body = ErrorBody),
        (status = 429, description = "Over `messages_per_minute`; `Retry-After` says when to try again.", body = ErrorBody),
    )
)]
pub async fn edit_message(
    State(state): State<ApiState>,
    WorkChat(OwnedChat { user, chat_id }): WorkChat,
    ChatAndMessageIds(_, message_id): ChatAndMessageIds,
    JsonBody(body): JsonBody<EditMessageRequest>,
) -> Result<Json<EditMessageResponse>, ApiError> {
    // It starts a turn, as a sent message does.
    state.rate_limiter.check(Limit::Messages, user.id).await?;
    let text = validate_message(body.message)?;
    if let Some(ids) = &body.file_ids {
        check_message_files(&state, user.id, chat_id, ids).await?;
    }
    let (rewrite, not_linked) = state
        .store
        .edit_message(
            chat_id,
            user.id,
            message_id,
            &[MessagePart::Text { text }],
            body.file_ids.as_deref(),
        )
        .await
        .map_err(|e| match e {
            EditError::ChatNotFound => crate::auth::chat_not_found(),
            EditError::MessageNotFound => ApiError::NotFound("message not found".into()),
            EditError::NotUserMessage { role } => ApiError::invalid(
                "message_id",
                format!(
                    "names {} message; only the user's messages can be edited \
                     (POST /api/v1/chats/{{chat_id}}/regenerate replaces an answer)",
                    match role {
                        Role::User => "a user",
                        Role::Assistant => "an assistant",
                        Role::Tool => "a tool",
                    }
                ),
            ),
            EditError::Store(e) => e.into(),
        })?;
    let response = EditMessageResponse {
        message: rewrite
            .message
            .clone()
            .expect("an edit inserts the new user message"),
        superseded_from_message_id: message_id,
        superseded_messages: rewrite.superseded,
        warnings: link_warnings(not_linked),
    };
    announce(&state, ChatOutcome::Rewritten(rewrite)).await;
    Ok(Json(response))
}
