//! `stream_opened` for every endpoint when a socket opens; `stream_closed` exactly once
//! per opened endpoint however it closes; per-session state; handles from other tasks;
//! graceful shutdown.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use streampod::{Server, ServerConfig, SessionHandle};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::recorder::{session_id, Event, Recorder};
use streampod_tests::{chat_json, eventually};

struct Setup {
    server: Server<Protocol>,
    chat: Recorder,
    notes: Recorder,
}

async fn start(config: ServerConfig) -> Setup {
    let (chat, notes) = (Recorder::default(), Recorder::default());
    let server = Server::builder()
        .endpoint("chat", chat.clone())
        .endpoint("notes", notes.clone())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    Setup {
        server,
        chat,
        notes,
    }
}

impl Setup {
    async fn assert_closed_once(&self, id: u64) {
        eventually("stream_closed on both endpoints", || {
            self.chat.closed_count(id) == 1 && self.notes.closed_count(id) == 1
        })
        .await;
        // And never again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            (self.chat.closed_count(id), self.notes.closed_count(id)),
            (1, 1)
        );
        assert!(self.chat.opened(id) && self.notes.opened(id));
    }
}

#[tokio::test]
async fn opened_for_every_endpoint_and_closed_once_on_client_close() {
    let setup = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(setup.server.local_addr(), "").await;
    let id = session_id(&mut client).await;
    assert!(setup.chat.opened(id) && setup.notes.opened(id));
    assert_eq!(setup.server.handle().session_count(), 1);
    client.close().await;
    setup.assert_closed_once(id).await;
    eventually("session unregistered", || {
        setup.server.handle().session_count() == 0
    })
    .await;
    setup.server.shutdown().await;
}

#[tokio::test]
async fn closed_once_when_the_client_vanishes_without_a_close_frame() {
    let setup = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(setup.server.local_addr(), "").await;
    let id = session_id(&mut client).await;
    drop(client.into_inner());
    setup.assert_closed_once(id).await;
    setup.server.shutdown().await;
}

#[tokio::test]
async fn endpoint_close_sends_code_and_reason() {
    let setup = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(setup.server.local_addr(), "").await;
    let id = session_id(&mut client).await;
    client
        .send_model("chat", "ChatMessage", chat_json("close"))
        .await;
    assert_eq!(
        client.expect_close().await,
        Some((4001, "closed by the endpoint".into()))
    );
    setup.assert_closed_once(id).await;
    setup.server.shutdown().await;
}

#[tokio::test]
async fn keepalive_closes_a_silent_peer_and_spares_a_live_one() {
    let config = ServerConfig::default()
        .keepalive_interval(Duration::from_millis(200))
        .keepalive_timeout(Duration::from_millis(200));
    let setup = start(config).await;
    let mut silent = TestClient::connect(setup.server.local_addr(), "").await;
    let silent_id = session_id(&mut silent).await;
    let mut live = TestClient::connect(setup.server.local_addr(), "").await;
    let live_id = session_id(&mut live).await;

    // `silent` is never read again, so its client never answers the server's pings.
    // `live` is read (its client answers pings) for longer than interval + timeout.
    assert!(live.is_quiet(Duration::from_millis(1200)).await);
    setup.assert_closed_once(silent_id).await;
    assert_eq!(
        setup.chat.closed_count(live_id),
        0,
        "a peer that answers pings stays"
    );
    live.send_model("chat", "ChatMessage", chat_json("still"))
        .await;
    assert_eq!(live.next_json().await["object"]["data"]["content"], "still");
    setup.server.shutdown().await;
}

#[tokio::test]
async fn per_session_state_set_in_stream_opened_is_read_later() {
    let setup = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(setup.server.local_addr(), "").await;
    let id = session_id(&mut client).await;
    client
        .send_model("chat", "ChatMessage", chat_json("greeting"))
        .await;
    assert_eq!(
        client.next_json().await["object"]["data"]["content"],
        format!("hello #{id}")
    );
    setup.server.shutdown().await;
}

#[tokio::test]
async fn background_tasks_reach_sessions_through_the_server_handle() {
    let setup = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(setup.server.local_addr(), "").await;
    let id = session_id(&mut client).await;
    let handle = setup.server.handle();
    let session: SessionHandle<Protocol> = handle.session(id).expect("the session is registered");
    assert_eq!(session.id(), id);
    assert!(session.remote_addr().ip().is_loopback());

    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let message = ChatMessage {
            sender_name: "system".into(),
            content: "from a background task".into(),
            timestamp: None,
            channel_id: "room-1".into(),
            priority: Priority::Urgent,
        };
        session.send("notes", message).unwrap();
        session
    });
    let frame = client.next_json().await;
    assert_eq!(frame["endpoint"], "notes");
    assert_eq!(frame["object"]["data"]["content"], "from a background task");
    assert_eq!(frame["object"]["data"]["priority"], "urgent");

    // After the session closes, a held handle fails cleanly instead of panicking.
    let session = task.await.unwrap();
    client.close().await;
    setup.assert_closed_once(id).await;
    assert!(session.is_closed());
    let message = ChatMessage {
        sender_name: "s".into(),
        content: "late".into(),
        timestamp: None,
        channel_id: "r".into(),
        priority: Priority::Low,
    };
    assert!(matches!(
        session.send("chat", message),
        Err(streampod::SendError::Closed)
    ));
    assert!(handle.session(id).is_none());
    setup.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_and_runs_stream_closed() {
    let setup = start(ServerConfig::default()).await;
    let addr = setup.server.local_addr();
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut client = TestClient::connect(addr, "").await;
        ids.push(session_id(&mut client).await);
        clients.push(client);
    }
    let started = tokio::time::Instant::now();
    let handle = setup.server.handle();
    let shutdown = tokio::spawn(setup.server.shutdown());
    for client in &mut clients {
        assert_eq!(
            client.expect_close().await,
            Some((1001, "server shutting down".into()))
        );
    }
    shutdown.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    for id in ids {
        assert_eq!(setup.chat.closed_count(id), 1);
        assert_eq!(setup.notes.closed_count(id), 1);
    }
    assert_eq!(handle.session_count(), 0);
    assert!(handle.is_shutting_down());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    let events = setup.chat.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Opened(_)))
            .count(),
        3
    );
}

/// An endpoint that, at startup, starts a task posting to its channel.
struct Ticker {
    started: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl streampod::Endpoint<Protocol> for Ticker {
    async fn stream_opened(
        &self,
        session: &streampod::StreamingSession<Protocol>,
    ) -> Result<(), streampod::EndpointError> {
        session.messages().join("ticks")?;
        Ok(())
    }

    fn on_start(&self, server: &streampod::ServerHandle<Protocol>) {
        self.started.lock().unwrap().push("endpoint");
        let messages = server.messages();
        tokio::spawn(async move {
            for n in 0.. {
                let tick = ChatMessage {
                    sender_name: "clock".into(),
                    content: format!("tick {n}"),
                    timestamp: None,
                    channel_id: "ticks".into(),
                    priority: Priority::Urgent,
                };
                let _ = messages.post_message("ticks", tick, streampod::messages::Reach::Local);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

#[tokio::test]
async fn startup_hooks_run_once_before_the_first_socket_and_their_tasks_post() {
    let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let from_builder = started.clone();
    let server = Server::builder()
        .endpoint(
            "ticker",
            Ticker {
                started: started.clone(),
            },
        )
        .on_start(move |server| {
            from_builder.lock().unwrap().push("builder");
            assert_eq!(server.messages().session_count(), 0);
        })
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    assert_eq!(*started.lock().unwrap(), ["endpoint", "builder"]);

    let mut client = TestClient::connect(server.local_addr(), "").await;
    let frame = client.next_json().await;
    assert_eq!(frame["endpoint"], "ticker", "{frame}");
    assert!(
        frame["object"]["data"]["content"]
            .as_str()
            .unwrap()
            .starts_with("tick "),
        "{frame}"
    );
    assert_eq!(started.lock().unwrap().len(), 2, "the hooks ran once");
    server.shutdown().await;
}
