//! Every Redis key agentq uses, in one place.
//!
//! Queue keys share a `{<prefix>:<queue>}` hash tag, so a queue's stream, delayed set and
//! dead letters land in one Redis Cluster slot and multi-key scripts work there.

use uuid::Uuid;

use super::QueueName;

/// The keys of one queue.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// The queue's name.
    pub queue: QueueName,
    /// The stream jobs are added to.
    pub stream: String,
    /// The consumer group every worker joins.
    pub group: String,
    /// Sorted set of jobs waiting for their retry time (score: due unix ms).
    pub delayed: String,
    /// Stream of jobs that gave up, for operators to inspect, retry or drop.
    pub dead: String,
}

impl QueueKeys {
    /// The keys of `queue` under `prefix`.
    pub fn new(prefix: &str, queue: QueueName) -> Self {
        let tag = format!("{{{prefix}:{}}}", queue.as_str());
        Self {
            queue,
            stream: format!("{tag}:stream"),
            group: "agentq-workers".to_owned(),
            delayed: format!("{tag}:delayed"),
            dead: format!("{tag}:dead"),
        }
    }
}

/// The capped stream of a chat's live events (SSE reads it).
pub fn chat_events_key(prefix: &str, chat_id: Uuid) -> String {
    format!("{prefix}:chat:{{{chat_id}}}:events")
}

/// The GCRA state of one rate limit of one user (see `crate::rate_limit`). The user id is
/// the hash tag, so all of a user's limits share one Redis Cluster slot.
pub fn rate_limit_key(prefix: &str, user_id: Uuid, limit: &str) -> String {
    format!("{prefix}:ratelimit:{{{user_id}}}:{limit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_share_one_hash_tag() {
        let keys = QueueKeys::new("agentq", QueueName::Turns);
        for key in [&keys.stream, &keys.delayed, &keys.dead] {
            assert!(key.starts_with("{agentq:turns}:"), "{key}");
        }
    }

    #[test]
    fn a_users_rate_limit_keys_share_one_hash_tag() {
        let user = Uuid::nil();
        let tag = format!("{{{user}}}");
        for limit in ["chats", "messages", "stream_connects"] {
            let key = rate_limit_key("agentq", user, limit);
            assert_eq!(key, format!("agentq:ratelimit:{tag}:{limit}"));
            assert_eq!(key.matches('{').count(), 1, "one hash tag: {key}");
        }
    }
}
