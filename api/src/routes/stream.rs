//! `GET /api/v1/chats/{chat_id}/stream`: Server-Sent Events from the chat's Redis stream.
//!
//! Replay, follow and resume (`Last-Event-ID`, `reset` when events after it are gone) are
//! [`crate::event_stream`]'s, shared with the chat list stream (`chat_list_events.rs`); this
//! route names the chat's stream and its `reset` (reload the messages), after checking that
//! the caller owns the chat and may still work in it ([`WorkChat`]).

use std::convert::Infallible;

use agentq_core::events::{ChatEvent, ResetReason, StreamTopic};
use axum::{
    extract::State,
    http::HeaderMap,
    response::sse::{Event, Sse},
};
use futures::Stream;

use crate::{
    ApiState,
    auth::{OwnedChat, WorkChat},
    error::{ApiError, ErrorBody},
    event_stream,
    extract::ChatId,
};

/// Opens the SSE stream of a chat the caller owns.
///
/// OpenAPI 3.1 has no vocabulary for the frames of an event stream, so the response schema
/// is `ChatEvent`, whose `event` and `data` properties are exactly each frame's `event:`
/// and `data:` lines: the server writes the frames from that type.
#[utoipa::path(
    get,
    path = "/api/v1/chats/{chat_id}/stream",
    tag = "events",
    params(
        ChatId,
        (
            "Last-Event-ID" = Option<String>,
            Header,
            nullable = false,
            pattern = "^[0-9]{1,19}-[0-9]{1,19}$",
            description = "Resume after this event id (the SSE `id` of an event received from \
                           this stream, like `1732500000000-0`). Without it the stream first \
                           replays what the chat's event stream still holds, then follows live.",
            example = "1732500000000-0"
        ),
    ),
    responses(
        (
            status = 200,
            description = "Server-Sent Events, one per chat event, until the client or the \
                server closes. Each frame has `id:` (the event id, for `Last-Event-ID`), \
                `event:` (one of `status`, `message_part`, `message`, `queue_update`, `retry`, \
                `error`, `action_required`, `messages_superseded`, `compaction`, `title`, \
                `reset`) and `data:` (that \
                event's JSON, the `data` property of the schema). Comment lines are keep-alives. \
                `message` carries a bounded preview (`truncated` says whether it is whole); \
                `messages_superseded` means an edit or a regenerate replaced every message from \
                `from_message_id` on: drop them; `compaction` means the older part of what the \
                model sees is now the summary message `summary_message_id`; `title` carries \
                the chat's generated title; `reset` means events were lost: reload the \
                messages. The server ends the stream after its maximum lifetime; reconnect with \
                `Last-Event-ID`.",
            content_type = "text/event-stream",
            body = agentq_core::events::ChatEvent
        ),
        (status = 400, description = "`chat_id` or `Last-Event-ID` is malformed.", body = ErrorBody),
        (status = 403, description = "The caller no longer has `agents-access` in the chat's organization.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (
            status = 429,
            description = "Over `stream_connects_per_minute`, or too many open streams (per user \
                or on this server); `limit` names the limit and `Retry-After` says when to try \
                again.",
            body = ErrorBody
        ),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn stream_chat(
    State(state): State<ApiState>,
    WorkChat(OwnedChat { user, chat_id }): WorkChat,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    event_stream::open(
        &state,
        user.id,
        StreamTopic::Chat(chat_id),
        &headers,
        chat_reset,
    )
    .await
}

/// A chat stream's `reset`: reload `GET /chats/{id}/messages`.
fn chat_reset(reason: ResetReason) -> (&'static str, String) {
    let reset = ChatEvent::Reset { reason };
    (reset.name(), reset.data_json())
}
