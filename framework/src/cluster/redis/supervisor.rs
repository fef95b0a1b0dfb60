//! The supervisor task that owns a node's Redis connections: connects, subscribes,
//! receives, watches liveness, reconnects with backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::publisher::Publisher;
use super::{history, Change, ClusterConfig, Layout};
use crate::cluster::{ClusterState, Received, Sink};

/// While Redis stays unreachable, one line per this long.
pub(super) const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Owns the Redis connections: connects, subscribes, receives, reconnects.
pub(super) struct Supervisor {
    pub(super) target: Target,
    pub(super) layout: Layout,
    /// The broadcasts' Redis channel (the layout's, made once: checked per message).
    pub(super) broadcast: String,
    pub(super) config: ClusterConfig,
    pub(super) state: watch::Sender<ClusterState>,
    pub(super) connection: watch::Sender<Option<Publisher>>,
    pub(super) deliver: Sink,
    /// Redis channels this node should be subscribed to.
    pub(super) wanted: HashSet<String>,
    /// Waiting for the subscriptions wanted so far to be in place.
    pub(super) confirms: Vec<oneshot::Sender<()>>,
    pub(super) shutdown: CancellationToken,
    /// Connections handed out so far (numbers each [`Publisher`]).
    pub(super) sessions: u64,
}

/// What the supervisor connects to (one per node: size does not matter).
#[allow(clippy::large_enum_variant)]
pub(super) enum Target {
    Single(redis::Client),
    /// A Redis Cluster, and the pushes (sharded messages) its connections deliver.
    Sharded {
        client: redis::cluster::ClusterClient,
        /// Taken by a session while it runs.
        pushes: Option<mpsc::UnboundedReceiver<redis::PushInfo>>,
    },
}

/// Why a connected session with Redis ended.
pub(super) enum Ended {
    Shutdown,
    Lost(String),
}

impl Supervisor {
    pub(super) async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>) {
        self.wanted.insert(self.broadcast.clone());
        let mut failures: u32 = 0;
        let mut last_logged: Option<tokio::time::Instant> = None;
        loop {
            self.set_state(ClusterState::Connecting);
            let (ended, was_connected) = if matches!(self.target, Target::Single(_)) {
                match self.connect().await {
                    Ok((sink, stream, connection)) => {
                        (self.serve(sink, stream, connection, &mut changes).await, true)
                    }
                    Err(error) => (Ended::Lost(error), false),
                }
            } else {
                self.sharded_session(&mut changes).await
            };
            if was_connected {
                failures = 0;
            }
            let error = match ended {
                Ended::Shutdown => return,
                Ended::Lost(error) => error,
            };
            let _ = self.connection.send(None);
            failures = failures.saturating_add(1);
            let delay = self.config.reconnect.jittered(failures);
            // The loss once, then a line per interval while it lasts, not per attempt.
            let now = tokio::time::Instant::now();
            if failures == 1 || last_logged.is_none_or(|at| now - at >= OUTAGE_LOG_INTERVAL) {
                last_logged = Some(now);
                tracing::warn!(
                    target: "streampod::cluster",
                    redis = %self.config.redacted(), %error, attempts = failures, ?delay,
                    "Redis unreachable; global posts fail until it is back, retrying"
                );
            }
            self.set_state(ClusterState::Disconnected { error });
            // Keep track of joins and leaves while waiting, so the resubscribe is current.
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = &mut sleep => break,
                    change = changes.recv() => match change {
                        Some(change) => self.apply(change),
                        None => return,
                    },
                }
            }
        }
    }

    /// Hands a new connection to the publisher, history reads and presence.
    pub(super) fn hand_out(&mut self, connection: Connection, scripts: Arc<history::Scripts>) {
        self.sessions += 1;
        let _ = self.connection.send(Some(Publisher {
            connection,
            scripts,
            session: self.sessions,
        }));
    }

    pub(super) fn set_state(&self, state: ClusterState) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }

    async fn connect(
        &self,
    ) -> Result<
        (
            PubSubSink,
            redis::aio::PubSubStream,
            (MultiplexedConnection, Arc<history::Scripts>),
        ),
        String,
    > {
        let Target::Single(client) = &self.target else {
            return Err("not a single Redis".into());
        };
        let timeout = self.config.connect_timeout;
        let connect = async {
            let pubsub = client.get_async_pubsub().await?;
            // Our deadlines are the only ones: a redis-rs response timeout would fire
            // first and could not say whether the publish went out.
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(None);
            let connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let scripts = history::Scripts::load(&mut Connection::Single(connection.clone())).await?;
            let (mut sink, stream) = pubsub.split();
            let channels: Vec<&String> = self.wanted.iter().collect();
            sink.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>((sink, stream, (connection, Arc::new(scripts))))
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(connected)) => Ok(connected),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no connection within {timeout:?}")),
        }
    }

    /// Runs a connected session until Redis goes away or the server shuts down.
    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut stream: redis::aio::PubSubStream,
        (connection, scripts): (MultiplexedConnection, Arc<history::Scripts>),
        changes: &mut mpsc::UnboundedReceiver<Change>,
    ) -> Ended {
        let mut subscribed = self.wanted.clone();
        // Joins and leaves that came in while connecting.
        while let Ok(change) = changes.try_recv() {
            self.apply(change);
        }
        if let Err(error) = self.sync(&mut sink, &mut subscribed).await {
            return Ended::Lost(error);
        }
        let mut alive = Box::pin(liveness(
            sink.clone(),
            connection.clone(),
            self.config.liveness_interval,
            self.config.liveness_timeout,
        ));
        self.hand_out(Connection::Single(connection.clone()), scripts);
        tracing::info!(
            target: "streampod::cluster",
            redis = %self.config.redacted(), channels = subscribed.len(),
            "connected to Redis; global posts go out"
        );
        self.set_state(ClusterState::Connected);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ended::Shutdown,
                why = &mut alive => return Ended::Lost(why),
                message = stream.next() => match message {
                    Some(message) => self.receive(&message),
                    // Only the pub/sub connection went (Redis's output-buffer limit,
                    // `CLIENT KILL TYPE pubsub`): replace it and keep publishing on
                    // the other, so queued posts are not lost with it.
                    None => match self.replace_pubsub(connection.clone()).await {
                        Ok((new_sink, new_stream)) => {
                            (sink, stream) = (new_sink, new_stream);
                            subscribed.clone_from(&self.wanted);
                            alive = Box::pin(liveness(
                                sink.clone(),
                                connection.clone(),
                                self.config.liveness_interval,
                                self.config.liveness_timeout,
                            ));
                            tracing::info!(target: "streampod::cluster", channels = subscribed.len(), "Redis closed the pub/sub connection; replaced it, publishing went on");
                        }
                        Err(error) => return Ended::Lost(error),
                    },
                },
                change = changes.recv() => {
                    let Some(change) = change else { return Ended::Shutdown };
                    self.apply(change);
                    while let Ok(change) = changes.try_recv() {
                        self.apply(change);
                    }
                    if let Err(error) = self.sync(&mut sink, &mut subscribed).await {
                        return Ended::Lost(error);
                    }
                }
            }
        }
    }

    /// A new pub/sub connection subscribed to every wanted channel, once the publish
    /// connection has shown it is still healthy.
    async fn replace_pubsub(
        &self,
        mut connection: MultiplexedConnection,
    ) -> Result<(PubSubSink, redis::aio::PubSubStream), String> {
        let Target::Single(client) = &self.target else {
            return Err("not a single Redis".into());
        };
        let timeout = self.config.connect_timeout;
        let replace = async {
            redis::cmd("PING")
                .query_async::<redis::Value>(&mut connection)
                .await?;
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            let channels: Vec<&String> = self.wanted.iter().collect();
            sink.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(timeout, replace).await {
            Ok(Ok(replaced)) => Ok(replaced),
            Ok(Err(error)) => Err(format!("pub/sub connection closed, and replacing it failed: {error}")),
            Err(_) => Err(format!("pub/sub connection closed, and no new one within {timeout:?}")),
        }
    }

    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Subscribe(channel) => {
                self.wanted.insert(channel);
            }
            Change::Unsubscribe(channel) => {
                self.wanted.remove(&channel);
            }
            Change::Confirm(confirm) => self.confirms.push(confirm),
        }
    }

    /// Brings Redis's subscriptions in line with `wanted`, one command each way.
    async fn sync(
        &mut self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), String> {
        let (add, remove) = self.subscription_changes(subscribed);
        let update = async {
            if !add.is_empty() {
                sink.subscribe(&add).await?;
            }
            if !remove.is_empty() {
                sink.unsubscribe(&remove).await?;
            }
            Ok(())
        };
        self.settle(update, self.config.publish_timeout, subscribed, "SUBSCRIBE")
            .await
    }

    /// The channels to subscribe and to leave for Redis to match `wanted`.
    pub(super) fn subscription_changes(&self, subscribed: &HashSet<String>) -> (Vec<String>, Vec<String>) {
        (
            self.wanted.difference(subscribed).cloned().collect(),
            subscribed.difference(&self.wanted).cloned().collect(),
        )
    }

    /// Waits up to `timeout` for a subscription `update`; once it is confirmed,
    /// `subscribed` is `wanted`.
    pub(super) async fn settle(
        &mut self,
        update: impl std::future::Future<Output = redis::RedisResult<()>>,
        timeout: Duration,
        subscribed: &mut HashSet<String>,
        command: &str,
    ) -> Result<(), String> {
        match tokio::time::timeout(timeout, update).await {
            Ok(Ok(())) => {
                subscribed.clone_from(&self.wanted);
                for confirm in self.confirms.drain(..) {
                    let _ = confirm.send(());
                }
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("{command} not confirmed within {timeout:?}")),
        }
    }

    fn receive(&self, message: &redis::Msg) {
        self.deliver_from(message.get_channel_name(), message.get_payload_bytes());
    }

    /// Hands a message of Redis channel `name` to the central.
    pub(super) fn deliver_from(&self, name: &str, payload: &[u8]) {
        let channel = if name == self.broadcast {
            None
        } else {
            match self.layout.channel_of(name) {
                Some(channel) => Some(channel),
                None => return,
            }
        };
        (self.deliver)(Received {
            channel: channel.as_deref(),
            payload,
        });
    }
}

/// `PING`s both connections every `interval` until one is not answered within
/// `timeout` (a hung Redis keeps its sockets open and answers nothing); says why.
/// Pub/sub connections may `PING` while subscribed.
pub(super) async fn liveness(
    mut sink: PubSubSink,
    mut connection: MultiplexedConnection,
    interval: Duration,
    timeout: Duration,
) -> String {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let ping = redis::cmd("PING");
    loop {
        ticks.tick().await;
        let subscriber = sink.ping::<redis::Value>();
        let publisher = ping.query_async::<redis::Value>(&mut connection);
        match tokio::time::timeout(timeout, futures_util::future::try_join(subscriber, publisher))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return format!("PING failed: {error}"),
            Err(_) => return format!("Redis did not answer PING within {timeout:?}"),
        }
    }
}
