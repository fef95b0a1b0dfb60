//! Presence's types and hooks: who is in a channel ([`Member`]), a join or leave
//! ([`PresenceChange`]), and the hooks that hear changes, by channel-name prefix. The
//! API around them is in `presence`.

use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::util::peer_text::PeerText;

/// A session in a channel with presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The signed-in user, if any.
    pub user_id: Option<String>,
    /// The session, unique in the cluster (`<node>-<session id>`, or the session id on
    /// a single server); for a streaming-method call listening through a
    /// [`ChannelFeed`](crate::messages::ChannelFeed), its socket's, then `/call <n>`
    /// (each call is a member of its own).
    pub session: String,
    /// What the app joined with ([`SessionMessages::join_with_info`](crate::messages::SessionMessages::join_with_info)).
    pub info: Option<String>,
}

/// A member joined or left a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceChange {
    /// The channel.
    pub channel: String,
    /// Who.
    pub member: Member,
    /// `true` for a join, `false` for a leave.
    pub joined: bool,
}

/// A presence hook, called with the central (`C`) that saw the change.
pub(crate) type Hook<C> = Arc<dyn Fn(&C, &PresenceChange) + Send + Sync>;

/// Hooks by channel-name prefix.
pub(crate) struct Hooks<C> {
    by_prefix: RwLock<Vec<(String, Hook<C>)>>,
}

impl<C> Default for Hooks<C> {
    fn default() -> Self {
        Self {
            by_prefix: RwLock::new(Vec::new()),
        }
    }
}

impl<C> Hooks<C> {
    pub(crate) fn add(&self, prefix: &str, hook: Hook<C>) {
        self.by_prefix
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((prefix.to_owned(), hook));
    }

    /// Runs every hook whose prefix `change`'s channel starts with.
    pub(crate) fn run(&self, central: &C, change: &PresenceChange) {
        let hooks: Vec<Hook<C>> = self
            .by_prefix
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(prefix, _)| change.channel.starts_with(prefix.as_str()))
            .map(|(_, hook)| hook.clone())
            .collect();
        for hook in hooks {
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                hook(central, change);
            }));
            if called.is_err() {
                tracing::error!(target: "streampod::messages", channel = %PeerText(&change.channel), "a presence hook panicked");
            }
        }
    }
}
