//! Revoked identities: users whose open sessions and calls end, and keys refused from
//! then on, kept for a retention window. What a server holds here is also what every
//! other node of its cluster holds: revocations travel over the backplane (the message
//! central sends and applies them).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::AuthInfo;

/// A key's fingerprint: the first 16 bytes of its SHA-256. It is what a server keeps
/// of a revoked key and what goes over the backplane; the key itself never does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of `key` (as the authentication handler sees it).
    pub(crate) fn of(key: &str) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(bytes)
    }

    /// Lower-case hex, 32 characters.
    pub(crate) fn to_hex(self) -> String {
        use fmt::Write as _;
        self.0.iter().fold(String::with_capacity(32), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
    }

    /// Reads [`to_hex`](Self::to_hex)'s form.
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0; 16];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..8])
    }
}

/// Which key signed an identity in, and when it was accepted: a user's revocation ends
/// the identities accepted before it, not those signed in again after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyStamp {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) accepted: Instant,
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// Every identity of this user accepted before the revocation, and every key of the
    /// user issued before `at` (by the revoking node's clock) from then on.
    User { user: String, at: SystemTime },
    /// Every identity signed in with this key, and the key from then on.
    Key(Fingerprint),
}

/// How long revocations are kept and how many, by default; see
/// [`ServerConfig::revocation_retention`](crate::ServerConfig::revocation_retention).
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// See [`ServerConfig::max_revocations`](crate::ServerConfig::max_revocations).
pub(crate) const DEFAULT_MAX: usize = 100_000;

/// What wakes the sessions a revocation concerns.
type Wake = Box<dyn Fn(&Revoked) + Send + Sync>;

/// What is revoked on this server, and who is told when something is.
pub(crate) struct Revocations {
    retention: Duration,
    max: usize,
    lists: Mutex<Lists>,
    /// Counts revocations: what a call's task waits on (it then checks its identity).
    version: watch::Sender<u64>,
    /// Wakes the sessions a revocation concerns; set once by the server.
    on_revoke: OnceLock<Wake>,
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Revocations")
            .field("keys", &lists.keys.len())
            .field("users", &lists.users.len())
            .finish()
    }
}

#[derive(Default)]
struct Lists {
    keys: HashMap<Fingerprint, Instant>,
    /// When each user was revoked here, and by the revoking node's clock.
    users: HashMap<String, (Instant, SystemTime)>,
    /// Every entry of both maps, oldest first: what expires or is dropped first.
    order: VecDeque<(Instant, Revoked)>,
}

impl Lists {
    /// Drops what is older than `retention` and, past `max`, the oldest.
    fn prune(&mut self, now: Instant, retention: Duration, max: usize) {
        while let Some((at, _)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) > retention;
            if !expired && self.order.len() <= max {
                return;
            }
            let Some((at, revoked)) = self.order.pop_front() else {
                return;
            };
            // A later revocation of the same thing moved its time: keep that one.
            match revoked {
                Revoked::Key(key) => {
                    if self.keys.get(&key) == Some(&at) {
                        self.keys.remove(&key);
                    }
                }
                Revoked::User { user, .. } => {
                    if self.users.get(&user).is_some_and(|(here, _)| *here == at) {
                        self.users.remove(&user);
                    }
                }
            }
        }
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new(DEFAULT_RETENTION, DEFAULT_MAX)
    }
}

impl Revocations {
    /// Keeps each revocation for `retention`, and at most `max` of them.
    pub(crate) fn new(retention: Duration, max: usize) -> Self {
        Self {
            retention,
            max: max.max(1),
            lists: Mutex::default(),
            version: watch::Sender::new(0),
            on_revoke: OnceLock::new(),
        }
    }

    /// Sets who is told of each revocation (the server's session registries). Once.
    pub(crate) fn on_revoke(&self, wake: impl Fn(&Revoked) + Send + Sync + 'static) {
        let _ = self.on_revoke.set(Box::new(wake));
    }

    /// Records `revoked` as of now and tells the sessions it concerns.
    pub(crate) fn record(&self, revoked: &Revoked) {
        let now = Instant::now();
        {
            let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
            match revoked {
                Revoked::Key(key) => {
                    lists.keys.insert(*key, now);
                }
                Revoked::User { user, at } => {
                    lists.users.insert(user.clone(), (now, *at));
                }
            }
            lists.order.push_back((now, revoked.clone()));
            lists.prune(now, self.retention, self.max);
        }
        self.version.send_modify(|version| *version += 1);
        if let Some(wake) = self.on_revoke.get() {
            wake(revoked);
        }
    }

    /// Whether a key just accepted as `auth` must be refused: the key was revoked, or
    /// its user was after the key was issued (when the handler says when,
    /// [`AuthInfo::issued_at`]).
    pub(crate) fn refuses(&self, key: Fingerprint, auth: &AuthInfo) -> bool {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        self.holds_key(&lists, key)
            || lists.users.get(&auth.user_id).is_some_and(|(here, at)| {
                self.kept(*here) && auth.issued_at.is_some_and(|issued| issued <= *at)
            })
    }

    /// Whether `auth` was revoked: its key, or its user after the key was accepted (or
    /// issued). An identity that no key signed in is revoked with its user.
    pub(crate) fn is_revoked(&self, auth: &AuthInfo) -> bool {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        if auth
            .key
            .is_some_and(|stamp| self.holds_key(&lists, stamp.fingerprint))
        {
            return true;
        }
        lists.users.get(&auth.user_id).is_some_and(|(here, at)| {
            self.kept(*here)
                && (auth.key.is_none_or(|stamp| stamp.accepted <= *here)
                    || auth.issued_at.is_some_and(|issued| issued <= *at))
        })
    }

    fn holds_key(&self, lists: &Lists, key: Fingerprint) -> bool {
        lists.keys.get(&key).is_some_and(|at| self.kept(*at))
    }

    fn kept(&self, at: Instant) -> bool {
        at.elapsed() <= self.retention
    }

    /// Changes once per revocation: a waiter then checks its identity.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(user: &str, key: &str) -> AuthInfo {
        let mut auth = AuthInfo::new(user);
        auth.key = Some(KeyStamp {
            fingerprint: Fingerprint::of(key),
            accepted: Instant::now(),
        });
        auth
    }

    #[test]
    fn a_fingerprint_reads_back_from_hex_and_says_nothing_of_the_key() {
        let print = Fingerprint::of("secret-token");
        let hex = print.to_hex();
        assert_eq!(hex.len(), 32);
        assert!(!hex.contains("secret"));
        assert_eq!(Fingerprint::from_hex(&hex), Some(print));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(32)), None);
        assert_ne!(Fingerprint::of("secret-token2"), print);
    }

    #[test]
    fn a_user_revocation_ends_identities_accepted_before_it_only() {
        let revocations = Revocations::default();
        let before = stamped("42", "a");
        let other = stamped("7", "b");
        let issued_before = SystemTime::now() - Duration::from_secs(60);
        revocations.record(&Revoked::User {
            user: "42".into(),
            at: SystemTime::now(),
        });
        std::thread::sleep(Duration::from_millis(2));
        let after = stamped("42", "c");
        assert!(revocations.is_revoked(&before));
        assert!(!revocations.is_revoked(&other));
        assert!(!revocations.is_revoked(&after), "signed in again after the revocation");
        assert!(revocations.is_revoked(&AuthInfo::new("42")), "no key: revoked with its user");
        // A key issued before the revocation is refused from then on; a fresh one is not.
        let old_token = AuthInfo::new("42").issued(issued_before);
        assert!(revocations.refuses(Fingerprint::of("d"), &old_token));
        let new_token = AuthInfo::new("42").issued(SystemTime::now() + Duration::from_secs(1));
        assert!(!revocations.refuses(Fingerprint::of("e"), &new_token));
        assert!(!revocations.refuses(Fingerprint::of("f"), &AuthInfo::new("42")), "no issue time");
    }

    #[test]
    fn a_key_revocation_refuses_the_key_until_it_is_pruned() {
        let revocations = Revocations::new(Duration::from_secs(60), 2);
        let mut changes = revocations.changes();
        revocations.record(&Revoked::Key(Fingerprint::of("a")));
        assert!(changes.has_changed().unwrap_or(false));
        changes.mark_unchanged();
        let anyone = AuthInfo::new("1");
        assert!(revocations.refuses(Fingerprint::of("a"), &anyone));
        assert!(revocations.is_revoked(&stamped("1", "a")));
        assert!(!revocations.refuses(Fingerprint::of("b"), &anyone));
        // Past `max`, the oldest goes first.
        revocations.record(&Revoked::Key(Fingerprint::of("b")));
        revocations.record(&Revoked::User {
            user: "9".into(),
            at: SystemTime::now(),
        });
        assert!(!revocations.refuses(Fingerprint::of("a"), &anyone));
        assert!(revocations.refuses(Fingerprint::of("b"), &anyone));
        assert!(changes.has_changed().unwrap_or(false));
    }

    #[test]
    fn revocations_expire_after_the_retention() {
        let revocations = Revocations::new(Duration::from_millis(1), 10);
        revocations.record(&Revoked::Key(Fingerprint::of("a")));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!revocations.refuses(Fingerprint::of("a"), &AuthInfo::new("1")));
    }
}
