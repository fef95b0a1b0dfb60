//! How a server joins a Redis cluster: [`ClusterConfig`], and the error for a URL that
//! cannot be used.

use std::time::Duration;

use crate::util::backoff::Backoff;

/// How a server joins a cluster. Its `Debug` shows the Redis host and port, never a
/// password in the URL.
#[derive(Clone)]
#[must_use]
pub struct ClusterConfig {
    pub(crate) url: String,
    /// Redis Cluster seed nodes (sharded pub/sub); empty for one Redis.
    pub(crate) cluster_nodes: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) publish_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Backoff,
    pub(crate) publish_queue: usize,
    pub(crate) publish_queue_bytes: usize,
    pub(crate) liveness_interval: Duration,
    pub(crate) liveness_timeout: Duration,
    pub(crate) max_global_age: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redacted())
            .field("prefix", &self.prefix)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("publish_queue", &self.publish_queue)
            .field("publish_queue_bytes", &self.publish_queue_bytes)
            .field("liveness_interval", &self.liveness_interval)
            .field("liveness_timeout", &self.liveness_timeout)
            .field("max_global_age", &self.max_global_age)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// The Redis address for logs: host and port only, never a password.
    pub(crate) fn redacted(&self) -> String {
        let host = url::Url::parse(&self.url).ok().map(|url| {
            let host = url.host_str().unwrap_or("?").to_owned();
            url.port().map_or(host.clone(), |port| format!("{host}:{port}"))
        });
        let host = host.unwrap_or_else(|| "<unparsable url>".to_owned());
        if self.cluster_nodes.len() > 1 {
            format!("{host} (+{} cluster nodes)", self.cluster_nodes.len() - 1)
        } else {
            host
        }
    }

    /// A cluster through the Redis at `url` (`redis://host:port/`), with defaults:
    /// prefix `streampod`, publish timeout 500 ms, connect timeout 1 s, reconnect
    /// backoff 100 ms doubling up to 2 s (jittered), 10,000 queued global posts of at
    /// most 64 MiB in all, a
    /// liveness `PING` on both connections every 1 s that must be answered within 3 s,
    /// and global messages older than 5 s dropped on arrival.
    pub fn redis(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster_nodes: Vec::new(),
            prefix: "streampod".to_owned(),
            publish_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            reconnect: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
            publish_queue: 10_000,
            publish_queue_bytes: 64 << 20,
            liveness_interval: Duration::from_secs(1),
            liveness_timeout: Duration::from_secs(3),
            max_global_age: Duration::from_secs(5),
        }
    }

    /// How often both Redis connections are `PING`ed, and how long an answer may take
    /// before Redis counts as gone (a hung Redis keeps its sockets open and answers
    /// nothing): then the node is `Disconnected`, global posts fail at once, and it
    /// reconnects. Defaults 1 s and 3 s.
    pub fn liveness(mut self, interval: Duration, timeout: Duration) -> Self {
        self.liveness_interval = interval.max(Duration::from_millis(10));
        self.liveness_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Global messages older than this when they arrive (by the posting node's clock)
    /// are dropped and counted instead of reaching clients in a burst after a stall.
    /// Default 5 s. Nodes' clocks must agree to well within it (NTP keeps them within
    /// milliseconds): a clock behind by more drops its posts everywhere, one ahead lets
    /// older messages through.
    pub fn max_global_age(mut self, age: Duration) -> Self {
        self.max_global_age = age;
        self
    }

    /// A cluster through a Redis Cluster (Redis ≥ 7), reached from any of `nodes`
    /// (`redis://host:port/`; the rest are discovered), with the defaults of
    /// [`ClusterConfig::redis`]. Channels use sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`):
    /// each channel lives on the shard its name hashes to, so channel traffic spreads
    /// over the shards and each channel keeps one order. `to_all`/`to_user` broadcasts
    /// share one channel, hence one shard. The liveness `PING` goes to every master: a
    /// master that stops answering makes the node `Disconnected` (global posts fail)
    /// until the cluster is whole again — with replicas, until one is promoted.
    pub fn redis_cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut config = Self::redis(nodes.first().cloned().unwrap_or_default());
        config.cluster_nodes = nodes;
        config
    }

    /// Prefixes every Redis channel name (`<prefix>:channel:<name>`), so several apps
    /// can share one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a publish may wait for Redis before it counts as failed.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Delays between reconnection attempts.
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.reconnect = backoff;
        self
    }

    /// Global posts that may wait to be published; beyond that a post fails with
    /// [`ClusterError::Backlog`](crate::cluster::ClusterError::Backlog) instead of buffering.
    pub fn publish_queue(mut self, posts: usize) -> Self {
        self.publish_queue = posts.max(1);
        self
    }

    /// Bytes of global posts that may wait to be published (default 64 MiB): a burst
    /// of large posts while Redis is slow fails with
    /// [`ClusterError::Backlog`](crate::cluster::ClusterError::Backlog) past it instead
    /// of holding [`publish_queue`](Self::publish_queue) times the largest post.
    pub fn publish_queue_bytes(mut self, bytes: usize) -> Self {
        self.publish_queue_bytes = bytes.max(1);
        self
    }
}

/// The cluster's Redis URL cannot be used (the URL itself is not repeated: it may hold a
/// password). Fix the URL given to [`ClusterConfig::redis`].
#[derive(Debug, thiserror::Error)]
#[error("invalid cluster Redis URL: {0}")]
pub struct InvalidRedisUrl(#[source] pub(super) redis::RedisError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_name_the_redis_without_its_password() {
        let config = ClusterConfig::redis("redis://user:hunter2@10.0.0.7:6380/0");
        assert_eq!(config.redacted(), "10.0.0.7:6380");
        let cluster = ClusterConfig::redis_cluster([
            "redis://:hunter2@10.0.0.7:7000/",
            "redis://10.0.0.8:7000/",
        ]);
        assert_eq!(cluster.redacted(), "10.0.0.7:7000 (+1 cluster nodes)");
        let debug = format!("{config:?} {cluster:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
