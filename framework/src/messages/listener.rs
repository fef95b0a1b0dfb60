//! Callback listeners: adding one to a channel, and the handle that removes it.

use std::fmt;
use std::sync::{Arc, Weak};

use super::central::MessageCentral;
use super::channel::Listener;
use crate::session::owned::{JoinError, ListenerId};
use crate::protocol::ModelSet;
use crate::session::state::SessionShared;

/// Removes a listener added with [`MessageCentral::add_listener`].
#[must_use = "keep the handle to remove the listener later; dropping it leaves the listener in place"]
pub struct ListenerHandle<P> {
    pub(crate) central: MessageCentral<P>,
    pub(crate) channel: Arc<str>,
    pub(crate) id: ListenerId,
    /// The session whose endpoint stream added it, if one did.
    pub(crate) owner: Option<Weak<SessionShared>>,
}

impl<P> fmt::Debug for ListenerHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("channel", &self.channel)
            .field("id", &self.id)
            .finish()
    }
}

impl<P> ListenerHandle<P> {
    /// Removes the listener; `false` when it was already gone.
    pub fn remove(self) -> bool {
        self.forget_and_remove()
    }

    /// Forgets the listener in its owner's budget, if it has one, and removes it.
    pub(crate) fn forget_and_remove(&self) -> bool {
        if let Some(owner) = self.owner.as_ref().and_then(Weak::upgrade) {
            if let Some(owned) = owner.owned_listeners().as_mut() {
                owned.forget_callback(self.id);
            }
        }
        self.central.remove(&self.channel, self.id)
    }

    /// The channel the listener is on.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl<P: ModelSet> MessageCentral<P> {
    /// Calls `listener` with every message posted to `channel` (on the posting task;
    /// keep it short and spawn for slow work). It stays until
    /// [`ListenerHandle::remove`]; listeners added through
    /// [`SessionMessages::add_listener`](crate::messages::SessionMessages::add_listener)
    /// go when their session closes, and those a streaming-method call adds when the
    /// call ends.
    ///
    /// # Errors
    ///
    /// As [`create_stream`](MessageCentral::create_stream).
    pub fn add_listener(
        &self,
        channel: &str,
        listener: impl Fn(&P) + Send + Sync + 'static,
    ) -> Result<ListenerHandle<P>, JoinError> {
        let callback: Arc<dyn Fn(&P) + Send + Sync> = Arc::new(listener);
        let (id, owner) = self.add_checked(channel, |id| Listener::Callback { id, callback })?;
        Ok(ListenerHandle {
            central: self.clone(),
            channel: Arc::from(channel),
            id,
            owner,
        })
    }
}
