//! The browser chat page (built on the generated TypeScript client) in headless Chromium:
//! it connects on load; two browser sessions in one room see each other's messages, the room's member count,
//! its member list and the room list, and one page whose socket is cut comes back by itself; a late joiner sees the room's stored
//! messages and pages back through older ones; a page whose server restarts shows what
//! was said meanwhile, once (saying it is retrying while away), and says "reload" when
//! more was said than it can show; a page on streaming methods alone (`?via=methods`)
//! whose socket is cut loses nothing; a page behind a proxy that refuses WebSocket
//! upgrades chats over the HTTP fallback (Server-Sent Events and POSTs), comes back
//! after a cut and loses nothing.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use example_server::chat::ChatEndpoint;
use example_server::chat_store::ChatStore;
use example_server::models::ChatMessage;
use streampod_tests::cut_proxy::CutProxy;
use streampod_tests::webdriver::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_in_one_room() {
    let server = example_server::server().bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://{}/", server.local_addr());
    // Bob's page goes through a proxy whose connections the test can cut.
    let bobs_network = CutProxy::start(server.local_addr()).await;
    let bobs_page = format!("http://{}/", bobs_network.addr());
    let driver = Driver::start().await;
    let ann = driver.browser().await;
    let bob = driver.browser().await;

    for (browser, name, page) in [(&ann, "ann", &page), (&bob, "bob", &bobs_page)] {
        browser.open(page).await;
        // The page connects on load: its badge says so before any room is joined.
        browser
            .wait_for_text("#status", "the page to connect on load", |s| s == "online")
            .await;
        browser.fill("#name", name).await;
        browser.fill("#room", "lobby").await;
        browser.click("#join").await;
        browser
            .wait_for_text("#status", "the page to connect", |s| s == "online")
            .await;
    }
    ann.wait_for_text("#members", "both members", |s| s == "2 in lobby")
        .await;
    // The room list: the rooms this page joined.
    ann.wait_for_text("#rooms", "the room list", |s| s.contains("lobby"))
        .await;
    // The member list, by the names they joined with (presence).
    ann.wait_for_text("#member-list", "both names", |list| {
        list.contains("ann (guest ") && list.contains("bob (guest ")
    })
    .await;

    ann.fill("#message", "hello from ann").await;
    ann.click("#send").await;
    for browser in [&ann, &bob] {
        browser
            .wait_for_text("#log", "ann's message", |log| {
                log.contains("ann (guest ") && log.contains("hello from ann")
            })
            .await;
    }
    bob.fill("#message", "hi ann, bob here").await;
    bob.click("#send").await;
    for browser in [&ann, &bob] {
        browser
            .wait_for_text("#log", "bob's reply", |log| {
                log.contains("bob (guest ") && log.contains("hi ann, bob here")
            })
            .await;
    }

    // Bob's network fails: his socket alone drops, his page reconnects and re-joins by
    // itself, and hears ann again (she says something until he does).
    bobs_network.cut();
    let mut back = false;
    for attempt in 0..60 {
        ann.fill("#message", &format!("are you back, bob? {attempt}"))
            .await;
        ann.click("#send").await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if bob.text("#log").await.contains("are you back, bob?") {
            back = true;
            break;
        }
    }
    assert!(back, "bob's page came back after its socket was cut");
    bob.wait_for_text("#status", "bob's page online again", |s| s == "online")
        .await;

    bob.quit().await;
    ann.wait_for_text("#members", "bob to leave", |s| s == "1 in lobby")
        .await;
    ann.wait_for_text("#member-list", "bob off the list", |list| {
        list.contains("ann (guest ") && !list.contains("bob")
    })
    .await;
    ann.quit().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_browser_sees_stored_messages_and_pages_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    let store = ChatStore::open(&url).await.unwrap();
    for n in 0..60 {
        store
            .save(&lobby_message(format!("said {n}.")))
            .await
            .unwrap();
    }
    let chat = ChatEndpoint::default().with_store(store);
    let server = example_server::server_with_chat(chat)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let driver = Driver::start().await;
    let bob = driver.browser().await;
    bob.open(&format!("http://{}/", server.local_addr())).await;
    bob.fill("#room", "lobby").await;
    bob.click("#join").await;
    // The newest 50 on joining: from "said 10." on.
    bob.wait_for_text("#log", "the newest 50 stored messages", |log| {
        log.contains("said 10.") && log.contains("said 59.") && !log.contains("said 9.")
    })
    .await;
    bob.click("#older button").await;
    bob.wait_for_text("#log", "the 10 older ones", |log| {
        log.contains("said 0.") && log.contains("said 9.")
    })
    .await;
    let log = bob.text("#log").await;
    assert!(
        log.find("said 0.") < log.find("said 10."),
        "older messages go above: {log}"
    );
    assert_eq!(
        log.matches("said 10.").count(),
        1,
        "each message once: {log}"
    );
    bob.quit().await;
    server.shutdown().await;
}

fn lobby_message(content: String) -> ChatMessage {
    ChatMessage {
        sender_name: "ann (user 1)".into(),
        content,
        timestamp: std::time::SystemTime::now().into(),
        channel_id: "lobby".into(),
        exclude_sender: false,
        sender_id: Some("1".into()),
        id: None,
    }
}

async fn stored_chat(url: &str, port: u16) -> streampod::Server<example_server::Protocol> {
    let store = ChatStore::open(url).await.unwrap();
    example_server::server_with_chat(ChatEndpoint::default().with_store(store))
        .bind(("127.0.0.1", port))
        .await
        .unwrap()
}

/// Stores messages in the lobby while no server runs (so none goes out live).
async fn said_while_away(url: &str, contents: impl Iterator<Item = String>) {
    let store = ChatStore::open(url).await.unwrap();
    for content in contents {
        store.save(&lobby_message(content)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_shows_what_was_said_while_its_server_was_away() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    let server = stored_chat(&url, 0).await;
    let addr = server.local_addr();
    let driver = Driver::start().await;
    let bob = driver.browser().await;
    bob.open(&format!("http://{addr}/")).await;
    bob.fill("#room", "lobby").await;
    bob.click("#join").await;
    bob.wait_for_text("#status", "the page to connect", |s| s == "online")
        .await;
    let mut ann = streampod_tests::client::TestClient::connect(addr, "").await;
    ann.chat_subscription("lobby", true).await;
    ann.send_model(
        "chat",
        "ChatMessage",
        serde_json::json!({"senderName": "ann", "content": "before the restart.", "channelId": "lobby"}),
    )
    .await;
    bob.wait_for_text("#log", "the first message", |log| {
        log.contains("before the restart.")
    })
    .await;

    // The server goes away; while the page retries, three messages are stored, then a
    // new server starts on the same address and database.
    drop(ann);
    server.shutdown().await;
    // The page says it is offline and retrying, and will not pretend to send.
    bob.wait_for_text("#status", "the reconnecting indicator", |s| {
        s.starts_with("offline, retrying in")
    })
    .await;
    said_while_away(&url, (0..3).map(|n| format!("while away {n}."))).await;
    let server = stored_chat(&url, addr.port()).await;
    bob.wait_for_text("#log", "the missed messages after reconnecting", |log| {
        log.contains("while away 2.")
    })
    .await;
    let log = bob.text("#log").await;
    for text in [
        "before the restart.",
        "while away 0.",
        "while away 1.",
        "while away 2.",
    ] {
        assert_eq!(log.matches(text).count(), 1, "{text} once: {log}");
    }
    assert!(!log.contains("offline than are shown"), "no gap: {log}");

    // Again, with more said than one page holds: the page says so.
    server.shutdown().await;
    said_while_away(&url, (0..60).map(|n| format!("flood {n}."))).await;
    let server = stored_chat(&url, addr.port()).await;
    bob.wait_for_text("#log", "the reload notice", |log| {
        log.contains("flood 59.") && log.contains("offline than are shown here")
    })
    .await;
    assert!(
        !bob.text("#log").await.contains("flood 9."),
        "a gap, not a page"
    );
    bob.quit().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_streaming_methods_alone_loses_nothing_when_its_socket_is_cut() {
    use example_server::chat::room_channel;
    use streampod::messages::{HistoryConfig, Reach};

    let history = HistoryConfig::new(1_000, std::time::Duration::from_secs(300));
    let server = example_server::server_with_chat(ChatEndpoint::with_room_history(history))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let network = CutProxy::start(server.local_addr()).await;
    let driver = Driver::start().await;
    let bob = driver.browser().await;
    bob.open(&format!("http://{}/?via=methods", network.addr()))
        .await;
    bob.fill("#name", "bob").await;
    bob.fill("#room", "lobby").await;
    bob.click("#join").await;
    bob.wait_for_text("#status", "the room's call to open", |s| s == "online")
        .await;
    let room = room_channel("lobby");
    let say = |n: usize| {
        let message = lobby_message(format!("msg {n:03}."));
        server
            .handle()
            .messages()
            .post_message(&room, message, Reach::Local)
            .unwrap();
    };
    for n in 0..10 {
        say(n);
    }
    bob.wait_for_text("#log", "the first ten", |log| log.contains("msg 009."))
        .await;
    // The page's network fails mid-conversation; the room goes on without it.
    network.cut();
    for n in 10..30 {
        say(n);
    }
    bob.wait_for_text("#log", "the rest, after the call resumed", |log| {
        log.contains("msg 029.")
    })
    .await;
    let log = bob.text("#log").await;
    for n in 0..30 {
        let line = format!("msg {n:03}.");
        assert_eq!(log.matches(&line).count(), 1, "{line} once: {log}");
    }
    assert!(
        !log.contains("more messages came"),
        "everything was recovered: {log}"
    );
    // Posting goes over HTTP (`chat.post`), and comes back through the call.
    bob.fill("#message", "bob on methods").await;
    bob.click("#send").await;
    bob.wait_for_text("#log", "bob's own post", |log| {
        log.contains("bob (guest http)") && log.contains("bob on methods")
    })
    .await;
    bob.quit().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_websockets_are_blocked_chats_over_the_http_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    let server = stored_chat(&url, 0).await;
    let addr = server.local_addr();
    // Bob's network passes HTTP but refuses WebSocket upgrades.
    let network = CutProxy::refusing_upgrades(addr).await;
    let driver = Driver::start().await;
    let bob = driver.browser().await;
    bob.open(&format!("http://{}/", network.addr())).await;
    bob.fill("#name", "bob").await;
    bob.fill("#room", "lobby").await;
    bob.click("#join").await;
    bob.wait_for_text("#status", "the page online over the fallback", |s| {
        s == "online (HTTP fallback)"
    })
    .await;

    // Ann is on a WebSocket; they hear each other.
    let mut ann = streampod_tests::client::TestClient::connect(addr, "").await;
    ann.chat_subscription("lobby", true).await;
    let say = |n: usize| serde_json::json!({"senderName": "ann", "content": format!("msg {n:03}."), "channelId": "lobby"});
    for n in 0..10 {
        ann.send_model("chat", "ChatMessage", say(n)).await;
    }
    bob.wait_for_text("#log", "the first ten", |log| log.contains("msg 009."))
        .await;
    bob.fill("#message", "bob behind the proxy").await;
    bob.click("#send").await;
    loop {
        let frame = ann.next_json().await;
        if frame["object"]["data"]["content"] == "bob behind the proxy" {
            break;
        }
    }

    // Bob's network fails mid-conversation; ann goes on. His page comes back over the
    // fallback again and shows what was said meanwhile, once.
    network.cut();
    for n in 10..30 {
        ann.send_model("chat", "ChatMessage", say(n)).await;
    }
    bob.wait_for_text("#log", "the rest, after the page came back", |log| {
        log.contains("msg 029.")
    })
    .await;
    bob.wait_for_text("#status", "the page online over the fallback again", |s| {
        s == "online (HTTP fallback)"
    })
    .await;
    let log = bob.text("#log").await;
    for n in 0..30 {
        let line = format!("msg {n:03}.");
        assert_eq!(log.matches(&line).count(), 1, "{line} once: {log}");
    }
    assert!(
        !log.contains("offline than are shown"),
        "everything was recovered: {log}"
    );
    bob.quit().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_driver_takes_its_browsers_with_it() {
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.open("about:blank").await;
    let profile = format!("--user-data-dir={}", browser.profile_dir().display());
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&profile))
        })
    };
    assert!(running(), "the browser runs with its profile");
    // As a failing test would: no `quit`.
    drop(driver);
    streampod_tests::eventually("the browser to go with its driver", || !running()).await;
    drop(browser);
}
