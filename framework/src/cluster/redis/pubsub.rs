//! Redis pub/sub behind the seam: a streampod channel is the Redis channel
//! `<prefix>:channel:<name>`, broadcasts go on `<prefix>:broadcast` (which the
//! supervisor always subscribes), publishes are pipelined by the publisher task.

use std::future::Future;

use tokio::sync::watch;

use super::{Change, RedisBackplane};
use crate::cluster::{ClusterError, ClusterState, PubSub, Reached, Topic};

impl PubSub for RedisBackplane {
    fn subscribe(&self, topic: Topic<'_>) {
        if let Topic::Channel(channel) = topic {
            let _ = self
                .wanted
                .send(Change::Subscribe(self.layout.channel(channel)));
        }
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        if let Topic::Channel(channel) = topic {
            let _ = self
                .wanted
                .send(Change::Unsubscribe(self.layout.channel(channel)));
        }
    }

    fn publish(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
    ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        let name = match topic {
            Topic::Channel(channel) => self.layout.channel(channel),
            Topic::Broadcasts => self.layout.broadcast(),
        };
        self.enqueue(name, payload, None)
    }

    fn state(&self) -> watch::Receiver<ClusterState> {
        self.state.clone()
    }

    fn stop(&self) {
        RedisBackplane::stop(self);
    }
}
