//! The server's live sessions, sharded so unrelated sessions do not contend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::session::{SessionId, SessionShared};

const SHARDS: usize = 16;

/// Live sessions by id.
pub(crate) struct SessionRegistry {
    shards: [Mutex<HashMap<SessionId, Arc<SessionShared>>>; SHARDS],
    count: AtomicUsize,
}

impl Default for SessionRegistry {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            count: AtomicUsize::new(0),
        }
    }
}

impl SessionRegistry {
    fn shard(&self, id: SessionId) -> MutexGuard<'_, HashMap<SessionId, Arc<SessionShared>>> {
        self.shards[(id as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, session: Arc<SessionShared>) {
        if self.shard(session.id).insert(session.id, session).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn remove(&self, id: SessionId) {
        if self.shard(id).remove(&id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<Arc<SessionShared>> {
        self.shard(id).get(&id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// A snapshot of every live session.
    pub(crate) fn snapshot(&self) -> Vec<Arc<SessionShared>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in &self.shards {
            all.extend(
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .cloned(),
            );
        }
        all
    }
}
