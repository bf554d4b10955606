//! Redis connections, to one server or to a Redis Cluster, with the timeouts each use needs.
//!
//! Two kinds: a shared multiplexed connection for short commands (enqueue, ack, events),
//! with a response timeout so a dead Redis surfaces as an error instead of a hang; and a
//! dedicated connection per blocking reader (`XREADGROUP BLOCK`, `XREAD BLOCK`), because a
//! blocked command on a multiplexed connection would hold up every other command behind
//! it. Both connect on first use and reconnect by themselves after Redis restarts.
//!
//! Which Redis is the URL's business ([`RedisClient::open`]): `redis://host:port` is one
//! server (the default); `redis+cluster://host1:port1,host2:port2` (or a comma-separated
//! list of `redis://` URLs) is a cluster reached through any of those seed nodes. Callers
//! hold a [`RedisConn`] either way and send commands through `redis`'s `ConnectionLike`,
//! so the queue, the event streams and the admin API run unchanged on both: agentq's keys
//! carry hash tags, so every multi-key command and script stays inside one slot. The one
//! thing a cluster refuses that one server allows is a pipeline whose keys sit in
//! different slots; [`SlotPipelines`] splits such a batch by hash tag.
//!
//! Every connection sets `TCP_NODELAY` (the `redis` crate leaves Nagle's algorithm on): a
//! multiplexed connection writes one small command after another, and with Nagle each
//! write waits for the previous one's acknowledgement.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use redis::{
    Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    io::tcp::TcpSettings,
};

/// How long a short command may take before the connection is treated as dead.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to one node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The response timeout of a cluster connection that blocks: longer than any `BLOCK`
/// agentq issues (the queue's and the event hub's reads block for seconds), so only a dead
/// node times out.
const BLOCKING_CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens connections to the configured Redis; cheap to clone.
#[derive(Clone)]
pub enum RedisClient {
    /// One Redis server.
    Single(redis::Client),
    /// A Redis Cluster, reached through its seed nodes.
    Cluster(Arc<ClusterClient>),
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisClient::Single",
            Self::Cluster(_) => "RedisClient::Cluster",
        })
    }
}

impl RedisClient {
    /// A client for `url`: `redis://` or `rediss://` for one server;
    /// `redis+cluster://[user:password@]host1:port1,host2:port2[/]` or several `redis://`
    /// URLs separated by commas for a cluster. Nothing connects yet.
    pub fn open(url: &str) -> redis::RedisResult<Self> {
        match cluster_nodes(url) {
            Some(nodes) => Ok(Self::Cluster(Arc::new(
                ClusterClient::builder(nodes)
                    .tcp_settings(tcp_settings())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(3)
                    .build()?,
            ))),
            None => Ok(Self::Single(redis::Client::open(
                url.into_connection_info()?.set_tcp_settings(tcp_settings()),
            )?)),
        }
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A connection for short commands; cheap to clone and share. It connects on first
    /// use, so a process starts (and keeps retrying) while Redis is down.
    pub fn shared(&self) -> redis::RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(RedisConn::Single)
            }
            Self::Cluster(client) => Ok(RedisConn::Cluster(
                client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(RESPONSE_TIMEOUT),
                ),
            )),
        }
    }

    /// A connection for one blocking reader; do not share it.
    pub fn blocking(&self) -> redis::RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(None)
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(RedisConn::Single)
            }
            // Its own connections to every node: a blocked read holds up only this reader.
            Self::Cluster(client) => Ok(RedisConn::Cluster(
                client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(BLOCKING_CLUSTER_TIMEOUT),
                ),
            )),
        }
    }

    /// A dedicated connection, connected now, for a reader whose every command blocks at
    /// most `block`: an answer later than that plus a margin means the connection died
    /// without saying so (a dropped NAT entry sends no reset), and the reader reconnects.
    /// On one server it carries `name` (`CLIENT SETNAME`, seen in `CLIENT LIST`); a
    /// cluster connection is spread over nodes and has no one name.
    pub async fn reader(&self, name: &str, block: Duration) -> redis::RedisResult<RedisConn> {
        let timeout = block + Duration::from_secs(5);
        match self {
            Self::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(timeout));
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(name)
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(RedisConn::Multiplexed(conn))
            }
            Self::Cluster(client) => client
                .get_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(timeout),
                )
                .await
                .map(RedisConn::Cluster),
        }
    }
}

/// Socket options of every connection: no Nagle delay on small writes.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// The seed nodes of a cluster URL, or `None` for a one-server URL.
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let url = url.trim();
    for (scheme, node_scheme) in [
        ("redis+cluster://", "redis://"),
        ("rediss+cluster://", "rediss://"),
    ] {
        if let Some(rest) = url.strip_prefix(scheme) {
            let rest = rest.trim_end_matches('/');
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), rest),
            };
            return Some(
                hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|host| format!("{node_scheme}{auth}{host}"))
                    .collect(),
            );
        }
    }
    url.contains(',').then(|| {
        url.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// A connection to one Redis server or to a cluster; cheap to clone (clones share the
/// connection). Send commands with `query_async(&mut conn)` as with any `redis` connection.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting by itself.
    Single(ConnectionManager),
    /// One server, a dedicated connection of a reader (see [`RedisClient::reader`]).
    Multiplexed(redis::aio::MultiplexedConnection),
    /// A cluster: commands go to the node that holds their key's slot, following
    /// `MOVED`/`ASK` when slots move.
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Whether commands go to a cluster (pipelines must then stay within one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The part of `key` Redis Cluster hashes to pick its slot: the text between the first
/// `{` and the next `}` when that is not empty, else the whole key. Keys with the same tag
/// share a slot.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// A batch of fire-and-forget commands (their replies ignored), pipelined in one round trip
/// on one server and in one pipeline per hash tag on a cluster, sent concurrently: a cluster
/// refuses a pipeline that spans slots.
pub struct SlotPipelines {
    conn: RedisConn,
    one: Pipeline,
    by_tag: BTreeMap<String, Pipeline>,
}

impl SlotPipelines {
    /// An empty batch for `conn`.
    pub fn new(conn: &RedisConn) -> Self {
        Self {
            conn: conn.clone(),
            one: redis::pipe(),
            by_tag: BTreeMap::new(),
        }
    }

    /// Adds `cmd`, whose keys all share the hash tag of `key`.
    pub fn add(&mut self, key: &str, cmd: Cmd) {
        let pipe = if self.conn.is_cluster() {
            self.by_tag.entry(hash_tag(key).to_owned()).or_default()
        } else {
            &mut self.one
        };
        pipe.add_command(cmd).ignore();
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.one.is_empty() && self.by_tag.is_empty()
    }

    /// Sends the batch: one pipeline on one server, one per tag on a cluster.
    pub async fn send(self) -> redis::RedisResult<()> {
        let Self { conn, one, by_tag } = self;
        if !one.is_empty() {
            one.query_async::<()>(&mut conn.clone()).await?;
        }
        let sends = by_tag.into_values().map(|pipe| {
            let mut conn = conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        });
        futures::future::try_join_all(sends).await.map(drop)
    }
}

/// `PING`: whether Redis answers on `conn` (readiness checks; on a cluster, a node does).
pub async fn ping(conn: &mut RedisConn) -> redis::RedisResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_turn_nagle_off() {
        let RedisClient::Single(client) =
            RedisClient::open("redis://:pw@127.0.0.1:6379/2").unwrap()
        else {
            panic!("one server");
        };
        let info = client.get_connection_info();
        assert!(info.tcp_settings().nodelay());
        // The URL's other parts still count.
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(info.redis_settings().password(), Some("pw"));
    }

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379"), None);
        assert_eq!(
            cluster_nodes("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"),
            Some(vec![
                "redis://127.0.0.1:7000".to_owned(),
                "redis://127.0.0.1:7001".to_owned()
            ])
        );
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@a:1,b:2"),
            Some(vec![
                "redis://:pw@a:1".to_owned(),
                "redis://:pw@b:2".to_owned()
            ])
        );
        assert_eq!(
            cluster_nodes("redis://a:1, redis://b:2"),
            Some(vec!["redis://a:1".to_owned(), "redis://b:2".to_owned()])
        );
    }

    #[test]
    fn hash_tags_are_read_as_redis_cluster_reads_them() {
        assert_eq!(hash_tag("{agentq:turns}:stream"), "agentq:turns");
        assert_eq!(hash_tag("agentq:ratelimit:{u1}:chats"), "u1");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("{}x"), "{}x", "an empty tag hashes the whole key");
        assert_eq!(hash_tag("a{b"), "a{b");
    }
}
