//! Idempotency keys for posts another backend may retry: the first request with a key
//! does the work and its answer is kept for a window; a retry with the same key, on this
//! server or (through the backplane) on any other, gets that answer and posts nothing.
//! Keys are kept as fingerprints (SHA-256), never as sent.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::value::RawValue;

use super::central::{Central, MessageCentral};
pub(crate) use super::idempotency_keys::Answer;
use crate::auth::Fingerprint;
use crate::cluster::{Backplane, Topic};
use crate::protocol::ModelSet;

/// What a request with a key finds.
pub(crate) enum Claim<P> {
    /// The first with this key: do the work, then [`settle`](Claimed::settle).
    First(Claimed<P>),
    /// A request with this key is still being served.
    Pending,
    /// Served before: its answer.
    Done(Arc<Answer>),
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

