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
//! Channels with history keep it in JetStream (see [`history`]): one stream per
//! channel, whose sequence numbers the posts in one order for every node. Presence
//! lives in JetStream key-value buckets (see [`presence`]), with the members of a node
//! that stops beating removed and announced as leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::presence_queue::{Change as PresenceChange, Queue as PresenceQueue};
use super::{
    ClusterError, ClusterState, History, HistoryRead, Presence, PubSub, Reached, Received,
    Retention, Sink, StoredMember, Topic,
};
use super::publish_queue::{next_batch, shutting_down, PublishQueue};
use crate::util::byte_budget::HeldBytes;
use crate::util::log_limit::RateLimitedLog;
use history::{Ensured, Kept, Storage};

mod config;
mod history;
mod presence;

pub use config::{InvalidNatsUrl, NatsConfig};

/// How long a history read may wait for this node's feed of the channel and JetStream.
const HISTORY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's handle on the NATS cluster: cheap checks, never waits.
pub(crate) struct NatsBackplane {
    subjects: Subjects,
    storage: Storage,
    node: u64,
    state: watch::Receiver<ClusterState>,
    changes: mpsc::UnboundedSender<Change>,
    publish: PublishQueue<Outgoing>,
    presence: Arc<PresenceQueue>,
    presence_shared: Arc<presence::Shared>,
    shutdown: CancellationToken,
    max_global_age: Duration,
}

/// A subscription change (`None` is the broadcasts), or a history read asking for the
/// channel's feed.
enum Change {
    Subscribe(Option<String>),
    Unsubscribe(Option<String>),
    Feed(String, oneshot::Sender<Feed>),
    /// Starts this node's feed of a channel with history it subscribes to.
    Follow(String),
    /// Answered once the changes before it are applied (the subscriptions sent).
    Flush(oneshot::Sender<()>),
}

/// What a history read needs: JetStream, and this node's feed of the channel when the
/// node subscribes to it (`true` once a read may follow).
struct Feed {
    js: async_nats::jetstream::Context,
    ready: Option<watch::Receiver<bool>>,
}

struct Outgoing {
    subject: String,
    /// Kept in the channel's history stream, then published from there.
    kept: Option<Kept>,
    payload: Bytes,
    reply: oneshot::Sender<Result<Reached, ClusterError>>,
    _held: HeldBytes,
}

/// The subjects of one app (one prefix).
#[derive(Debug, Clone)]
struct Subjects {
    prefix: String,
    history: history::Names,
}

impl Subjects {
    fn new(prefix: &str) -> Self {
        let prefix = escape(prefix);
        Self {
            history: history::Names::new(&prefix),
            prefix,
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
        let (presence, presence_changes) = PresenceQueue::new();
        let presence_shared = presence::Shared::new(presence::Keys::new(&config.prefix, node));
        let storage = Storage {
            memory: config.history_in_memory,
            replicas: config.history_replicas,
        };
        let backplane = Self {
            subjects: subjects.clone(),
            storage,
            node,
            state,
            changes,
            publish,
            presence: presence.clone(),
            presence_shared: presence_shared.clone(),
            shutdown: shutdown.clone(),
            max_global_age: config.max_global_age,
        };
        let connection = Connection {
            config,
            storage,
            presence: (presence, presence_changes, presence_shared),
            flush: backplane.changes.clone(),
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
        self.enqueue(subject, None, payload)
    }

    fn state(&self) -> watch::Receiver<ClusterState> {
        self.state.clone()
    }

    fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl NatsBackplane {
    /// Queues a publish (kept first when `kept` says so).
    fn enqueue(
        &self,
        subject: String,
        kept: Option<Kept>,
        payload: Vec<u8>,
    ) -> Result<impl std::future::Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        let (reply, confirmed) = oneshot::channel();
        let bytes = payload.len();
        self.publish.admit(&self.state.borrow(), "NATS", bytes, |held| Outgoing {
            subject,
            kept,
            payload: Bytes::from(payload),
            reply,
            _held: held,
        })?;
        Ok(async move { confirmed.await.unwrap_or_else(|_| Err(shutting_down())) })
    }

    /// Waits until connected, this node's feed of `channel` is in place (when it
    /// subscribes to the channel), then reads.
    async fn read_when_fed(
        &self,
        channel: &str,
        since: Option<(&str, u64)>,
        retention: Retention,
    ) -> Result<HistoryRead, ClusterError> {
        let unavailable = || ClusterError::Unavailable("not connected to NATS".into());
        let mut state = self.state.clone();
        state
            .wait_for(|state| *state == ClusterState::Connected)
            .await
            .map_err(|_| unavailable())?;
        let (reply, fed) = oneshot::channel();
        self.changes
            .send(Change::Feed(channel.to_owned(), reply))
            .map_err(|_| unavailable())?;
        let Feed { js, ready } = fed.await.map_err(|_| unavailable())?;
        if let Some(mut ready) = ready {
            ready.wait_for(|ready| *ready).await.map_err(|_| unavailable())?;
        }
        history::read(&js, &self.subjects.history, self.storage, channel, since, retention).await
    }
}

/// Cluster-wide history in JetStream: a stream per channel numbers and keeps its posts;
/// each node follows the streams of its channels with an ordered consumer.
impl History for NatsBackplane {
    fn append_and_publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
        retention: Retention,
    ) -> Result<impl std::future::Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        let names = &self.subjects.history;
        let kept = Kept {
            stream: names.stream(channel),
            subject: names.subject(channel),
            retention,
        };
        self.enqueue(kept.subject.clone(), Some(kept), payload)
    }

    fn follow(&self, channel: &str, _retention: Retention) {
        let _ = self.changes.send(Change::Follow(channel.to_owned()));
    }

    async fn read(
        &self,
        channel: &str,
        since: Option<(&str, u64)>,
        retention: Retention,
    ) -> Result<HistoryRead, ClusterError> {
        tokio::time::timeout(HISTORY_READ_TIMEOUT, self.read_when_fed(channel, since, retention))
            .await
            .unwrap_or(Err(ClusterError::Timeout(HISTORY_READ_TIMEOUT)))
    }
}

/// Cluster-wide presence in JetStream key-value buckets: a key per member, each node's
/// heartbeat in a bucket every node watches, changes announced on the channel.
impl Presence for NatsBackplane {
    fn join(&self, member: StoredMember) {
        self.presence.push(PresenceChange::Join {
            channel: member.channel,
            id: member.id,
            member: member.member,
        });
    }

    fn leave(&self, channel: &str, id: &str) {
        self.presence.push(PresenceChange::Leave {
            channel: channel.to_owned(),
            id: id.to_owned(),
        });
    }

    fn resync(&self, members: Vec<StoredMember>) {
        self.presence.push(PresenceChange::Resync(
            members
                .into_iter()
                .map(|member| (member.channel, member.id, member.member))
                .collect(),
        ));
    }

    async fn members(&self, channel: &str, limit: usize) -> Result<Vec<Vec<u8>>, ClusterError> {
        self.presence_read(channel, Some(limit.max(1)))
            .await
            .map(|(members, _)| members)
    }

    async fn count(&self, channel: &str) -> Result<usize, ClusterError> {
        self.presence_read(channel, None).await.map(|(_, count)| count)
    }

    fn resets(&self) -> watch::Receiver<u64> {
        self.presence_shared.resets.subscribe()
    }
}

impl NatsBackplane {
    /// Reads `channel`'s members once this node's own are written on this connection
    /// (or a short wait passed), within the read timeout.
    async fn presence_read(&self, channel: &str, limit: Option<usize>) -> Result<(Vec<Vec<u8>>, usize), ClusterError> {
        if *self.state.borrow() != ClusterState::Connected {
            return Err(ClusterError::Unavailable("not connected to NATS".into()));
        }
        let read = async {
            self.presence_shared.synced().await;
            self.presence_shared.read(channel, limit).await
        };
        tokio::time::timeout(HISTORY_READ_TIMEOUT, read)
            .await
            .unwrap_or(Err(ClusterError::Timeout(HISTORY_READ_TIMEOUT)))
    }
}

/// What the connection task owns.
struct Connection {
    config: NatsConfig,
    storage: Storage,
    presence: (
        Arc<PresenceQueue>,
        mpsc::UnboundedReceiver<PresenceChange>,
        Arc<presence::Shared>,
    ),
    flush: mpsc::UnboundedSender<Change>,
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
        storage,
        presence: (presence_queue, presence_changes, presence_shared),
        flush,
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
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(config.publish_timeout.max(Duration::from_secs(2)))
        .ack_timeout(config.publish_timeout)
        .build(client.clone());
    tokio::spawn(
        Publisher {
            client: client.clone(),
            js: js.clone(),
            storage,
            ensured: Ensured::default(),
            confirm_subject: subjects.confirm(node),
            timeout: config.publish_timeout,
        }
        .run(outgoing, shutdown.clone()),
    );
    let presence_task = presence::Task {
        shared: presence_shared,
        js: js.clone(),
        client: client.clone(),
        channel_subject: {
            let subjects = subjects.clone();
            Box::new(move |channel| subjects.topic(Some(channel)))
        },
        storage,
    };
    let subscribed = move || {
        let (done, flushed) = oneshot::channel();
        let asked = flush.send(Change::Flush(done)).is_ok();
        async move {
            if asked {
                let _ = flushed.await;
            }
        }
    };
    tokio::spawn(presence_task.run(
        presence_queue,
        presence_changes,
        subscribed,
        state.subscribe(),
        shutdown.clone(),
    ));
    let mut subscribed: HashMap<Option<String>, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut feeds = Feeds {
        running: HashMap::new(),
        js: js.clone(),
        client: client.clone(),
        names: subjects.history.clone(),
        deliver: deliver.clone(),
    };
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
                if let Some(channel) = topic {
                    feeds.stop(&channel);
                }
            }
            Change::Feed(channel, reply) => {
                let ready = subscribed
                    .contains_key(&Some(channel.clone()))
                    .then(|| feeds.follow(channel));
                let _ = reply.send(Feed { js: js.clone(), ready });
            }
            Change::Follow(channel) => {
                if subscribed.contains_key(&Some(channel.clone())) {
                    feeds.follow(channel);
                }
            }
            Change::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
    for (_, forward) in subscribed {
        forward.abort();
    }
    for (_, (feed, _)) in feeds.running {
        feed.abort();
    }
}
}

/// This node's feeds of its channels with history (see [`history::feed`]).
struct Feeds {
    running: HashMap<String, (tokio::task::JoinHandle<()>, watch::Receiver<bool>)>,
    js: async_nats::jetstream::Context,
    client: async_nats::Client,
    names: history::Names,
    deliver: Sink,
}

impl Feeds {
    /// Starts `channel`'s feed unless it runs; says when a history read may follow.
    fn follow(&mut self, channel: String) -> watch::Receiver<bool> {
        let (_, ready) = self.running.entry(channel.clone()).or_insert_with(|| {
            let (ready_tx, ready) = watch::channel(false);
            let task = tokio::spawn(history::feed(
                self.js.clone(),
                self.client.clone(),
                self.names.stream(&channel),
                channel,
                self.deliver.clone(),
                ready_tx,
            ));
            (task, ready)
        });
        ready.clone()
    }

    /// Stops `channel`'s feed (this node's last listener left).
    fn stop(&mut self, channel: &str) {
        if let Some((feed, _)) = self.running.remove(channel) {
            feed.abort();
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

/// Sends queued publishes: core ones in order, then confirmed together with one round
/// trip through the server; kept ones (history) each confirmed by JetStream's
/// acknowledgement.
struct Publisher {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    storage: Storage,
    ensured: Ensured,
    confirm_subject: String,
    timeout: Duration,
}

/// Where one post of a batch stands.
enum Sent {
    /// Not handed to NATS (yet): certainly not published.
    No,
    /// Published on core NATS: confirmed with the batch.
    Core,
    /// Published to JetStream: its acknowledgement.
    Kept(async_nats::jetstream::context::PublishAckFuture),
    /// Being handed over, or published to JetStream and its acknowledgement awaited:
    /// may have gone out.
    Awaited,
    /// Settled.
    Done(Result<Reached, ClusterError>),
}

impl Publisher {
    /// Sends everything queued at once, until shutdown.
    async fn run(mut self, mut outgoing: mpsc::Receiver<Outgoing>, shutdown: CancellationToken) {
        static FAILED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
        let mut batch = Vec::new();
        let mut connects = 0;
        while next_batch(&mut outgoing, &mut batch, &shutdown).await {
            refuse_too_large(&self.client, &mut batch);
            if batch.is_empty() {
                continue;
            }
            let now = self.client.statistics().connects.load(std::sync::atomic::Ordering::Relaxed);
            if now != connects {
                // A new connection: NATS may have lost the streams.
                self.ensured.forget(None);
                connects = now;
            }
            let mut sent: Vec<Sent> = batch.iter().map(|_| Sent::No).collect();
            let deadline = tokio::time::Instant::now() + self.timeout;
            let _ = tokio::time::timeout_at(deadline, self.send(&batch, &mut sent)).await;
            for (post, sent) in batch.drain(..).zip(sent) {
                let outcome = match sent {
                    Sent::Done(outcome) => outcome,
                    Sent::No => Err(ClusterError::Unavailable("NATS did not take the post in time".into())),
                    Sent::Core | Sent::Kept(_) | Sent::Awaited => Err(ClusterError::Timeout(self.timeout)),
                };
                if let Err(error) = &outcome {
                    if let Some(left_out) = FAILED_LOG.ready() {
                        tracing::warn!(
                            target: "streampod::cluster",
                            %error, earlier_failures_left_out = left_out,
                            "a global post not confirmed by NATS (a timeout or unconfirmed one may have gone out)"
                        );
                    }
                }
                let _ = post.reply.send(outcome);
            }
        }
    }

    /// Publishes `batch` in order and settles what NATS confirms in `sent`.
    async fn send(&mut self, batch: &[Outgoing], sent: &mut [Sent]) {
        for (post, sent) in batch.iter().zip(sent.iter_mut()) {
            // Cut off by the timeout from here on, the post may have gone out.
            *sent = Sent::Awaited;
            *sent = self.hand_over(post).await;
        }
        if sent.iter().any(|sent| matches!(sent, Sent::Core)) {
            let outcome = match self.client.request(self.confirm_subject.clone(), Bytes::new()).await {
                // The server answered after handling every publish before the request.
                Ok(_) => Ok(None),
                Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => Ok(None),
                Err(error) => Err(ClusterError::Unconfirmed(error.to_string())),
            };
            for sent in sent.iter_mut().filter(|sent| matches!(sent, Sent::Core)) {
                *sent = Sent::Done(outcome.clone());
            }
        }
        for (post, sent) in batch.iter().zip(sent.iter_mut()) {
            if !matches!(sent, Sent::Kept(_)) {
                continue;
            }
            let Sent::Kept(ack) = std::mem::replace(sent, Sent::Awaited) else {
                continue;
            };
            *sent = match ack.await {
                Ok(_) => Sent::Done(Ok(None)),
                Err(error) if error.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound => {
                    // The stream went (NATS lost it, or it was removed): make it again, once.
                    if let Some(kept) = &post.kept {
                        self.ensured.forget(Some(&kept.stream));
                    }
                    match self.hand_over(post).await {
                        Sent::Kept(ack) => Sent::Done(ack.await.map(|_| None).map_err(|error| ack_error(&error))),
                        other => other,
                    }
                }
                Err(error) => Sent::Done(Err(ack_error(&error))),
            };
        }
    }

    /// Hands one post to NATS.
    async fn hand_over(&mut self, post: &Outgoing) -> Sent {
        let Some(kept) = &post.kept else {
            return match self.client.publish(post.subject.clone(), post.payload.clone()).await {
                Ok(()) => Sent::Core,
                Err(error) => Sent::Done(Err(ClusterError::Unconfirmed(error.to_string()))),
            };
        };
        if let Err(error) = self.ensured.ensure(&self.js, kept, post.payload.len(), self.storage).await {
            return Sent::Done(Err(error));
        }
        match self.js.publish(kept.subject.clone(), post.payload.clone()).await {
            Ok(ack) => Sent::Kept(ack),
            Err(error) => Sent::Done(Err(ClusterError::Unconfirmed(error.to_string()))),
        }
    }
}

/// What a failed JetStream acknowledgement says about the post.
fn ack_error(error: &async_nats::jetstream::context::PublishError) -> ClusterError {
    use async_nats::jetstream::context::PublishErrorKind;
    match error.kind() {
        // Nothing took it: certainly not kept, nor published.
        PublishErrorKind::StreamNotFound | PublishErrorKind::MaxPayloadExceeded => {
            ClusterError::Unavailable(format!("JetStream did not keep the post: {error}"))
        }
        _ => ClusterError::Unconfirmed(error.to_string()),
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
