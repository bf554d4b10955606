//! Which entries of a reply are jobs: a job entry has a `job` field (its JSON) and an
//! `attempt` field (failed runs before this delivery). The `redis` crate's typed replies
//! have already taken the reply apart; this reads the two fields.

use redis::streams::{StreamAutoClaimReply, StreamReadReply};

use crate::queue::entries;

/// `(id, job payload, failed attempts)` of a job entry; `None` for an entry without a job.
/// The fields are taken out of the entry, so the payload keeps the reply's buffer.
fn job_of(mut entry: entries::Entry) -> Option<(String, String, u32)> {
    let payload: String = redis::from_redis_value(entry.map.remove("job")?).ok()?;
    let attempt = entry
        .map
        .remove("attempt")
        .and_then(|a| redis::from_redis_value::<String>(a).ok())
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    Some((entry.id, payload, attempt))
}

/// Jobs of an `XREADGROUP` reply.
pub(super) fn jobs_read(reply: StreamReadReply) -> Vec<(String, String, u32)> {
    reply
        .keys
        .into_iter()
        .flat_map(|stream| stream.ids)
        .filter_map(job_of)
        .collect()
}

/// The next cursor and the jobs of an `XAUTOCLAIM` reply (entries deleted while pending
/// come back as deleted ids, or as nil entries before Redis 7, and are skipped).
pub(super) fn jobs_claimed(reply: StreamAutoClaimReply) -> (String, Vec<(String, String, u32)>) {
    let claimed = reply.claimed.into_iter().filter_map(job_of).collect();
    (reply.next_stream_id, claimed)
}
