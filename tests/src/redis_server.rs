//! A private `redis-server` per test, on a free loopback port, stopped (by PID) on drop.

// Test support: a failed expectation panics with a message, like an assertion.
#![allow(clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free right now (the OS's pick), for a server a test starts.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A running `redis-server` this test started.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed or does not answer within 10 s.
    pub fn start() -> Self {
        // A port found free may be taken before the server binds it (by another test's
        // connection): then it exits, and another port is tried.
        for _ in 0..5 {
            if let Some(server) = Self::try_start_on(free_port()) {
                return server;
            }
        }
        panic!("redis-server could not bind a free port five times");
    }

    /// Starts a server on `port` (to bring a stopped one back).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port)
            .unwrap_or_else(|| panic!("redis-server exited on {port} (the port is taken?)"))
    }

    /// Starts a server on `port`; `None` when it exits at once (the port is taken).
    fn try_start_on(port: u16) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // `DEBUG SLEEP` for the fault tests (refused by default since Redis 7).
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let mut server = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.connection().is_err() {
            if matches!(server.child.try_wait(), Ok(Some(_))) {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Another test's server answered on the port this one could not bind.
        if matches!(server.child.try_wait(), Ok(Some(_))) {
            return None;
        }
        Some(server)
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let mut connection = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut connection)?;
        Ok(connection)
    }

    /// Runs `command` and answers its reply.
    ///
    /// # Panics
    ///
    /// When the server does not answer or the reply is not a `T`.
    pub fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        let mut connection = self.connection().expect("redis answers");
        command.query(&mut connection).expect("the command's reply")
    }

    /// Runs the commands of `pipe`, ignoring their replies.
    ///
    /// # Panics
    ///
    /// When the server does not answer or a command fails.
    pub fn run(&self, pipe: &redis::Pipeline) {
        let mut connection = self.connection().expect("redis answers");
        pipe.query::<()>(&mut connection).expect("the commands ran");
    }

    /// Subscribers of each Redis channel (`PUBSUB NUMSUB`).
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub fn numsub(&self, channel: &str) -> usize {
        let mut connection = self.connection().expect("redis answers");
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut connection)
            .expect("PUBSUB NUMSUB");
        count
    }

    /// The ids of the connected pub/sub clients (`CLIENT LIST TYPE pubsub`), sorted: a
    /// new id means a subscriber reconnected.
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub fn pubsub_client_ids(&self) -> Vec<u64> {
        let mut connection = self.connection().expect("redis answers");
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut connection)
            .expect("CLIENT LIST");
        let mut ids: Vec<u64> = list
            .lines()
            .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// `CONFIG SET name value`.
    ///
    /// # Panics
    ///
    /// When the server refuses or does not answer.
    pub fn config_set(&self, name: &str, value: &str) {
        let mut connection = self.connection().expect("redis answers");
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query::<()>(&mut connection)
            .expect("CONFIG SET");
    }

    /// Closes every pub/sub client's connection (`CLIENT KILL TYPE pubsub`), as Redis
    /// does to a subscriber over its output-buffer limit; returns how many it closed.
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub fn kill_pubsub_clients(&self) -> usize {
        let mut connection = self.connection().expect("redis answers");
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut connection)
            .expect("CLIENT KILL TYPE pubsub")
    }

    /// Blocks the server for `seconds` with `DEBUG SLEEP`, from another thread; returns
    /// at once.
    pub fn debug_sleep(&self, seconds: f64) -> std::thread::JoinHandle<()> {
        let url = self.url();
        std::thread::spawn(move || {
            let mut connection = redis::Client::open(url)
                .and_then(|client| client.get_connection())
                .expect("redis answers");
            let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(seconds)
                .query(&mut connection);
        })
    }

    /// Freezes the server (SIGSTOP): its sockets stay open and nothing is answered, as
    /// a hung Redis behaves. [`RedisServer::resume`] thaws it.
    ///
    /// # Panics
    ///
    /// When `kill` cannot signal the process.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`RedisServer::pause`]d server (SIGCONT).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the server now (SIGKILL, as a crash would).
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // A paused process would not die of SIGKILL any later, but thaw it anyway so
        // its exit is prompt and the port is freed.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private three-master Redis Cluster (no replicas) on free loopback ports, built with
/// `redis-cli --cluster create`, every server stopped (by PID) on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
}

#[derive(Debug)]
struct ClusterNode {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl ClusterNode {
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--cluster-config-file", "nodes.conf"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        let mut connection = redis::Client::open(self.url())?.get_connection()?;
        cmd.query(&mut connection)
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too, both below the
/// kernel's ephemeral range (32768 and up by default): a master killed by a test is
/// started again on its port, and meanwhile no outgoing connection of another test may
/// be given that port by the kernel.
fn free_cluster_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread over 10000–15999 (bus ports 20000–25999), starting at a point of this
    // process's own, so parallel test binaries rarely try the same ports.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = u16::try_from(std::process::id() % 6_000).unwrap_or(0);
    for _ in 0..6_000 {
        let port = 10_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 6_000;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free port pair in 10000–15999 / 20000–25999 for a Redis Cluster node")
}

impl RedisCluster {
    /// Starts three masters and joins them into a cluster covering every slot.
    ///
    /// # Panics
    ///
    /// When `redis-server`/`redis-cli` are missing or the cluster is not up in 20 s.
    pub fn start() -> Self {
        let mut nodes: Vec<ClusterNode> = (0..3)
            .map(|_| ClusterNode {
                child: None,
                port: free_cluster_port(),
                dir: tempfile::tempdir().expect("a scratch directory"),
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        let cluster = Self { nodes };
        cluster.wait(|node| node.query(&redis::cmd("PING")).is_ok());
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed (it comes with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok();
        cluster
    }

    fn wait(&self, ready: impl Fn(&ClusterNode) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            while !ready(node) {
                assert!(
                    Instant::now() < deadline,
                    "Redis Cluster node {} not ready",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Waits until every running node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// After 20 s.
    pub fn wait_until_ok(&self) {
        self.wait(|node| {
            node.query(redis::cmd("CLUSTER").arg("INFO"))
                .ok()
                .and_then(|value| redis::from_redis_value::<String>(value).ok())
                .is_some_and(|text| text.contains("cluster_state:ok"))
        });
    }

    /// The seed URLs of every master.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ClusterNode::url).collect()
    }

    /// How many sharded channels each master has subscribers on (`PUBSUB
    /// SHARDCHANNELS`), in node order.
    ///
    /// # Panics
    ///
    /// When a running node does not answer.
    pub fn shard_channels(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(
                |node| match node.query(redis::cmd("PUBSUB").arg("SHARDCHANNELS")) {
                    Ok(redis::Value::Array(channels)) => channels.len(),
                    other => panic!("PUBSUB SHARDCHANNELS on {}: {other:?}", node.port),
                },
            )
            .collect()
    }

    /// Subscriptions to shard channels over the whole cluster: for every channel each
    /// master serves, its number of subscribers (`PUBSUB SHARDNUMSUB`), summed.
    ///
    /// # Panics
    ///
    /// When a running node does not answer.
    pub fn shard_subscriptions(&self) -> usize {
        let mut total = 0;
        for node in &self.nodes {
            let channels: Vec<String> = match node.query(redis::cmd("PUBSUB").arg("SHARDCHANNELS"))
            {
                Ok(value) => redis::from_redis_value(value).expect("channel names"),
                Err(error) => panic!("PUBSUB SHARDCHANNELS on {}: {error}", node.port),
            };
            if channels.is_empty() {
                continue;
            }
            let counts = node
                .query(redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(&channels))
                .expect("PUBSUB SHARDNUMSUB");
            let pairs: Vec<(String, usize)> = redis::from_redis_value(counts).expect("pairs");
            total += pairs.iter().map(|(_, n)| n).sum::<usize>();
        }
        total
    }

    /// Kills master `index` (SIGKILL), as a crash would.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].stop();
    }

    /// Starts master `index` again with its cluster state, and waits for the cluster.
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::wait_until_ok`].
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].spawn();
        self.wait(|node| node.query(&redis::cmd("PING")).is_ok());
        self.wait_until_ok();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

/// What a cluster of streampod nodes runs over in a test that runs against both: one
/// private Redis, or a private three-master Redis Cluster.
#[derive(Debug)]
pub enum TestRedis {
    /// One `redis-server`.
    Single(RedisServer),
    /// Three masters, no replicas.
    Cluster(RedisCluster),
}

impl TestRedis {
    /// One private Redis.
    pub fn single() -> Self {
        Self::Single(RedisServer::start())
    }

    /// A private three-master Redis Cluster.
    pub fn cluster() -> Self {
        Self::Cluster(RedisCluster::start())
    }

    /// How a node joins it: [`ClusterConfig::redis`](streampod::cluster::ClusterConfig::redis)
    /// or [`ClusterConfig::redis_cluster`](streampod::cluster::ClusterConfig::redis_cluster)
    /// (one seed: the other masters are discovered).
    pub fn config(&self) -> streampod::cluster::ClusterConfig {
        match self {
            Self::Single(redis) => streampod::cluster::ClusterConfig::redis(redis.url()),
            Self::Cluster(cluster) => {
                streampod::cluster::ClusterConfig::redis_cluster([cluster.urls()[0].clone()])
            }
        }
    }

    /// Kills every server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        match self {
            Self::Single(redis) => redis.stop(),
            Self::Cluster(cluster) => {
                for node in &mut cluster.nodes {
                    node.stop();
                }
            }
        }
    }

    /// Starts the [`kill`](Self::kill)ed servers again on their ports with nothing
    /// stored (no persistence): Redis lost its data; a cluster keeps its slot map (its
    /// config file).
    ///
    /// # Panics
    ///
    /// When a server does not come back.
    pub fn start_empty(&mut self) {
        match self {
            Self::Single(redis) => *redis = RedisServer::start_on(redis.port()),
            Self::Cluster(cluster) => {
                for node in &mut cluster.nodes {
                    node.spawn();
                }
                cluster.wait(|node| node.query(&redis::cmd("PING")).is_ok());
                cluster.wait_until_ok();
            }
        }
    }

    /// Freezes every server (SIGSTOP): sockets stay open, nothing is answered.
    ///
    /// # Panics
    ///
    /// When a server is not running.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws the servers [`pause`](Self::pause) froze (SIGCONT).
    ///
    /// # Panics
    ///
    /// When a server is not running.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pids: Vec<u32> = match self {
            Self::Single(redis) => vec![redis.child.id()],
            Self::Cluster(cluster) => cluster
                .nodes
                .iter()
                .filter_map(|node| node.child.as_ref().map(Child::id))
                .collect(),
        };
        let status = Command::new("kill")
            .arg(signal)
            .args(pids.iter().map(ToString::to_string))
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Keys stored under `pattern`, over every server.
    ///
    /// # Panics
    ///
    /// When a server does not answer.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let command = redis::cmd("KEYS").arg(pattern).clone();
        match self {
            Self::Single(redis) => redis.query(&command),
            Self::Cluster(cluster) => cluster
                .nodes
                .iter()
                .flat_map(|node| {
                    let keys = node.query(&command).expect("a master answers KEYS");
                    redis::from_redis_value::<Vec<String>>(keys).expect("key names")
                })
                .collect(),
        }
    }
}
