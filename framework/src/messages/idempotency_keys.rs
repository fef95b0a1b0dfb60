//! The idempotency keys seen within the window and their answers: the store behind
//! the message central's idempotent posts (`super::idempotency`). Keys are kept as
//! fingerprints (SHA-256), never as sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::auth::Fingerprint;
use crate::config::DEFAULT_IDEMPOTENCY_WINDOW as DEFAULT_WINDOW;

/// Most keys kept at once: past it the oldest are forgotten first.
pub(crate) const MAX_KEYS: usize = 100_000;

/// The answer a key's first request got: its HTTP status and JSON body.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Box<RawValue>,
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
    pub(crate) fn claim(&self, key: Fingerprint) -> Result<(), Option<Arc<Answer>>> {
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
    pub(crate) fn record(&self, key: Fingerprint, answer: Arc<Answer>) {
        let now = Instant::now();
        let mut slots = self.slots();
        slots.by_key.insert(key, (now, Slot::Done(answer)));
        slots.order.push_back((now, key));
        slots.prune(now, self.window());
    }

    /// Forgets a claim that was not settled (the request failed before posting).
    pub(crate) fn release(&self, key: Fingerprint) {
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
