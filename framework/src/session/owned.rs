//! What a session's endpoint streams added to the message central (joins and callback
//! listeners), so that closing one endpoint's stream removes exactly what it added, and
//! the limits on how much one session may hold.
//!
//! Lookups by channel and by listener are O(1), so leaving and closing cost
//! O(channels held), never O(n²).

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::history::Position;

/// Why a session could not join a channel or add a listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The session is closing or closed, or the endpoint stream it joins through has
    /// closed (for instance after the session's identity changed).
    #[error("the session (or this endpoint's stream) is closed")]
    Closed,
    /// The session already holds the most channels it may
    /// ([`ServerConfig::max_channels_per_session`](crate::ServerConfig::max_channels_per_session)).
    #[error("the session already holds {limit} channels, the most it may; leave one first")]
    TooManyChannels {
        /// The limit.
        limit: usize,
    },
    /// The channel name is longer than
    /// [`ServerConfig::max_channel_name_len`](crate::ServerConfig::max_channel_name_len).
    #[error("a channel name of {len} bytes exceeds the limit of {limit} bytes")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// What one session may hold in the central.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub(crate) channels: usize,
    pub(crate) channel_name_len: usize,
    /// The largest frame a session's outbound queue takes (its byte cap).
    pub(crate) frame_bytes: usize,
}

impl SessionLimits {
    /// Whether `channel` is a name the central takes (every listener's, owned or not).
    pub(crate) fn check_name(&self, channel: &str) -> Result<(), JoinError> {
        if channel.len() > self.channel_name_len {
            return Err(JoinError::NameTooLong {
                len: channel.len(),
                limit: self.channel_name_len,
            });
        }
        Ok(())
    }

    /// Whether a session holding `owned` may add a listener to `channel`.
    pub(crate) fn check(&self, owned: &OwnedListeners, channel: &str) -> Result<(), JoinError> {
        self.check_name(channel)?;
        if owned.len() >= self.channels {
            return Err(JoinError::TooManyChannels {
                limit: self.channels,
            });
        }
        Ok(())
    }
}

/// Identifies a listener within the message central.
pub(crate) type ListenerId = u64;

/// One listener a session owns.
#[derive(Debug, Clone)]
pub(crate) struct Owned {
    pub(crate) channel: Arc<str>,
    pub(crate) id: ListenerId,
    /// The endpoint whose stream added it.
    pub(crate) endpoint: Arc<str>,
}

/// The listeners of one session, by channel (joins) and by id (callbacks).
#[derive(Debug, Default)]
pub(crate) struct OwnedListeners {
    joins: HashMap<Arc<str>, Owned>,
    callbacks: HashMap<ListenerId, Owned>,
    /// Positions the client sent with `recover`, each taken by its next join of that
    /// channel (a list: empty, it allocates nothing, and it holds at most 1,024).
    recover_from: Vec<(String, Position)>,
}

impl OwnedListeners {
    /// Joins and callbacks held, the figure `max_channels_per_session` bounds.
    pub(crate) fn len(&self) -> usize {
        self.joins.len() + self.callbacks.len()
    }

    /// Whether the session has joined `channel` (through any endpoint).
    pub(crate) fn has_joined(&self, channel: &str) -> bool {
        self.joins.contains_key(channel)
    }

    /// Whether the join of `channel` is still the one listener `id` made.
    pub(crate) fn holds(&self, channel: &str, id: ListenerId) -> bool {
        self.joins.get(channel).is_some_and(|owned| owned.id == id)
    }

    pub(crate) fn add_join(&mut self, owned: Owned) {
        self.joins.insert(owned.channel.clone(), owned);
    }

    pub(crate) fn add_callback(&mut self, owned: Owned) {
        self.callbacks.insert(owned.id, owned);
    }

    /// Keeps the client's last positions for its next joins (replacing earlier ones).
    pub(crate) fn set_recovery(&mut self, positions: Vec<(String, Position)>) {
        self.recover_from = positions;
    }

    /// The position to recover `channel` from, if the client sent one (once).
    pub(crate) fn take_recovery(&mut self, channel: &str) -> Option<Position> {
        let index = self.recover_from.iter().position(|(name, _)| name == channel)?;
        Some(self.recover_from.swap_remove(index).1)
    }

    /// Forgets the join of `channel`, returning it.
    pub(crate) fn take_join(&mut self, channel: &str) -> Option<Owned> {
        self.joins.remove(channel)
    }

    /// Forgets the callback `id` (removed through its handle).
    pub(crate) fn forget_callback(&mut self, id: ListenerId) {
        self.callbacks.remove(&id);
    }

    /// Takes every listener `endpoint` added (every endpoint's with `None`).
    pub(crate) fn take(&mut self, endpoint: Option<&str>) -> Vec<Owned> {
        let Some(endpoint) = endpoint else {
            let joins = std::mem::take(&mut self.joins).into_values();
            return joins
                .chain(std::mem::take(&mut self.callbacks).into_values())
                .collect();
        };
        let mut taken = Vec::new();
        take_from(&mut self.joins, endpoint, &mut taken);
        take_from(&mut self.callbacks, endpoint, &mut taken);
        taken
    }
}

/// Moves the entries `endpoint` added from `map` to `out`.
fn take_from<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Owned>,
    endpoint: &str,
    out: &mut Vec<Owned>,
) {
    let (taken, kept): (HashMap<K, Owned>, HashMap<K, Owned>) = std::mem::take(map)
        .into_iter()
        .partition(|(_, owned)| *owned.endpoint == *endpoint);
    *map = kept;
    out.extend(taken.into_values());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(channel: &str, id: ListenerId, endpoint: &str) -> Owned {
        Owned {
            channel: Arc::from(channel),
            id,
            endpoint: Arc::from(endpoint),
        }
    }

    #[test]
    fn an_endpoint_takes_only_what_it_added() {
        let mut listeners = OwnedListeners::default();
        listeners.add_join(owned("a", 1, "chat"));
        listeners.add_join(owned("b", 2, "notes"));
        listeners.add_callback(owned("c", 3, "chat"));
        assert_eq!(listeners.len(), 3);
        let mut taken: Vec<ListenerId> =
            listeners.take(Some("chat")).iter().map(|o| o.id).collect();
        taken.sort_unstable();
        assert_eq!(taken, [1, 3]);
        assert!(listeners.has_joined("b") && !listeners.has_joined("a"));
        assert_eq!(listeners.take(None).len(), 1);
        assert_eq!(listeners.len(), 0);
    }

    #[test]
    fn joins_are_found_by_channel() {
        let mut listeners = OwnedListeners::default();
        listeners.add_join(owned("a", 1, "chat"));
        assert!(listeners.has_joined("a"));
        assert_eq!(listeners.take_join("a").map(|o| o.id), Some(1));
        assert!(listeners.take_join("a").is_none());
        listeners.add_callback(owned("a", 2, "chat"));
        listeners.forget_callback(2);
        assert_eq!(listeners.len(), 0);
    }
}
