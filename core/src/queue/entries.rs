//! Stream entries as the queue and chat events read them. The `redis` crate's typed
//! replies (`StreamReadReply`, `StreamRangeReply`, `StreamAutoClaimReply`) take `XREAD`,
//! `XREADGROUP`, `XRANGE` and `XAUTOCLAIM` replies apart; an entry is their `StreamId`
//! (its id and its fields). What stays here is the one `XRANGE` page that dead letters
//! and event replay both walk with their own cursor.

use redis::streams::StreamRangeReply;

/// One stream entry: its id (`<ms>-<seq>`) and its fields; read a text field with
/// `entry.get::<String>(name)`.
pub use redis::streams::StreamId as Entry;

/// `XRANGE key (after + COUNT count`: the entries after `after` (exclusive), or from the
/// start; one page of a stream that a reader walks with its own cursor.
pub async fn range_after(
    conn: &mut crate::redis_conn::RedisConn,
    key: &str,
    after: Option<&str>,
    count: usize,
) -> redis::RedisResult<Vec<Entry>> {
    let start = after
        .map(|id| format!("({id}"))
        .unwrap_or_else(|| "-".into());
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(reply.ids)
}
