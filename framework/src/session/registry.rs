//! The server's live sessions, sharded so unrelated sessions do not contend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::auth::Revoked;
use crate::session::state::{SessionId, SessionShared};

const SHARDS: usize = 16;

/// Live sessions by id, and by signed-in user.
pub(crate) struct SessionRegistry {
    shards: [Mutex<HashMap<SessionId, Arc<SessionShared>>>; SHARDS],
    users: [Mutex<HashMap<String, Vec<Arc<SessionShared>>>>; SHARDS],
    count: AtomicUsize,
}

impl Default for SessionRegistry {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            users: std::array::from_fn(|_| Mutex::new(HashMap::new())),
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
        if let Some(session) = self.shard(id).remove(&id) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            if let Some(auth) = session.auth() {
                self.set_user(&session, Some(&auth.user_id), None);
            }
        }
    }

    fn user_shard(&self, user: &str) -> MutexGuard<'_, HashMap<String, Vec<Arc<SessionShared>>>> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(user, &mut hasher);
        self.users[(std::hash::Hasher::finish(&hasher) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves `session` from user `old` to user `new` in the user index.
    pub(crate) fn set_user(
        &self,
        session: &Arc<SessionShared>,
        old: Option<&str>,
        new: Option<&str>,
    ) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            let mut users = self.user_shard(old);
            if let Some(sessions) = users.get_mut(old) {
                sessions.retain(|s| s.id != session.id);
                if sessions.is_empty() {
                    users.remove(old);
                }
            }
        }
        if let Some(new) = new {
            self.user_shard(new)
                .entry(new.to_owned())
                .or_default()
                .push(session.clone());
        }
    }

    /// Every open session signed in as `user`.
    pub(crate) fn sessions_of_user(&self, user: &str) -> Vec<Arc<SessionShared>> {
        self.user_shard(user).get(user).cloned().unwrap_or_default()
    }

    /// Wakes the sessions `revoked` may concern, so their readers look at their
    /// identity again: a user's sessions, or every session holding the key.
    pub(crate) fn recheck_revoked(&self, revoked: &Revoked) {
        let concerned = match revoked {
            Revoked::User { user, .. } => self.sessions_of_user(user),
            Revoked::Key(key) => {
                let mut holding = self.snapshot();
                holding.retain(|session| {
                    session
                        .auth()
                        .and_then(|auth| auth.key)
                        .is_some_and(|stamp| stamp.fingerprint == *key)
                });
                holding
            }
        };
        for session in concerned {
            session.recheck_identity.raise();
        }
    }

    /// Wakes every session to look at the identities it holds again (a
    /// streaming-method socket's calls each have their own).
    pub(crate) fn recheck_all(&self) {
        for session in self.snapshot() {
            session.recheck_identity.raise();
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::SlowConsumerPolicy;
    use crate::session::outbound::{Limits, TotalHeld};

    fn session(id: SessionId) -> Arc<SessionShared> {
        Arc::new(SessionShared::new(
            id,
            SocketAddr::from(([127, 0, 0, 1], 4000)),
            Limits {
                frames: 4,
                bytes: 1024,
            },
            Arc::new(TotalHeld::default()),
            SlowConsumerPolicy::Disconnect,
            true,
            tracing::Span::none(),
        ))
    }

    fn ids(sessions: &[Arc<SessionShared>]) -> Vec<SessionId> {
        let mut ids: Vec<_> = sessions.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn sessions_by_id_and_by_user() {
        let registry = SessionRegistry::default();
        let (a, b, c) = (session(1), session(2), session(17));
        for s in [&a, &b, &c] {
            registry.insert(s.clone());
        }
        registry.insert(a.clone());
        assert_eq!(registry.len(), 3, "inserting twice counts once");
        assert_eq!(ids(&registry.snapshot()), [1, 2, 17]);
        assert_eq!(registry.get(17).map(|s| s.id), Some(17));
        assert!(registry.get(3).is_none());

        registry.set_user(&a, None, Some("ann"));
        registry.set_user(&b, None, Some("ann"));
        registry.set_user(&c, None, Some("bob"));
        assert_eq!(ids(&registry.sessions_of_user("ann")), [1, 2]);
        registry.set_user(&b, Some("ann"), Some("bob"));
        assert_eq!(ids(&registry.sessions_of_user("ann")), [1]);
        assert_eq!(ids(&registry.sessions_of_user("bob")), [2, 17]);
        registry.set_user(&a, Some("ann"), None);
        assert!(registry.sessions_of_user("ann").is_empty());
    }

    #[test]
    fn removing_a_session_forgets_its_user() {
        let registry = SessionRegistry::default();
        let a = session(5);
        registry.insert(a.clone());
        a.set_auth(Some(crate::auth::AuthInfo::new("ann")));
        registry.set_user(&a, None, Some("ann"));
        registry.remove(5);
        registry.remove(5);
        assert_eq!(registry.len(), 0);
        assert!(registry.sessions_of_user("ann").is_empty());
        assert!(registry.snapshot().is_empty());
    }
}
