//! `GET /api/v1/chats/{chat_id}/stream`: Server-Sent Events from the chat's Redis stream.
//!
//! Without `Last-Event-ID` it replays what the stream still holds, then follows live, so a
//! client connecting right after `POST /chats` misses nothing. With it, it resumes after
//! that id without repeats, or, when events after that id were trimmed or expired, first
//! sends `reset` (reload the messages) and goes on from the stream's end. Works through any
//! API replica: the state is in Redis.
//!
//! A stream is a [`Cursor`]: it joins the process's shared reader ([`EventHub`]) first, then
//! replays from Redis in pages bounded in count and bytes, then takes live events from its
//! subscription, dropping ids it already sent. If it lags behind the shared reader it goes
//! back to Redis from its last id, the same way. Each stream holds a slot of
//! [`crate::open_streams`] and ends after `--sse-max-lifetime-secs`, so a client reconnects
//! (with `Last-Event-ID`) and its access is checked again.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use agentq_core::{
    events::{
        ChatEvent, EventHub, ResetReason, Subscription,
        history::{self, REPLAY_PAGE, StreamId},
        hub::Delivery,
    },
    rate_limit::Limit,
};
use axum::{
    extract::State,
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::{Stream, StreamExt};
use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::{
    ApiState,
    auth::{OwnedChat, WorkChat},
    error::{ApiError, ErrorBody},
    extract::ChatId,
    keepalive,
    open_streams::OpenStream,
};

/// One SSE stream's position and what it has read but not yet sent.
struct Cursor {
    _slot: OpenStream,
    hub: EventHub,
    conn: ConnectionManager,
    key: String,
    chat_id: Uuid,
    /// The last event sent (or the client's `Last-Event-ID`); `None`: from the start.
    last_id: Option<StreamId>,
    /// Events read, in order, not yet sent (at most one replay page).
    buffered: VecDeque<(StreamId, Event)>,
    /// The live feed; `None` until joined, and again after lagging.
    subscription: Option<Subscription>,
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
    state
        .rate_limiter
        .check(Limit::StreamConnects, user.id)
        .await?;
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => {
            let id = v.to_str().unwrap_or_default().trim();
            match StreamId::parse(id) {
                Some(id) => Some(id),
                None => {
                    return Err(ApiError::invalid(
                        "Last-Event-ID",
                        "must be an event id received from this stream (like 1732500000000-0)",
                    ));
                }
            }
        }
    };
    let slot = state.open_streams.open(user.id)?;
    let cursor = Cursor {
        _slot: slot,
        hub: state.hub.clone(),
        conn: state.redis_conn.clone(),
        key: agentq_core::queue::chat_events_key(&state.prefix, chat_id),
        chat_id,
        last_id,
        buffered: VecDeque::new(),
        subscription: None,
        replaying: true,
        backoff: Duration::ZERO,
    };
    let lifetime = stream_lifetime(state.config.sse_max_lifetime_secs);
    let expiry = async move {
        match lifetime {
            None => std::future::pending().await,
            Some(lifetime) => tokio::time::sleep(lifetime).await,
        }
    };
    // Streams end when the server shuts down, so graceful shutdown does not wait on clients
    // that would follow forever; they reconnect to another replica with Last-Event-ID.
    let events = futures::stream::unfold(cursor, next_event)
        .take_until(state.shutdown.clone().cancelled_owned())
        .take_until(expiry);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keepalive(&state.config))))
}

async fn next_event(mut c: Cursor) -> Option<(Result<Event, Infallible>, Cursor)> {
    loop {
        if let Some((id, event)) = c.buffered.pop_front() {
            c.last_id = Some(id);
            return Some((Ok(event), c));
        }
        // Joining and replaying are boxed: their Redis futures are large, and inline they
        // would sit in every idle stream's state for the whole life of the stream.
        let step = match (&mut c.subscription, c.replaying) {
            (None, _) => Box::pin(c.join()).await,
            (Some(_), true) => Box::pin(c.replay_page()).await,
            (Some(subscription), false) => {
                match subscription.recv().await {
                    Delivery::Event(e) => {
                        let after = c.last_id.unwrap_or(StreamId::ZERO);
                        if let Some(id) = StreamId::parse(&e.id).filter(|id| *id > after) {
                            c.buffered.push_back((id, frame(&e.id, &e.name, &e.data)));
                        }
                    }
                    Delivery::Lagged => {
                        // Too slow for the shared reader: catch up from Redis, then rejoin.
                        c.subscription = None;
                    }
                }
                Ok(())
            }
        };
        match step {
            Ok(()) => c.backoff = Duration::ZERO,
            Err(e) => {
                // Redis blipped: keep the client connected (keep-alives flow) and retry.
                c.backoff =
                    agentq_core::redis_conn::next_backoff(c.backoff, Duration::from_millis(100));
                tracing::debug!(error = %e, "reading chat events failed; retrying");
                tokio::time::sleep(c.backoff).await;
            }
        }
    }
}

impl Cursor {
    /// Joins the shared reader at the stream's end, after a `reset` if events after the
    /// resume point are gone; the replay that follows covers everything before.
    async fn join(&mut self) -> redis::RedisResult<()> {
        let position = history::position(&mut self.conn, &self.key).await?;
        if let Some(last) = self.last_id
            && position.loses_events_after(last)
        {
            let reason = if position.exists {
                ResetReason::Trimmed
            } else {
                ResetReason::Expired
            };
            agentq_core::metrics::sse_reset(match reason {
                ResetReason::Trimmed => "trimmed",
                ResetReason::Expired => "expired",
            });
            let reset = ChatEvent::Reset { reason };
            let id = position.last_id;
            self.buffered
                .push_back((id, frame(&id.to_string(), reset.name(), &reset.data_json())));
            // What came before is in the messages the client reloads.
            self.last_id = Some(id);
        }
        self.subscription = Some(self.hub.subscribe(self.chat_id, position.last_id).await);
        self.replaying = true;
        Ok(())
    }

    /// Reads the next page of what the stream holds after the last event sent.
    async fn replay_page(&mut self) -> redis::RedisResult<()> {
        let events = history::page(&mut self.conn, &self.key, self.last_id, REPLAY_PAGE).await?;
        // A short page means the replay reached the live end.
        self.replaying = events.len() == REPLAY_PAGE;
        for e in events {
            if let Some(id) = StreamId::parse(&e.id) {
                self.buffered
                    .push_back((id, frame(&e.id, &e.name, &e.data)));
            }
        }
        Ok(())
    }
}

/// The configured lifetime less up to a tenth at random, so streams opened together (say,
/// after a deploy) do not all reconnect in the same instant.
fn stream_lifetime(secs: u64) -> Option<Duration> {
    if secs == 0 {
        return None;
    }
    let lifetime = Duration::from_secs(secs);
    let spread = (lifetime / 10).as_millis() as u64;
    let jitter = (Uuid::new_v4().as_u128() % u128::from(spread + 1)) as u64;
    Some(lifetime - Duration::from_millis(jitter))
}

fn frame(id: &str, name: &str, data: &str) -> Event {
    Event::default().id(id).event(name).data(data)
}
