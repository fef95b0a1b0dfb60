//! Cluster ingress: connecting the central to the backplane, and delivering what other
//! servers posted to this server's listeners.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::central::{Central, MessageCentral};
use super::delivery::Payload;
use crate::cluster::{Backplane, Envelope, Received, Sink};
use crate::util::log_limit::RateLimitedLog;
use crate::protocol::ModelSet;
use crate::session::state::SessionShared;
use crate::util::trace_context;

impl<P: ModelSet> MessageCentral<P> {
    /// Connects this central to the backplane `start` makes, handing it the sink for
    /// what other servers post. Called once, by the server builder.
    pub(crate) fn attach_backplane<E>(
        &self,
        start: impl FnOnce(Sink) -> Result<Backplane, E>,
    ) -> Result<(), E> {
        let central: Weak<Central<P>> = Arc::downgrade(&self.inner);
        let backplane = start(Arc::new(move |received| {
            if let Some(inner) = central.upgrade() {
                MessageCentral::from_inner(inner).receive(&received);
            }
        }))?;
        let mut resets = backplane.presence_resets();
        let _ = self.inner.cluster.set(backplane);
        // Writes this node's members again whenever Redis may have lost them.
        let central = Arc::downgrade(&self.inner);
        self.runtime().spawn(async move {
            while resets.changed().await.is_ok() {
                let Some(inner) = central.upgrade() else {
                    return;
                };
                MessageCentral::from_inner(inner).republish_presence();
            }
        });
        Ok(())
    }

    /// Delivers a message that came through Redis to this server's listeners.
    fn receive(&self, received: &Received<'_>) {
        if received.payload.starts_with(b"{\"presence\":") {
            self.presence_announced(received.payload);
            return;
        }
        if received.payload.starts_with(b"{\"spent\":") {
            self.spending_arrived(received.payload);
            return;
        }
        if received.payload.starts_with(b"{\"idempotent\":") {
            self.idempotent_answer_arrived(received.payload);
            return;
        }
        if received.payload.starts_with(b"{\"revoke\":") {
            self.revocation_arrived(received.payload);
            return;
        }
        let envelope: Envelope<'_> = match serde_json::from_slice(received.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(target: "streampod::cluster", %error, "ignoring a malformed cluster message");
                return;
            }
        };
        let max_age = self.cluster().map(Backplane::max_global_age);
        if let Some(max_age) = max_age.filter(|max| envelope.age() > *max) {
            // Delivered late after a stall: clients would get a burst of stale news.
            let dropped = self.count_stale_global();
            static STALE: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
            if let Some(left_out) = STALE.ready() {
                tracing::warn!(target: "streampod::cluster", age_ms = envelope.age().as_millis() as u64, max_age_ms = max_age.as_millis() as u64, dropped_in_all = dropped, left_out, "dropped global messages older than max_global_age (Redis stalled, or the nodes' clocks disagree)");
            }
            return;
        }
        let node = self.cluster().map(Backplane::node);
        let span = trace_context::deliver_span(received.channel, node, envelope.traceparent.as_deref());
        let _delivering = span.enter();
        // Session ids are per server: `except` applies on the posting server only.
        let except = envelope.except.filter(|_| Some(envelope.node) == node);
        let include = |session: &Arc<SessionShared>| Some(session.id) != except;
        let payload = Payload::Object(envelope.object.get());
        let result = match (received.channel, envelope.endpoint) {
            (Some(channel), _) => match (&envelope.epoch, envelope.offset) {
                (Some(epoch), Some(offset)) => {
                    self.deliver_positioned(channel, (epoch, offset), &payload, include)
                }
                _ => self.deliver_payload(channel, &payload, include),
            },
            (None, Some(endpoint)) => {
                let sessions = match &envelope.user {
                    Some(user) => self.sessions().sessions_of_user(user),
                    None => self.sessions().snapshot(),
                };
                self.deliver_to_sessions(&sessions, &Arc::from(&*endpoint), &payload, include)
            }
            (None, None) => return,
        };
        if let Err(error) = result {
            tracing::warn!(target: "streampod::cluster", %error, "could not deliver a cluster message");
        }
    }
}
