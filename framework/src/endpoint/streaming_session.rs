//! Endpoint streams: a session as one endpoint sees it ([`StreamingSession`]), and the
//! message central seen from that stream ([`SessionMessages`]): what a stream joins or
//! adds is owned by it and removed when it closes.

use std::fmt;
use std::sync::Arc;

use crate::auth::AuthInfo;
use crate::messages::central::MessageCentral;
use crate::messages::membership::{SessionMessages, StreamScope};
use crate::protocol::ModelSet;
use crate::session::state::{SendError, SessionHandle, SessionId};

/// A session as one endpoint sees it: [`send_stream_message`](Self::send_stream_message)
/// frames messages with this endpoint's name; [`handle`](Self::handle) reaches the
/// rest of the session (tags, state, closing); clone it to use it from another task.
///
/// One endpoint stream lasts from `stream_opened` to `stream_closed`: until the socket
/// closes, or until the session's identity changes (the stream is then closed and a new
/// one opened under the new identity). A clone kept by a background task sees the end:
/// [`is_stream_closed`](Self::is_stream_closed) turns true, sends and joins fail.
pub struct StreamingSession<P> {
    handle: SessionHandle<P>,
    /// What this stream holds in the message central.
    stream: StreamScope<P>,
}

impl<P> Clone for StreamingSession<P> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            stream: self.stream.clone(),
        }
    }
}

impl<P> fmt::Debug for StreamingSession<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingSession")
            .field("id", &self.handle.shared.id)
            .field("endpoint", &self.stream.endpoint)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> StreamingSession<P> {
    /// A new endpoint stream of `handle`'s session.
    pub(crate) fn open(
        handle: SessionHandle<P>,
        endpoint: Arc<str>,
        central: MessageCentral<P>,
    ) -> Self {
        let stream = StreamScope::open(central, handle.shared.clone(), endpoint);
        Self { handle, stream }
    }

    pub(crate) fn is_stream_open(&self) -> bool {
        self.stream.is_open()
    }


    /// Whether this endpoint stream has ended: the socket closed, or the session's
    /// identity changed since it opened. Background tasks holding a clone should stop.
    pub fn is_stream_closed(&self) -> bool {
        !self.is_stream_open() || self.handle.is_closed()
    }

    /// The endpoint this view belongs to.
    pub fn endpoint(&self) -> &str {
        &self.stream.endpoint
    }

    /// The session handle, without the endpoint: tags, state, closing, sending as
    /// another endpoint.
    pub fn handle(&self) -> &SessionHandle<P> {
        &self.handle
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.handle.id()
    }

    /// Who the session is signed in as, if anyone.
    pub fn auth(&self) -> Option<Arc<AuthInfo>> {
        self.handle.auth()
    }

    /// The signed-in user's id, if the session is authenticated.
    pub fn authenticated_user_id(&self) -> Option<String> {
        self.handle.authenticated_user_id()
    }

    /// The client's address.
    pub fn remote_addr(&self) -> std::net::SocketAddr {
        self.handle.remote_addr()
    }

    /// Sends `message` to this session from this endpoint. Never waits.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once this endpoint stream closed (even if the socket is
    /// still open under another identity); otherwise see [`SessionHandle::send`].
    pub fn send_stream_message(&self, message: impl Into<P>) -> Result<(), SendError> {
        if !self.is_stream_open() {
            return Err(SendError::Closed);
        }
        self.handle.send(&self.stream.endpoint, message)
    }

    /// The message central, seen from this session and endpoint: channels it joins
    /// deliver as this endpoint, and what it adds is removed when this stream closes.
    pub fn messages(&self) -> SessionMessages<P> {
        SessionMessages::new(self.stream.clone())
    }

    /// Ends this stream (later joins through it fail) and removes what it added.
    pub(crate) async fn end(&self) {
        self.stream.end().await;
    }
}

/// The message central without sockets: sessions are their shared state and outbound
/// queue, read back the way the writer task reads them.
#[cfg(test)]
#[allow(unreachable_pub)] // the doc models are `pub`
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use futures_util::FutureExt;

    use super::*;
    use std::sync::atomic::Ordering;

    use crate::config::SlowConsumerPolicy;
    use crate::messages::delivery::{Delivery, Reach};
    use crate::messages::membership::release_session;
    use crate::messages::ChannelConfig;
    use crate::session::owned::JoinError;
    use crate::session::state::SessionShared;
    use crate::session::outbound::{Batch, Limits, TotalHeld};
    use crate::session::owned::SessionLimits;
    use crate::session::registry::SessionRegistry;

    crate::__doc_models!();

    fn chat(content: &str) -> ChatMessage {
        ChatMessage {
            content: content.to_owned(),
        }
    }

    struct Fixture {
        central: MessageCentral<Protocol>,
        registry: Arc<SessionRegistry>,
        next_id: SessionId,
    }

    impl Fixture {
        fn new() -> Self {
            let registry = Arc::new(SessionRegistry::default());
            let central = MessageCentral::new(
                registry.clone(),
                8,
                SessionLimits {
                    channels: 4,
                    channel_name_len: 16,
                    frame_bytes: 1 << 20,
                },
                tokio::runtime::Handle::current(),
                std::sync::Arc::default(),
            );
            Self {
                central,
                registry,
                next_id: 1,
            }
        }

        /// A session with room for `frames` frames, and its stream on endpoint `rooms`.
        fn session(&mut self, frames: usize) -> StreamingSession<Protocol> {
            self.session_as(frames, true)
        }

        /// The same, for a client that asked for extended frames or (`false`) did not.
        fn session_as(&mut self, frames: usize, extended: bool) -> StreamingSession<Protocol> {
            let id = self.next_id;
            self.next_id += 1;
            let shared = Arc::new(SessionShared::new(
                id,
                SocketAddr::from(([127, 0, 0, 1], 4000)),
                Limits {
                    frames,
                    bytes: 1 << 20,
                },
                Arc::new(TotalHeld::default()),
                SlowConsumerPolicy::Disconnect,
                extended,
                tracing::Span::none(),
            ));
            self.registry.insert(shared.clone());
            StreamingSession::open(
                SessionHandle::new(shared),
                Arc::from("rooms"),
                self.central.clone(),
            )
        }
    }

    /// What the session's writer would write now: the frames' text.
    fn drain(session: &StreamingSession<Protocol>) -> Vec<String> {
        let mut batch = Batch::default();
        let _ = session
            .handle
            .shared
            .outbound
            .next(&mut batch)
            .now_or_never();
        batch
            .frames
            .into_iter()
            .map(|queued| queued.frame.text().into_owned())
            .collect()
    }

    fn content(frame: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(frame).unwrap();
        value["object"]["data"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn local(delivery: Delivery) -> crate::messages::DeliveryReport {
        delivery.local().expect("a local post")
    }

    #[tokio::test]
    async fn presence_lists_members_and_hooks_hear_joins_and_leaves() {
        let mut fixture = Fixture::new();
        fixture
            .central
            .configure_namespace("room", ChannelConfig::default().with_presence());
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = heard.clone();
        fixture.central.on_presence("room", move |_, change| {
            let verb = if change.joined { "+" } else { "-" };
            log.lock()
                .unwrap()
                .push(format!("{verb}{}@{}", change.member.session, change.channel));
        });
        let (ann, bob) = (fixture.session(8), fixture.session(8));
        ann.messages().join_with_info("room-1", "Ann").unwrap();
        bob.messages().join("room-1").unwrap();
        bob.messages().join("other").unwrap();
        let members = fixture.central.presence("room-1", 100).await.unwrap();
        let listed: Vec<(String, Option<String>)> = members
            .into_iter()
            .map(|member| (member.session, member.info))
            .collect();
        assert_eq!(
            listed,
            [("1".to_owned(), Some("Ann".to_owned())), ("2".to_owned(), None)]
        );
        assert!(
            fixture.central.presence("other", 100).await.unwrap().is_empty(),
            "a channel without presence lists nobody"
        );
        bob.end().await;
        assert_eq!(fixture.central.presence_count("room-1").await.unwrap(), 1);
        assert_eq!(
            *heard.lock().unwrap(),
            ["+1@room-1", "+2@room-1", "-2@room-1"],
            "channels without presence ('other') are not heard"
        );
    }

    #[tokio::test]
    async fn a_post_reaches_every_member_with_one_encode() {
        let mut fixture = Fixture::new();
        let members: Vec<_> = (0..3).map(|_| fixture.session(8)).collect();
        let outsider = fixture.session(8);
        for member in &members {
            assert!(member.messages().join("room").unwrap());
        }
        let report = local(
            fixture
                .central
                .post_message("room", chat("hi"), Reach::Local)
                .unwrap(),
        );
        assert_eq!((report.delivered, report.dropped), (3, 0));
        let frames: Vec<Vec<String>> = members.iter().map(drain).collect();
        assert!(frames.iter().all(|f| f.len() == 1 && f[0] == frames[0][0]));
        assert!(
            frames[0][0].starts_with(r#"{"endpoint":"rooms","object":{"className":"ChatMessage","#),
            "{}",
            frames[0][0]
        );
        assert_eq!(content(&frames[0][0]), "hi");
        assert!(drain(&outsider).is_empty());
        let stats = fixture.central.stats();
        assert_eq!((stats.posts, stats.frames_encoded, stats.deliveries), (1, 1, 3));
    }

    #[tokio::test]
    async fn each_publishers_order_is_kept() {
        let mut fixture = Fixture::new();
        let member = fixture.session(1000);
        member.messages().join("room").unwrap();
        for i in 0..200 {
            fixture
                .central
                .post_message("room", chat(&i.to_string()), Reach::Local)
                .unwrap();
        }
        let got: Vec<String> = drain(&member).iter().map(|f| content(f)).collect();
        let want: Vec<String> = (0..200).map(|i: i32| i.to_string()).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn callbacks_and_streams_listen_too() {
        let mut fixture = Fixture::new();
        let heard = Arc::new(AtomicUsize::new(0));
        let counter = heard.clone();
        let handle = fixture.central.add_listener("news", move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        let mut stream = fixture.central.create_stream("news").unwrap();
        let session = fixture.session(8);
        session.messages().join("news").unwrap();
        for text in ["a", "b"] {
            let report = local(
                fixture
                    .central
                    .post_message("news", chat(text), Reach::Local)
                    .unwrap(),
            );
            assert_eq!(report.delivered, 3);
        }
        assert_eq!(heard.load(Ordering::Relaxed), 2);
        for text in ["a", "b"] {
            let Protocol::ChatMessage(message) = &*stream.recv().await.unwrap();
            assert_eq!(message.content, text);
        }
        assert!(handle.remove());
        drop(stream);
        assert_eq!(fixture.central.listener_count("news"), 1);
    }

    #[tokio::test]
    async fn a_full_subscriber_is_disconnected_and_nobody_else_waits() {
        let mut fixture = Fixture::new();
        let slow = fixture.session(4);
        let healthy = fixture.session(4);
        slow.messages().join("feed").unwrap();
        healthy.messages().join("feed").unwrap();
        let mut received = Vec::new();
        let mut disconnected = 0;
        for i in 0..10 {
            let report = local(
                fixture
                    .central
                    .post_message("feed", chat(&i.to_string()), Reach::Local)
                    .unwrap(),
            );
            disconnected += report.disconnected;
            received.extend(drain(&healthy).iter().map(|f| content(f)));
        }
        assert_eq!(disconnected, 1, "the slow one, once");
        assert!(slow.handle().is_closed());
        assert_eq!(received.len(), 10, "the healthy subscriber lost nothing");
        assert_eq!(fixture.central.stats().disconnected, 1);
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_frames() {
        let mut fixture = Fixture::new();
        fixture.central.configure_channel(
            "ticks",
            ChannelConfig::slow_consumer(SlowConsumerPolicy::DropOldest),
        );
        let session = fixture.session(4);
        session.messages().join("ticks").unwrap();
        let mut dropped = 0;
        for i in 0..10 {
            let delivery = fixture
                .central
                .post_message("ticks", chat(&i.to_string()), Reach::Local)
                .unwrap();
            dropped += local(delivery).dropped;
        }
        let kept: Vec<String> = drain(&session).iter().map(|f| content(f)).collect();
        assert_eq!(kept, ["6", "7", "8", "9"]);
        assert_eq!(dropped, 6);
        assert!(!session.handle().is_closed());
        assert_eq!(fixture.central.stats().dropped_oldest, 6);
    }

    #[tokio::test]
    async fn latest_value_keeps_only_the_newest() {
        let mut fixture = Fixture::new();
        fixture.central.configure_channel(
            "price",
            ChannelConfig::slow_consumer(SlowConsumerPolicy::LatestValue),
        );
        let session = fixture.session(4);
        session.messages().join("price").unwrap();
        for i in 0..10 {
            fixture
                .central
                .post_message("price", chat(&i.to_string()), Reach::Local)
                .unwrap();
        }
        let kept: Vec<String> = drain(&session).iter().map(|f| content(f)).collect();
        assert_eq!(kept, ["9"]);
        assert_eq!(fixture.central.stats().dropped_latest_value, 9);
    }

    #[tokio::test]
    async fn leaving_and_ending_a_stream_leave_nothing_behind() {
        let mut fixture = Fixture::new();
        let session = fixture.session(8);
        let messages = session.messages();
        assert!(messages.join("a").unwrap());
        assert!(!messages.join("a").unwrap(), "joined once");
        messages.join("b").unwrap();
        let _callback = messages.add_listener("c", |_| {}).unwrap();
        assert_eq!(fixture.central.channel_count(), 3);
        assert!(messages.leave("a"));
        assert!(!messages.leave("a"));
        assert_eq!(fixture.central.listener_count("a"), 0);

        let kept = session.clone();
        session.end().await;
        assert_eq!(fixture.central.total_listeners(), 0);
        assert_eq!(fixture.central.channel_count(), 0);
        assert!(kept.is_stream_closed());
        assert_eq!(kept.messages().join("d"), Err(JoinError::Closed));
        assert!(matches!(
            kept.send_stream_message(chat("late")),
            Err(SendError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_session_holds_at_most_its_limits() {
        let mut fixture = Fixture::new();
        let session = fixture.session(8);
        let messages = session.messages();
        assert_eq!(
            messages.join("a-name-longer-than-16"),
            Err(JoinError::NameTooLong { len: 21, limit: 16 })
        );
        for channel in ["a", "b", "c"] {
            messages.join(channel).unwrap();
        }
        let _callback = messages.add_listener("d", |_| {}).unwrap();
        assert_eq!(
            messages.join("e"),
            Err(JoinError::TooManyChannels { limit: 4 })
        );
        release_session(&fixture.central, &session.handle().shared).await;
        assert_eq!(fixture.central.total_listeners(), 0);
        assert_eq!(messages.join("f"), Err(JoinError::Closed));
    }

    #[tokio::test]
    async fn broadcasts_reach_users_everyone_and_all_but_the_sender() {
        let mut fixture = Fixture::new();
        let sessions: Vec<_> = (0..4).map(|_| fixture.session(8)).collect();
        for (i, session) in sessions.iter().enumerate() {
            let user = if i < 2 { "7" } else { "8" };
            fixture
                .registry
                .set_user(&session.handle().shared, None, Some(user));
            session.messages().join("room").unwrap();
        }
        let report = local(
            fixture
                .central
                .to_user("7", "notes")
                .post(chat("for 7"))
                .unwrap(),
        );
        assert_eq!(report.delivered, 2);
        let others = local(
            sessions[0]
                .messages()
                .to_others("room")
                .post(chat("not me"))
                .unwrap(),
        );
        assert_eq!(others.delivered, 3);
        sessions[3].handle().add_tag("beta");
        let tagged = local(
            fixture
                .central
                .to_all("notes")
                .filter(|s| s.has_tag("beta"))
                .post(chat("beta"))
                .unwrap(),
        );
        assert_eq!(tagged.delivered, 1);
        let got: Vec<Vec<String>> = sessions
            .iter()
            .map(|s| drain(s).iter().map(|f| content(f)).collect())
            .collect();
        assert_eq!(got[0], ["for 7"]);
        assert_eq!(got[1], ["for 7", "not me"]);
        assert_eq!(got[2], ["not me"]);
        assert_eq!(got[3], ["not me", "beta"]);
    }

    #[tokio::test]
    async fn a_serverpod_client_gets_a_batch_as_separate_frames() {
        let mut fixture = Fixture::new();
        let legacy = fixture.session_as(8, false);
        let extended = fixture.session_as(8, true);
        legacy.messages().join("feed").unwrap();
        extended.messages().join("feed").unwrap();
        let batch = [Arc::new(Protocol::from(chat("a"))), Arc::new(Protocol::from(chat("b")))];
        let report = fixture.central.deliver("feed", &batch, |_| true).unwrap();
        assert_eq!(report.delivered, 2, "one per listener, however many frames");
        let separate = drain(&legacy);
        assert_eq!(separate.len(), 2);
        assert_eq!(
            separate.iter().map(|f| content(f)).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let together = drain(&extended);
        assert_eq!(together.len(), 1);
        assert!(together[0].contains(r#""batch":["#), "{}", together[0]);
        // Each form encoded once: one batch frame and two message frames.
        assert_eq!(fixture.central.stats().frames_encoded, 3);
    }
}
