//! Idempotency keys for posts another backend may retry: the first request with a key
//! does the work and its answer is kept for a window; a retry with the same key, on this
//! server or (through the backplane) on any other, gets that answer and posts nothing.
//! Keys are kept as fingerprints (SHA-256), never as sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::central::{Central, MessageCentral};
use crate::auth::Fingerprint;
use crate::cluster::{Backplane, Topic};
use crate::protocol::ModelSet;

/// How long a key's answer is kept by default (see
/// [`ServerConfig::idempotency_window`](crate::ServerConfig::idempotency_window)).
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Most keys kept at once: past it the oldest are forgotten first.
pub(crate) const MAX_KEYS: usize = 100_000;

/// The answer a key's first request got: its HTTP status and JSON body.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Box<RawValue>,
}

/// What a request with a key finds.
pub(crate) enum Claim<P> {
    /// The first with this key: do the work, then [`settle`](Claimed::settle).
    First(Claimed<P>),
    /// A request with this key is still being served.
    Pending,
    /// Served before: its answer.
    Done(Arc<Answer>),
}

enum Slot {
    Pending,
    Done(Arc<Answer>),
}

/// The keys seen within the window.
pub(crate) struct Idempotency {
    window: Mutex<Duration>,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    by_key: HashMap<Fingerprint, (Instant, Slot)>,
    order: VecDeque<(Instant, Fingerprint)>,
}

impl Default for Idempotency {
    fn default() -> Self {
        Self {
            window: Mutex::new(DEFAULT_WINDOW),
            slots: Mutex::default(),
        }
    }
}

impl Idempotency {
    pub(crate) fn set_window(&self, window: Duration) {
        *self.window.lock().unwrap_or_else(PoisonError::into_inner) = window;
    }

    fn window(&self) -> Duration {
        *self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `key` for a first request, or says what it found.
    fn claim(&self, key: Fingerprint) -> Result<(), Option<Arc<Answer>>> {
        let now = Instant::now();
        let window = self.window();
        let mut slots = self.slots();
        slots.prune(now, window);
        match slots.by_key.get(&key) {
            Some((_, Slot::Pending)) => Err(None),
            Some((_, Slot::Done(answer))) => Err(Some(answer.clone())),
            None => {
                slots.by_key.insert(key, (now, Slot::Pending));
                slots.order.push_back((now, key));
                Ok(())
            }
        }
    }

    /// Keeps `answer` for `key` from now on.
    fn record(&self, key: Fingerprint, answer: Arc<Answer>) {
        let now = Instant::now();
        let mut slots = self.slots();
        slots.by_key.insert(key, (now, Slot::Done(answer)));
        slots.order.push_back((now, key));
        slots.prune(now, self.window());
    }

    /// Forgets a claim that was not settled (the request failed before posting).
    fn release(&self, key: Fingerprint) {
        let mut slots = self.slots();
        if matches!(slots.by_key.get(&key), Some((_, Slot::Pending))) {
            slots.by_key.remove(&key);
        }
    }
}

impl Slots {
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some((at, key)) = self.order.front().copied() {
            if now.saturating_duration_since(at) <= window && self.order.len() <= MAX_KEYS {
                return;
            }
            self.order.pop_front();
            if self.by_key.get(&key).is_some_and(|(kept, _)| *kept == at) {
                self.by_key.remove(&key);
            }
        }
    }
}

/// A claimed key: settle it with the answer, or drop it to let a retry do the work.
pub(crate) struct Claimed<P> {
    central: Weak<Central<P>>,
    key: Fingerprint,
    settled: bool,
}

impl<P: ModelSet> Claimed<P> {
    /// Keeps `answer` for the key here and sends it to every other server, so a retry
    /// anywhere gets it (a retry that reaches another server before the notice does
    /// the work again: the backplane's delay, milliseconds, is the one gap).
    pub(crate) fn settle(mut self, answer: Answer) {
        self.settled = true;
        let Some(inner) = self.central.upgrade() else {
            return;
        };
        let central = MessageCentral::from_inner(inner);
        let answer = Arc::new(answer);
        central.inner.idempotency.record(self.key, answer.clone());
        let Some(cluster) = central.cluster() else {
            return;
        };
        let notice = serde_json::json!({"idempotent": {
            "node": cluster.node(),
            "key": self.key.to_hex(),
            "status": answer.status,
            "answer": answer.body,
        }});
        if let Err(error) = cluster.publish(Topic::Broadcasts, notice.to_string().into_bytes(), None) {
            tracing::warn!(target: "streampod::cluster", %error, "could not tell the other servers an idempotency key's answer: a retry there may post again");
        }
    }
}

impl<P> Drop for Claimed<P> {
    fn drop(&mut self) {
        if !self.settled {
            if let Some(inner) = self.central.upgrade() {
                inner.idempotency.release(self.key);
            }
        }
    }
}

/// An answer on the backplane.
#[derive(serde::Deserialize)]
struct Notice {
    idempotent: Settled,
}

#[derive(serde::Deserialize)]
struct Settled {
    node: u64,
    key: String,
    status: u16,
    answer: Box<RawValue>,
}

impl<P: ModelSet> MessageCentral<P> {
    /// Sets how long keys are remembered.
    pub(crate) fn set_idempotency_window(&self, window: Duration) {
        self.inner.idempotency.set_window(window);
    }

    /// Claims idempotency key `key` for a request (see [`Claim`]).
    pub(crate) fn claim_once(&self, key: &str) -> Claim<P> {
        let key = Fingerprint::of(key);
        match self.inner.idempotency.claim(key) {
            Ok(()) => Claim::First(Claimed {
                central: Arc::downgrade(&self.inner),
                key,
                settled: false,
            }),
            Err(None) => Claim::Pending,
            Err(Some(answer)) => Claim::Done(answer),
        }
    }

    /// Keeps an answer another server sent for a key.
    pub(crate) fn idempotent_answer_arrived(&self, payload: &[u8]) {
        let settled = match serde_json::from_slice::<Notice>(payload) {
            Ok(notice) => notice.idempotent,
            Err(error) => {
                tracing::warn!(target: "streampod::cluster", %error, "ignoring a malformed idempotency notice");
                return;
            }
        };
        if self.cluster().map(Backplane::node) == Some(settled.node) {
            return;
        }
        let Some(key) = Fingerprint::from_hex(&settled.key) else {
            tracing::warn!(target: "streampod::cluster", "ignoring an idempotency notice with a malformed key");
            return;
        };
        self.inner.idempotency.record(
            key,
            Arc::new(Answer {
                status: settled.status,
                body: settled.answer,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Arc<Answer> {
        Arc::new(Answer {
            status: 200,
            body: RawValue::from_string(format!("\"{text}\"")).expect("JSON"),
        })
    }

    /// What a claim found: "first", "pending" or the answer's body.
    fn found(store: &Idempotency, key: Fingerprint) -> String {
        match store.claim(key) {
            Ok(()) => "first".into(),
            Err(None) => "pending".into(),
            Err(Some(answer)) => answer.body.get().to_owned(),
        }
    }

    #[test]
    fn a_key_is_claimed_once_answered_then_forgotten_after_the_window() {
        let store = Idempotency::default();
        let key = Fingerprint::of("retry-1");
        assert_eq!(found(&store, key), "first");
        assert_eq!(found(&store, key), "pending");
        store.record(key, answer("a"));
        assert_eq!(found(&store, key), "\"a\"");
        store.set_window(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(found(&store, key), "first", "forgotten after the window");
    }

    #[test]
    fn a_released_claim_lets_a_retry_do_the_work() {
        let store = Idempotency::default();
        let key = Fingerprint::of("retry-2");
        assert_eq!(found(&store, key), "first");
        store.release(key);
        assert_eq!(found(&store, key), "first");
        store.record(key, answer("b"));
        store.release(key);
        assert_eq!(found(&store, key), "\"b\"", "an answer is not released");
    }
}
