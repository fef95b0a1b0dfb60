//! Channels: the listeners of each channel name (sessions, callbacks, streams) and the
//! sharded map from names to channels.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use super::history::{new_epoch, History, HistoryConfig};
use super::queue::StreamQueue;
use crate::config::SlowConsumerPolicy;
use crate::outbound::ChannelKey;
use crate::owned::ListenerId;
use crate::session::SessionShared;

/// Per-channel settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// What a subscriber whose queue is full gets. Default `Disconnect`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Whether posts are numbered and kept for recovery, and how many for how long.
    /// Default `None`: delivery is at most once, as in Serverpod.
    pub history: Option<HistoryConfig>,
}

impl ChannelConfig {
    /// A config with `policy`.
    pub fn slow_consumer(policy: SlowConsumerPolicy) -> Self {
        Self {
            slow_consumer: policy,
            history: None,
        }
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
    },
    Callback {
        id: ListenerId,
        callback: Arc<dyn Fn(&P) + Send + Sync>,
    },
    Stream {
        id: ListenerId,
        queue: Arc<StreamQueue<P>>,
    },
}

impl<P> Listener<P> {
    fn id(&self) -> ListenerId {
        match self {
            Listener::Session { id, .. }
            | Listener::Callback { id, .. }
            | Listener::Stream { id, .. } => *id,
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
            } => Listener::Session {
                id: *id,
                session: session.clone(),
                endpoint: endpoint.clone(),
            },
            Listener::Callback { id, callback } => Listener::Callback {
                id: *id,
                callback: callback.clone(),
            },
            Listener::Stream { id, queue } => Listener::Stream {
                id: *id,
                queue: queue.clone(),
            },
        }
    }
}

pub(crate) struct Channel<P> {
    pub(crate) key: ChannelKey,
    policy: AtomicU8,
    /// The channel's history, when it keeps one (it outlives the channel); set when
    /// the channel is made, or when history is configured while it has listeners.
    pub(crate) history: OnceLock<Arc<History<P>>>,
    /// Copy-on-write: a post clones the `Arc` and iterates unlocked; a change copies the
    /// list only while such a snapshot is alive (`Arc::make_mut`), so mass joins stay O(1).
    listeners: Mutex<Arc<Vec<Listener<P>>>>,
}

impl<P> Channel<P> {
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
    /// Histories by channel name: kept while configured, listeners or not.
    histories: RwLock<HashMap<String, Arc<History<P>>>>,
    next_key: AtomicU64,
    next_listener: AtomicU64,
    listeners: AtomicUsize,
}

impl<P> Default for ChannelMap<P> {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            configs: RwLock::new(HashMap::new()),
            histories: RwLock::new(HashMap::new()),
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

    /// Sets a channel's options, for its current and future listeners. History, once
    /// kept, stays for the server's life (a new size or TTL applies from the next post),
    /// so joined sessions keep their positions.
    pub(crate) fn configure(&self, channel: &str, config: ChannelConfig) {
        let mut configs = self.configs.write().unwrap_or_else(PoisonError::into_inner);
        configs.insert(channel.to_owned(), config);
        if let Some(history) = config.history {
            let mut histories = self.histories.write().unwrap_or_else(PoisonError::into_inner);
            match histories.get(channel) {
                Some(existing) => existing.reconfigure(history),
                None => {
                    histories.insert(
                        channel.to_owned(),
                        Arc::new(History::new(new_epoch(), history)),
                    );
                }
            }
        }
        drop(configs);
        if let Some(existing) = self.get(channel) {
            existing.set_policy(config.slow_consumer);
            if let Some(history) = self.history(channel) {
                let _ = existing.history.set(history);
            }
        }
    }

    /// The history `channel` keeps, if configured.
    pub(crate) fn history(&self, channel: &str) -> Option<Arc<History<P>>> {
        self.histories
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .cloned()
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
            let config = self
                .configs
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(channel)
                .copied()
                .unwrap_or_default();
            let fresh = Channel {
                key: self.next_key.fetch_add(1, Ordering::Relaxed),
                policy: AtomicU8::new(0),
                history: OnceLock::new(),
                listeners: Mutex::new(Arc::new(Vec::new())),
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

    /// Removes a listener; `false` when it was not there. An emptied channel is dropped
    /// and `emptied` runs under the shard's lock.
    pub(crate) fn remove(&self, channel: &str, id: ListenerId, emptied: impl FnOnce()) -> bool {
        let mut shard = self.shard(channel);
        let Some(entry) = shard.get(channel).cloned() else {
            return false;
        };
        let mut listeners = entry
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(index) = listeners.iter().position(|l| l.id() == id) else {
            return false;
        };
        let next = Arc::make_mut(&mut listeners);
        if let Listener::Stream { queue, .. } = next.remove(index) {
            queue.close();
        }
        let now_empty = next.is_empty();
        drop(listeners);
        self.listeners.fetch_sub(1, Ordering::Relaxed);
        if now_empty {
            shard.remove(channel);
            emptied();
        }
        true
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
