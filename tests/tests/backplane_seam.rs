//! The backplane seam from the outside: a pub/sub backend written here, against the
//! public `streampod::cluster::PubSub` trait only (an in-process bus, no Redis), carries
//! two servers' global posts and broadcasts to each other's clients over real sockets;
//! a bus that goes down makes global posts fail at once, honestly, while local ones go
//! on. What a third party does to add a backend. And a history backend whose live copy
//! of a post arrives after a history read that had it: a resuming streaming call gets
//! the post once.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::json;
use streampod::cluster::{Backends, ClusterError, ClusterState, Inbox, PubSub, Reached, Topic};
use streampod::messages::{PostError, Reach};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::{RoomFeeds, Rooms};
use tokio::sync::{mpsc, oneshot, watch};

/// A topic as the bus names it.
fn key(topic: Topic<'_>) -> String {
    match topic {
        Topic::Channel(channel) => format!("channel:{channel}"),
        Topic::Broadcasts => "broadcasts".to_owned(),
    }
}

/// The nodes subscribed to each topic, with their inboxes.
type Subscribers = Arc<Mutex<HashMap<String, Vec<(usize, Inbox)>>>>;

/// One publish on its way through the bus.
struct Published {
    topic: String,
    payload: Vec<u8>,
    reached: oneshot::Sender<usize>,
}

/// An in-process message bus: one task hands every publish, in one order, to the inbox
/// of every node subscribed to its topic.
#[derive(Clone)]
struct Bus {
    subscribers: Subscribers,
    published: mpsc::UnboundedSender<Published>,
    state: Arc<watch::Sender<ClusterState>>,
}

impl Bus {
    fn start() -> Self {
        let subscribers = Subscribers::default();
        let (published, mut queue) = mpsc::unbounded_channel::<Published>();
        let by_topic = subscribers.clone();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                let inboxes: Vec<Inbox> = by_topic
                    .lock()
                    .unwrap()
                    .get(&message.topic)
                    .map(|nodes| nodes.iter().map(|(_, inbox)| inbox.clone()).collect())
                    .unwrap_or_default();
                let topic = match message.topic.strip_prefix("channel:") {
                    Some(channel) => Topic::Channel(channel),
                    None => Topic::Broadcasts,
                };
                for inbox in &inboxes {
                    inbox.deliver(topic, &message.payload);
                }
                let _ = message.reached.send(inboxes.len());
            }
        });
        Self {
            subscribers,
            published,
            state: Arc::new(watch::channel(ClusterState::Connected).0),
        }
    }

    /// Node `id` of the bus, handing what it receives to `inbox`.
    fn node(&self, id: usize, inbox: Inbox) -> Node {
        Node {
            bus: self.clone(),
            id,
            inbox,
        }
    }
}

/// One server's connection to the bus.
struct Node {
    bus: Bus,
    id: usize,
    inbox: Inbox,
}

impl PubSub for Node {
    fn subscribe(&self, topic: Topic<'_>) {
        let mut subscribers = self.bus.subscribers.lock().unwrap();
        let nodes = subscribers.entry(key(topic)).or_default();
        if !nodes.iter().any(|(id, _)| *id == self.id) {
            nodes.push((self.id, self.inbox.clone()));
        }
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        if let Some(nodes) = self.bus.subscribers.lock().unwrap().get_mut(&key(topic)) {
            nodes.retain(|(id, _)| *id != self.id);
        }
    }

    fn publish(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
    ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        if *self.bus.state.borrow() != ClusterState::Connected {
            return Err(ClusterError::Unavailable("the bus is down".into()));
        }
        let (reached, answer) = oneshot::channel();
        self.bus
            .published
            .send(Published {
                topic: key(topic),
                payload,
                reached,
            })
            .map_err(|_| ClusterError::Unavailable("the bus stopped".into()))?;
        Ok(async move {
            answer
                .await
                .map(Some)
                .map_err(|_| ClusterError::Unconfirmed("the bus stopped".into()))
        })
    }

    fn state(&self) -> watch::Receiver<ClusterState> {
        self.bus.state.subscribe()
    }
}

async fn start(bus: &Bus, id: usize) -> Server<Protocol> {
    let bus = bus.clone();
    Server::builder()
        .endpoint("rooms", Rooms::default())
        .backplane(move |inbox| Backends::new(bus.node(id, inbox)))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn chat(content: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "bus".into(),
        content: content.into(),
        timestamp: None,
        channel_id: "room-1".into(),
        priority: Priority::Normal,
    }
}

/// The content of the next chat message `client` receives.
async fn next_content(client: &mut TestClient) -> String {
    let frame = client.next_json().await;
    frame["object"]["data"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("a chat message, got {frame}"))
        .to_owned()
}

#[tokio::test]
async fn two_servers_share_posts_and_broadcasts_through_a_backend_of_their_own() {
    let bus = Bus::start();
    let (a, b) = (start(&bus, 1).await, start(&bus, 2).await);
    let mut on_a = TestClient::connect(a.local_addr(), "").await;
    on_a.send_model(
        "rooms",
        "ChatMessage",
        json!({"senderName": "ann", "content": "join", "channelId": "room-1"}),
    )
    .await;
    assert_eq!(next_content(&mut on_a).await, "ack:join");

    // A post on B reaches A's client, through the bus: one node listens.
    let reached = b
        .handle()
        .messages()
        .post_global("room-1", chat("from b"))
        .await
        .unwrap();
    assert_eq!(reached, Some(1));
    assert_eq!(next_content(&mut on_a).await, "from b");

    // A broadcast from B reaches every session of both servers.
    b.handle()
        .messages()
        .to_all("rooms")
        .reach(Reach::Global)
        .post(chat("to everyone"))
        .unwrap();
    assert_eq!(next_content(&mut on_a).await, "to everyone");

    // From a thread outside the runtime (a blocking job), a fire-and-forget global post.
    let messages = b.handle().messages();
    std::thread::spawn(move || {
        messages
            .post_message("room-1", chat("from a thread"), Reach::Global)
            .unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(next_content(&mut on_a).await, "from a thread");

    // The client leaves: A unsubscribes, and the bus reaches no one.
    on_a.send_model(
        "rooms",
        "ChatMessage",
        json!({"senderName": "ann", "content": "leave", "channelId": "room-1"}),
    )
    .await;
    assert_eq!(next_content(&mut on_a).await, "ack:leave");
    let reached = b
        .handle()
        .messages()
        .post_global("room-1", chat("to nobody"))
        .await
        .unwrap();
    assert_eq!(reached, Some(0));

    // The bus goes down: global posts fail at once, certainly not published; local
    // posts still reach this server's listeners.
    bus.state.send_replace(ClusterState::Disconnected {
        error: "cut".into(),
    });
    assert_eq!(
        a.handle().messages().cluster_state(),
        Some(ClusterState::Disconnected {
            error: "cut".into()
        })
    );
    let refused = a
        .handle()
        .messages()
        .post_message("room-1", chat("global"), Reach::Global)
        .unwrap_err();
    let PostError::Cluster(error) = refused else {
        panic!("a cluster error, got {refused:?}");
    };
    assert!(!error.may_have_been_delivered(), "{error}");
    on_a.send_model(
        "rooms",
        "ChatMessage",
        json!({"senderName": "ann", "content": "join", "channelId": "room-2"}),
    )
    .await;
    assert_eq!(next_content(&mut on_a).await, "ack:join");
    a.handle()
        .messages()
        .post_message("room-2", chat("local"), Reach::Local)
        .unwrap();
    assert_eq!(next_content(&mut on_a).await, "local");

    a.shutdown().await;
    b.shutdown().await;
}

/// Each kept post's offset and payload.
type Kept = Vec<(u64, Vec<u8>)>;

/// A one-node history on the bus whose live copies wait until released: a post can be
/// in a history read before its live copy reaches the node (Redis' reply to a read and
/// its pub/sub message travel on two connections).
#[derive(Clone)]
struct SlowHistory {
    bus: Bus,
    kept: Arc<Mutex<Kept>>,
    held: Arc<Mutex<Vec<Published>>>,
    hold: Arc<std::sync::atomic::AtomicBool>,
}

impl SlowHistory {
    const EPOCH: &'static str = "e1";

    fn new(bus: &Bus) -> Self {
        Self {
            bus: bus.clone(),
            kept: Arc::default(),
            held: Arc::default(),
            hold: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Sends what was held, and everything from now on at once.
    fn release(&self) {
        self.hold.store(false, std::sync::atomic::Ordering::SeqCst);
        for published in self.held.lock().unwrap().drain(..) {
            let _ = self.bus.published.send(published);
        }
    }
}

impl streampod::cluster::History for SlowHistory {
    fn append_and_publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
        _retention: streampod::cluster::Retention,
    ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        let mut kept = self.kept.lock().unwrap();
        let offset = kept.len() as u64 + 1;
        kept.push((offset, payload.clone()));
        // The position goes first in the payload's object, as the Redis backend puts it.
        let mut positioned =
            format!(r#"{{"epoch":"{}","offset":{offset},"#, Self::EPOCH).into_bytes();
        positioned.extend_from_slice(&payload[1..]);
        let (reached, answer) = oneshot::channel();
        let published = Published {
            topic: key(Topic::Channel(channel)),
            payload: positioned,
            reached,
        };
        if self.hold.load(std::sync::atomic::Ordering::SeqCst) {
            self.held.lock().unwrap().push(published);
        } else {
            let _ = self.bus.published.send(published);
        }
        Ok(async move { Ok(Some(answer.await.unwrap_or(0))) })
    }

    fn read(
        &self,
        _channel: &str,
        since: Option<(&str, u64)>,
        _retention: streampod::cluster::Retention,
    ) -> impl Future<Output = Result<streampod::cluster::HistoryRead, ClusterError>> + Send {
        let kept = self.kept.lock().unwrap().clone();
        let after = since.map_or(u64::MAX, |(_, offset)| offset);
        async move {
            Ok(streampod::cluster::HistoryRead {
                epoch: Self::EPOCH.to_owned(),
                newest: kept.len() as u64,
                entries: kept
                    .into_iter()
                    .filter(|(offset, _)| *offset > after)
                    .collect(),
                continues: false,
            })
        }
    }
}

#[tokio::test]
async fn a_resumed_call_gets_a_post_once_when_its_live_copy_arrives_after_the_history_read() {
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;
    use streampod::messages::{ChannelConfig, HistoryConfig};
    use tokio_tungstenite::tungstenite::Message;

    let bus = Bus::start();
    let history = SlowHistory::new(&bus);
    let server = {
        let (bus, history) = (bus.clone(), history.clone());
        Server::builder()
            .methods("feeds", RoomFeeds)
            .backplane(move |inbox| Backends::new(bus.node(1, inbox)).with_history(history))
            .bind("127.0.0.1:0")
            .await
            .unwrap()
    };
    server.handle().messages().configure_channel(
        "room-1",
        ChannelConfig::default().with_history(HistoryConfig::new(100, Duration::from_secs(60))),
    );
    // Kept as offset 1, its live copy held back.
    server
        .handle()
        .messages()
        .post_message("room-1", chat("first"), Reach::Global)
        .unwrap();
    // A call that had nothing of epoch e1 resumes from offset 0: the read replays "first".
    let url = format!("ws://{}/v1/websocket", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = json!({"type": "omsc", "data": {
        "en": "feeds", "m": "room", "cid": "00000000-0000-4000-8000-000000000001",
        "args": r#"{"room":"room-1"}"#, "is": [], "pos": {"epoch": "e1", "offset": 0},
    }});
    ws.send(Message::text(open.to_string())).await.unwrap();
    let mut contents = Vec::new();
    let mut next = async || loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        let frame: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        if frame["type"] == "msm" {
            return frame["data"]["o"]["data"]["content"]
                .as_str()
                .unwrap()
                .to_owned();
        }
    };
    contents.push(next().await);
    // Now the live copy of "first" arrives, then a new post.
    history.release();
    server
        .handle()
        .messages()
        .post_global("room-1", chat("second"))
        .await
        .unwrap();
    contents.push(next().await);
    assert_eq!(
        contents,
        ["first", "second"],
        "the replayed post is not sent again"
    );
    server.shutdown().await;
}
