//! Redis connections with the timeouts each use needs.
//!
//! Two kinds: a shared multiplexed connection for short commands (enqueue, ack, events),
//! with a response timeout so a dead Redis surfaces as an error instead of a hang; and a
//! dedicated connection per blocking reader (`XREADGROUP BLOCK`, `XREAD BLOCK`), without a
//! response timeout, because a blocked command on a multiplexed connection would hold up
//! every other command behind it. Both reconnect by themselves after Redis restarts.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A connection for short commands; cheap to clone and share. It connects on first use,
/// so a process starts (and keeps retrying) while Redis is down.
pub fn shared(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// A connection for one blocking reader; do not share it.
pub fn blocking(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(None)
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// `PING`: whether Redis answers on `conn` (readiness checks).
pub async fn ping(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    redis::cmd("PING")
        .query_async::<String>(conn)
        .await
        .map(drop)
}

/// The next wait of a loop that retries Redis: `current` doubled, at least `floor`, at
/// most 5 s (start from zero to get `floor`).
pub fn next_backoff(current: Duration, floor: Duration) -> Duration {
    (current * 2).clamp(floor, Duration::from_secs(5))
}
