//! Keeping held entries ours: while a job runs, its entry's idle clock is reset every
//! third of the lease, so no other consumer takes over a job that is still running.

use std::{sync::Arc, time::Duration};

use crate::redis_conn::RedisConn;
use tokio_util::sync::CancellationToken;

use super::{Acker, ConsumerOptions, sleep_or_shutdown};

pub(super) async fn heartbeat_loop(
    mut conn: RedisConn,
    options: Arc<ConsumerOptions>,
    acker: Acker,
    shutdown: CancellationToken,
) {
    let keys = &options.keys;
    let period = (options.lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        if sleep_or_shutdown(period, &shutdown).await {
            break;
        }
        let held = acker.held();
        for chunk in held.chunks(1000) {
            // XCLAIM with min-idle 0 and JUSTID resets the idle clock of entries we hold
            // without counting a delivery, so nobody takes over a job that is still running.
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&keys.stream)
                .arg(&keys.group)
                .arg(&options.consumer)
                .arg(0);
            for id in chunk {
                cmd.arg(id);
            }
            cmd.arg("JUSTID");
            if let Err(e) = cmd.query_async::<()>(&mut conn).await {
                tracing::debug!(queue = keys.queue.as_str(), error = %e, "heartbeat failed; will retry");
            }
        }
    }
}
