//! The NATS backplane: `Reach::Global` posts over core NATS subjects.
//!
//! A streampod channel is the subject `<prefix>.channel.<name>` (the name escaped into
//! one subject token), broadcasts go on `<prefix>.broadcast`. A node subscribes to a
//! channel's subject while it has a listener there; the client resubscribes by itself
//! after a reconnect. Publishes queue (bounded in posts and bytes) and a task sends
//! whatever is queued at once, then confirms the lot with one round trip through the
//! server: a request to a subject nobody listens on, which the server answers "no
//! responders" only after it handled every publish before it on the connection. So an
//! `Ok` means the server took the posts, as `PUBLISH`'s answer does on Redis; NATS does
//! not count receivers ([`Reached`] is `None`). While the connection is down, posts fail
//! at once as not published.
//!
//! Pub/sub only, for now: channels with history keep none across a NATS cluster (joins
//! say `recovered: false`), and presence reads answer `Unavailable`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{ClusterError, ClusterState, PubSub, Reached, Received, Sink, Topic};
use super::publish_queue::{next_batch, shutting_down, PublishQueue};
use crate::util::byte_budget::HeldBytes;
use crate::util::log_limit::RateLimitedLog;

mod config;

pub use config::{InvalidNatsUrl, NatsConfig};

/// A node's handle on the NATS cluster: cheap checks, never waits.
pub(crate) struct NatsBackplane {
    subjects: Subjects,
    node: u64,
    state: watch::Receiver<ClusterState>,
    changes: mpsc::UnboundedSender<Change>,
    publish: PublishQueue<Outgoing>,
    shutdown: CancellationToken,
    max_global_age: Duration,
}

/// A subscription change: `None` is the broadcasts.
enum Change {
    Subscribe(Option<String>),
    Unsubscribe(Option<String>),
}

struct Outgoing {
    subject: String,
    payload: Bytes,
    reply: oneshot::Sender<Result<Reached, ClusterError>>,
    _held: HeldBytes,
}

/// The subjects of one app (one prefix).
#[derive(Debug, Clone)]
struct Subjects {
    prefix: String,
}

impl Subjects {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: escape(prefix),
        }
    }

    fn topic(&self, topic: Option<&str>) -> String {
        match topic {
            Some(channel) => format!("{}.channel.{}", self.prefix, escape(channel)),
            None => format!("{}.broadcast", self.prefix),
        }
    }

    /// A subject nobody subscribes to: the confirmations' requests go there.
    fn confirm(&self, node: u64) -> String {
        format!("{}.confirm.{node:x}", self.prefix)
    }
}

/// `name` as one subject token: letters, digits, `-` and `_` as they are, every other
/// byte as `%XX`; the empty name as `%`.
fn escape(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut escaped = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

impl NatsBackplane {
    /// Starts the connection, subscription and publisher tasks on the current runtime.
    pub(crate) fn start(config: NatsConfig, deliver: Sink) -> Result<Self, InvalidNatsUrl> {
        for server in config.url.split(',') {
            server
                .trim()
                .parse::<async_nats::ServerAddr>()
                .map_err(InvalidNatsUrl)?;
        }
        let (state_tx, state) = watch::channel(ClusterState::Connecting);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (publish, outgoing) = PublishQueue::new(config.publish_queue, config.publish_queue_bytes);
        let shutdown = CancellationToken::new();
        let subjects = Subjects::new(&config.prefix);
        let node = crate::util::random::random_u64();
        let backplane = Self {
            subjects: subjects.clone(),
            node,
            state,
            changes,
            publish,
            shutdown: shutdown.clone(),
            max_global_age: config.max_global_age,
        };
        let connection = Connection {
            config,
            subjects,
            node,
            state: state_tx,
            deliver,
            shutdown,
        };
        tokio::spawn(connection.run(changes_rx, outgoing));
        Ok(backplane)
    }

    /// This node's id in envelopes.
    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    /// Messages older than this on arrival are dropped.
    pub(crate) fn max_global_age(&self) -> Duration {
        self.max_global_age
    }
}

impl Drop for NatsBackplane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn topic_name(topic: Topic<'_>) -> Option<String> {
    match topic {
        Topic::Channel(channel) => Some(channel.to_owned()),
        Topic::Broadcasts => None,
    }
}

/// Pub/sub over core NATS: one subject per channel, confirmed publishes.
impl PubSub for NatsBackplane {
    fn subscribe(&self, topic: Topic<'_>) {
        let _ = self.changes.send(Change::Subscribe(topic_name(topic)));
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        let _ = self.changes.send(Change::Unsubscribe(topic_name(topic)));
    }

    fn publish(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
    ) -> Result<impl std::future::Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        let subject = match topic {
            Topic::Channel(channel) => self.subjects.topic(Some(channel)),
            Topic::Broadcasts => self.subjects.topic(None),
        };
        let (reply, confirmed) = oneshot::channel();
        let bytes = payload.len();
        self.publish.admit(&self.state.borrow(), "NATS", bytes, |held| Outgoing {
            subject,
            payload: Bytes::from(payload),
            reply,
            _held: held,
        })?;
        Ok(async move {
            confirmed.await.unwrap_or_else(|_| Err(shutting_down()))
        })
    }

    fn state(&self) -> watch::Receiver<ClusterState> {
        self.state.clone()
    }

    fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// What the connection task owns.
struct Connection {
    config: NatsConfig,
    subjects: Subjects,
    node: u64,
    state: watch::Sender<ClusterState>,
    deliver: Sink,
    shutdown: CancellationToken,
}

impl Connection {
/// Connects (in the background: the server starts while NATS is down), then serves
/// subscription changes and publishes until shutdown.
async fn run(
    self,
    mut changes: mpsc::UnboundedReceiver<Change>,
    outgoing: mpsc::Receiver<Outgoing>,
) {
    let Connection {
        config,
        subjects,
        node,
        state,
        deliver,
        shutdown,
    } = self;
    let state = Arc::new(state);
    let redacted = config.redacted();
    let events = {
        let state = state.clone();
        let redacted = redacted.clone();
        move |event: async_nats::Event| {
            let state = state.clone();
            let redacted = redacted.clone();
            async move { on_event(&state, &redacted, &event) }
        }
    };
    let options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(config.connect_timeout)
        .ping_interval(config.ping_interval)
        .request_timeout(Some(config.publish_timeout))
        .name(format!("streampod-{node:x}"))
        .event_callback(events);
    let client = tokio::select! {
        () = shutdown.cancelled() => return,
        client = options.connect(config.url.as_str()) => match client {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(target: "streampod::cluster", nats = %redacted, %error, "cannot start the NATS client; global posts fail");
                state.send_replace(ClusterState::Disconnected { error: error.to_string() });
                return;
            }
        },
    };
    tokio::spawn(publish_loop(
        client.clone(),
        subjects.confirm(node),
        config.publish_timeout,
        outgoing,
        shutdown.clone(),
    ));
    let mut subscribed: HashMap<Option<String>, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let change = tokio::select! {
            () = shutdown.cancelled() => break,
            change = changes.recv() => match change {
                Some(change) => change,
                None => break,
            },
        };
        match change {
            Change::Subscribe(topic) => {
                if subscribed.contains_key(&topic) {
                    continue;
                }
                let subject = subjects.topic(topic.as_deref());
                match client.subscribe(subject).await {
                    Ok(subscriber) => {
                        let forward = tokio::spawn(forward(subscriber, topic.clone(), deliver.clone()));
                        subscribed.insert(topic, forward);
                    }
                    Err(error) => {
                        tracing::warn!(target: "streampod::cluster", %error, "NATS subscription failed; this node hears nothing of the channel");
                    }
                }
            }
            Change::Unsubscribe(topic) => {
                if let Some(forward) = subscribed.remove(&topic) {
                    // Dropping the subscriber unsubscribes.
                    forward.abort();
                }
            }
        }
    }
    for (_, forward) in subscribed {
        forward.abort();
    }
}
}

/// Turns the client's connection events into the node's cluster state.
fn on_event(state: &watch::Sender<ClusterState>, nats: &str, event: &async_nats::Event) {
    static ERRORS: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
    match event {
        async_nats::Event::Connected => {
            tracing::info!(target: "streampod::cluster", nats, "connected to NATS; global posts go out");
            state.send_replace(ClusterState::Connected);
        }
        async_nats::Event::Disconnected => {
            tracing::warn!(target: "streampod::cluster", nats, "NATS unreachable; global posts fail until it is back, retrying");
            state.send_replace(ClusterState::Disconnected {
                error: "the connection to NATS was lost".into(),
            });
        }
        async_nats::Event::Closed => {
            state.send_replace(ClusterState::Disconnected {
                error: "the NATS client closed".into(),
            });
        }
        other => {
            if let Some(left_out) = ERRORS.ready() {
                tracing::warn!(target: "streampod::cluster", nats, event = %other, left_out, "NATS event");
            }
        }
    }
}

/// Hands every message of one subscription to the central, in order.
async fn forward(mut subscriber: async_nats::Subscriber, topic: Option<String>, deliver: Sink) {
    while let Some(message) = subscriber.next().await {
        deliver(Received {
            channel: topic.as_deref(),
            payload: &message.payload,
        });
    }
}

/// Sends queued publishes, everything queued at once, then confirms them with one
/// round trip through the server.
async fn publish_loop(
    client: async_nats::Client,
    confirm_subject: String,
    timeout: Duration,
    mut outgoing: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) {
    static FAILED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
    let mut batch = Vec::new();
    while next_batch(&mut outgoing, &mut batch, &shutdown).await {
        refuse_too_large(&client, &mut batch);
        if batch.is_empty() {
            continue;
        }
        let outcome = match tokio::time::timeout(timeout, send(&client, &confirm_subject, &batch)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ClusterError::Timeout(timeout)),
        };
        if let Err(error) = &outcome {
            if let Some(left_out) = FAILED_LOG.ready() {
                tracing::warn!(
                    target: "streampod::cluster",
                    %error, posts = batch.len(), earlier_failures_left_out = left_out,
                    "global posts not confirmed by NATS (a timeout or unconfirmed one may have gone out)"
                );
            }
        }
        for post in batch.drain(..) {
            let _ = post.reply.send(outcome.clone());
        }
    }
}

/// Answers the posts of `batch` larger than the server takes (its `max_payload`, 1 MiB
/// by default; unknown before the first connection) as certainly not published, and
/// takes them out: the server would close the connection over them.
fn refuse_too_large(client: &async_nats::Client, batch: &mut Vec<Outgoing>) {
    let most = match client.server_info().max_payload {
        0 => return,
        most => most,
    };
    if batch.iter().all(|post| post.payload.len() <= most) {
        return;
    }
    let (fit, too_large): (Vec<Outgoing>, Vec<Outgoing>) =
        batch.drain(..).partition(|post| post.payload.len() <= most);
    *batch = fit;
    for post in too_large {
        let _ = post.reply.send(Err(ClusterError::Unavailable(format!(
            "NATS takes messages of at most {most} bytes (the server's max_payload), this \
             post is {} bytes",
            post.payload.len()
        ))));
    }
}

/// Publishes `batch` in order, then asks the server to confirm it took them.
async fn send(client: &async_nats::Client, confirm_subject: &str, batch: &[Outgoing]) -> Result<Reached, ClusterError> {
    for post in batch {
        client
            .publish(post.subject.clone(), post.payload.clone())
            .await
            .map_err(|error| ClusterError::Unconfirmed(error.to_string()))?;
    }
    match client.request(confirm_subject.to_owned(), Bytes::new()).await {
        // The server answered after handling every publish before the request.
        Ok(_) => Ok(None),
        Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => Ok(None),
        Err(error) => Err(ClusterError::Unconfirmed(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_become_one_subject_token() {
        let subjects = Subjects::new("app");
        assert_eq!(subjects.topic(Some("room-1")), "app.channel.room-1");
        assert_eq!(subjects.topic(Some("a.b *>")), "app.channel.a%2Eb%20%2A%3E");
        assert_eq!(subjects.topic(Some("")), "app.channel.%");
        assert_eq!(subjects.topic(None), "app.broadcast");
        assert_eq!(Subjects::new("my app").topic(None), "my%20app.broadcast");
        assert_eq!(subjects.confirm(255), "app.confirm.ff");
        // Distinct names stay distinct.
        assert_ne!(escape("%41"), escape("A"));
    }
}
