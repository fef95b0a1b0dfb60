//! The example's chat rooms kept in a real database, SQLite and PostgreSQL (a private
//! server this test starts): a session joining a room gets its newest 50 messages,
//! `chat.history` pages back from there, and what was said survives a restart; the
//! nodes of a cluster share one history in PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use example_server::chat::ChatEndpoint;
use example_server::chat_store::ChatStore;
use example_server::Protocol;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::http::request;
use streampod_tests::postgres_server::PostgresServer;
use streampod_tests::redis_server::RedisServer;

async fn server_on(url: &str) -> Server<Protocol> {
    let store = ChatStore::open(url).await.unwrap();
    example_server::server_with_chat(ChatEndpoint::default().with_store(store))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// The next frame carrying a `class`, skipping others (member counts).
async fn next_of(client: &mut TestClient, class: &str) -> Value {
    loop {
        let frame = client.next_json().await;
        if frame["object"]["className"] == class {
            return frame["object"]["data"].clone();
        }
    }
}

fn contents(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["content"].as_str().unwrap().to_owned())
        .collect()
}

fn ids(history: &Value) -> Vec<i64> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["id"].as_i64().unwrap())
        .collect()
}

async fn history(server: &Server<Protocol>, body: Value) -> (StatusCode, Value) {
    let answer = request(
        server.local_addr(),
        Method::POST,
        "/chat/history",
        &body.to_string(),
        &[],
    )
    .await;
    (answer.status, answer.body)
}

async fn late_joiners_see_the_newest_50_and_page_back(url: &str) {
    let server = server_on(url).await;
    let mut writer = TestClient::connect(server.local_addr(), "").await;
    writer.chat_subscription("lobby", true).await;
    let empty = next_of(&mut writer, "ChatHistory").await;
    assert_eq!(
        (
            empty["channelId"].clone(),
            contents(&empty),
            empty["hasMore"].clone()
        ),
        (json!("lobby"), vec![], json!(false))
    );
    for n in 0..60 {
        writer
            .send_model(
                "chat",
                "ChatMessage",
                json!({"senderName": "ann", "content": format!("m{n}"), "channelId": "lobby"}),
            )
            .await;
    }
    // Live messages carry the id they were stored under, rising.
    let mut live = Vec::new();
    for _ in 0..60 {
        live.push(
            next_of(&mut writer, "ChatMessage").await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    assert!(live.windows(2).all(|pair| pair[0] < pair[1]), "{live:?}");

    // A late joiner gets the newest 50, oldest first, with the same ids.
    let mut late = TestClient::connect(server.local_addr(), "").await;
    late.chat_subscription("lobby", true).await;
    let newest = next_of(&mut late, "ChatHistory").await;
    let expected: Vec<String> = (10..60).map(|n| format!("m{n}")).collect();
    assert_eq!(contents(&newest), expected);
    assert_eq!(ids(&newest), live[10..]);
    assert_eq!(newest["hasMore"], true);
    let author = newest["messages"][0]["senderName"].as_str().unwrap();
    assert!(author.starts_with("ann (guest "), "{author}");

    // And pages back from the oldest it has.
    let (status, older) = history(
        &server,
        json!({"channelId": "lobby", "before": live[10], "limit": 50}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{older}");
    let expected: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    assert_eq!(contents(&older), expected);
    assert_eq!(older["hasMore"], false);
    // Another room has none of them.
    let (_, other) = history(&server, json!({"channelId": "elsewhere"})).await;
    assert_eq!(contents(&other), Vec::<String>::new());
    // A limit out of range is the app's typed exception, naming the argument.
    let (status, refused) = history(&server, json!({"channelId": "lobby", "limit": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["className"], "InvalidRequest");
    assert_eq!(refused["data"]["field"], "limit");
    server.shutdown().await;

    // A new server on the same database has it all.
    let server = server_on(url).await;
    let mut after_restart = TestClient::connect(server.local_addr(), "").await;
    after_restart.chat_subscription("lobby", true).await;
    let kept = next_of(&mut after_restart, "ChatHistory").await;
    assert_eq!(ids(&kept), live[10..]);
    server.shutdown().await;
}

#[tokio::test]
async fn sqlite_keeps_chat_history() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    late_joiners_see_the_newest_50_and_page_back(&url).await;
}

#[tokio::test]
async fn postgres_keeps_chat_history() {
    let postgres = PostgresServer::start();
    late_joiners_see_the_newest_50_and_page_back(&postgres.url()).await;
}

#[tokio::test]
async fn a_server_without_a_database_says_so() {
    let server = example_server::server().bind("127.0.0.1:0").await.unwrap();
    let (status, refused) = history(&server, json!({"channelId": "lobby"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = refused["data"]["message"].as_str().unwrap();
    assert!(message.contains("--database-url"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_cluster_shares_one_history_in_postgres() {
    let postgres = PostgresServer::start();
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let store = ChatStore::open(&postgres.url()).await.unwrap();
        let node = example_server::server_with_chat(ChatEndpoint::default().with_store(store))
            .cluster(ClusterConfig::redis(redis.url()).prefix("chat-history-test"))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let mut state = node.handle().messages().cluster_state_changes().unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            state.wait_for(|state| *state == ClusterState::Connected),
        )
        .await
        .unwrap()
        .unwrap();
        nodes.push(node);
    }
    let mut ann = TestClient::connect(nodes[0].local_addr(), "").await;
    ann.chat_subscription("shared", true).await;
    next_of(&mut ann, "ChatHistory").await;
    ann.send_model(
        "chat",
        "ChatMessage",
        json!({"senderName": "ann", "content": "from the first node", "channelId": "shared"}),
    )
    .await;
    let sent = next_of(&mut ann, "ChatMessage").await;
    // A late joiner on the other node gets it from the shared database, same id.
    let mut bob = TestClient::connect(nodes[1].local_addr(), "").await;
    bob.chat_subscription("shared", true).await;
    let stored = next_of(&mut bob, "ChatHistory").await;
    assert_eq!(contents(&stored), ["from the first node"]);
    assert_eq!(stored["messages"][0]["id"], sent["id"]);
    for node in nodes {
        node.shutdown().await;
    }
}

/// A stored message of `content` in room `lobby`.
fn stored(content: String) -> example_server::models::ChatMessage {
    example_server::models::ChatMessage {
        id: None,
        sender_name: "mallory (guest 1)".into(),
        content,
        timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
        channel_id: "lobby".into(),
        exclude_sender: false,
        sender_id: None,
    }
}

#[tokio::test]
async fn a_room_of_megabyte_posts_stays_joinable_and_big_posts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    // Nine posts of a megabyte each, as a server without the message cap stored them:
    // 9 MB of history, more than a session's outbound queue holds (8 MiB).
    let store = ChatStore::open(&url).await.unwrap();
    for n in 0..9 {
        store
            .save(&stored(format!("{n}").repeat(1_000_000)))
            .await
            .unwrap();
    }
    let server = server_on(&url).await;

    // Every newcomer can join: its history page stops at the byte budget (the newest
    // message, alone) and says more remain; the socket stays open.
    for _ in 0..3 {
        let mut client = TestClient::connect(server.local_addr(), "").await;
        client.chat_subscription("lobby", true).await;
        let history = next_of(&mut client, "ChatHistory").await;
        assert_eq!(contents(&history), ["8".repeat(1_000_000)]);
        assert_eq!(history["hasMore"], true);
        client.until_pong().await;
    }

    // `chat.history` with the largest limit answers one page within the budget too.
    let (status, page) = history(&server, json!({"channelId": "lobby", "limit": 200})).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);

    // A post over the cap (4 KiB) is refused to its sender, and not stored.
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client.chat_subscription("lobby", true).await;
    next_of(&mut client, "ChatHistory").await;
    client
        .send_model(
            "chat",
            "ChatMessage",
            json!({"senderName": "ann", "content": "y".repeat(5_000), "channelId": "lobby"}),
        )
        .await;
    let refused = next_of(&mut client, "InvalidRequest").await;
    assert_eq!(refused["field"], "content");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("a message of 5000 bytes exceeds the limit of 4096 bytes"),
        "{refused}"
    );
    let (newest, _) = store.page("lobby", None, 1).await.unwrap();
    assert_eq!(
        newest[0].content,
        "8".repeat(1_000_000),
        "nothing was stored"
    );
    server.shutdown().await;
}
