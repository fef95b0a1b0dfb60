//! Channels: the listeners of each channel name (sessions, callbacks, streams) and the
//! sharded map from names to channels.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use super::delivery::FeedSink;
use super::gate::Gate;
use super::history::{new_epoch, History, HistoryConfig};
use super::queue::StreamQueue;
use crate::config::SlowConsumerPolicy;
use crate::session::outbound::ChannelKey;
use crate::session::owned::ListenerId;
use crate::session::state::SessionShared;
use crate::ws::frame::CallFrameShape;

/// Per-channel settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// What a subscriber whose queue is full gets. Default `Disconnect`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Whether posts are numbered and kept for recovery, and how many for how long.
    /// Default `None`: delivery is at most once, as in Serverpod. A channel's history is
    /// made when it is first posted to or joined, and dropped once the channel has no
    /// listeners and everything in it has expired (a client recovering from it then
    /// gets `recovered: false`).
    pub history: Option<HistoryConfig>,
    /// Whether the channel lists its sessions as members and announces their joins and
    /// leaves (see [`crate::messages::Member`]). Default `false`.
    pub presence: bool,
}

impl ChannelConfig {
    /// A config with `policy`.
    pub fn slow_consumer(policy: SlowConsumerPolicy) -> Self {
        Self {
            slow_consumer: policy,
            ..Self::default()
        }
    }

    /// The same config, with presence.
    #[must_use]
    pub fn with_presence(mut self) -> Self {
        self.presence = true;
        self
    }

    /// The same config, keeping `history` for recovery.
    #[must_use]
    pub fn with_history(mut self, history: HistoryConfig) -> Self {
        self.history = Some(history);
        self
    }
}

pub(crate) enum Listener<P> {
    Session {
        id: ListenerId,
        session: Arc<SessionShared>,
        endpoint: Arc<str>,
        /// For a `streampod.v1` session on a cluster channel with history.
        gate: Option<Arc<Gate>>,
        /// What the app joined with, for presence.
        info: Option<Arc<str>>,
    },
    Callback {
        id: ListenerId,
        callback: Arc<dyn Fn(&P) + Send + Sync>,
    },
    Stream {
        id: ListenerId,
        queue: Arc<StreamQueue<P>>,
    },
    /// A [`ChannelFeed`](super::feed::ChannelFeed): values of one model type.
    Feed {
        id: ListenerId,
        feed: Arc<dyn FeedSink<P>>,
    },
    /// A feed a streaming-method call took over: its values go to `session` as call
    /// frames of `shape` under `key`, with their offsets if `positioned` (what a post
    /// needs, without going through `feed`).
    Call {
        id: ListenerId,
        session: Arc<SessionShared>,
        key: ChannelKey,
        shape: Arc<CallFrameShape>,
        positioned: bool,
        feed: Arc<dyn FeedSink<P>>,
    },
}

impl<P> Listener<P> {
    fn id(&self) -> ListenerId {
        match self {
            Listener::Session { id, .. }
            | Listener::Callback { id, .. }
            | Listener::Stream { id, .. }
            | Listener::Feed { id, .. }
            | Listener::Call { id, .. } => *id,
        }
    }
}

/// Cloning an entry clones its handles, never a message (so no `P: Clone` bound).
impl<P> Clone for Listener<P> {
    fn clone(&self) -> Self {
        match self {
            Listener::Session {
                id,
                session,
                endpoint,
                gate,
                info,
            } => Listener::Session {
                id: *id,
                session: session.clone(),
                endpoint: endpoint.clone(),
                gate: gate.clone(),
                info: info.clone(),
            },
            Listener::Callback { id, callback } => Listener::Callback {
                id: *id,
                callback: callback.clone(),
            },
            Listener::Stream { id, queue } => Listener::Stream {
                id: *id,
                queue: queue.clone(),
            },
            Listener::Feed { id, feed } => Listener::Feed {
                id: *id,
                feed: feed.clone(),
            },
            Listener::Call {
                id,
                session,
                key,
                shape,
                positioned,
                feed,
            } => Listener::Call {
                id: *id,
                session: session.clone(),
                key: *key,
                shape: shape.clone(),
                positioned: *positioned,
                feed: feed.clone(),
            },
        }
    }
}

/// A channel's listeners at one moment.
pub(crate) type Snapshot<P> = Arc<Vec<Listener<P>>>;

pub(crate) struct Channel<P> {
    pub(crate) key: ChannelKey,
    policy: AtomicU8,
    /// The channel's history, when it keeps one (it outlives the channel); set when
    /// the channel is made, or when history is configured while it has listeners.
    pub(crate) history: OnceLock<Arc<History<P>>>,
    /// Copy-on-write: a post clones the `Arc` and iterates unlocked; a change copies the
    /// list only while such a snapshot is alive (`Arc::make_mut`), so mass joins stay O(1).
    listeners: Mutex<Arc<Vec<Listener<P>>>>,
    /// The epoch of the last post with a position that came through the cluster, as
    /// one `Arc` every post of that epoch shares (gates compare it by address).
    cluster_epoch: Mutex<Option<Arc<str>>>,
}

impl<P> Channel<P> {
    /// `epoch` as the `Arc` this channel's posts in it share.
    pub(crate) fn shared_epoch(&self, epoch: &str) -> Arc<str> {
        let mut kept = self
            .cluster_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*kept {
            Some(same) if **same == *epoch => same.clone(),
            _ => kept.insert(Arc::from(epoch)).clone(),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Vec<Listener<P>>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn policy(&self) -> SlowConsumerPolicy {
        match self.policy.load(Ordering::Relaxed) {
            1 => SlowConsumerPolicy::DropOldest,
            2 => SlowConsumerPolicy::LatestValue,
            _ => SlowConsumerPolicy::Disconnect,
        }
    }

    fn set_policy(&self, policy: SlowConsumerPolicy) {
        let code = match policy {
            SlowConsumerPolicy::Disconnect => 0,
            SlowConsumerPolicy::DropOldest => 1,
            SlowConsumerPolicy::LatestValue => 2,
        };
        self.policy.store(code, Ordering::Relaxed);
    }
}

const SHARDS: usize = 16;

type Shard<P> = Mutex<HashMap<Arc<str>, Arc<Channel<P>>>>;

/// Channels by name, sharded so posts and joins on unrelated channels do not contend;
/// a channel exists while it has listeners, its settings for as long as they are set.
pub(crate) struct ChannelMap<P> {
    shards: [Shard<P>; SHARDS],
    configs: RwLock<HashMap<String, ChannelConfig>>,
    /// Configs by name prefix, longest first: what a channel without one of its own gets.
    namespaces: RwLock<Vec<(String, ChannelConfig)>>,
    /// Histories by channel name, made when a channel configured to keep one is first
    /// posted to or joined; see [`ChannelMap::sweep`] for when they go.
    histories: RwLock<HashMap<String, Arc<History<P>>>>,
    /// How many histories there were after the last sweep.
    histories_after_sweep: AtomicUsize,
    next_key: AtomicU64,
    next_listener: AtomicU64,
    listeners: AtomicUsize,
}

impl<P> Default for ChannelMap<P> {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            configs: RwLock::new(HashMap::new()),
            namespaces: RwLock::new(Vec::new()),
            histories: RwLock::new(HashMap::new()),
            histories_after_sweep: AtomicUsize::new(0),
            next_key: AtomicU64::new(1),
            next_listener: AtomicU64::new(1),
            listeners: AtomicUsize::new(0),
        }
    }
}

impl<P> ChannelMap<P> {
    fn shard(&self, channel: &str) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Channel<P>>>> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        channel.hash(&mut hasher);
        self.shards[(hasher.finish() as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel named `channel`, while it has listeners.
    pub(crate) fn get(&self, channel: &str) -> Option<Arc<Channel<P>>> {
        self.shard(channel).get(channel).cloned()
    }

    /// Sets a channel's options, for its current and future listeners; a new history
    /// size or TTL applies from the next post.
    pub(crate) fn configure(&self, channel: &str, config: ChannelConfig) {
        self.configs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.to_owned(), config);
        self.apply(channel, config);
    }

    /// Sets the options of every channel whose name starts with `prefix` and has no
    /// options of its own (the longest matching prefix wins).
    pub(crate) fn configure_namespace(&self, prefix: &str, config: ChannelConfig) {
        let mut namespaces = self.namespaces.write().unwrap_or_else(PoisonError::into_inner);
        namespaces.retain(|(existing, _)| existing != prefix);
        namespaces.push((prefix.to_owned(), config));
        namespaces.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        drop(namespaces);
        let names: Vec<String> = self
            .histories
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|name| name.starts_with(prefix))
            .cloned()
            .collect();
        for name in names {
            self.apply(&name, self.config_of(&name));
        }
    }

    /// Applies `config` to the channel and history of that name, where they exist.
    fn apply(&self, channel: &str, config: ChannelConfig) {
        if let (Some(history), Some(size)) = (self.existing_history(channel), config.history) {
            history.reconfigure(size);
        }
        if let Some(existing) = self.get(channel) {
            existing.set_policy(config.slow_consumer);
            if let Some(history) = self.history(channel) {
                let _ = existing.history.set(history);
            }
        }
    }

    /// The options of `channel`: its own, else its namespace's, else the defaults.
    pub(crate) fn config_of(&self, channel: &str) -> ChannelConfig {
        if let Some(config) = self
            .configs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
        {
            return *config;
        }
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(prefix, _)| channel.starts_with(prefix.as_str()))
            .map(|(_, config)| *config)
            .unwrap_or_default()
    }

    fn existing_history(&self, channel: &str) -> Option<Arc<History<P>>> {
        self.histories
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .cloned()
    }

    /// The history of `channel` when its options keep one, made (with a new epoch) if
    /// it has none yet.
    pub(crate) fn history(&self, channel: &str) -> Option<Arc<History<P>>> {
        if let Some(history) = self.existing_history(channel) {
            return Some(history);
        }
        let config = self.config_of(channel).history?;
        let mut histories = self.histories.write().unwrap_or_else(PoisonError::into_inner);
        let history = histories
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(History::new(new_epoch(), config)))
            .clone();
        self.sweep(&mut histories);
        Some(history)
    }

    /// Drops the histories nobody uses (no channel, post or join holds them: only this
    /// map does) that hold nothing unexpired, once the map has doubled since the last
    /// sweep: amortized O(1) per history made, and memory bounded by the channels with
    /// listeners plus those posted to within their TTL. A recovering client whose
    /// history was dropped is told `recovered: false` (a new epoch).
    fn sweep(&self, histories: &mut HashMap<String, Arc<History<P>>>) {
        let after_last = self.histories_after_sweep.load(Ordering::Relaxed);
        if histories.len() < after_last.max(64) * 2 {
            return;
        }
        // A count of 1 means no one else can hold (or lock) the ring: no lock waits here.
        histories.retain(|_, history| Arc::strong_count(history) > 1 || !history.expire());
        self.histories_after_sweep
            .store(histories.len(), Ordering::Relaxed);
    }

    /// Adds the listener `make` builds; `created` runs (under the shard's lock, so it is
    /// ordered with `emptied` of [`remove`](Self::remove)) when the channel is new.
    pub(crate) fn add(
        &self,
        channel: &str,
        make: impl FnOnce(ListenerId) -> Listener<P>,
        created: impl FnOnce(),
    ) -> ListenerId {
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.shard(channel);
        let entry = shard.entry(Arc::from(channel)).or_insert_with(|| {
            let config = self.config_of(channel);
            let fresh = Channel {
                key: self.next_key.fetch_add(1, Ordering::Relaxed),
                policy: AtomicU8::new(0),
                history: OnceLock::new(),
                listeners: Mutex::new(Arc::new(Vec::new())),
                cluster_epoch: Mutex::new(None),
            };
            fresh.set_policy(config.slow_consumer);
            if let Some(history) = config.history.and_then(|_| self.history(channel)) {
                let _ = fresh.history.set(history);
            }
            created();
            Arc::new(fresh)
        });
        let mut listeners = entry
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Copies the list only while a post still iterates the old one.
        Arc::make_mut(&mut listeners).push(make(id));
        self.listeners.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Removes a listener and gives it back; `None` when it was not there. An emptied
    /// channel is dropped and `emptied` runs under the shard's lock.
    pub(crate) fn remove(
        &self,
        channel: &str,
        id: ListenerId,
        emptied: impl FnOnce(),
    ) -> Option<Listener<P>> {
        let mut shard = self.shard(channel);
        let entry = shard.get(channel).cloned()?;
        let mut listeners = entry
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let index = listeners.iter().position(|l| l.id() == id)?;
        let next = Arc::make_mut(&mut listeners);
        let removed = next.remove(index);
        match &removed {
            Listener::Stream { queue, .. } => queue.close(),
            Listener::Feed { feed, .. } | Listener::Call { feed, .. } => feed.close(),
            _ => {}
        }
        let now_empty = next.is_empty();
        drop(listeners);
        self.listeners.fetch_sub(1, Ordering::Relaxed);
        if now_empty {
            shard.remove(channel);
            emptied();
        }
        Some(removed)
    }

    /// A key no channel has: a feed's own key in a socket's queue.
    pub(crate) fn new_key(&self) -> ChannelKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Replaces the listener `id` of `channel` with what `make` makes of it; `false`
    /// when it is not there (or `make` made nothing).
    pub(crate) fn replace(
        &self,
        channel: &str,
        id: ListenerId,
        make: impl FnOnce(&Listener<P>) -> Option<Listener<P>>,
    ) -> bool {
        let Some(entry) = self.get(channel) else {
            return false;
        };
        let mut listeners = entry
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(index) = listeners.iter().position(|l| l.id() == id) else {
            return false;
        };
        let Some(new) = make(&listeners[index]) else {
            return false;
        };
        // Copies the list only while a post still iterates the old one.
        Arc::make_mut(&mut listeners)[index] = new;
        true
    }

    /// Every channel with its listeners now.
    pub(crate) fn all(&self) -> Vec<(Arc<str>, Snapshot<P>)> {
        self.shards
            .iter()
            .flat_map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(name, channel)| (name.clone(), channel.snapshot()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Listeners on all channels.
    pub(crate) fn total_listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Channels with at least one listener.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::messages::history::Kept;

    fn history(size: usize, ttl: Duration) -> ChannelConfig {
        ChannelConfig::default().with_history(HistoryConfig::new(size, ttl))
    }

    #[test]
    fn a_channel_s_own_options_beat_its_namespace_and_the_longest_prefix_wins() {
        let map = ChannelMap::<u32>::default();
        map.configure_namespace("room-", ChannelConfig::slow_consumer(SlowConsumerPolicy::DropOldest));
        map.configure_namespace("room-vip-", ChannelConfig::slow_consumer(SlowConsumerPolicy::LatestValue));
        map.configure("room-vip-1", ChannelConfig::default());
        assert_eq!(map.config_of("room-1").slow_consumer, SlowConsumerPolicy::DropOldest);
        assert_eq!(map.config_of("room-vip-2").slow_consumer, SlowConsumerPolicy::LatestValue);
        assert_eq!(map.config_of("room-vip-1").slow_consumer, SlowConsumerPolicy::Disconnect);
        assert_eq!(map.config_of("lobby"), ChannelConfig::default());
    }

    #[test]
    fn histories_are_made_on_use_for_configured_channels_only() {
        let map = ChannelMap::<u32>::default();
        map.configure_namespace("room-", history(10, Duration::from_secs(60)));
        assert!(map.history("lobby").is_none());
        let first = map.history("room-1").unwrap();
        let again = map.history("room-1").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one history per channel");
    }

    #[test]
    fn unused_histories_go_once_everything_in_them_has_expired() {
        let map = ChannelMap::<u32>::default();
        map.configure_namespace("room-", history(10, Duration::from_millis(50)));
        let held = map.history("room-held").unwrap();
        map.history("room-recent")
            .unwrap()
            .lock()
            .append(Kept::encoded(Arc::from("{}")));
        let made = |range: std::ops::Range<usize>| {
            for n in range {
                let _ = map.history(&format!("room-{n}"));
            }
        };
        let names = || {
            let mut names: Vec<String> = map.histories.read().unwrap().keys().cloned().collect();
            names.sort();
            names
        };
        // 128 histories: a sweep. Held, holding a message, or just made: kept.
        made(0..126);
        assert_eq!(names(), ["room-125", "room-held", "room-recent"]);
        // Once the message expires, the next sweep drops that history too.
        std::thread::sleep(Duration::from_millis(80));
        made(200..325);
        assert_eq!(names(), ["room-324", "room-held"]);
        assert!(Arc::ptr_eq(&held, &map.history("room-held").unwrap()));
    }
}
