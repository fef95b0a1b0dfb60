//! How a server joins a NATS cluster: [`NatsConfig`], and the error for a URL that
//! cannot be used.

use std::time::Duration;

/// How a server joins a cluster through NATS. Its `Debug` shows the server's host and
/// port, never a user, password or token in the URL.
#[derive(Clone)]
#[must_use]
pub struct NatsConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) publish_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) publish_queue: usize,
    pub(crate) publish_queue_bytes: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) max_global_age: Duration,
    pub(crate) history_in_memory: bool,
    pub(crate) history_replicas: usize,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("nats", &self.redacted())
            .field("prefix", &self.prefix)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("publish_queue", &self.publish_queue)
            .field("publish_queue_bytes", &self.publish_queue_bytes)
            .field("ping_interval", &self.ping_interval)
            .field("max_global_age", &self.max_global_age)
            .field("history_in_memory", &self.history_in_memory)
            .field("history_replicas", &self.history_replicas)
            .finish_non_exhaustive()
    }
}

impl NatsConfig {
    /// A cluster through the NATS server at `url` (`nats://host:4222`, several
    /// comma-separated for a NATS cluster), with defaults: prefix `streampod`, publish
    /// timeout 500 ms, connect timeout 1 s, 10,000 queued global posts of at most 64 MiB
    /// in all, a `PING` every second (a server that leaves two unanswered is gone),
    /// global messages older than 5 s dropped on arrival, and channel histories in
    /// JetStream streams on file with one replica (the server needs JetStream enabled:
    /// `nats-server -js`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "streampod".to_owned(),
            publish_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            publish_queue: 10_000,
            publish_queue_bytes: 64 << 20,
            ping_interval: Duration::from_secs(1),
            max_global_age: Duration::from_secs(5),
            history_in_memory: false,
            history_replicas: 1,
        }
    }

    /// The first subject token of every subject (`<prefix>.channel.<name>`), so several
    /// apps can share one NATS. Characters NATS reserves are escaped.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a publish may wait for the server's confirmation before it counts as
    /// failed (it may have gone out).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Global posts that may wait to be published; beyond that a post fails with
    /// [`ClusterError::Backlog`](crate::cluster::ClusterError::Backlog).
    pub fn publish_queue(mut self, posts: usize) -> Self {
        self.publish_queue = posts.max(1);
        self
    }

    /// Bytes of global posts that may wait to be published (default 64 MiB).
    pub fn publish_queue_bytes(mut self, bytes: usize) -> Self {
        self.publish_queue_bytes = bytes.max(1);
        self
    }

    /// How often the server is `PING`ed (default 1 s): one that leaves two `PING`s
    /// unanswered (it hangs) counts as gone, the node is `Disconnected` and reconnects.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Global messages older than this when they arrive (by the posting node's clock)
    /// are dropped and counted. Default 5 s (see
    /// [`ClusterConfig::max_global_age`](crate::cluster::ClusterConfig::max_global_age)).
    pub fn max_global_age(mut self, age: Duration) -> Self {
        self.max_global_age = age;
        self
    }

    /// Keeps channel histories in memory rather than on file: faster, lost when the
    /// NATS server restarts (clients are then told they did not recover).
    pub fn history_in_memory(mut self, in_memory: bool) -> Self {
        self.history_in_memory = in_memory;
        self
    }

    /// How many NATS servers of a JetStream cluster hold each channel's history
    /// (default 1; 3 survives the loss of one server).
    pub fn history_replicas(mut self, replicas: usize) -> Self {
        self.history_replicas = replicas.max(1);
        self
    }

    /// The servers for logs: hosts and ports only.
    pub(crate) fn redacted(&self) -> String {
        self.url
            .split(',')
            .map(|one| {
                let one = one.trim();
                let rest = one.split_once("://").map_or(one, |(_, rest)| rest);
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                host.trim_end_matches('/').to_owned()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The NATS URL cannot be used (it is not repeated: it may hold a password). Fix the URL
/// given to [`NatsConfig::new`].
#[derive(Debug, thiserror::Error)]
#[error("invalid NATS URL: {0}")]
pub struct InvalidNatsUrl(#[source] pub(super) std::io::Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_name_the_servers_without_their_secrets() {
        let config = NatsConfig::new("nats://ann:hunter2@10.0.0.7:4222, tls://s3cret@10.0.0.8:4223/");
        assert_eq!(config.redacted(), "10.0.0.7:4222,10.0.0.8:4223");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("s3cret"), "{debug}");
    }
}
