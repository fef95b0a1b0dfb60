//! Broadcasts: to everyone, to a user's devices, to a channel but not the sender,
//! filtered.

use std::fmt;
use std::sync::Arc;

use super::central::MessageCentral;
use super::delivery::{Delivery, Payload, PostError, Reach};
use crate::cluster::{BroadcastTarget, Envelope, Reached, Topic};
use crate::protocol::ModelSet;
use crate::session::state::{SessionHandle, SessionId, SessionShared};
use crate::util::trace_context;

enum Target {
    All(Arc<str>),
    User(String, Arc<str>),
    Channel(String),
}

type Filter<P> = Box<dyn Fn(&SessionHandle<P>) -> bool + Send + Sync>;

/// A broadcast being set up: pick recipients, then [`post`](Broadcast::post).
///
/// ```no_run
/// # streampod::__doc_models!();
/// # fn demo(messages: streampod::messages::MessageCentral<Protocol>, sender: streampod::SessionId) {
/// // Everyone in the room but the sender:
/// messages.to_channel("room-1").except(sender).post(ChatMessage { content: "hi".into() });
/// // Every device of user 42:
/// messages.to_user("42", "notification").post(ChatMessage { content: "ping".into() });
/// // Sessions tagged "beta":
/// messages.to_all("chat").filter(|s| s.has_tag("beta")).post(ChatMessage { content: "new!".into() });
/// # }
/// ```
#[must_use = "a broadcast does nothing until `post` is called"]
pub struct Broadcast<P> {
    central: MessageCentral<P>,
    target: Target,
    except: Option<SessionId>,
    filter: Option<Filter<P>>,
    reach: Reach,
}

impl<P> fmt::Debug for Broadcast<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::All(endpoint) => format!("all via {endpoint}"),
            Target::User(user, endpoint) => format!("user {user} via {endpoint}"),
            Target::Channel(channel) => format!("channel {channel}"),
        };
        f.debug_struct("Broadcast")
            .field("target", &target)
            .field("except", &self.except)
            .field("filtered", &self.filter.is_some())
            .field("reach", &self.reach)
            .finish()
    }
}

impl<P: ModelSet> Broadcast<P> {
    fn new(central: MessageCentral<P>, target: Target) -> Self {
        Self {
            central,
            target,
            except: None,
            filter: None,
            reach: Reach::Local,
        }
    }

    /// Leaves out one session (typically the sender).
    pub fn except(mut self, session: SessionId) -> Self {
        self.except = Some(session);
        self
    }

    /// Keeps only sessions for which `keep` is true (tags, user, state, …). On a channel
    /// it selects sessions; callback and stream listeners always receive.
    pub fn filter(
        mut self,
        keep: impl Fn(&SessionHandle<P>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = Some(Box::new(keep));
        self
    }

    /// Reaches this server only (`Local`, the default) or every server of the cluster
    /// (`Global`; see [`Reach::Global`]). A `Global` broadcast cannot have a
    /// [`filter`](Broadcast::filter); its `except` applies on this server.
    pub fn reach(mut self, reach: Reach) -> Self {
        self.reach = reach;
        self
    }

    /// Sends the message, encoded once. Never waits for a consumer.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`] when the message cannot be encoded; for `Global`,
    /// [`PostError::GlobalFilter`] and [`PostError::Cluster`].
    pub fn post(self, message: impl Into<P>) -> Result<Delivery, PostError> {
        let message = message.into();
        if let (Reach::Global, Some(cluster)) = (self.reach, self.central.cluster()) {
            let (topic, payload, record) = self.global(cluster.node(), &message)?;
            cluster.publish(topic, payload, record)?;
            self.central.count_post();
            return Ok(Delivery::Published);
        }
        self.deliver_here(message)
    }

    /// Sends the message to every server of the cluster, whatever
    /// [`reach`](Broadcast::reach) says, and waits until the backplane took it: the
    /// number of servers reached, where the backplane counts them (`None` on NATS).
    /// Without a cluster it is delivered here, and the answer is 1 when it reached
    /// someone, else 0.
    ///
    /// # Errors
    ///
    /// As [`post`](Broadcast::post) with `Global`; [`PostError::Cluster`] also when the
    /// backplane did not confirm in time (the broadcast may have gone out).
    pub async fn post_confirmed(self, message: impl Into<P>) -> Result<Reached, PostError> {
        let message = message.into();
        let Some(cluster) = self.central.cluster() else {
            let delivered = self.deliver_here(message)?.delivered().unwrap_or(0);
            return Ok(Some(usize::from(delivered > 0)));
        };
        let (topic, payload, record) = self.global(cluster.node(), &message)?;
        self.central.count_post();
        Ok(cluster.publish_confirmed(topic, payload, record).await?)
    }

    /// Where a broadcast to the cluster goes, and its envelope.
    fn global(
        &self,
        node: u64,
        message: &P,
    ) -> Result<(Topic<'_>, Vec<u8>, Option<crate::cluster::Record>), PostError> {
        if self.filter.is_some() {
            return Err(PostError::GlobalFilter);
        }
        let (topic, target, record) = match &self.target {
            Target::Channel(channel) => (
                Topic::Channel(channel),
                None,
                self.central.record_of(channel),
            ),
            Target::All(endpoint) => (
                Topic::Broadcasts,
                Some(BroadcastTarget {
                    endpoint,
                    user: None,
                }),
                None,
            ),
            Target::User(user, endpoint) => (
                Topic::Broadcasts,
                Some(BroadcastTarget {
                    endpoint,
                    user: Some(user),
                }),
                None,
            ),
        };
        let payload = {
            let _post = trace_context::post_span(match topic {
                Topic::Channel(channel) => Some(channel),
                Topic::Broadcasts => None,
            });
            Envelope::encode(node, self.except, target, message)?
        };
        Ok((topic, payload, record))
    }

    /// Delivers the message to this server's recipients.
    fn deliver_here(self, message: P) -> Result<Delivery, PostError> {
        let messages = [Arc::new(message)];
        let include = |session: &Arc<SessionShared>| {
            Some(session.id) != self.except
                && self
                    .filter
                    .as_ref()
                    .is_none_or(|keep| keep(&SessionHandle::new(session.clone())))
        };
        let registry = self.central.sessions();
        let (sessions, endpoint) = match &self.target {
            Target::Channel(channel) => {
                return self
                    .central
                    .deliver(channel, &messages, include)
                    .map(Delivery::Local)
            }
            Target::All(endpoint) => (registry.snapshot(), endpoint),
            Target::User(user, endpoint) => (registry.sessions_of_user(user), endpoint),
        };
        self.central
            .deliver_to_sessions(&sessions, endpoint, &Payload::Models(&messages), include)
            .map(Delivery::Local)
    }
}

impl<P: ModelSet> MessageCentral<P> {
    /// Starts a broadcast to every session of the server, framed as from `endpoint`.
    pub fn to_all(&self, endpoint: &str) -> Broadcast<P> {
        Broadcast::new(self.clone(), Target::All(Arc::from(endpoint)))
    }

    /// Starts a broadcast to every session of `user_id` (all their devices), framed as
    /// from `endpoint`.
    pub fn to_user(&self, user_id: &str, endpoint: &str) -> Broadcast<P> {
        Broadcast::new(
            self.clone(),
            Target::User(user_id.to_owned(), Arc::from(endpoint)),
        )
    }

    /// Starts a post to `channel` that can leave out sessions (`except`, `filter`).
    pub fn to_channel(&self, channel: &str) -> Broadcast<P> {
        Broadcast::new(self.clone(), Target::Channel(channel.to_owned()))
    }
}
