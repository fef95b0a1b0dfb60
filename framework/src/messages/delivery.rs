//! What a post carries and what it did: the reach of a post, its report, its errors,
//! the frames it encodes once per endpoint name, and the call bodies it encodes once
//! for every streaming-method call that takes it.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::ClusterError;
use crate::protocol::method_stream::ANSWER_MESSAGE_TAIL;
use crate::protocol::{frame, EncodeError, ModelSet};
use crate::session::outbound::{ChannelKey, Push};
use crate::session::state::SessionShared;
use crate::config::SlowConsumerPolicy;
use crate::ws::frame::{CallFrameShape, TextFrame};

/// Where a post goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reach {
    /// Listeners on this server (the default, unlike Serverpod's old global default).
    #[default]
    Local,
    /// Listeners on every server of the cluster, delivered through Redis (the posting
    /// server's own listeners included, so everyone sees one order per channel). The
    /// post returns before delivery, with [`Delivery::Published`]; it fails at once while
    /// Redis is unreachable. Without a cluster configured
    /// (`ServerBuilder::cluster`, feature `redis`) this is the same as
    /// `Local`.
    Global,
}

/// What a local post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// Listeners the message was queued for or handed to.
    pub delivered: usize,
    /// Frames dropped by `DropOldest`/`LatestValue` policies (older ones, or this one).
    pub dropped: usize,
    /// Sessions disconnected as slow consumers by this post.
    pub disconnected: usize,
}

impl DeliveryReport {
    /// Adds another report's counts to this one.
    pub(crate) fn add(&mut self, other: &DeliveryReport) {
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.disconnected += other.disconnected;
    }

    /// Counts one listener that got a batch as several frames: delivered once if any
    /// was queued, every drop counted, disconnected at most once.
    pub(crate) fn count_separate(&mut self, pushes: impl IntoIterator<Item = Push>) {
        let mut queued = false;
        for push in pushes {
            match push {
                Push::Queued => queued = true,
                Push::QueuedDropping(dropped) => {
                    queued = true;
                    self.dropped += dropped;
                }
                Push::Dropped(dropped) => self.dropped += dropped,
                Push::TooLarge => self.dropped += 1,
                Push::Overflow => {
                    self.disconnected += 1;
                    return;
                }
                Push::Closed => return,
            }
        }
        if queued {
            self.delivered += 1;
        }
    }

    pub(crate) fn count(&mut self, push: Push) {
        match push {
            Push::Queued => self.delivered += 1,
            Push::QueuedDropping(dropped) => {
                self.delivered += 1;
                self.dropped += dropped;
            }
            Push::Dropped(dropped) => self.dropped += dropped,
            Push::TooLarge => self.dropped += 1,
            Push::Overflow => self.disconnected += 1,
            Push::Closed => {}
        }
    }
}

/// What a post did, as far as this server can know when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered here: the report counts this server's listeners.
    Local(DeliveryReport),
    /// Handed to the cluster (a `Global` post): Redis passes it to every server, this
    /// one included, and each delivers to its own listeners. Nothing is counted yet;
    /// [`MessageCentral::post_global`](super::MessageCentral::post_global) waits for
    /// Redis' count of servers instead.
    Published,
}

impl Delivery {
    /// The local report; `None` for a post handed to the cluster.
    pub fn local(self) -> Option<DeliveryReport> {
        match self {
            Delivery::Local(report) => Some(report),
            Delivery::Published => None,
        }
    }

    /// Listeners reached on this server; `None` for a post handed to the cluster.
    pub fn delivered(self) -> Option<usize> {
        self.local().map(|report| report.delivered)
    }
}

/// Why a post failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A `Global` post could not be handed to the cluster.
    #[error("global post failed: {0}")]
    Cluster(#[from] ClusterError),
    /// The message's frame is larger than a session's outbound byte cap
    /// ([`ServerConfig::outbound_queue_bytes`](crate::ServerConfig::outbound_queue_bytes)),
    /// so no session could take it: it was not posted, kept or published. Post less at
    /// once (page it), or raise the cap.
    #[error("a message of {bytes} bytes exceeds the outbound cap of {limit} bytes; not posted")]
    TooLarge {
        /// The encoded message's size.
        bytes: usize,
        /// The cap.
        limit: usize,
    },
    /// A `Global` broadcast had a filter: the closure cannot run on other servers.
    #[error(
        "a Global broadcast cannot carry a filter (the closure cannot run on other \
         servers); post to a channel the right sessions joined, or filter locally"
    )]
    GlobalFilter,
}

/// Cumulative counters of the message central.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MessageStats {
    /// Posts and broadcasts made.
    pub posts: u64,
    /// Frames encoded for them (one per post and endpoint name, not per recipient).
    pub frames_encoded: u64,
    /// Messages queued for or handed to a listener, over all local posts.
    pub deliveries: u64,
    /// Frames dropped by the `DropOldest` and `LatestValue` policies, all channels.
    pub dropped: u64,
    /// Of those, dropped on channels whose policy is `DropOldest`.
    pub dropped_oldest: u64,
    /// Of those, replaced on channels whose policy is `LatestValue`.
    pub dropped_latest_value: u64,
    /// Sessions disconnected as slow consumers by posts.
    pub disconnected: u64,
    /// Global messages dropped on arrival for being older than the cluster's
    /// `max_global_age` (after a Redis stall).
    pub stale_global: u64,
}

/// The frames of one post, encoded lazily once per endpoint name.
pub(crate) struct Frames<'a, E> {
    encode: E,
    /// The largest frame a session takes: a larger one fails the post.
    limit: usize,
    encoded: Vec<(Arc<str>, TextFrame)>,
    /// A batch as separate message frames, per endpoint, for Serverpod clients.
    separate: Vec<(Arc<str>, Vec<TextFrame>)>,
    counter: &'a AtomicU64,
}

impl<'a, E: Fn(&str, &mut Vec<u8>) -> Result<(), EncodeError>> Frames<'a, E> {
    pub(crate) fn new(encode: E, counter: &'a AtomicU64, limit: usize) -> Self {
        Self {
            encode,
            limit,
            encoded: Vec::new(),
            separate: Vec::new(),
            counter,
        }
    }

    /// `messages` as one message frame each from `endpoint` (what a client without
    /// batch frames gets), each encoded once per post.
    pub(crate) fn separately<P: ModelSet>(
        &mut self,
        endpoint: &Arc<str>,
        messages: &[Arc<P>],
    ) -> Result<&[TextFrame], PostError> {
        let index = match self.separate.iter().position(|(name, _)| name == endpoint) {
            Some(index) => index,
            None => {
                let mut frames = Vec::with_capacity(messages.len());
                for message in messages {
                    let frame = TextFrame::encode(128, |out| {
                        frame::encode_message(endpoint, &**message, out)
                    })?;
                    frames.push(self.within_limit(frame)?);
                }
                self.counter
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                self.separate.push((endpoint.clone(), frames));
                self.separate.len() - 1
            }
        };
        Ok(&self.separate[index].1)
    }

    /// `frame`, if a session can take it.
    fn within_limit(&self, frame: TextFrame) -> Result<TextFrame, PostError> {
        check_size(frame.len(), self.limit)?;
        Ok(frame)
    }

    pub(crate) fn get(&mut self, endpoint: &Arc<str>) -> Result<TextFrame, PostError> {
        // Sessions share their endpoint's registered name, so the pointer usually
        // matches and the string compare (a `memcmp` per delivery) is skipped.
        let found = self
            .encoded
            .iter()
            .find(|(name, _)| Arc::ptr_eq(name, endpoint) || name == endpoint);
        if let Some((_, frame)) = found {
            return Ok(frame.clone());
        }
        let frame = TextFrame::encode(128, |out| (self.encode)(endpoint, out))?;
        let frame = self.within_limit(frame)?;
        self.counter.fetch_add(1, Ordering::Relaxed);
        self.encoded.push((endpoint.clone(), frame.clone()));
        Ok(frame)
    }
}

/// `Ok` when a message of `bytes` fits a session's outbound cap `limit`.
pub(crate) fn check_size(bytes: usize, limit: usize) -> Result<(), PostError> {
    if bytes > limit {
        return Err(PostError::TooLarge { bytes, limit });
    }
    Ok(())
}

/// What a post carries: models (a local post), or a frame object that came through the
/// cluster already encoded.
pub(crate) enum Payload<'a, P> {
    Models(&'a [Arc<P>]),
    /// Only a backplane delivers encoded objects.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Object(&'a str),
}

impl<P: ModelSet> Payload<'_, P> {
    /// The messages of a batch (more than one); `None` for a single message.
    pub(crate) fn batch(&self) -> Option<&[Arc<P>]> {
        match self {
            Payload::Models(messages) if messages.len() > 1 => Some(messages),
            _ => None,
        }
    }

    pub(crate) fn encode(&self, endpoint: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Payload::Models(messages) => encode(endpoint, messages, out),
            Payload::Object(object) => {
                frame::encode_message_with_object(endpoint, object, out);
                Ok(())
            }
        }
    }

    /// The messages for callback and stream listeners (decoded from a remote object;
    /// none, with a warning, when it does not decode).
    pub(crate) fn models(&self) -> Cow<'_, [Arc<P>]> {
        match self {
            Payload::Models(messages) => Cow::Borrowed(messages),
            Payload::Object(object) => match decode_object::<P>(object) {
                Ok(message) => Cow::Owned(vec![Arc::new(message)]),
                Err(error) => {
                    tracing::warn!(target: "streampod::cluster", %error, "a cluster message does not decode here; callbacks skip it");
                    Cow::Owned(Vec::new())
                }
            },
        }
    }
}

/// One value of a post as streaming-method calls send it: its class, and its
/// `{"className":…,"data":…}`, encoded once for every call.
struct CallBody {
    class_name: Cow<'static, str>,
    object: Bytes,
}

impl CallBody {
    /// The body of `object`, a frame object.
    fn of_object(object: &str) -> Self {
        Self {
            class_name: Cow::Owned(object_class(object).unwrap_or_default().to_owned()),
            object: Bytes::copy_from_slice(object.as_bytes()),
        }
    }

    fn encode<P: ModelSet>(message: &P) -> Result<Self, EncodeError> {
        let mut object = Vec::with_capacity(256);
        frame::encode_object(message, &mut object)?;
        Ok(Self {
            class_name: Cow::Borrowed(message.class_name()),
            object: Bytes::from(object),
        })
    }
}

/// The end of a call frame carrying `object`: its offset `at` when given, then the
/// frame's close.
pub(crate) fn call_frame_value<'v>(
    object: &'v [u8],
    at: Option<&'v str>,
) -> [&'v [u8]; 4] {
    match at {
        Some(at) => [object, b",\"at\":", at.as_bytes(), ANSWER_MESSAGE_TAIL.as_bytes()],
        None => [object, b"", b"", ANSWER_MESSAGE_TAIL.as_bytes()],
    }
}

/// A post on its way through a channel's listeners: its payload, and what listeners
/// other than sessions take, each made at most once per post (models decoded from a
/// remote object, call bodies encoded).
pub(crate) struct Post<'p, 'a, P> {
    payload: &'p Payload<'a, P>,
    /// The post's one object, when already encoded (a channel with history keeps it).
    object: Option<&'p str>,
    /// Its offset in the channel's history, when it has one here.
    at: Option<u64>,
    /// The epoch of that history, for a post a cluster numbered (a local history's
    /// posts are numbered under its lock, after any replay).
    epoch: Option<&'p str>,
    models: Option<Cow<'p, [Arc<P>]>>,
    bodies: Option<Vec<CallBody>>,
    /// The frames of the bodies of one class, per call frame shape and whether they
    /// carry the offset.
    frames: Vec<(Arc<CallFrameShape>, bool, Vec<TextFrame>)>,
    counter: &'p AtomicU64,
    limit: usize,
}

impl<'p, 'a, P: ModelSet> Post<'p, 'a, P> {
    /// `payload`, whose one object is `object` if it is already encoded, at offset
    /// `at` of its channel's history if it has one here; encodes count in `counter`,
    /// and a body larger than `limit` fails the post.
    pub(crate) fn new(
        payload: &'p Payload<'a, P>,
        (object, at): (Option<&'p str>, Option<u64>),
        counter: &'p AtomicU64,
        limit: usize,
    ) -> Self {
        Self {
            payload,
            object,
            at,
            epoch: None,
            models: None,
            bodies: None,
            frames: Vec::new(),
            counter,
            limit,
        }
    }

    /// The post's offset in its channel's history, when it has one here.
    pub(crate) fn at(&self) -> Option<u64> {
        self.at
    }

    /// The same post, numbered by the cluster in `epoch`.
    pub(crate) fn in_epoch(mut self, epoch: Option<&'p str>) -> Self {
        self.epoch = epoch;
        self
    }

    /// Whether the post is at or before `start` in its epoch: a call that started
    /// there (its replay came from the cluster's history) has it already, though the
    /// cluster's live copy may arrive after the history read.
    pub(crate) fn is_at_or_before(&self, start: &crate::protocol::history::Position) -> bool {
        match (self.epoch, self.at) {
            (Some(epoch), Some(at)) => epoch == start.epoch && at <= start.offset,
            _ => false,
        }
    }

    /// The messages, for callbacks and streams.
    pub(crate) fn models(&mut self) -> &[Arc<P>] {
        let payload = self.payload;
        self.models.get_or_insert_with(|| payload.models())
    }

    /// The frames of the messages of the class `class_name` gives for calls of
    /// `shape`, with the post's offset if `positioned` (and it has one), each framed
    /// once per post for every call of that shape (none encoded when no message is of
    /// that class).
    pub(crate) fn call_frames(
        &mut self,
        shape: &Arc<CallFrameShape>,
        positioned: bool,
        class_name: impl FnOnce() -> &'static str,
    ) -> Result<&[TextFrame], PostError> {
        // A method's calls share one shape, and a method returns one class.
        if let Some(index) = self
            .frames
            .iter()
            .position(|(known, with_at, _)| Arc::ptr_eq(known, shape) && *with_at == positioned)
        {
            return Ok(&self.frames[index].2);
        }
        let class_name = class_name();
        let carries = match (self.object, self.payload) {
            (Some(object), _) | (None, &Payload::Object(object)) => {
                object_class(object) == Some(class_name)
            }
            (None, Payload::Models(messages)) => messages
                .iter()
                .any(|message| message.class_name() == class_name),
        };
        let at = self.at.filter(|_| positioned).map(|at| at.to_string());
        let frames = if carries {
            self.bodies()?
                .iter()
                .filter(|body| body.class_name == class_name)
                .map(|body| shape.frame(&call_frame_value(&body.object, at.as_deref())))
                .collect()
        } else {
            Vec::new()
        };
        self.frames.push((shape.clone(), positioned, frames));
        Ok(&self.frames[self.frames.len() - 1].2)
    }

    /// The messages as streaming-method calls send them.
    fn bodies(&mut self) -> Result<&[CallBody], PostError> {
        if self.bodies.is_none() {
            let bodies = match (self.object, self.payload) {
                (Some(object), _) | (None, &Payload::Object(object)) => {
                    vec![CallBody::of_object(object)]
                }
                (None, Payload::Models(messages)) => messages
                    .iter()
                    .map(|message| CallBody::encode(&**message))
                    .collect::<Result<_, _>>()?,
            };
            for body in &bodies {
                check_size(body.object.len(), self.limit)?;
            }
            self.counter
                .fetch_add(bodies.len() as u64, Ordering::Relaxed);
            self.bodies = Some(bodies);
        }
        Ok(self.bodies.as_deref().unwrap_or_default())
    }
}

/// What a channel's listener list holds for a [`ChannelFeed`](super::ChannelFeed): the
/// feed, whatever its item type.
pub(crate) trait FeedSink<P>: Send + Sync {
    /// Takes what of `post` is of the feed's type: queued for the stream (with the
    /// post's offset), or, once the feed sends to a socket, pushed there as frames.
    fn offer(
        &self,
        post: &mut Post<'_, '_, P>,
        policy: SlowConsumerPolicy,
        report: &mut DeliveryReport,
    ) -> Result<(), PostError>;

    /// The listener was removed: the feed ends.
    fn close(&self);

    /// The class of the feed's values.
    fn class_name(&self) -> &'static str;

    /// The call the feed listens for, as a member of a channel with presence.
    fn member(&self) -> Option<&CallMember>;

    /// Whether the feed's call has `post` already (from its replay).
    fn has(&self, post: &Post<'_, '_, P>) -> bool;
}

/// A streaming-method call as a member of a channel with presence: its socket, the
/// call (its tag on the socket: each call is a member of its own), and the user it
/// signed in as.
pub(crate) struct CallMember {
    pub(crate) session: Arc<SessionShared>,
    pub(crate) call: Arc<str>,
    pub(crate) user: Option<String>,
}

/// Pushes the call frames of one post to the call queued under `key` on `session`.
pub(crate) fn push_call_frames(
    session: &SessionShared,
    key: ChannelKey,
    frames: &[TextFrame],
    policy: SlowConsumerPolicy,
    report: &mut DeliveryReport,
) {
    let push = |frame: &TextFrame| session.push_from(frame.clone(), key, policy);
    match frames {
        [] => {}
        [one] => report.count(push(one)),
        several => report.count_separate(several.iter().map(push)),
    }
}

/// The class name of a frame object: `{"className":"…"` as this crate writes it, or
/// read properly from any other form; `None` when there is none.
fn object_class(object: &str) -> Option<&str> {
    if let Some(rest) = object.strip_prefix(r#"{"className":""#) {
        if let Some(end) = rest.find(['"', '\\']) {
            if rest.as_bytes()[end] == b'"' {
                return Some(&rest[..end]);
            }
        }
    }
    #[derive(serde::Deserialize)]
    struct Class<'a> {
        #[serde(rename = "className", borrow)]
        class_name: &'a str,
    }
    serde_json::from_str::<Class<'_>>(object)
        .ok()
        .map(|class| class.class_name)
}

/// Decodes a frame object `{"className":…,"data":…}`.
fn decode_object<P: ModelSet>(object: &str) -> Result<P, String> {
    #[derive(serde::Deserialize)]
    struct Object<'a> {
        #[serde(rename = "className", borrow)]
        class_name: Cow<'a, str>,
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let object: Object<'_> = serde_json::from_str(object).map_err(|e| e.to_string())?;
    P::decode(&object.class_name, object.data).map_err(|e| e.to_string())
}

/// One message as a message frame, several as a batch frame.
pub(crate) fn encode<P: ModelSet>(
    endpoint: &str,
    messages: &[Arc<P>],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match messages {
        [one] => frame::encode_message(endpoint, &**one, out),
        many => frame::encode_batch(endpoint, many.iter().map(|m| &**m), out),
    }
}
