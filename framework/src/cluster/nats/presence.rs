//! Presence in JetStream key-value buckets: who is in each channel, on every node.
//!
//! Two buckets per prefix, kept in memory (a NATS that restarts loses them, and every
//! node writes its members again): `<prefix>-presence`, one key per member,
//! `<channel>.<node>.<member id>` (channel and id encoded as key tokens), its JSON as the
//! value; and `<prefix>-nodes`, one key per node, rewritten every [`HEARTBEAT`]. Every
//! node watches the nodes bucket, so it knows which nodes beat lately without asking;
//! a node not heard for [`NODE_TTL`] is dead: the first survivor to delete its key
//! (expecting the revision it last heard, so only one wins) removes its members, each
//! announced as a leave. A join creates its key (a member NATS already holds is not
//! announced again) and publishes a notice
//! (`{"presence":{"channel":…,"member":…,"joined":…}}`) on the channel's subject, so
//! every node with members there hears it; a leave deletes the key, expecting the
//! revision it read, and announces the leave once. Reads list a channel's keys through
//! a consumer made for the read and skip the members of nodes not heard lately, even
//! before a sweep.
//!
//! Deleted keys leave markers in the bucket's stream; the buckets drop entries older
//! than an hour ([`KEPT`]), so each node writes its members again every [`REFRESH`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::history::Storage;
use crate::cluster::presence_queue::{Change, Queue};
use crate::cluster::ClusterError;
use crate::util::log_limit::RateLimitedLog;

/// How often a node beats its heartbeat and sweeps dead nodes.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(2);

/// A node not heard for this long is dead: its members leave.
pub(super) const NODE_TTL: Duration = Duration::from_secs(6);

/// How long the buckets keep an entry (a member, a heartbeat, a deletion's marker).
const KEPT: Duration = Duration::from_secs(60 * 60);

/// How often a node writes its members again, well within [`KEPT`].
const REFRESH: Duration = Duration::from_secs(20 * 60);

/// How long a read waits for this node's members to be written back after a reconnect
/// (as on Redis).
pub(super) const SYNCED_WAIT: Duration = Duration::from_secs(2);

/// How long a batch of joins waits for this node's subscriptions before it is written
/// anyway.
const SUBSCRIBED_WAIT: Duration = Duration::from_secs(2);

/// Most entries one fetch of a listing asks for.
const LIST_BATCH: usize = 1_000;

/// `name` as a key token: letters, digits and `-` as they are, every other byte as
/// `_XX`; the empty name as `_`.
fn token(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut token = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            token.push(char::from(byte));
        } else {
            token.push_str(&format!("_{byte:02X}"));
        }
    }
    token
}

/// The name [`token`] encoded.
fn untoken(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'_' {
            let hex = token.get(at + 1..at + 3)?;
            name.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            name.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(name).ok()
}

/// The buckets and keys of one app (one prefix) and this node.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    presence: String,
    nodes: String,
    node: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, node: u64) -> Self {
        let prefix = token(prefix);
        Self {
            presence: format!("{prefix}-presence"),
            nodes: format!("{prefix}-nodes"),
            node: format!("{node:x}"),
        }
    }

    /// Member `id` of `channel`, written by `node`.
    fn member(&self, channel: &str, node: &str, id: &str) -> String {
        format!("{}.{node}.{}", token(channel), token(id))
    }

    /// The subject of keys matching `filter` in the presence bucket's stream.
    fn subject(&self, filter: &str) -> String {
        format!("$KV.{}.{filter}", self.presence)
    }

    fn of_channel(&self, channel: &str) -> String {
        self.subject(&format!("{}.*.*", token(channel)))
    }

    fn of_node(&self, node: &str) -> String {
        self.subject(&format!("*.{node}.*"))
    }
}

/// A key of the presence bucket, read back: its channel and node.
fn parse_key(key: &str) -> Option<(String, &str)> {
    let mut parts = key.split('.');
    let channel = untoken(parts.next()?)?;
    let node = parts.next()?;
    Some((channel, node))
}

/// What the presence task and the reads share.
pub(super) struct Shared {
    keys: Keys,
    /// The presence bucket, once open.
    store: watch::Sender<Option<kv::Store>>,
    /// The nodes heard: when, and the revision of their last heartbeat.
    heard: Mutex<HashMap<String, (Instant, u64)>>,
    /// Counts up whenever this node's members must be written again.
    pub(super) resets: watch::Sender<u64>,
    /// The connection (its number) this node's members are written on; reads wait for
    /// it, up to [`SYNCED_WAIT`].
    synced: watch::Sender<Option<u64>>,
    /// The client's counters (its connections), once it exists.
    stats: std::sync::OnceLock<Arc<async_nats::Statistics>>,
}

impl Shared {
    pub(super) fn new(keys: Keys) -> Arc<Self> {
        Arc::new(Self {
            keys,
            store: watch::channel(None).0,
            heard: Mutex::new(HashMap::new()),
            resets: watch::channel(0).0,
            synced: watch::channel(None).0,
            stats: std::sync::OnceLock::new(),
        })
    }

    /// Waits, up to [`SYNCED_WAIT`], until this node's members are written on the
    /// current connection: a read before would miss them.
    pub(super) async fn synced(&self) {
        let Some(stats) = self.stats.get() else {
            return;
        };
        let current = stats.connects.load(std::sync::atomic::Ordering::Relaxed);
        let mut synced = self.synced.subscribe();
        let _ = tokio::time::timeout(SYNCED_WAIT, synced.wait_for(|synced| *synced == Some(current))).await;
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u64)>> {
        self.heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes every node known as heard now.
    fn heard_all_now(&self) {
        let now = Instant::now();
        for (at, _) in self.heard().values_mut() {
            *at = now;
        }
    }

    /// Whether `node` beat lately (this node always counts).
    fn is_live(&self, node: &str) -> bool {
        node == self.keys.node
            || self
                .heard()
                .get(node)
                .is_some_and(|(at, _)| at.elapsed() < NODE_TTL)
    }

    /// The nodes not heard for [`NODE_TTL`], with the revision last heard.
    fn dead(&self) -> Vec<(String, u64)> {
        self.heard()
            .iter()
            .filter(|(node, (at, _))| **node != self.keys.node && at.elapsed() >= NODE_TTL)
            .map(|(node, (_, revision))| (node.clone(), *revision))
            .collect()
    }

    /// The JSON of at most `limit` members of `channel` on live nodes, or only how
    /// many there are.
    pub(super) async fn read(&self, channel: &str, limit: Option<usize>) -> Result<(Vec<Vec<u8>>, usize), ClusterError> {
        let mut opened = self.store.subscribe();
        let store = opened
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|store| store.clone())
            .ok_or_else(|| ClusterError::Unavailable("the presence bucket is not open".into()))?;
        let mut members = Vec::new();
        let mut count = 0;
        list(&store, &self.keys.of_channel(channel), limit.is_none(), |key, _, value| {
            let live = parse_key(key).is_some_and(|(_, node)| self.is_live(node));
            if live {
                count += 1;
                if limit.is_some() {
                    members.push(value.to_vec());
                }
            }
            limit.is_none_or(|limit| members.len() < limit)
        })
        .await
        .map_err(|error| ClusterError::Unavailable(format!("NATS presence: {error}")))?;
        Ok((members, count))
    }
}

/// Goes through the live keys matching subject `filter` of `store` (key, revision,
/// value) while `each` answers `true`, through a consumer made for it (the newest entry
/// per key, no acknowledgements, in memory, removed after). With `headers_only`, values
/// come empty.
async fn list(
    store: &kv::Store,
    filter: &str,
    headers_only: bool,
    mut each: impl FnMut(&str, u64, &[u8]) -> bool,
) -> Result<(), String> {
    let reader = store
        .stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter.to_owned(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ack_policy: consumer::AckPolicy::None,
            headers_only,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|error| error.to_string())?;
    let name = reader.cached_info().name.clone();
    let prefix = format!("$KV.{}.", store.name);
    let listed = async {
        loop {
            let mut batch = reader
                .fetch()
                .max_messages(LIST_BATCH)
                .messages()
                .await
                .map_err(|error| error.to_string())?;
            let mut fetched = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|error| error.to_string())?;
                fetched += 1;
                let deleted = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get("KV-Operation"))
                    .is_some_and(|operation| matches!(operation.as_str(), "DEL" | "PURGE"));
                let Some(key) = message.subject.as_str().strip_prefix(&prefix) else {
                    continue;
                };
                let revision = message.info().map_err(|error| error.to_string())?.stream_sequence;
                if !deleted && !each(key, revision, &message.payload) {
                    return Ok(());
                }
            }
            if fetched < LIST_BATCH {
                return Ok(());
            }
        }
    }
    .await;
    let _ = store.stream.delete_consumer(&name).await;
    listed
}

/// Opens bucket `name`, creating it when missing. The bucket's stream is created as
/// the key-value API's own creation would (one entry per key, rollups, direct gets),
/// without its account query, which NATS servers before 2.10 answer in a shape the
/// client does not read.
async fn open(js: &jetstream::Context, name: &str, replicas: usize) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: KEPT,
        storage: jetstream::stream::StorageType::Memory,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    // Another node may create it at the same moment: either way, it is there after.
    let created = js.get_or_create_stream(config).await.map_err(|error| error.to_string());
    match js.get_key_value(name).await {
        Ok(store) => Ok(store),
        Err(error) => Err(created.err().unwrap_or_else(|| error.to_string())),
    }
}

/// The notice of `member` (JSON) joining or leaving `channel`; `None` when the member
/// is not JSON (not written by streampod).
fn notice(channel: &str, member: &[u8], joined: bool) -> Option<Bytes> {
    let member = serde_json::from_slice::<&serde_json::value::RawValue>(member).ok()?;
    let notice = serde_json::json!({
        "presence": {"channel": channel, "member": member, "joined": joined}
    });
    serde_json::to_vec(&notice).ok().map(Bytes::from)
}

/// Everything the presence task works with.
pub(super) struct Task {
    pub(super) shared: Arc<Shared>,
    pub(super) js: jetstream::Context,
    pub(super) client: async_nats::Client,
    /// The subject of a channel's posts (where notices go).
    pub(super) channel_subject: Box<dyn Fn(&str) -> String + Send + Sync>,
    pub(super) storage: Storage,
}

/// This node's members as it wrote them: key → (channel, JSON).
type Mine = HashMap<String, (String, String)>;

impl Task {
    /// Writes presence changes as they come, beats, sweeps and refreshes, until
    /// shutdown; counts up `resets` when this node's members must be written again: on
    /// every (re)connect, when it finds it was swept, when a write failed, and when
    /// changes were dropped at the queue's bound. Joins wait for `subscribed()` (this
    /// node's subscriptions in place), so it hears its own notices too.
    pub(super) async fn run<S, F>(
        self,
        queue: Arc<Queue>,
        mut changes: mpsc::UnboundedReceiver<Change>,
        subscribed: S,
        mut state: watch::Receiver<crate::cluster::ClusterState>,
        shutdown: CancellationToken,
    ) where
        S: Fn() -> F,
        F: std::future::Future<Output = ()>,
    {
        static FAILED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
        let _ = self.shared.stats.set(self.client.statistics());
        // The buckets, opened (created when missing) on each connection, and the
        // nodes bucket's watcher.
        let mut buckets: Option<(kv::Store, kv::Store, AbortOnDrop)> = None;
        let stats = self.client.statistics();
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
        let mut mine = Mine::new();
        let mut beat_revision = None;
        let mut connection = None;
        let mut beaten = false;
        let mut resync_pending = false;
        let mut write_failed = false;
        let mut batch = Vec::new();
        let reset = |resync_pending: &mut bool| {
            *resync_pending = true;
            self.shared.synced.send_replace(None);
            self.shared.resets.send_modify(|count| *count += 1);
        };
        loop {
            let connected = self.client.connection_state() == async_nats::connection::State::Connected;
            let connects = stats.connects.load(std::sync::atomic::Ordering::Relaxed);
            if connected && connection != Some(connects) {
                // A new connection: NATS may have lost everything meanwhile.
                connection = Some(connects);
                beaten = false;
                write_failed = false;
                buckets = None;
                // What this node did not hear while it was away says nothing of the
                // others: each is dead only when not heard for the TTL from now on.
                self.shared.heard_all_now();
                reset(&mut resync_pending);
                beat.reset_immediately();
            }
            if connected && buckets.is_none() {
                match self.open_buckets().await {
                    Ok(opened) => buckets = Some(opened),
                    Err(error) => {
                        if let Some(left_out) = FAILED.ready() {
                            tracing::warn!(target: "streampod::cluster", %error, left_out, "cannot open the NATS presence buckets (is JetStream enabled?); retrying");
                        }
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                // Connected again: see to the new connection at once.
                changed = state.changed() => if changed.is_err() { return },
                _ = beat.tick() => {
                    let Some((presence, nodes, _)) = buckets.as_ref().filter(|_| connected) else {
                        continue;
                    };
                    let beaten_now = match self.beat(nodes, &mut beat_revision).await {
                        Ok(swept) => self.sweep(presence, nodes).await.map(|()| swept),
                        Err(error) => Err(error),
                    };
                    match beaten_now {
                        Ok(swept) => {
                            beaten = true;
                            // A resync still to be written covers a sweep.
                            if (swept && !resync_pending) || write_failed {
                                write_failed = false;
                                reset(&mut resync_pending);
                            } else if !resync_pending {
                                self.shared.synced.send_replace(connection);
                            }
                        }
                        Err(error) => {
                            if let Some(left_out) = FAILED.ready() {
                                tracing::warn!(target: "streampod::cluster", %error, left_out, "NATS presence heartbeat failed");
                            }
                        }
                    }
                }
                _ = refresh.tick() => {
                    let Some((presence, _, _)) = &buckets else { continue };
                    for (key, (_, member)) in &mine {
                        if presence.put(key, Bytes::from(member.clone())).await.is_err() {
                            write_failed = true;
                            break;
                        }
                    }
                }
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    batch.push(change);
                    while let Ok(next) = changes.try_recv() {
                        batch.push(next);
                    }
                    queue.taken(batch.len());
                    let Some((presence, _, _)) = buckets.as_ref().filter(|_| connected) else {
                        batch.clear();
                        continue;
                    };
                    match self.write(presence, &mut mine, &mut batch, &subscribed).await {
                        Ok(resynced) => {
                            if resynced {
                                resync_pending = false;
                            }
                            if beaten && !resync_pending {
                                self.shared.synced.send_replace(connection);
                            }
                        }
                        Err(error) => {
                            write_failed = true;
                            if let Some(left_out) = FAILED.ready() {
                                tracing::warn!(target: "streampod::cluster", %error, left_out, "NATS presence changes not written");
                            }
                        }
                    }
                    batch.clear();
                    if queue.take_overflow() {
                        reset(&mut resync_pending);
                    }
                }
            }
        }
    }

    /// Opens both buckets (creating them when missing) and starts watching the nodes.
    async fn open_buckets(&self) -> Result<(kv::Store, kv::Store, AbortOnDrop), String> {
        let presence = open(&self.js, &self.shared.keys.presence, self.storage.replicas).await?;
        let nodes = open(&self.js, &self.shared.keys.nodes, self.storage.replicas).await?;
        self.shared.store.send_replace(Some(presence.clone()));
        let watcher = AbortOnDrop(tokio::spawn(watch_nodes(nodes.clone(), self.shared.clone())));
        Ok((presence, nodes, watcher))
    }

    /// Beats this node's heartbeat; `true` when it had been swept (or is new): its
    /// members must be written again.
    async fn beat(&self, nodes: &kv::Store, revision: &mut Option<u64>) -> Result<bool, String> {
        let me = &self.shared.keys.node;
        if let Some(last) = *revision {
            match nodes.update(me, Bytes::from_static(b"1"), last).await {
                Ok(next) => {
                    *revision = Some(next);
                    return Ok(false);
                }
                // Deleted by a sweep (or rewritten meanwhile): written again below.
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        *revision = Some(nodes.put(me, Bytes::from_static(b"1")).await.map_err(|error| error.to_string())?);
        Ok(true)
    }

    /// Removes the members of nodes not heard for [`NODE_TTL`], each announced as a
    /// leave; a node's sweep is claimed by deleting its heartbeat (expecting the
    /// revision last heard), so one survivor sweeps it.
    async fn sweep(&self, presence: &kv::Store, nodes: &kv::Store) -> Result<(), String> {
        for (node, revision) in self.shared.dead() {
            self.shared.heard().remove(&node);
            if nodes.delete_expect_revision(&node, Some(revision)).await.is_err() {
                // It beat again, or another node took the sweep.
                continue;
            }
            let mut taken = Vec::new();
            list(presence, &self.shared.keys.of_node(&node), false, |key, revision, value| {
                taken.push((key.to_owned(), revision, value.to_vec()));
                true
            })
            .await?;
            for (key, revision, member) in taken {
                self.remove(presence, &key, revision, &member).await;
            }
            // A node that beat again during its sweep may have written members back
            // meanwhile: its heartbeat goes again, so its next beat writes them all.
            if let Ok(Some(entry)) = nodes.entry(&node).await {
                if entry.operation == kv::Operation::Put {
                    let _ = nodes.delete_expect_revision(&node, Some(entry.revision)).await;
                }
            }
        }
        Ok(())
    }

    /// Deletes member `key` at `revision` and announces the leave, unless someone
    /// changed or removed it first.
    async fn remove(&self, presence: &kv::Store, key: &str, revision: u64, member: &[u8]) {
        if presence.delete_expect_revision(key, Some(revision)).await.is_ok() {
            if let Some((channel, _)) = parse_key(key) {
                self.announce(&channel, member, false).await;
            }
        }
    }

    async fn announce(&self, channel: &str, member: &[u8], joined: bool) {
        if let Some(notice) = notice(channel, member, joined) {
            let _ = self.client.publish((self.channel_subject)(channel), notice).await;
        }
    }

    /// Writes a member (announced when NATS did not hold it).
    async fn join(&self, presence: &kv::Store, key: &str, channel: &str, member: &str) -> Result<(), String> {
        match presence.create(key, Bytes::from(member.to_owned())).await {
            Ok(_) => {
                self.announce(channel, member.as_bytes(), true).await;
                Ok(())
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => presence
                .put(key, Bytes::from(member.to_owned()))
                .await
                .map(|_| ())
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Writes `batch` in order and says whether it held a resync; a resync supersedes
    /// whatever came before it.
    async fn write<S, F>(
        &self,
        presence: &kv::Store,
        mine: &mut Mine,
        batch: &mut Vec<Change>,
        subscribed: &S,
    ) -> Result<bool, String>
    where
        S: Fn() -> F,
        F: std::future::Future<Output = ()>,
    {
        if batch.iter().any(|change| !matches!(change, Change::Leave { .. })) {
            let _ = tokio::time::timeout(SUBSCRIBED_WAIT, subscribed()).await;
        }
        let mut resynced = false;
        if let Some(last_resync) = batch.iter().rposition(|change| matches!(change, Change::Resync(_))) {
            batch.drain(..last_resync);
            resynced = true;
        }
        let me = self.shared.keys.node.clone();
        for change in batch.drain(..) {
            match change {
                Change::Join { channel, id, member } => {
                    let key = self.shared.keys.member(&channel, &me, &id);
                    self.join(presence, &key, &channel, &member).await?;
                    mine.insert(key, (channel, member));
                }
                Change::Leave { channel, id } => {
                    let key = self.shared.keys.member(&channel, &me, &id);
                    mine.remove(&key);
                    if let Some(entry) = presence.entry(&key).await.map_err(|error| error.to_string())? {
                        if entry.operation == kv::Operation::Put {
                            self.remove(presence, &key, entry.revision, &entry.value).await;
                        }
                    }
                }
                Change::Resync(members) => {
                    let mut held = HashMap::new();
                    list(presence, &self.shared.keys.of_node(&me), false, |key, revision, value| {
                        held.insert(key.to_owned(), (revision, value.to_vec()));
                        true
                    })
                    .await?;
                    mine.clear();
                    let mut kept = HashSet::new();
                    for (channel, id, member) in members {
                        let key = self.shared.keys.member(&channel, &me, &id);
                        if held.get(&key).is_none_or(|(_, value)| value.as_slice() != member.as_bytes()) {
                            self.join(presence, &key, &channel, &member).await?;
                        }
                        kept.insert(key.clone());
                        mine.insert(key, (channel, member));
                    }
                    for (key, (revision, member)) in held {
                        if !kept.contains(&key) {
                            self.remove(presence, &key, revision, &member).await;
                        }
                    }
                }
            }
        }
        Ok(resynced)
    }
}

/// Follows the nodes bucket: when each node last beat, and which were swept.
async fn watch_nodes(nodes: kv::Store, shared: Arc<Shared>) {
    loop {
        if let Ok(mut entries) = nodes.watch_all().await {
            while let Some(Ok(entry)) = entries.next().await {
                let mut heard = shared.heard();
                match entry.operation {
                    kv::Operation::Put => {
                        heard.insert(entry.key, (Instant::now(), entry.revision));
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        heard.remove(&entry.key);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_key_tokens_and_back() {
        for name in ["room-1", "", "a.b c_d", "é*>"] {
            let token = token(name);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
            assert_eq!(untoken(&token).as_deref(), Some(name));
        }
        assert_ne!(token("_41"), token("A"));
        let keys = Keys::new("app", 255);
        let key = keys.member("room.1", "ff", "ff-7");
        assert_eq!(key, "room_2E1.ff.ff-7");
        assert_eq!(parse_key(&key), Some(("room.1".to_owned(), "ff")));
        assert_eq!(keys.of_channel("room.1"), "$KV.app-presence.room_2E1.*.*");
    }

    #[test]
    fn notices_carry_the_member_as_json() {
        let notice = notice("room", br#"{"session":"1"}"#, true).unwrap();
        let notice: serde_json::Value = serde_json::from_slice(&notice).unwrap();
        assert_eq!(notice["presence"]["member"]["session"], "1");
        assert_eq!(notice["presence"]["joined"], true);
        assert!(super::notice("room", b"not json", true).is_none());
    }
}
