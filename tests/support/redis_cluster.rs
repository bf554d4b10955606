//! A private three-node Redis Cluster on free ports (`redis-server --cluster-enabled yes`
//! three times, joined by `redis-cli --cluster create`), for the tests that run agentq on a
//! cluster and move its slots while it runs. Killed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::eventually;

/// Three master nodes, no replicas, covering all 16,384 slots.
pub struct RedisCluster {
    /// The nodes' ports.
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node reports it ok.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("agentq-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for port in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            children.push(child);
        }
        let cluster = Self {
            ports,
            children,
            dir,
        };
        for port in &cluster.ports {
            eventually(
                Duration::from_secs(10),
                "a cluster node to listen",
                || async {
                    std::net::TcpStream::connect(("127.0.0.1", *port))
                        .is_ok()
                        .then_some(())
                },
            )
            .await;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("redis-cli is installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok().await;
        cluster
    }

    /// The URL agentq connects with: `redis+cluster://` and every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Waits until every node says `cluster_state:ok` and agrees on who holds each slot.
    pub async fn wait_until_ok(&self) {
        for port in &self.ports {
            eventually(Duration::from_secs(30), "the cluster to be ok", || async {
                let info = self.node_command(*port, &["CLUSTER", "INFO"]).await;
                info.contains("cluster_state:ok").then_some(())
            })
            .await;
        }
    }

    /// The port of the node that holds `key`'s slot.
    pub async fn owner_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key).await;
        let nodes = self
            .node_command(self.ports[0], &["CLUSTER", "NODES"])
            .await;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port: u16 = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap();
            for range in &fields[8..] {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(from), Ok(to)) = (from.parse::<u16>(), to.parse::<u16>())
                    && (from..=to).contains(&slot)
                {
                    return port;
                }
            }
        }
        panic!("no node holds slot {slot}");
    }

    /// Moves every slot (and key) of the node on `from` to the node on `to`, with
    /// `redis-cli --cluster reshard`, while clients keep running: they follow the `ASK` and
    /// `MOVED` redirections.
    pub async fn move_all_slots(&self, from: u16, to: u16) {
        let (from_id, to_id) = (self.node_id(from).await, self.node_id(to).await);
        let owned = self.slot_count(from).await;
        let seed = format!("127.0.0.1:{}", self.ports[0]);
        let status = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &seed])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &owned.to_string(), "--cluster-yes"])
            .args(["--cluster-pipeline", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .await
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster reshard failed");
        assert_eq!(self.slot_count(from).await, 0, "the node was emptied");
        self.wait_until_ok().await;
    }

    async fn slot_of(&self, key: &str) -> u16 {
        self.node_command(self.ports[0], &["CLUSTER", "KEYSLOT", key])
            .await
            .trim()
            .parse()
            .unwrap()
    }

    async fn node_id(&self, port: u16) -> String {
        self.node_command(port, &["CLUSTER", "MYID"])
            .await
            .trim()
            .to_owned()
    }

    async fn slot_count(&self, port: u16) -> usize {
        let id = self.node_id(port).await;
        let nodes = self
            .node_command(self.ports[0], &["CLUSTER", "NODES"])
            .await;
        let line = nodes
            .lines()
            .find(|l| l.starts_with(&id))
            .expect("the node is listed");
        line.split_whitespace()
            .skip(8)
            .filter(|range| !range.starts_with('['))
            .map(|range| match range.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            })
            .sum()
    }

    /// One command to one node (cluster commands are answered by the node asked).
    async fn node_command(&self, port: u16, args: &[&str]) -> String {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let value: redis::Value = cmd.query_async(&mut conn).await.unwrap();
        match value {
            redis::Value::Int(n) => n.to_string(),
            other => redis::from_redis_value::<String>(other).unwrap_or_default(),
        }
    }
}

fn free_port() -> u16 {
    // The cluster bus listens on port + 10000: keep both free and in range.
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
