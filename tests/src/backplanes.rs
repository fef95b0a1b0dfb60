//! Every backplane a test can run its nodes over — one Redis, a three-master Redis
//! Cluster, one NATS server — behind one type, for the fault scenarios every backplane
//! must pass alike.

use streampod::cluster::{ClusterConfig, NatsConfig};
use streampod::protocol::ModelSet;
use streampod::ServerBuilder;

use crate::nats_server::NatsServer;
use crate::redis_server::TestRedis;

/// How a node joins a cluster: a Redis (or Redis Cluster) config or a NATS one.
#[derive(Debug, Clone)]
pub enum Join {
    /// [`ServerBuilder::cluster`].
    Redis(ClusterConfig),
    /// [`ServerBuilder::nats`].
    Nats(NatsConfig),
}

impl Join {
    /// `builder`, joining the cluster.
    pub fn apply<P: ModelSet>(self, builder: ServerBuilder<P>) -> ServerBuilder<P> {
        match self {
            Join::Redis(config) => builder.cluster(config),
            Join::Nats(config) => builder.nats(config),
        }
    }
}

impl Join {
    /// With names under `prefix`, so tests sharing a server stay apart.
    #[must_use]
    pub fn prefix(self, prefix: &str) -> Self {
        match self {
            Join::Redis(config) => Join::Redis(config.prefix(prefix)),
            Join::Nats(config) => Join::Nats(config.prefix(prefix)),
        }
    }
}

impl From<ClusterConfig> for Join {
    fn from(config: ClusterConfig) -> Self {
        Join::Redis(config)
    }
}

impl From<NatsConfig> for Join {
    fn from(config: NatsConfig) -> Self {
        Join::Nats(config)
    }
}

/// A private backplane: one Redis, a Redis Cluster or a NATS server, stopped on drop.
#[derive(Debug)]
pub enum TestBackplane {
    /// One Redis or a Redis Cluster.
    Redis(TestRedis),
    /// One `nats-server`.
    Nats(NatsServer),
}

impl TestBackplane {
    /// One private Redis.
    pub fn redis() -> Self {
        Self::Redis(TestRedis::single())
    }

    /// A private three-master Redis Cluster.
    pub fn redis_cluster() -> Self {
        Self::Redis(TestRedis::cluster())
    }

    /// A private `nats-server`.
    pub fn nats() -> Self {
        Self::Nats(NatsServer::start())
    }

    /// How a node joins it, with the defaults.
    pub fn join(&self) -> Join {
        match self {
            Self::Redis(redis) => Join::Redis(redis.config()),
            Self::Nats(nats) => Join::Nats(NatsConfig::new(nats.url())),
        }
    }

    /// Kills every server of it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        match self {
            Self::Redis(redis) => redis.kill(),
            Self::Nats(nats) => nats.kill(),
        }
    }

    /// Freezes every server of it (SIGSTOP): sockets stay open, nothing is answered.
    ///
    /// # Panics
    ///
    /// When a server is not running.
    pub fn pause(&self) {
        match self {
            Self::Redis(redis) => redis.pause(),
            Self::Nats(nats) => nats.pause(),
        }
    }

    /// Thaws what [`pause`](Self::pause) froze (SIGCONT).
    ///
    /// # Panics
    ///
    /// When a server is not running.
    pub fn resume(&self) {
        match self {
            Self::Redis(redis) => redis.resume(),
            Self::Nats(nats) => nats.resume(),
        }
    }

    /// Starts the [`kill`](Self::kill)ed servers again on their ports, with nothing
    /// stored.
    ///
    /// # Panics
    ///
    /// When a server does not come back.
    pub fn start_empty(&mut self) {
        match self {
            Self::Redis(redis) => redis.start_empty(),
            Self::Nats(nats) => nats.restart_empty(),
        }
    }
}

/// Runs each named scenario (an `async fn(TestBackplane)` of the test file) over every
/// backplane: `on_redis::<name>`, `on_redis_cluster::<name>` and `on_nats::<name>`.
#[macro_export]
macro_rules! on_every_backplane {
    ($($scenario:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::backplanes::TestBackplane::redis()).await;
                }
            )*
        }
        mod on_redis_cluster {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::backplanes::TestBackplane::redis_cluster()).await;
                }
            )*
        }
        mod on_nats {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::backplanes::TestBackplane::nats()).await;
                }
            )*
        }
    };
}
