//! Server-Sent Events from one Redis event stream: replay, follow, resume. Both SSE routes,
//! a chat's (`routes/stream.rs`) and an owner's chat list (`routes/chat_list_events.rs`),
//! are this with a different [`StreamTopic`] and `reset` event (ARCHITECTURE.md §8).
//!
//! Without `Last-Event-ID` a stream replays what the Redis stream still holds, then follows
//! live, so a client connecting right after a change misses nothing. With it, it resumes
//! after that id without repeats, or, when events after that id were trimmed or expired,
//! first sends `reset` (reload) and goes on from the stream's end. Works through any API
//! replica: the state is in Redis.
//!
//! A stream is a [`Cursor`]: it joins the process's shared reader ([`EventHub`]) first, then
//! replays from Redis in pages bounded in count and bytes, then takes live events from its
//! subscription, dropping ids it already sent. If it lags behind the shared reader it goes
//! back to Redis from its last id, the same way. Each stream holds a slot of
//! [`crate::open_streams`] (taken by [`open`], with the `stream_connects_per_minute` check)
//! and ends after `--sse-max-lifetime-secs`, so a client reconnects (with `Last-Event-ID`)
//! and its access is checked again.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use agentq_core::redis_conn::RedisConn;
use agentq_core::{
    events::{
        EventHub, ResetReason, StreamTopic, Subscription,
        history::{self, REPLAY_PAGE, StreamId},
        hub::Delivery,
    },
    rate_limit::Limit,
};
use axum::{
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::{ApiState, error::ApiError, keepalive, open_streams::OpenStream};

/// The `reset` frame of a stream: its event name and `data` JSON for a reason.
pub(crate) type ResetFrame = fn(ResetReason) -> (&'static str, String);

/// One SSE stream's position and what it has read but not yet sent.
struct Cursor {
    _slot: OpenStream,
    hub: EventHub,
    conn: RedisConn,
    topic: StreamTopic,
    key: String,
    reset: ResetFrame,
    /// The last event sent (or the client's `Last-Event-ID`); `None`: from the start.
    last_id: Option<StreamId>,
    /// Events read, in order, not yet sent (at most one replay page).
    buffered: VecDeque<(StreamId, Event)>,
    /// The live feed; `None` until joined, and again after lagging.
    subscription: Option<Subscription>,
    replaying: bool,
    backoff: Duration,
}

/// The client's `Last-Event-ID`, if it sent one; anything but a stream id is a 400 naming
/// the header.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Result<Option<StreamId>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let id = value.to_str().unwrap_or_default().trim();
    StreamId::parse(id).map(Some).ok_or_else(|| {
        ApiError::invalid(
            "Last-Event-ID",
            "must be an event id received from this stream (like 1732500000000-0)",
        )
    })
}

/// Opens `user`'s SSE stream of `topic`: checks `stream_connects_per_minute` and
/// `Last-Event-ID`, takes an open-stream slot (429 past a cap), then replays and follows
/// until the client leaves, the server shuts down or the stream's lifetime ends.
pub(crate) async fn open(
    state: &ApiState,
    user_id: Uuid,
    topic: StreamTopic,
    headers: &HeaderMap,
    reset: ResetFrame,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, ApiError> {
    state
        .rate_limiter
        .check(Limit::StreamConnects, user_id)
        .await?;
    let last_id = last_event_id(headers)?;
    let slot = state.open_streams.open(user_id)?;
    let cursor = Cursor {
        _slot: slot,
        hub: state.hub.clone(),
        conn: state.redis_conn.clone(),
        key: topic.key(&state.prefix),
        topic,
        reset,
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
                tracing::debug!(error = %e, "reading events failed; retrying");
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
            let (name, data) = (self.reset)(reason);
            let id = position.last_id;
            self.buffered
                .push_back((id, frame(&id.to_string(), name, &data)));
            // What came before is in what the client reloads.
            self.last_id = Some(id);
        }
        self.subscription = Some(self.hub.subscribe(self.topic, position.last_id).await);
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
