//! Cluster ingress: connecting the central to the backplane, and delivering what other
//! servers posted to this server's listeners.

use std::sync::{Arc, Weak};

use super::central::{Central, MessageCentral};
use super::delivery::Payload;
use crate::cluster::{Backplane, Envelope, Received, Sink};
use crate::protocol::ModelSet;
use crate::session::SessionShared;

impl<P: ModelSet> MessageCentral<P> {
    /// Connects this central to the backplane `start` makes, handing it the sink for
    /// what other servers post. Called once, by the server builder.
    pub(crate) fn attach_backplane<E>(
        &self,
        start: impl FnOnce(Sink) -> Result<Box<dyn Backplane>, E>,
    ) -> Result<(), E> {
        let central: Weak<Central<P>> = Arc::downgrade(&self.inner);
        let backplane = start(Box::new(move |received| {
            if let Some(inner) = central.upgrade() {
                MessageCentral { inner }.receive(&received);
            }
        }))?;
        let _ = self.inner.cluster.set(backplane);
        Ok(())
    }

    /// Delivers a message that came through Redis to this server's listeners.
    fn receive(&self, received: &Received<'_>) {
        let envelope: Envelope<'_> = match serde_json::from_slice(received.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(target: "streampod::cluster", %error, "ignoring a malformed cluster message");
                return;
            }
        };
        let node = self.cluster().map(Backplane::node);
        // Session ids are per server: `except` applies on the posting server only.
        let except = envelope.except.filter(|_| Some(envelope.node) == node);
        let include = |session: &Arc<SessionShared>| Some(session.id) != except;
        let payload = Payload::Object(envelope.object.get());
        let result = match (received.channel, envelope.endpoint) {
            (Some(channel), _) => self.deliver_payload(channel, &payload, include),
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
