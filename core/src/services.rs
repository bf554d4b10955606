//! The connections every process builds the same way: the store, Redis, the producer and
//! the event publisher. `main` and the integration tests both start from here, so tests
//! run the same wiring as production with their own database and key prefix.

use sqlx::PgPool;

use crate::{
    events::{EventLimits, EventPublisher},
    queue::Producer,
    redis_conn::{RedisClient, RedisConn},
    store::Store,
};

/// Shared handles of one process; cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// The database.
    pub store: Store,
    /// Opens dedicated Redis connections (blocking readers).
    pub redis: RedisClient,
    /// The shared Redis connection for short commands.
    pub redis_conn: RedisConn,
    /// Enqueues jobs.
    pub producer: Producer,
    /// Publishes chat events and announces chat list changes.
    pub events: EventPublisher,
    /// Redis key prefix.
    pub prefix: String,
    /// Seals and opens secrets stored in the database, when a key is configured.
    pub secrets: Option<crate::secrets::SecretBox>,
}

impl Services {
    /// Builds the handles; Redis connects lazily, so this succeeds while Redis is down.
    /// `redis_url` names one server or a cluster (see [`RedisClient::open`]).
    pub fn new(
        pool: PgPool,
        redis_url: &str,
        prefix: &str,
        queue_max_len: usize,
    ) -> redis::RedisResult<Self> {
        let redis = RedisClient::open(redis_url)?;
        let redis_conn = redis.shared()?;
        let store = Store::new(pool);
        Ok(Self {
            producer: Producer::new(redis_conn.clone(), prefix, queue_max_len),
            events: EventPublisher::start(redis_conn.clone(), prefix, EventLimits::default())
                .with_chat_list(store.clone()),
            store,
            redis,
            redis_conn,
            prefix: prefix.to_owned(),
            secrets: None,
        })
    }

    /// Publishes chat events under `limits` (the default limits otherwise).
    pub fn with_event_limits(mut self, limits: EventLimits) -> Self {
        // The default publisher's task ends once this, its last handle, is dropped.
        self.events = EventPublisher::start(self.redis_conn.clone(), &self.prefix, limits)
            .with_chat_list(self.store.clone());
        self
    }

    /// Adds the key that seals secrets stored in the database.
    pub fn with_secrets(mut self, secrets: Option<crate::secrets::SecretBox>) -> Self {
        self.secrets = secrets;
        self
    }
}
