//! `/api/v1/chats`: create a chat (which starts its first turn), list and search root chats
//! (`q`, the syntax of `agentq_core::chat_query`), read one, change it (title, archive,
//! pin, labels, plan mode, instructions, reasoning level) and delete one with its subagent
//! chats.

use std::collections::BTreeMap;

use agentq_core::{
    StoreError,
    chat_query::ChatQuery,
    domain::{
        BUILTIN_TOOL_NAMES, Chat, ChatDiffStatus, ClientType, DynamicTool, FileMeta, Membership,
        MessagePart, NewChat, OrganizationRole, PlanMode, ReasoningEffort,
    },
    outcome::ChatOutcome,
    rate_limit::Limit,
    store::{ChatCreation, ChatListEntry, ChatListItem, ChatSettings, KeyedChat, MAX_PINNED_CHATS},
};
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    ApiState,
    auth::{CurrentUser, OwnedChat},
    error::{ApiError, ErrorBody, OrNotFound, refuse_control_chars},
    extract::{ChatId, JsonBody, QueryParams},
    idempotency_key::{self, KeyedJsonBody},
};

/// Longest accepted message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;
/// Longest accepted title, in characters.
const MAX_TITLE_CHARS: usize = 200;

/// Body of `POST /api/v1/chats`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChatRequest {
    /// The first user message (required, not blank).
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 100_000,
        pattern = "\\S"
    )]
    pub message: Option<String>,
    /// Title; derived from the message when absent.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub title: Option<String>,
    /// `ui` or `api` (default).
    #[serde(default)]
    pub client_type: Option<ClientType>,
    /// Organization, one the caller is a member of with the `agents-access` role; absent:
    /// the caller's only organization with that role (a 400 when there are several).
    #[serde(default)]
    pub organization_id: Option<Uuid>,
    /// Tools the client runs itself; calls to them put the chat in `requires_action`.
    #[serde(default)]
    pub dynamic_tools: Vec<DynamicTool>,
    /// A model from `/api/v1/admin/models`; absent: the default model.
    #[serde(default)]
    pub model_config_id: Option<Uuid>,
    /// Key/value labels (at most 50; keys 1-64 characters without `=`, values up to 256;
    /// no control characters in either), searchable with `label:k=v`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Instructions for this chat, added to the system message after the site's and the
    /// caller's own (at most 32 KiB; absent or empty: none).
    #[serde(default)]
    #[schema(max_length = 32768)]
    pub instructions: Option<String>,
    /// MCP servers this chat chooses (ids from `/api/v1/mcp-servers`, at most 64). Absent:
    /// the `default_on` servers; a list replaces them (`[]` opts out of all). `force_on`
    /// servers apply either way.
    #[serde(default)]
    pub mcp_server_ids: Option<Vec<Uuid>>,
    /// `plan` starts the chat in plan mode: its turns may only investigate, ask the user
    /// (`ask_user_question`) and propose a plan (`propose_plan`); absent or `null`: normal.
    #[serde(default)]
    pub plan_mode: Option<PlanMode>,
    /// `low`, `medium` or `high`: how hard the model reasons in this chat, overriding the
    /// model's `reasoning_effort` (OpenAI `reasoning_effort`, Anthropic `thinking`); absent
    /// or `null`: the model's.
    #[serde(default)]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Files the first message attaches (ids from `POST /api/v1/files`, at most 10): each
    /// must be the caller's, and a file uploaded for an organization must be this chat's.
    /// They are linked to the chat and sent to the model with the message.
    #[serde(default)]
    pub file_ids: Vec<Uuid>,
}

/// Most client-defined tools per chat.
const MAX_DYNAMIC_TOOLS: usize = 64;
/// Largest client-defined tool, as JSON: every tool definition is sent to the model on
/// every step of every turn, so its size is paid for again and again.
pub const MAX_DYNAMIC_TOOL_BYTES: usize = 32 * 1024;
/// Largest total of a chat's client-defined tools, as JSON.
pub const MAX_DYNAMIC_TOOLS_BYTES: usize = 128 * 1024;
/// Most labels per chat.
const MAX_LABELS: usize = 50;
/// Longest label key, in characters.
const MAX_LABEL_KEY_CHARS: usize = 64;
/// Longest label value, in characters.
const MAX_LABEL_VALUE_CHARS: usize = 256;

fn validate_title(title: &str) -> Result<(), ApiError> {
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::invalid(
            "title",
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    refuse_control_chars("title", title)
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid(
            "labels",
            format!("must hold at most {MAX_LABELS} labels"),
        ));
    }
    for (key, value) in labels {
        // A bad key is named by the object, not echoed into the field path.
        let key_len = key.chars().count();
        if key_len == 0 || key_len > MAX_LABEL_KEY_CHARS || key.contains('=') {
            return Err(ApiError::invalid(
                "labels",
                format!("keys must be 1-{MAX_LABEL_KEY_CHARS} characters without `=`"),
            ));
        }
        refuse_control_chars("labels", key)?;
        let field = format!("labels.{key}");
        if value.chars().count() > MAX_LABEL_VALUE_CHARS {
            return Err(ApiError::invalid(
                field,
                format!("must be at most {MAX_LABEL_VALUE_CHARS} characters"),
            ));
        }
        refuse_control_chars(&field, value)?;
    }
    Ok(())
}

/// Bytes `value` takes as JSON, without building the text.
pub(crate) fn json_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and these values serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Names a model accepts: what OpenAI and Anthropic both allow.
fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_dynamic_tools(tools: &[DynamicTool]) -> Result<(), ApiError> {
    if tools.len() > MAX_DYNAMIC_TOOLS {
        return Err(ApiError::invalid(
            "dynamic_tools",
            format!("must hold at most {MAX_DYNAMIC_TOOLS} tools"),
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut total = 0;
    for (i, tool) in tools.iter().enumerate() {
        let bytes = json_len(tool);
        if bytes > MAX_DYNAMIC_TOOL_BYTES {
            return Err(ApiError::invalid(
                format!("dynamic_tools[{i}]"),
                format!(
                    "is {bytes} bytes as JSON; a tool definition may take at most {MAX_DYNAMIC_TOOL_BYTES}"
                ),
            ));
        }
        total += bytes;
        if total > MAX_DYNAMIC_TOOLS_BYTES {
            return Err(ApiError::invalid(
                "dynamic_tools",
                format!(
                    "take more than {MAX_DYNAMIC_TOOLS_BYTES} bytes as JSON together; send fewer or smaller tools"
                ),
            ));
        }
        if !valid_tool_name(&tool.name) {
            return Err(ApiError::invalid(
                format!("dynamic_tools[{i}].name"),
                "must be 1-64 characters of letters, digits, `_` or `-`",
            ));
        }
        if BUILTIN_TOOL_NAMES.contains(&tool.name.as_str()) {
            return Err(ApiError::invalid(
                format!("dynamic_tools[{i}].name"),
                format!("`{}` is the name of a builtin tool", tool.name),
            ));
        }
        if !names.insert(tool.name.as_str()) {
            return Err(ApiError::invalid(
                format!("dynamic_tools[{i}].name"),
                format!("`{}` is defined twice", tool.name),
            ));
        }
        if tool.input_schema.get("type").and_then(|t| t.as_str()) != Some("object") {
            return Err(ApiError::invalid(
                format!("dynamic_tools[{i}].input_schema"),
                "must be a JSON Schema object with `\"type\": \"object\"`",
            ));
        }
    }
    Ok(())
}

/// `POST /api/v1/chats` -> 201 with the chat; its first turn is queued. With an
/// `Idempotency-Key` the owner already used, nothing is made: 201 with that key's chat as
/// it is now, and `Idempotent-Replayed: true` (`crate::idempotency_key`).
#[utoipa::path(
    post,
    path = "/api/v1/chats",
    tag = "chats",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255, pattern = "^[!-~]{1,255}$",
         description = "Makes a retried create safe: the first request with this key makes the chat; a later one with the same key and body makes nothing and answers with that chat (`Idempotent-Replayed: true`). Unique among the caller's chats while the chat exists; 1 to 255 visible ASCII characters, a UUID say. The same key with a different body is a 400 naming the header."),
    ),
    request_body = CreateChatRequest,
    responses(
        (status = 201, description = "The chat; its first turn is queued. A replay (an `Idempotency-Key` already used) answers with the key's chat as it is now and `Idempotent-Replayed: true`.", body = Chat,
         headers(("Idempotent-Replayed" = String, description = "`true` when the chat was made by an earlier request with this `Idempotency-Key`."))),
        (status = 400, description = "A field is invalid; `validations` names it (`organization_id` names no organization of the caller's; an MCP server of another organization; `Idempotency-Key` malformed, or used before with a different body).", body = ErrorBody),
        (status = 403, description = "No `agents-access` role in the organization (the message names it), a token without `chat:create`, or the account is not active.", body = ErrorBody),
        (status = 409, description = "The caller's spend limit is reached; the message says what was spent of what, and when the period resets. Or the chat of the `Idempotency-Key` was being deleted as the create looked for it: try again.", body = ErrorBody),
        (status = 429, description = "Over `chats_per_minute`; `Retry-After` says when to try again.", body = ErrorBody),
    )
)]
pub async fn create_chat(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    KeyedJsonBody {
        body,
        key: idempotency,
    }: KeyedJsonBody<CreateChatRequest>,
) -> Result<Response, ApiError> {
    state.rate_limiter.check(Limit::Chats, user.id).await?;
    // A retry whose first try made the chat is answered before the request's other checks:
    // what the first try passed (a spend limit since reached, a file since deleted) must
    // not turn its chat into an error now. (The rate limit still counts it.)
    if let Some(key) = &idempotency
        && let Some(replayed) = state.store.idempotent_chat(user.id, key).await?
    {
        return replay(replayed);
    }
    let text = validate_message(body.message)?;
    let title = body.title.unwrap_or_default();
    validate_title(&title)?;
    validate_labels(&body.labels)?;
    validate_dynamic_tools(&body.dynamic_tools)?;
    let instructions = super::instructions::chat_instructions(body.instructions)?;
    let organization_id = chat_organization(&state, user.id, body.organization_id).await?;
    super::uploads::check_file_ids(&state, user.id, organization_id, &body.file_ids).await?;
    let mcp_server_ids = match body.mcp_server_ids {
        Some(ids) => {
            Some(super::mcp_servers::chosen_mcp_servers(&state, ids, organization_id).await?)
        }
        None => None,
    };
    if let Some(model_id) = body.model_config_id {
        super::model_contexts::enabled_model(&state, "model_config_id", model_id).await?;
    }
    check_spend_limit(&state, user.id).await?;
    let created = state
        .store
        .create_chat(NewChat {
            owner_id: user.id,
            organization_id,
            title,
            client_type: body.client_type.unwrap_or_default(),
            first_message: vec![MessagePart::Text { text }],
            file_ids: body.file_ids,
            dynamic_tools: body.dynamic_tools,
            model_config_id: body.model_config_id,
            labels: body.labels,
            instructions,
            mcp_server_ids,
            plan_mode: body.plan_mode,
            reasoning_effort: body.reasoning_effort,
            spend_checked: true,
            idempotency,
        })
        .await?;
    match created {
        ChatCreation::Created {
            chat,
            message,
            turn_id,
        } => {
            announce(
                &state,
                ChatOutcome::Created {
                    chat_id: chat.id,
                    message,
                    turn_id,
                    list_entry: ChatListEntry::of_root_chat(&chat).map(Box::new),
                },
            )
            .await;
            Ok((StatusCode::CREATED, Json(chat)).into_response())
        }
        ChatCreation::Replayed(found) => replay(found),
    }
}

/// The answer to a create whose `Idempotency-Key` an earlier try made a chat with: 201 with
/// that chat, or a 400 when the earlier try's request was a different one. (The first
/// try's turn was queued with its chat; if its job was lost with that try, recovery sends
/// it again.)
fn replay(found: KeyedChat) -> Result<Response, ApiError> {
    if !found.same_request {
        return Err(idempotency_key::reused());
    }
    Ok((
        StatusCode::CREATED,
        [(idempotency_key::REPLAYED, idempotency_key::REPLAYED_TRUE)],
        Json(found.chat),
    )
        .into_response())
}

/// 409 when the caller has reached their spend limit. That no limit applies to them is
/// kept (§11.3): most users have none, and a new chat then reads nothing for it.
async fn check_spend_limit(state: &ApiState, user: Uuid) -> Result<(), ApiError> {
    if state.access.unlimited(user) {
        return Ok(());
    }
    let start = state.access.read_start();
    if !state.store.check_spend_limit(user).await? {
        state.access.keep_unlimited(start, user);
    }
    Ok(())
}

/// The organization a new chat goes in: the one asked for, which must be one of the
/// caller's (400 naming `organization_id` otherwise: one they are not in may as well not
/// exist) where they hold `agents-access` (403 naming the role otherwise); absent, their
/// only organization with `agents-access`.
async fn chat_organization(
    state: &ApiState,
    user: Uuid,
    requested: Option<Uuid>,
) -> Result<Uuid, ApiError> {
    let memberships = match state.access.memberships(user) {
        Some(kept) => kept,
        None => {
            let start = state.access.read_start();
            let read = state.store.user_memberships(user).await?;
            state.access.keep_memberships(start, user, &read);
            read
        }
    };
    let has_access = |m: &&Membership| {
        m.roles
            .iter()
            .any(|r| r == OrganizationRole::AgentsAccess.as_str())
    };
    if let Some(id) = requested {
        return match memberships.iter().find(|m| m.organization_id == id) {
            None => Err(ApiError::invalid(
                "organization_id",
                "names no organization you are a member of",
            )),
            Some(m) if has_access(&m) => Ok(id),
            Some(m) => Err(ApiError::Forbidden(format!(
                "you need the `agents-access` role in the organization `{}` to create chats \
                 there; an organization admin can grant it",
                m.organization_name
            ))),
        };
    }
    let with_access: Vec<&Membership> = memberships.iter().filter(has_access).collect();
    match with_access.as_slice() {
        [only] => Ok(only.organization_id),
        [] => Err(ApiError::Forbidden(
            "you need the `agents-access` role in an organization to create chats; an \
             organization admin can grant it"
                .into(),
        )),
        _ => Err(ApiError::invalid(
            "organization_id",
            "is required: you have `agents-access` in several organizations",
        )),
    }
}

/// Publishes a committed change's events and enqueues its jobs (ARCHITECTURE.md §8). A
/// Redis failure is logged, not returned: the change is safe in PostgreSQL and recovery
/// enqueues its jobs (ARCHITECTURE.md §7).
pub(crate) async fn announce(state: &ApiState, outcome: ChatOutcome) {
    if let Err(e) = outcome.announce(&state.events, &state.producer).await {
        tracing::warn!(chat.id = ?outcome.chat_id(), error = %e, "could not enqueue the follow-up job; recovery will");
    }
}

/// The text of a message field: present, not blank, not too long. (U+0000 is welcome: the
/// store writes it as U+FFFD.)
pub(crate) fn validate_message(message: Option<String>) -> Result<String, ApiError> {
    let text = message.ok_or_else(|| ApiError::invalid("message", "is required"))?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid("message", "must not be empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::invalid(
            "message",
            format!("must be at most {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(text)
}

/// Query of `GET /api/v1/chats`; any other parameter is a 400 naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListChatsQuery {
    /// A search: space-separated `key:value` terms, all of which a chat must match; a
    /// value holding spaces is quoted (`title:"fix the bug"`, `\"` and `\\` inside).
    /// Keys: `title` (text in the title, case-insensitive), `archived` (`true`, `false`
    /// (the default), `any`), `status` (comma-separated chat statuses, any of them), `pr`
    /// (a pull request number), `repo` (text in the git remote origin or the PR URL,
    /// case-insensitive), `pr_title` (text in the PR title, case-insensitive), `pr_status`
    /// (`draft`, `open`, `merged`, `closed`, `none`), `client_type` (`ui`, `api`), `label`
    /// (`key=value`). `pr`, `repo`, `pr_title` and `pr_status` (but `none`) match only chats
    /// with a diff status. At most 1,024 characters and 32 terms; a bad term is a 400
    /// naming it and its position.
    #[param(
        max_length = 1024,
        example = "title:\"fix the bug\" status:error,requires_action"
    )]
    pub q: Option<String>,
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The last chat id of the previous page (`next_after_id`); send the same `q`.
    pub after_id: Option<Uuid>,
}

/// A page of chats.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatList {
    /// Root chats, pinned first (by `pin_order`), then most recently updated, each with
    /// its subagent chats in `children`.
    pub chats: Vec<ChatListItem>,
    /// Cursor for the next page, absent on the last one.
    pub next_after_id: Option<Uuid>,
}

/// `GET /api/v1/chats`: the caller's root chats that match `q`.
#[utoipa::path(
    get,
    path = "/api/v1/chats",
    tag = "chats",
    params(ListChatsQuery),
    responses(
        (status = 200, description = "Root chats matching `q` (not archived ones when `q` says nothing of `archived`), pinned first, then most recently updated, with their subagent chats.", body = ChatList),
        (status = 400, description = "A query parameter is invalid or unknown; a bad `q` names the term and its position.", body = ErrorBody),
    )
)]
pub async fn list_chats(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    QueryParams(query): QueryParams<ListChatsQuery>,
) -> Result<Json<ChatList>, ApiError> {
    let limit = page_limit(query.limit, 50, 100)?;
    let search = ChatQuery::parse(query.q.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::invalid("q", e.to_string()))?;
    let page = state
        .store
        .list_root_chats(user.id, &search, limit, query.after_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::invalid(
                "after_id",
                "names no chat of yours in the list (deleted since?); list again from the start",
            ),
            other => other.into(),
        })?;
    Ok(Json(ChatList {
        chats: page.chats,
        next_after_id: page.next_after_id,
    }))
}

/// Validates a `limit` query parameter.
pub(crate) fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}

/// Body of `GET /api/v1/chats/{chat_id}`: the chat and where its work stands in git.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatDetail {
    /// The chat.
    #[serde(flatten)]
    pub chat: Chat,
    /// The diff status an integration reported (`PUT .../diff-status`), as the refresher
    /// last brought it up to date; `null` when none was reported.
    pub diff_status: Option<ChatDiffStatus>,
    /// The files the chat links, without content, newest first (at most 200): uploads its
    /// messages attached (`kind: file`, at most 50) and plans it proposed (`kind: plan`).
    /// `GET /api/v1/files/{id}` reads one.
    pub files: Vec<FileMeta>,
}

/// `GET /api/v1/chats/{chat_id}`.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 200, description = "The chat, with its diff status and its files.", body = ChatDetail),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
    )
)]
pub async fn get_chat(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    ChatId(id): ChatId,
) -> Result<Json<ChatDetail>, ApiError> {
    let chat = state
        .store
        .get_chat(id, user.id)
        .await
        .or_not_found("chat")?;
    let diff_status = state.store.chat_diff_status(chat.id).await?;
    let files = state.store.chat_file_metas(chat.id).await?;
    Ok(Json(ChatDetail {
        chat,
        diff_status,
        files,
    }))
}

/// Body of `PATCH /api/v1/chats/{chat_id}`: at least one field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateChatRequest {
    /// `false` restores an archived chat (and its subagent chats) before chat retention
    /// deletes it; `true` archives it now.
    #[serde(default)]
    #[schema(nullable = false)]
    pub archived: Option<bool>,
    /// `plan` enters plan mode, `null` leaves it, from the next step of a turn on; absent:
    /// unchanged.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<PlanMode>)]
    pub plan_mode: Option<Option<PlanMode>>,
    /// The chat's own instructions (as on create: at most 32 KiB); `null` or `""` removes
    /// them; absent: unchanged. They apply from the next step on.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<String>, max_length = 32768)]
    pub instructions: Option<Option<String>>,
    /// A new title (at most 200 characters, no control characters); a title set here is
    /// the user's and is never replaced by a generated one.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub title: Option<String>,
    /// `low`, `medium` or `high` overrides the model's reasoning level from the next step
    /// on; `null` goes back to the model's; absent: unchanged.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<ReasoningEffort>)]
    pub reasoning_effort: Option<Option<ReasoningEffort>>,
    /// Pins a root chat at this position among your pinned chats (1 first; the others
    /// move down to make room; past the end: last), or moves a pinned one there; `0` or
    /// `null` unpins it; absent: unchanged. At most 100 pinned chats.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 100)]
    pub pin_order: Option<Option<i32>>,
    /// New labels, replacing all the old ones (`{}` or `null` removes them); as on create:
    /// at most 50, keys 1-64 characters without `=`, values at most 256, no control
    /// characters. Absent: unchanged.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub labels: Option<Option<BTreeMap<String, String>>>,
    /// The chat's model from its next step on; `null` lets the resolution order choose
    /// (the owner's override, the site's model for the context, the default model). A
    /// disabled model, or one whose provider is disabled, is a 400.
    #[serde(default, deserialize_with = "super::admin::present")]
    #[schema(value_type = Option<Uuid>)]
    pub model_config_id: Option<Option<Uuid>>,
}

/// `PATCH /api/v1/chats/{chat_id}`: rename, archive or restore, pin, unpin or move, label a
/// chat, enter or leave plan mode, change its instructions or reasoning level; all in one
/// transaction.
#[utoipa::path(
    patch,
    path = "/api/v1/chats/{chat_id}",
    tag = "chats",
    params(ChatId),
    request_body = UpdateChatRequest,
    responses(
        (status = 200, description = "The chat as updated.", body = Chat),
        (status = 400, description = "No field was sent, a field is invalid (`validations` names it), or an unknown field was sent.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (status = 409, description = "A subagent chat is archived, restored and pinned with its root; 100 chats are pinned already.", body = ErrorBody),
    )
)]
pub async fn update_chat(
    State(state): State<ApiState>,
    // Ownership before the body: someone else's chat is a 404 whatever they send.
    OwnedChat { user, chat_id: id }: OwnedChat,
    JsonBody(body): JsonBody<UpdateChatRequest>,
) -> Result<Json<Chat>, ApiError> {
    if body.archived.is_none()
        && body.plan_mode.is_none()
        && body.instructions.is_none()
        && body.title.is_none()
        && body.reasoning_effort.is_none()
        && body.pin_order.is_none()
        && body.labels.is_none()
        && body.model_config_id.is_none()
    {
        return Err(ApiError::invalid(
            "archived",
            "is required unless `title`, `pin_order`, `labels`, `plan_mode`, `instructions`, `reasoning_effort` or `model_config_id` is sent (send at least one)",
        ));
    }
    let pin_order = match body.pin_order {
        None => None,
        Some(None | Some(0)) => Some(None),
        Some(Some(n)) if (1..=MAX_PINNED_CHATS).contains(&i64::from(n)) => Some(Some(n)),
        Some(Some(_)) => {
            return Err(ApiError::invalid(
                "pin_order",
                format!("must be a position from 1 to {MAX_PINNED_CHATS}, or 0 or null to unpin"),
            ));
        }
    };
    let labels = body.labels.map(Option::unwrap_or_default);
    if let Some(labels) = &labels {
        validate_labels(labels)?;
    }
    if let Some(Some(model_id)) = body.model_config_id {
        super::model_contexts::enabled_model(&state, "model_config_id", model_id).await?;
    }
    let title = match body.title {
        Some(title) => {
            let title = crate::error::trimmed("title", &title)?.to_owned();
            if title.is_empty() {
                return Err(ApiError::invalid("title", "must not be blank"));
            }
            validate_title(&title)?;
            Some(title)
        }
        None => None,
    };
    let settings = ChatSettings {
        plan_mode: body.plan_mode,
        instructions: match body.instructions {
            Some(text) => Some(super::instructions::chat_instructions(text)?),
            None => None,
        },
        archived: body.archived,
        title,
        reasoning_effort: body.reasoning_effort,
        pin_order,
        labels,
        model_config_id: body.model_config_id,
    };
    // One transaction: a refused part (a subagent chat archived, pinned or put in plan mode
    // on its own, one pin too many) changes nothing.
    let update = state
        .store
        .update_chat_settings(id, user.id, &settings)
        .await
        .or_not_found("chat")?;
    let chat_ids = std::iter::once(update.chat.id)
        .chain(update.repositioned)
        .collect();
    announce(&state, ChatOutcome::Organized { chat_ids }).await;
    Ok(Json(update.chat))
}

/// `DELETE /api/v1/chats/{chat_id}`: deletes a root chat for good, with its subagent chats.
#[utoipa::path(
    delete,
    path = "/api/v1/chats/{chat_id}",
    tag = "chats",
    params(ChatId),
    responses(
        (status = 204, description = "Deleted, with its subagent chats, their messages, turns, tool calls, queued messages, debug runs, diff status and event streams, and the files no other chat links."),
        (status = 400, description = "`chat_id` is not a UUID.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (status = 409, description = "A turn of the chat or of one of its subagent chats is in progress (interrupt it, then delete), or the chat is a subagent chat (deleted with its root).", body = ErrorBody),
    )
)]
pub async fn delete_chat(
    State(state): State<ApiState>,
    OwnedChat { user, chat_id }: OwnedChat,
) -> Result<StatusCode, ApiError> {
    let chat_ids = state
        .store
        .delete_chat(chat_id, user.id)
        .await
        .or_not_found("chat")?;
    announce(
        &state,
        ChatOutcome::Deleted {
            owner_id: user.id,
            chat_ids,
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
