//! The backplane seam from the outside: a pub/sub backend written here, against the
//! public `streampod::cluster::PubSub` trait only (an in-process bus, no Redis), carries
//! two servers' global posts and broadcasts to each other's clients over real sockets;
//! a bus that goes down makes global posts fail at once, honestly, while local ones go
//! on. What a third party does to add a backend.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::json;
use streampod::cluster::{Backends, ClusterError, ClusterState, Inbox, PubSub, Topic};
use streampod::messages::{PostError, Reach};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::Rooms;
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
    ) -> Result<impl Future<Output = Result<usize, ClusterError>> + Send + 'static, ClusterError>
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
    assert_eq!(reached, 1);
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
    assert_eq!(reached, 0);

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
