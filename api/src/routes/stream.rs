//! `GET /api/v1/chats/{chat_id}/stream`: Server-Sent Events from the chat's Redis stream.
//!
//! Without `Last-Event-ID` it replays what the stream still holds, then follows live, so a
//! client connecting right after `POST /chats` misses nothing. With it, it resumes after
//! that id without repeats. Works through any API replica: the state is in Redis.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use agentq_core::{
    events::{EventReader, StoredEvent},
    rate_limit::Limit,
    redis_conn,
};
use axum::{
    extract::State,
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::{Stream, StreamExt};

use super::chats::chat_not_found;
use crate::{
    ApiState,
    auth::{CurrentUser, require_work_access},
    error::{ApiError, ErrorBody},
    extract::ChatId,
    keepalive,
};

/// How long one `XREAD` blocks before it is issued again.
const FOLLOW_BLOCK: Duration = Duration::from_secs(10);

struct Cursor {
    _open: OpenStream,
    reader: EventReader,
    last_id: Option<String>,
    buffered: VecDeque<StoredEvent>,
    replaying: bool,
    backoff: Duration,
}

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
                `error`, `action_required`) and `data:` (that event's JSON, the `data` \
                property of the schema). Comment lines are keep-alives.",
            content_type = "text/event-stream",
            body = agentq_core::events::ChatEvent
        ),
        (status = 400, description = "`chat_id` or `Last-Event-ID` is malformed.", body = ErrorBody),
        (status = 403, description = "The caller no longer has `agents-access` in the chat's organization.", body = ErrorBody),
        (status = 404, description = "No such chat, or not the caller's.", body = ErrorBody),
        (status = 429, description = "Over `stream_connects_per_minute`; `Retry-After` says when to try again.", body = ErrorBody),
        (status = 503, description = "Redis is not reachable.", body = ErrorBody),
    )
)]
pub async fn stream_chat(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    ChatId(chat_id): ChatId,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    require_work_access(&state, &user, chat_id).await?;
    state
        .rate_limiter
        .check(Limit::StreamConnects, user.id)
        .await?;
    state
        .store
        .get_chat(chat_id, user.id)
        .await
        .map_err(chat_not_found)?;
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => {
            let id = v.to_str().unwrap_or_default().trim().to_owned();
            if !is_stream_id(&id) {
                return Err(ApiError::invalid(
                    "Last-Event-ID",
                    "must be an event id received from this stream (like 1732500000000-0)",
                ));
            }
            Some(id)
        }
    };
    let conn = redis_conn::blocking(&state.redis)
        .map_err(|e| ApiError::Unavailable(format!("Redis: {e}")))?;
    let cursor = Cursor {
        _open: OpenStream::new(),
        reader: EventReader::new(conn, &state.prefix, chat_id),
        last_id,
        buffered: VecDeque::new(),
        replaying: true,
        backoff: Duration::ZERO,
    };
    // Streams end when the server shuts down, so graceful shutdown does not wait on clients
    // that would follow forever; they reconnect to another replica with Last-Event-ID.
    let events = futures::stream::unfold(cursor, next_event)
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keepalive(&state.config))))
}

async fn next_event(mut c: Cursor) -> Option<(Result<Event, Infallible>, Cursor)> {
    loop {
        if let Some(e) = c.buffered.pop_front() {
            c.last_id = Some(e.id.clone());
            let event = Event::default().id(e.id).event(e.name).data(e.data);
            return Some((Ok(event), c));
        }
        let read = if c.replaying {
            c.reader
                .replay(c.last_id.as_deref(), 500)
                .await
                // A short page means the replay reached the live end.
                .inspect(|events| c.replaying = events.len() == 500)
        } else {
            let after = c.last_id.clone().unwrap_or_else(|| "0-0".into());
            c.reader.follow(&after, FOLLOW_BLOCK, 500).await
        };
        match read {
            Ok(events) => {
                c.backoff = Duration::ZERO;
                c.buffered.extend(events);
            }
            Err(e) => {
                // Redis blipped: keep the client connected (keep-alives flow) and retry.
                c.backoff =
                    (c.backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                tracing::debug!(error = %e, "reading chat events failed; retrying");
                tokio::time::sleep(c.backoff).await;
            }
        }
    }
}

/// Counts an open SSE stream in `agentq_sse_streams_open` for as long as it lives.
struct OpenStream;

impl OpenStream {
    fn new() -> Self {
        agentq_core::metrics::sse_streams(1.0);
        OpenStream
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        agentq_core::metrics::sse_streams(-1.0);
    }
}

/// `<ms>-<seq>`, the form of Redis stream ids.
fn is_stream_id(id: &str) -> bool {
    match id.split_once('-') {
        Some((ms, seq)) => {
            !ms.is_empty()
                && !seq.is_empty()
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}
