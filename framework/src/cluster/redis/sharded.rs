//! The Redis Cluster session: one cluster connection (redis-rs routes each command to
//! its slot's master) for `SSUBSCRIBE` and `SPUBLISH`, sharded messages arriving as
//! RESP3 pushes, and a liveness `PING` to every master.

use std::collections::HashSet;
use std::sync::Arc;

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{PushKind, Value};
use tokio::sync::mpsc;

use super::config::{ClusterConfig, InvalidRedisUrl};
use super::connection::Connection;
use super::history;
use super::supervisor::{Ended, Supervisor, Target};
use super::Change;
use crate::cluster::ClusterState;

/// The Redis Cluster target of `config`, with the channel its pushes arrive on.
pub(super) fn target(config: &ClusterConfig) -> Result<Target, InvalidRedisUrl> {
    let (pushes_tx, pushes) = mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new(config.cluster_nodes.iter().map(String::as_str))
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes_tx)
        .connection_timeout(config.connect_timeout)
        // Our deadlines (publishes, history reads) decide; redis-rs's must not fire
        // first.
        .response_timeout(
            config
                .publish_timeout
                .saturating_mul(4)
                .max(super::HISTORY_READ_TIMEOUT),
        )
        // A publish retried after a connection error could go out twice.
        .retries(1)
        .build()
        .map_err(InvalidRedisUrl)?;
    Ok(Target::Sharded {
        client,
        pushes: Some(pushes),
    })
}

impl Supervisor {
    /// Connects to the Redis Cluster and serves until it goes away: `(why it ended,
    /// whether it was connected)`.
    pub(super) async fn sharded_session(
        &mut self,
        changes: &mut mpsc::UnboundedReceiver<Change>,
    ) -> (Ended, bool) {
        let Target::Sharded { client, pushes } = &mut self.target else {
            return (Ended::Lost("not a Redis Cluster".into()), false);
        };
        let client = client.clone();
        let Some(mut received) = pushes.take() else {
            return (Ended::Lost("push channel missing".into()), false);
        };
        let ended = self.serve_sharded(&client, &mut received, changes).await;
        if let Target::Sharded { pushes, .. } = &mut self.target {
            *pushes = Some(received);
        }
        ended
    }

    async fn serve_sharded(
        &mut self,
        client: &redis::cluster::ClusterClient,
        received: &mut mpsc::UnboundedReceiver<redis::PushInfo>,
        changes: &mut mpsc::UnboundedReceiver<Change>,
    ) -> (Ended, bool) {
        let timeout = self.config.connect_timeout;
        // Two connections: one for publishes and reads, one for the liveness checks,
        // so a burst of reads queued on the first is not taken for a silent Redis.
        let connected = tokio::time::timeout(timeout, async {
            Ok::<_, redis::RedisError>((client.get_async_connection().await?, client.get_async_connection().await?))
        })
        .await;
        let (mut connection, mut liveness) = match connected {
            Ok(Ok(connections)) => connections,
            Ok(Err(error)) => return (Ended::Lost(error.to_string()), false),
            Err(_) => {
                return (
                    Ended::Lost(format!("no cluster connection within {timeout:?}")),
                    false,
                )
            }
        };
        while let Ok(change) = changes.try_recv() {
            self.apply(change);
        }
        let mut subscribed = HashSet::new();
        if let Err(error) = self.sync_sharded(&mut connection, &mut subscribed).await {
            return (Ended::Lost(error), false);
        }
        let shared = Connection::Sharded(connection.clone());
        let scripts = match tokio::time::timeout(timeout, history::Scripts::load(&mut shared.clone())).await {
            Ok(Ok(scripts)) => Arc::new(scripts),
            Ok(Err(error)) => return (Ended::Lost(format!("SCRIPT LOAD failed: {error}")), false),
            Err(_) => return (Ended::Lost(format!("SCRIPT LOAD not answered within {timeout:?}")), false),
        };
        // Pushes from an earlier connection are not this session's.
        while received.try_recv().is_ok() {}
        self.hand_out(shared, scripts);
        tracing::info!(
            target: "streampod::cluster",
            redis = %self.config.redacted(), channels = subscribed.len(),
            "connected to the Redis Cluster; global posts go out"
        );
        self.set_state(ClusterState::Connected);
        let mut ticks = tokio::time::interval(self.config.liveness_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return (Ended::Shutdown, true),
                _ = ticks.tick() => {
                    if let Err(why) = self.ping_masters(&mut liveness).await {
                        return (Ended::Lost(why), true);
                    }
                }
                push = received.recv() => match push {
                    Some(push) => self.receive_push(&push),
                    None => return (Ended::Shutdown, true),
                },
                change = changes.recv() => {
                    let Some(change) = change else { return (Ended::Shutdown, true) };
                    self.apply(change);
                    while let Ok(change) = changes.try_recv() {
                        self.apply(change);
                    }
                    if let Err(error) = self.sync_sharded(&mut connection, &mut subscribed).await {
                        return (Ended::Lost(error), true);
                    }
                }
            }
        }
    }

    /// `PING`s every master; a silent or failing one ends the session.
    async fn ping_masters(&self, connection: &mut ClusterConnection) -> Result<(), String> {
        let timeout = self.config.liveness_timeout;
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::AllSucceeded),
        ));
        match tokio::time::timeout(
            timeout,
            connection.route_command(redis::cmd("PING"), routing),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(format!("PING failed: {error}")),
            Err(_) => {
                return Err(format!(
                    "a Redis Cluster master did not answer PING within {timeout:?}"
                ))
            }
        }
        // A dead master drops out of the slot map, so the PINGs above still succeed:
        // the cluster's own verdict says whether every slot is served.
        let info = tokio::time::timeout(
            timeout,
            redis::cmd("CLUSTER").arg("INFO").query_async::<String>(connection),
        )
        .await;
        match info {
            Ok(Ok(text)) if text.contains("cluster_state:ok") => Ok(()),
            Ok(Ok(_)) => Err("the Redis Cluster is down (cluster_state:fail: a shard has no master)".into()),
            Ok(Err(error)) => Err(format!("CLUSTER INFO failed: {error}")),
            Err(_) => Err(format!("CLUSTER INFO not answered within {timeout:?}")),
        }
    }

    /// Brings the shards' subscriptions in line with `wanted`, a command per channel
    /// (channels of different slots cannot share one).
    async fn sync_sharded(
        &mut self,
        connection: &mut ClusterConnection,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), String> {
        let (add, remove) = self.subscription_changes(subscribed);
        let update = async {
            for channel in &add {
                connection.ssubscribe(channel).await?;
            }
            for channel in &remove {
                connection.sunsubscribe(channel).await?;
            }
            Ok(())
        };
        self.settle(update, self.config.connect_timeout, subscribed, "SSUBSCRIBE")
            .await
    }

    /// A sharded message (`smessage` channel payload) goes to the central; other
    /// pushes (subscription confirmations, disconnections redis-rs recovers from) are
    /// not messages.
    fn receive_push(&self, push: &redis::PushInfo) {
        if push.kind != PushKind::SMessage {
            return;
        }
        if let [Value::BulkString(channel), Value::BulkString(payload), ..] = push.data.as_slice()
        {
            if let Ok(channel) = std::str::from_utf8(channel) {
                self.deliver_from(channel, payload);
            }
        }
    }
}
