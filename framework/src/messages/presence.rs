//! Presence: who is in a channel. A channel configured with
//! [`ChannelConfig::with_presence`](super::ChannelConfig::with_presence) lists its
//! sessions as [`Member`]s (user id, session, and what the app gave with
//! [`SessionMessages::join_with_info`](crate::messages::SessionMessages::join_with_info)), and
//! every join and leave is a [`PresenceChange`] that hooks registered with
//! [`MessageCentral::on_presence`] hear.
//!
//! On one server presence is read from the channel's listeners. In a cluster it is kept
//! in Redis, so every node sees every node's members: each node writes its members
//! there as they join and leave, beats a heartbeat every 2 s, and removes the members of
//! a node whose heartbeat is 6 s old (announcing each as a leave), so a dead node's
//! members leave everyone's presence within 6 s of its last heartbeat (8 s of its death
//! at most) and their leaves reach the hooks by then. Hooks on every node with members
//! in the channel hear every change, wherever it happened.

use std::sync::Arc;

use super::central::MessageCentral;
use super::channel::Listener;
use super::delivery::CallMember;
pub use super::hooks::{Member, PresenceChange};
use crate::cluster::{Backplane, ClusterError, StoredMember};
use crate::session::state::SessionShared;

impl<P> MessageCentral<P> {
    /// Calls `hook` (with this central) for every join and leave in channels whose name
    /// starts with `prefix` (and that have presence), wherever in the cluster it
    /// happened; in a cluster, on each node while it has members in the channel (a node
    /// hears its own members' joins, but not its last member's leave). Keep it short:
    /// it runs on the task that saw the change; spawn for anything slow.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # fn demo(messages: streampod::messages::MessageCentral<Protocol>) {
    /// use streampod::messages::ChannelConfig;
    ///
    /// messages.configure_namespace("room-", ChannelConfig::default().with_presence());
    /// messages.on_presence("room-", |_central, change| {
    ///     let verb = if change.joined { "joined" } else { "left" };
    ///     println!("{} {verb} {}", change.member.session, change.channel);
    /// });
    /// # }
    /// ```
    pub fn on_presence(
        &self,
        prefix: &str,
        hook: impl Fn(&MessageCentral<P>, &PresenceChange) + Send + Sync + 'static,
    ) {
        self.inner.presence_hooks.add(prefix, Arc::new(hook));
    }

    /// Whether `channel` keeps presence.
    pub(crate) fn has_presence(&self, channel: &str) -> bool {
        self.inner.channels.config_of(channel).presence
    }

    /// This node's id in member ids, when in a cluster.
    fn member_of(&self, session: &SessionShared, info: Option<&Arc<str>>) -> Member {
        let node = self.cluster().map(Backplane::node);
        Member {
            user_id: session.auth().map(|auth| auth.user_id.clone()),
            session: match node {
                Some(node) => format!("{node:x}-{}", session.id),
                None => session.id.to_string(),
            },
            info: info.map(ToString::to_string),
        }
    }

    /// The member a streaming-method call's feed is.
    pub(crate) fn member_of_call(&self, call: &CallMember) -> Member {
        let mut member = self.member_of(&call.session, None);
        member.user_id.clone_from(&call.user);
        member.session = format!("{}/{}", member.session, call.call);
        member
    }

    /// Who `listener` is as a member of a channel with presence: a session that
    /// joined, or a streaming-method call listening through a feed; `None` for the
    /// app's own listeners.
    pub(crate) fn member_of_listener(&self, listener: &Listener<P>) -> Option<Member> {
        match listener {
            Listener::Session { session, info, .. } => Some(self.member_of(session, info.as_ref())),
            Listener::Feed { feed, .. } | Listener::Call { feed, .. } => {
                feed.member().map(|call| self.member_of_call(call))
            }
            Listener::Callback { .. } | Listener::Stream { .. } => None,
        }
    }

    /// A session joined or left a channel with presence: tells the cluster, or, on a
    /// single server, the hooks.
    pub(crate) fn presence_changed(
        &self,
        channel: &str,
        session: &SessionShared,
        info: Option<&Arc<str>>,
        joined: bool,
    ) {
        self.announce(channel, self.member_of(session, info), joined);
    }

    /// `member` joined or left a channel with presence: tells the cluster, or, on a
    /// single server, the hooks.
    pub(crate) fn announce(&self, channel: &str, member: Member, joined: bool) {
        match self.cluster() {
            Some(cluster) if joined => {
                cluster.presence_join(channel, &member.session, &member_json(&member));
            }
            Some(cluster) => cluster.presence_leave(channel, &member.session),
            None => self.inner.presence_hooks.run(
                self,
                &PresenceChange {
                    channel: channel.to_owned(),
                    member,
                    joined,
                },
            ),
        }
    }

    /// A change another node (or this one) announced through Redis:
    /// `{"presence":{"channel":…,"member":{…},"joined":…}}`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn presence_announced(&self, notice: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Notice {
            presence: PresenceChange,
        }
        match serde_json::from_slice::<Notice>(notice) {
            Ok(notice) => self.inner.presence_hooks.run(self, &notice.presence),
            Err(error) => {
                tracing::warn!(target: "streampod::cluster", %error, "ignoring a malformed presence notice");
            }
        }
    }

    /// Writes every member this node has to the cluster again (after Redis lost them).
    pub(crate) fn republish_presence(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let mut members = Vec::new();
        for (channel, listeners) in self.inner.channels.all() {
            if !self.has_presence(&channel) {
                continue;
            }
            for member in listeners.iter().filter_map(|l| self.member_of_listener(l)) {
                let json = member_json(&member);
                members.push(StoredMember {
                    channel: channel.to_string(),
                    id: member.session,
                    member: json,
                });
            }
        }
        cluster.presence_resync(members);
    }

    /// At most `limit` of the members of `channel`, on every node (none when it has no
    /// presence); which ones is unspecified. [`presence_count`](Self::presence_count)
    /// counts them all. The limit bounds what a read costs and answers, whatever the
    /// room's size: list a page for a UI, not a whole stadium.
    ///
    /// # Errors
    ///
    /// In a cluster, when Redis cannot be read ([`ClusterError`]).
    pub async fn presence(&self, channel: &str, limit: usize) -> Result<Vec<Member>, ClusterError> {
        if !self.has_presence(channel) || limit == 0 {
            return Ok(Vec::new());
        }
        if let Some(cluster) = self.cluster() {
            let members = cluster.presence_of(channel, limit).await?;
            return Ok(members
                .iter()
                .filter_map(|member| serde_json::from_slice(member).ok())
                .collect());
        }
        let Some(found) = self.inner.channels.get(channel) else {
            return Ok(Vec::new());
        };
        Ok(found
            .snapshot()
            .iter()
            .filter_map(|listener| self.member_of_listener(listener))
            .take(limit)
            .collect())
    }

    /// How many members `channel` has, on every node.
    ///
    /// # Errors
    ///
    /// As [`MessageCentral::presence`].
    pub async fn presence_count(&self, channel: &str) -> Result<usize, ClusterError> {
        if !self.has_presence(channel) {
            return Ok(0);
        }
        if let Some(cluster) = self.cluster() {
            return cluster.presence_count(channel).await;
        }
        // One server: count the sessions, without listing them.
        Ok(self.inner.channels.get(channel).map_or(0, |found| {
            found
                .snapshot()
                .iter()
                .filter(|listener| match listener {
                    Listener::Session { .. } => true,
                    Listener::Feed { feed, .. } | Listener::Call { feed, .. } => {
                        feed.member().is_some()
                    }
                    Listener::Callback { .. } | Listener::Stream { .. } => false,
                })
                .count()
        }))
    }
}

/// A member as JSON (it has only strings and nulls: cannot fail).
fn member_json(member: &Member) -> String {
    serde_json::to_string(member).unwrap_or_default()
}
