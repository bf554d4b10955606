//! Retries that are due: a failed job waits in the queue's delayed sorted set (scored by
//! when it is due), and this loop moves due ones back onto the stream with a script, so
//! two processes never move the same one.

use std::{sync::Arc, time::Duration};

use crate::redis_conn::RedisConn;
use tokio_util::sync::CancellationToken;

use super::{ConsumerOptions, now_ms, sleep_or_shutdown};

/// Moves due retries from the delayed set to the stream, atomically, so two processes
/// never move the same one.
const MOVE_DUE_SCRIPT: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  local attempt = string.sub(member, 1, sep - 1)
  local payload = string.sub(member, sep + 1)
  if tonumber(ARGV[3]) > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'job', payload, 'attempt', attempt)
  else
    redis.call('XADD', KEYS[2], '*', 'job', payload, 'attempt', attempt)
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

pub(super) async fn delayed_loop(
    mut conn: RedisConn,
    options: Arc<ConsumerOptions>,
    shutdown: CancellationToken,
) {
    let keys = &options.keys;
    let script = redis::Script::new(MOVE_DUE_SCRIPT);
    loop {
        if sleep_or_shutdown(Duration::from_millis(250), &shutdown).await {
            break;
        }
        let moved: redis::RedisResult<i64> = script
            .key(&keys.delayed)
            .key(&keys.stream)
            .arg(now_ms())
            .arg(1000)
            .arg(options.max_len)
            .invoke_async(&mut conn)
            .await;
        match moved {
            Ok(n) if n > 0 => tracing::debug!(
                queue = keys.queue.as_str(),
                moved = n,
                "due retries moved to the queue"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(queue = keys.queue.as_str(), error = %e, "moving due retries failed; will retry")
            }
        }
    }
}
