//! Reading what a chat's event stream still holds: replay pages and resume checks.
//!
//! These are short commands on the process's shared connection (no blocking read): an SSE
//! stream replays in pages of at most [`REPLAY_PAGE`] events, each at most
//! `max_event_bytes`, so a page is bounded in bytes as well as in count.
//!
//! A client resuming with `Last-Event-ID` needs every event after that id. The stream is
//! capped and expires, so those events may be gone; [`StreamPosition::loses_events_after`]
//! tells from `XINFO STREAM` whether anything after the id was deleted, and the SSE route
//! then sends `reset` instead of silently skipping ahead.

use crate::redis_conn::RedisConn;
use std::collections::HashMap;

use redis::Value;

use super::{StoredEvent, parse_entries};

/// Events one replay round trip reads at most.
pub const REPLAY_PAGE: usize = 64;

/// A Redis stream id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// The id before every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `<ms>-<seq>`; `None` for anything else.
    pub fn parse(id: &str) -> Option<StreamId> {
        let (ms, seq) = id.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Where a chat's event stream stands (from `XINFO STREAM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// The stream exists.
    pub exists: bool,
    /// The id of the newest entry ever added (`0-0` for none): following from here misses
    /// nothing that comes later.
    pub last_id: StreamId,
    /// The oldest entry it still holds.
    pub first_id: Option<StreamId>,
    /// The newest id deleted from it (Redis 7+; `None` on older servers).
    pub max_deleted_id: Option<StreamId>,
}

impl StreamPosition {
    /// Whether events after `id` (an id this stream gave out) may be gone.
    pub fn loses_events_after(&self, id: StreamId) -> bool {
        if id == StreamId::ZERO {
            return false;
        }
        if !self.exists {
            // Expired (or never written): whatever followed `id` is gone.
            return true;
        }
        if id > self.last_id {
            // Not an id this stream gave out (from the future, or from a stream that was
            // deleted and created again): following from it would hide every new event.
            return true;
        }
        let first_after = self.first_id.is_some_and(|first| first > id);
        match self.max_deleted_id {
            // `id` itself was trimmed: only a loss if something after it went too, or if
            // this stream never held `id` (it expired and was created again).
            Some(deleted) if first_after => deleted != id,
            Some(deleted) => deleted > id,
            // Before Redis 7 nothing says what was deleted: assume the worst.
            None => first_after,
        }
    }
}

/// Where `key`'s stream stands.
pub async fn position(conn: &mut RedisConn, key: &str) -> redis::RedisResult<StreamPosition> {
    let reply: redis::RedisResult<HashMap<String, Value>> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(conn)
        .await;
    let mut fields = match reply {
        Ok(fields) => fields,
        Err(e) if e.to_string().to_ascii_lowercase().contains("no such key") => {
            return Ok(StreamPosition {
                exists: false,
                last_id: StreamId::ZERO,
                first_id: None,
                max_deleted_id: None,
            });
        }
        Err(e) => return Err(e),
    };
    // `StreamInfoStreamReply` has no `max-deleted-entry-id` (Redis 7), so the reply is
    // read as its field map and each field as its type.
    let mut id_of = |name: &str| {
        fields
            .remove(name)
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .and_then(|s| StreamId::parse(&s))
    };
    let last_id = id_of("last-generated-id");
    let max_deleted_id = id_of("max-deleted-entry-id");
    // `[id, [field, value, ...]]`, or nil when the stream is empty.
    let first_id = fields
        .remove("first-entry")
        .and_then(|v| redis::from_redis_value::<Option<(String, Value)>>(v).ok())
        .flatten()
        .and_then(|(id, _)| StreamId::parse(&id));
    Ok(StreamPosition {
        exists: true,
        last_id: last_id.unwrap_or(StreamId::ZERO),
        first_id,
        max_deleted_id,
    })
}

/// Up to `count` events after `after` (exclusive), or from the oldest held.
pub async fn page(
    conn: &mut RedisConn,
    key: &str,
    after: Option<StreamId>,
    count: usize,
) -> redis::RedisResult<Vec<StoredEvent>> {
    let after = after.map(|id| id.to_string());
    let entries = crate::queue::entries::range_after(conn, key, after.as_deref(), count).await?;
    Ok(parse_entries(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId { ms, seq: 0 }
    }

    fn at(first: Option<u64>, deleted: Option<u64>) -> StreamPosition {
        StreamPosition {
            exists: true,
            last_id: id(100),
            first_id: first.map(id),
            max_deleted_id: deleted.map(id),
        }
    }

    #[test]
    fn ids_parse_and_order_like_redis() {
        assert_eq!(StreamId::parse("12-3"), Some(StreamId { ms: 12, seq: 3 }));
        assert!(StreamId::parse("12-3") < StreamId::parse("12-10"));
        for bad in ["", "12", "-1", "1-", "a-1", "1-2-3", " 1-2"] {
            assert_eq!(StreamId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_resume_point_still_held_loses_nothing() {
        assert!(!at(Some(10), Some(9)).loses_events_after(id(50)));
        assert!(!at(Some(10), None).loses_events_after(id(10)));
        assert!(!at(None, None).loses_events_after(StreamId::ZERO));
    }

    #[test]
    fn a_trimmed_resume_point_loses_events_unless_it_was_the_last_deleted() {
        assert!(at(Some(60), Some(59)).loses_events_after(id(50)));
        assert!(!at(Some(60), Some(50)).loses_events_after(id(50)));
        assert!(at(Some(60), None).loses_events_after(id(50)));
    }

    #[test]
    fn an_expired_or_recreated_stream_loses_events() {
        let gone = StreamPosition {
            exists: false,
            last_id: StreamId::ZERO,
            first_id: None,
            max_deleted_id: None,
        };
        assert!(gone.loses_events_after(id(50)));
        assert!(at(Some(60), Some(0)).loses_events_after(id(50)));
    }

    #[test]
    fn an_id_this_stream_never_gave_out_resets_instead_of_hiding_events() {
        // `last_id` is 100: an id from the future would follow nothing ever again.
        assert!(at(Some(10), None).loses_events_after(id(9_999_999)));
        assert!(!at(Some(10), None).loses_events_after(id(100)));
    }
}

/// `Last-Event-ID` and dead-letter ids are read with [`StreamId::parse`] (the API's SSE
/// routes, `api/src/routes/admin_queues.rs`, the dashboard): whatever a client sends, it is
/// an id or `None`, and every id reads back from how it prints.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Id-like text: digit runs of any length (past `u64` too), dashes, signs, spaces,
    /// U+0000, and any string.
    fn id_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[0-9]{1,25}",
            Just("-".to_owned()),
            Just("+".to_owned()),
            Just(" ".to_owned()),
            Just("\0".to_owned()),
            Just("*".to_owned()),
            Just("١".to_owned()),
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(2000))]

        #[test]
        fn fuzz_a_printed_stream_id_parses_back(ms in any::<u64>(), seq in any::<u64>()) {
            let id = StreamId { ms, seq };
            prop_assert_eq!(StreamId::parse(&id.to_string()), Some(id));
        }

        /// An id is accepted exactly when it is two runs of ASCII digits joined by one
        /// `-`, each at most `u64::MAX`; then it reads as those numbers.
        #[test]
        fn fuzz_any_text_is_an_id_only_when_it_spells_one(text in id_like()) {
            let spelled = text.split_once('-').and_then(|(ms, seq)| {
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                (digits(ms) && digits(seq)).then_some(())?;
                Some(StreamId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
            });
            prop_assert_eq!(StreamId::parse(&text), spelled, "{:?}", text);
        }
    }
}
