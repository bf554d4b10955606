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

/// The keys of the process registry (ARCHITECTURE.md §6.1). They share one
/// `{<prefix>:processes}` hash tag, so the index and every entry sit in one Redis Cluster
/// slot and one `MGET` reads them all.
#[derive(Debug, Clone)]
pub struct RegistryKeys {
    /// Sorted set of process ids, scored by the unix milliseconds of their last beat.
    pub index: String,
    tag: String,
}

impl RegistryKeys {
    /// The registry keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        let tag = format!("{{{prefix}:processes}}");
        Self {
            index: format!("{tag}:index"),
            tag,
        }
    }

    /// The entry of one process: its JSON, expiring a few beats after the last one.
    pub fn process(&self, id: &str) -> String {
        format!("{}:process:{id}", self.tag)
    }
}

/// How many hash tags chat event streams are spread over. Every process must agree (the
/// shard is part of the key), so it is a constant: changing it strands live streams for
/// their TTL (clients reconnecting then get a `reset` and reload messages).
pub const CHAT_EVENT_SHARDS: u16 = 8;

/// The event shard of a chat: the low bits of its id (random in uuid v4 and v7).
pub fn chat_event_shard(chat_id: Uuid) -> u16 {
    (chat_id.as_u128() % u128::from(CHAT_EVENT_SHARDS)) as u16
}

/// The hash tag shared by every chat event stream of `shard`.
///
/// The API's shared reader blocks on many chats' streams with one multi-key `XREAD`, which
/// Redis Cluster allows only within one hash slot. So chat streams carry one of
/// [`CHAT_EVENT_SHARDS`] tags instead of their own id: one `XREAD` per shard is always legal,
/// and the shards still spread over the cluster's nodes.
pub fn chat_event_shard_tag(prefix: &str, shard: u16) -> String {
    format!("{{{prefix}:events:{shard}}}")
}

/// The capped stream of a chat's live events (SSE reads it).
pub fn chat_events_key(prefix: &str, chat_id: Uuid) -> String {
    let tag = chat_event_shard_tag(prefix, chat_event_shard(chat_id));
    format!("{tag}:chat:{chat_id}")
}

/// The capped stream of an owner's chat list changes (`GET /chats/events` reads it): the
/// owner's id picks the shard the way a chat's id does, so the API's shared reader follows
/// it beside the chat streams of that shard.
pub fn chat_list_events_key(prefix: &str, owner_id: Uuid) -> String {
    let tag = chat_event_shard_tag(prefix, chat_event_shard(owner_id));
    format!("{tag}:owner:{owner_id}")
}

/// A stream the API process `process_id` appends to when it starts following a new chat on
/// `shard`, to wake its reader blocked on that shard (same hash tag, so it can sit in the
/// same `XREAD`).
pub fn chat_events_wake_key(prefix: &str, shard: u16, process_id: Uuid) -> String {
    let tag = chat_event_shard_tag(prefix, shard);
    format!("{tag}:wake:{process_id}")
}

/// The GCRA state of one rate limit of one user (see `crate::rate_limit`). The user id is
/// the hash tag, so all of a user's limits share one Redis Cluster slot.
pub fn rate_limit_key(prefix: &str, user_id: Uuid, limit: &str) -> String {
    format!("{prefix}:ratelimit:{{{user_id}}}:{limit}")
}

/// The key that signs the operator dashboard's session cookies, shared by every API process
/// of the deployment (so a session works on whichever replica a request reaches).
pub fn dashboard_session_key(prefix: &str) -> String {
    format!("{prefix}:dashboard:session-key")
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
    fn registry_keys_share_one_hash_tag() {
        let keys = RegistryKeys::new("agentq");
        for key in [keys.index.clone(), keys.process("worker-host-1-abc")] {
            assert!(key.starts_with("{agentq:processes}:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "one hash tag: {key}");
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

    #[test]
    fn a_chat_stream_and_its_shards_wake_key_share_one_hash_tag() {
        let chat = Uuid::now_v7();
        let shard = chat_event_shard(chat);
        assert!(shard < CHAT_EVENT_SHARDS);
        let tag = format!("{{agentq:events:{shard}}}");
        assert!(chat_events_key("agentq", chat).starts_with(&tag));
        assert!(chat_events_wake_key("agentq", shard, Uuid::new_v4()).starts_with(&tag));
    }

    #[test]
    fn an_owners_list_stream_sits_in_the_shard_of_the_owners_id() {
        let owner = Uuid::now_v7();
        let tag = format!("{{agentq:events:{}}}", chat_event_shard(owner));
        let key = chat_list_events_key("agentq", owner);
        assert_eq!(key, format!("{tag}:owner:{owner}"));
        assert_ne!(
            key,
            chat_events_key("agentq", owner),
            "never a chat's stream"
        );
    }
}
