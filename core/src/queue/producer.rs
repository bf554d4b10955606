//! Enqueueing jobs: `XADD`, many per pipelined round trip.

use crate::redis_conn::RedisConn;

use super::{Job, QueueKeys};

/// Adds jobs to queues; cheap to clone.
#[derive(Clone)]
pub struct Producer {
    conn: RedisConn,
    prefix: String,
    max_len: usize,
}

impl Producer {
    /// A producer on the shared connection. `max_len` > 0 caps each stream approximately.
    pub fn new(conn: RedisConn, prefix: impl Into<String>, max_len: usize) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            max_len,
        }
    }

    /// The key prefix this producer writes under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Enqueues one job; returns its stream entry id.
    pub async fn enqueue<J: Job>(&self, job: &J) -> redis::RedisResult<String> {
        let ids = self.enqueue_many(std::slice::from_ref(job)).await?;
        Ok(ids.into_iter().next().unwrap_or_default())
    }

    /// Enqueues jobs in one pipeline (one round trip however many).
    pub async fn enqueue_many<J: Job>(&self, jobs: &[J]) -> redis::RedisResult<Vec<String>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = QueueKeys::new(&self.prefix, J::QUEUE);
        let mut pipe = redis::pipe();
        for job in jobs {
            let payload = serde_json::to_string(job).expect("jobs serialize");
            pipe.add_command(xadd(&keys.stream, self.max_len, &payload, 0));
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await
    }
}

/// The `XADD` of one entry: fields `job` (JSON) and `attempt` (failed runs so far).
pub(super) fn xadd(stream: &str, max_len: usize, payload: &str, attempt: u32) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream);
    if max_len > 0 {
        cmd.arg("MAXLEN").arg("~").arg(max_len);
    }
    cmd.arg("*")
        .arg("job")
        .arg(payload)
        .arg("attempt")
        .arg(attempt);
    cmd
}
