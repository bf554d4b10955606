//! `GET /api/v1/chats/events`: the caller's chat list, live (issue #14 item 5;
//! ARCHITECTURE.md §8.2). A sidebar loads `GET /chats` once, then applies these events:
//! `created` and `updated` carry a chat's whole list entry, `deleted` its id; subagent
//! chats come too, with `root_chat_id` naming the root they are listed under.
//!
//! The stream is the owner's list stream in Redis (written by every process's chat list
//! announcer, `agentq_core::events::chat_list_feed`); replay, follow, resume and their
//! limits are [`crate::event_stream`]'s, the same as a chat's stream. Only the caller's own
//! chats are on it, since the stream is keyed by the caller's id: there is nothing to
//! filter. Access is that of `GET /chats` (an active user's token): it shows what the list
//! shows and starts no work.

use std::convert::Infallible;

use agentq_core::events::{ChatListEvent, ResetReason, StreamTopic};
use axum::{
    extract::State,
    http::HeaderMap,
    response::sse::{Event, Sse},
};
use futures::Stream;

use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody},
    event_stream,
};

/// Opens the SSE stream of the caller's chat list changes.
///
/// As for the chat stream, the response schema is `ChatListEvent`, whose `event` and `data`
/// properties are exactly each frame's `event:` and `data:` lines.
#[utoipa::path(
    get,
    path = "/api/v1/chats/events",
    tag = "events",
    params(
        (
            "Last-Event-ID" = Option<String>,
            Header,
            nullable = false,
            pattern = "^[0-9]{1,19}-[0-9]{1,19}$",
            description = "Resume after this event id (the SSE `id` of an event received from \
                           this stream, like `1732500000000-0`). Without it the stream first \
                           replays what the caller's list stream still holds (up to a day of \
                           changes), then follows live.",
            example = "1732500000000-0"
        ),
    ),
    responses(
        (
            status = 200,
            description = "Server-Sent Events, one per change of one of the caller's chats, \
                until the client or the server closes. Each frame has `id:` (for \
                `Last-Event-ID`), `event:` (`created`, `updated`, `deleted` or `reset`) and \
                `data:` (that event's JSON, the `data` property of the schema). `created` and \
                `updated` carry the chat's whole list entry as it is now (status, title, \
                archive state, pin position, labels, activity; subagent chats with \
                `root_chat_id`): replace the entry shown, unless it has a later `updated_at`. \
                `deleted` names a deleted chat (a root chat first, then its subagent chats); \
                it stays deleted: ignore a later entry of its id (processes announce \
                independently). \
                `reset` means events were lost: reload `GET /api/v1/chats`. Comment lines are \
                keep-alives. The server ends the stream after its maximum lifetime; reconnect \
                with `Last-Event-ID`.",
            content_type = "text/event-stream",
            body = agentq_core::events::ChatListEvent
        ),
        (status = 400, description = "`Last-Event-ID` is malformed.", body = ErrorBody),
        (status = 401, description = "No valid token.", body = ErrorBody),
        (
            status = 429,
            description = "Over `stream_connects_per_minute`, or too many open streams (per user \
                or on this server; chat streams and this one count together); `limit` names \
                the limit and `Retry-After` says when to try again.",
            body = ErrorBody
        ),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn stream_chat_list(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    event_stream::open(
        &state,
        user.id,
        StreamTopic::ChatList { owner_id: user.id },
        &headers,
        list_reset,
    )
    .await
}

/// A list stream's `reset`: reload `GET /chats`.
fn list_reset(reason: ResetReason) -> (&'static str, String) {
    ChatListEvent::Reset { reason }.encode(usize::MAX)
}
