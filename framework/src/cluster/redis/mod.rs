//! The Redis backplane: two connections per node owned by one supervisor task, a
//! pub/sub connection for the channels this node listens on and a multiplexed one
//! pipelining the publishes (see the [module docs](super)).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{ClusterError, ClusterState, Reached, Record, Sink};
use super::publish_queue::{shutting_down, PublishQueue};

mod config;
mod connection;
mod history;
mod layout;
mod presence;
mod publisher;
mod pubsub;
mod sharded;
mod supervisor;

pub use config::{ClusterConfig, InvalidRedisUrl};
use connection::Connection;
use layout::Layout;
use publisher::{publish_loop, Outgoing, Publisher};
use supervisor::{Supervisor, Target};

/// A node's handle on the cluster: cheap checks, never waits.
pub(crate) struct RedisBackplane {
    /// Where this app's data lives in Redis.
    layout: Layout,
    /// This node's id in envelopes (random per process start).
    node: u64,
    state: watch::Receiver<ClusterState>,
    wanted: mpsc::UnboundedSender<Change>,
    publish: PublishQueue<Outgoing>,
    /// How long a history read may wait for the subscription and Redis.
    read_timeout: Duration,
    /// Presence writes, for the presence task.
    presence: Arc<super::presence_queue::Queue>,
    /// Counts up when this node's members must be written again.
    presence_resets: watch::Receiver<u64>,
    /// Whether this node's members are written (see [`presence::SYNCED_WAIT`]).
    presence_synced: watch::Receiver<Option<u64>>,
    presence_names: presence::Names,
    /// The connection publishes and history reads go out on, while connected.
    connection: watch::Receiver<Option<Publisher>>,
    shutdown: CancellationToken,
    max_global_age: Duration,
}

enum Change {
    Subscribe(String),
    Unsubscribe(String),
    /// Answered once every change before it is in place in Redis.
    Confirm(oneshot::Sender<()>),
}

impl RedisBackplane {
    /// Starts the supervisor and publisher tasks on the current runtime.
    pub(crate) fn start(config: ClusterConfig, deliver: Sink) -> Result<Self, InvalidRedisUrl> {
        let sharded = !config.cluster_nodes.is_empty();
        let target = if !sharded {
            Target::Single(redis::Client::open(config.url.as_str()).map_err(InvalidRedisUrl)?)
        } else {
            sharded::target(&config)?
        };
        let (state_tx, state) = watch::channel(ClusterState::Connecting);
        let (wanted, changes) = mpsc::unbounded_channel();
        let (publish, outgoing) =
            PublishQueue::new(config.publish_queue, config.publish_queue_bytes);
        let (connection_tx, connection) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let layout = Layout::new(&config.prefix, sharded);
        let max_global_age = config.max_global_age;
        let read_timeout = HISTORY_READ_TIMEOUT;
        let node = crate::util::random::random_u64();
        let presence_names = presence::Names::new(layout.clone(), node);
        let (presence, presence_changes) = super::presence_queue::Queue::new();
        let (resets_tx, presence_resets) = watch::channel(0);
        let (synced_tx, presence_synced) = watch::channel(None);
        let confirm_subscriptions = {
            let wanted = wanted.clone();
            move || {
                let (confirm, confirmed) = oneshot::channel();
                let asked = wanted.send(Change::Confirm(confirm));
                async move {
                    if asked.is_ok() {
                        let _ = confirmed.await;
                    }
                }
            }
        };
        tokio::spawn(presence::run(
            presence_names.clone(),
            presence.clone(),
            presence_changes,
            confirm_subscriptions,
            connection.clone(),
            presence::Signals {
                resets: resets_tx,
                synced: synced_tx,
            },
            shutdown.clone(),
        ));
        tokio::spawn(publish_loop(
            outgoing,
            connection.clone(),
            config.publish_timeout,
            shutdown.clone(),
        ));
        let supervisor = Supervisor {
            target,
            broadcast: layout.broadcast(),
            layout: layout.clone(),
            config,
            state: state_tx,
            connection: connection_tx,
            deliver,
            wanted: HashSet::new(),
            confirms: Vec::new(),
            shutdown: shutdown.clone(),
            sessions: 0,
        };
        tokio::spawn(supervisor.run(changes));
        Ok(Self {
            layout,
            node,
            presence,
            presence_resets,
            presence_synced,
            presence_names,
            state,
            wanted,
            publish,
            read_timeout,
            connection,
            shutdown,
            max_global_age,
        })
    }

    /// Runs a presence read on the current connection, within the read timeout.
    async fn presence_read<'a, T, F, R>(&'a self, read: F) -> Result<T, ClusterError>
    where
        F: FnOnce(&'a presence::Names, Connection) -> R,
        R: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let current = || match self.connection.borrow().clone() {
            Some(publisher) => Ok((publisher.connection, publisher.session)),
            None => Err(ClusterError::Unavailable("not connected to Redis".into())),
        };
        let (_, session) = current()?;
        // Connected: this node's own members first, written on this connection, as a
        // read before they are back in Redis would count without them.
        let mut synced = self.presence_synced.clone();
        let _ = tokio::time::timeout(
            presence::SYNCED_WAIT,
            synced.wait_for(|synced| *synced == Some(session)),
        )
        .await;
        let (connection, _) = current()?;
        let timeout = self.read_timeout;
        match tokio::time::timeout(timeout, read(&self.presence_names, connection)).await {
            Ok(read) => read.map_err(|error| ClusterError::Unavailable(error.to_string())),
            Err(_) => Err(ClusterError::Timeout(timeout)),
        }
    }

    /// Queues a publish on Redis channel `channel` (numbered and kept first with a
    /// `record`); fails at once while disconnected or when the queue is full. The future
    /// answers once Redis did.
    fn enqueue(
        &self,
        channel: String,
        payload: Vec<u8>,
        record: Option<(Record, history::Keys)>,
    ) -> Result<impl std::future::Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        let (reply, confirmed) = oneshot::channel();
        let bytes = payload.len();
        self.publish.admit(&self.state.borrow(), "Redis", bytes, |held| Outgoing {
            record,
            channel,
            payload,
            reply: Some(reply),
            _held: held,
        })?;
        Ok(async move {
            confirmed
                .await
                .unwrap_or_else(|_| Err(shutting_down()))
                .map(Some)
        })
    }

    /// This node's id in envelopes (it also names the node's presence keys).
    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    /// Messages older than this on arrival are dropped.
    pub(crate) fn max_global_age(&self) -> Duration {
        self.max_global_age
    }

    /// Stops the supervisor and publisher; the connections close with them.
    fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a history read may wait for this node's subscription and for Redis: long
/// enough for a thousand clients recovering at once, each reading its missed posts.
const HISTORY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_its_prefix() {
        let config = ClusterConfig::redis("redis://127.0.0.1/").prefix("app");
        assert_eq!(config.prefix, "app");
        assert_eq!(config.publish_queue(0).publish_queue, 1);
    }

    #[test]
    fn a_bad_url_is_refused_up_front() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let result = RedisBackplane::start(ClusterConfig::redis("not a url"), std::sync::Arc::new(|_| {}));
        assert!(result.is_err());
    }
}