//! Channel history across a cluster of three servers over one private Redis, a private
//! three-master Redis Cluster and a private NATS with JetStream (every scenario runs on
//! each): every node
//! delivers the same offsets in one order; a subscriber cut off on one node recovers
//! every missed post, once and in order, on another; posts racing a recovering join
//! are neither lost nor duplicated; Redis losing the history (a restart) tells clients
//! `recovered: false`, live and on recovery (as does a NATS restarted empty;
//! one restarted with its data continues the epoch); streaming calls on the room resume after a
//! cut socket from the cluster's history.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streampod::cluster::ClusterState;
use streampod::messages::{ChannelConfig, HistoryConfig, MessageCentral, PostError, Reach};
use streampod::Server;
use streampod_tests::backplanes::TestBackplane;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::{RoomFeeds, Rooms};

const ROOM: &str = "cluster-history-room";

streampod_tests::on_every_backplane!(
    a_subscriber_cut_off_on_one_node_recovers_every_post_on_another,
    posts_racing_recovering_joins_on_other_nodes_are_neither_lost_nor_duplicated,
    redis_losing_the_history_says_recovered_false_live_and_on_recovery,
    a_thousand_clients_reconnecting_to_a_restarted_node_all_recover_within_the_bound,
    streaming_calls_resume_from_the_clusters_history_after_their_sockets_are_cut,
    a_frozen_backplane_keeps_every_confirmed_post_and_none_reported_unpublished,
    the_apps_own_listeners_hear_other_nodes_posts_to_a_history_channel,
    the_cluster_keeps_the_newest_posts_within_the_historys_size_bytes_and_age,
);

async fn node(backplane: &TestBackplane) -> Server<Protocol> {
    let builder = Server::builder()
        .endpoint("rooms", Rooms::default())
        .methods("feeds", RoomFeeds);
    let server = backplane
        .join()
        .prefix("history-test")
        .apply(builder)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    server.handle().messages().configure_channel(
        ROOM,
        ChannelConfig::default().with_history(HistoryConfig::new(5_000, Duration::from_secs(60))),
    );
    connected(&server).await;
    server
}

async fn connected(server: &Server<Protocol>) {
    let mut changes = server.handle().messages().cluster_state_changes().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        changes.wait_for(|state| *state == ClusterState::Connected),
    )
    .await
    .expect("connected to the backplane within 10 s")
    .unwrap();
}

fn chat(text: String) -> ChatMessage {
    ChatMessage {
        sender_name: "server".into(),
        content: text,
        timestamp: None,
        channel_id: ROOM.into(),
        priority: Priority::Normal,
    }
}

/// Posts `text` to the room on every node, and waits until Redis took it.
async fn post(central: &MessageCentral<Protocol>, text: String) {
    central.post_global(ROOM, chat(text)).await.unwrap();
}

/// Sends `recover` (when given a position) and the join; returns the `joined` frame's
/// args and the room's frames up to `until` offset (the replay, then live ones).
async fn join(client: &mut TestClient, since: Option<&Value>) -> Value {
    if let Some(position) = since {
        client
            .send_text(
                &json!({"command": "recover", "args": {"channels": {ROOM: position}}}).to_string(),
            )
            .await;
    }
    client
        .send_model(
            "rooms",
            "ChatMessage",
            json!({"senderName": "t", "content": "join", "channelId": ROOM}),
        )
        .await;
    // The join is acknowledged at once; `joined` follows once Redis was read.
    loop {
        let frame = client.next_json().await;
        if frame["command"] == "joined" {
            return frame["args"].clone();
        }
        assert_eq!(frame["object"]["data"]["content"], "ack:join", "{frame}");
    }
}

/// The offset of a frame from the room.
fn offset(frame: &Value) -> u64 {
    assert_eq!(frame["channel"], ROOM, "{frame}");
    frame["offset"].as_u64().expect("an offset")
}

/// Reads the room's offsets until `last`.
async fn offsets_until(client: &mut TestClient, mut seen: Vec<u64>, last: u64) -> Vec<u64> {
    while seen.last().copied().unwrap_or(0) < last {
        seen.push(offset(&client.next_json().await));
    }
    seen
}

async fn a_subscriber_cut_off_on_one_node_recovers_every_post_on_another(redis: TestBackplane) {
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let mut first = TestClient::connect(nodes[0].local_addr(), "").await;
    let joined = join(&mut first, None).await;
    assert_eq!(joined["recovering"], false);
    assert_eq!(joined["position"]["offset"], 0);
    let epoch = joined["position"]["epoch"].clone();

    // Posts come from the other two nodes, in turns.
    let posters = [nodes[1].handle().messages(), nodes[2].handle().messages()];
    let poster = tokio::spawn(async move {
        for n in 1..=1000_u32 {
            post(&posters[n as usize % 2], n.to_string()).await;
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 100 {
        seen.push(offset(&first.next_json().await));
    }
    // Cut the TCP connection without a close handshake.
    drop(first.into_inner());
    poster.await.unwrap();

    let mut again = TestClient::connect(nodes[2].local_addr(), "").await;
    let since = json!({"epoch": epoch, "offset": seen.last().unwrap()});
    let joined = join(&mut again, Some(&since)).await;
    assert_eq!(joined["recovering"], true);
    assert_eq!(joined["recovered"], true, "{joined}");
    // The room had no history when `first` joined: its epoch was provisional, and the
    // first post's epoch continued it.
    assert!(epoch.as_str().unwrap().starts_with('~'), "{epoch}");
    assert_eq!(joined["position"]["offset"], 1000);
    assert!(!joined["position"]["epoch"]
        .as_str()
        .unwrap()
        .starts_with('~'));
    assert_eq!(joined["replayed"], 900);
    let seen = offsets_until(&mut again, seen, 1000).await;
    assert_eq!(
        seen,
        (1..=1000).collect::<Vec<u64>>(),
        "every post once, in order"
    );

    // Live posts from any node follow with the next offsets.
    post(&nodes[0].handle().messages(), "live".into()).await;
    assert_eq!(offset(&again.next_json().await), 1001);
    for node in nodes {
        node.shutdown().await;
    }
}

async fn posts_racing_recovering_joins_on_other_nodes_are_neither_lost_nor_duplicated(
    redis: TestBackplane,
) {
    let nodes = [node(&redis).await, node(&redis).await];
    let poster_central = nodes[0].handle().messages();
    post(&poster_central, "0".into()).await;
    let mut watcher = TestClient::connect(nodes[1].local_addr(), "").await;
    let epoch = join(&mut watcher, None).await["position"]["epoch"].clone();
    for round in 0..20_u64 {
        let central = poster_central.clone();
        // Queued without waiting for each (Redis takes them in order), the last one
        // confirmed: all are out when it returns.
        let poster = tokio::spawn(async move {
            for n in 0..99 {
                central
                    .post_message(ROOM, chat(format!("{round}-{n}")), Reach::Global)
                    .unwrap();
                if n % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            post(&central, format!("{round}-last")).await;
        });
        let start = round * 100 + 1;
        let since = json!({"epoch": epoch, "offset": start});
        // Alternate: a node with the room's subscription already, and one without.
        let mut client = TestClient::connect(nodes[(round % 2) as usize].local_addr(), "").await;
        let joined = join(&mut client, Some(&since)).await;
        assert_eq!(joined["recovered"], true, "round {round}: {joined}");
        poster.await.unwrap();
        let end = start + 100;
        let offsets = offsets_until(&mut client, Vec::new(), end).await;
        assert_eq!(
            offsets,
            (start + 1..=end).collect::<Vec<u64>>(),
            "round {round}: a gap or a duplicate"
        );
        client.close().await;
        while watcher
            .try_next_json(Duration::from_millis(10))
            .await
            .is_some()
        {}
    }
    for node in nodes {
        node.shutdown().await;
    }
}

async fn redis_losing_the_history_says_recovered_false_live_and_on_recovery(
    mut redis: TestBackplane,
) {
    let nodes = [node(&redis).await, node(&redis).await];
    let poster = nodes[0].handle().messages();
    post(&poster, "before".into()).await;
    let mut listener = TestClient::connect(nodes[1].local_addr(), "").await;
    let joined = join(&mut listener, None).await;
    let before = joined["position"].clone();
    assert_eq!(before["offset"], 1);

    // Redis restarts empty: a new epoch from the next post on.
    redis.kill();
    through_a_restart(&nodes, || redis.start_empty()).await;
    post(&poster, "after".into()).await;
    let signal = listener.next_json().await;
    assert_eq!(signal["command"], "joined", "{signal}");
    assert_eq!(signal["args"]["recovered"], false, "{signal}");
    assert_ne!(signal["args"]["position"]["epoch"], before["epoch"]);
    assert_eq!(signal["args"]["position"]["offset"], 0);
    let live = listener.next_json().await;
    assert_eq!(
        (offset(&live), &live["object"]["data"]["content"]),
        (1, &json!("after"))
    );

    // A client coming back with a position from before the restart is told so.
    let mut back = TestClient::connect(nodes[0].local_addr(), "").await;
    let joined = join(&mut back, Some(&before)).await;
    assert_eq!(joined["recovering"], true);
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["position"]["offset"], 1);
    for node in nodes {
        node.shutdown().await;
    }
    drop(redis);
}

/// How long 1,000 clients may take to reconnect to a restarted node and recover 100
/// missed posts each (100,000 replayed frames), in this debug build on two cores.
const MASS_RECOVERY_BOUND: Duration = Duration::from_secs(30);

async fn a_thousand_clients_reconnecting_to_a_restarted_node_all_recover_within_the_bound(
    redis: TestBackplane,
) {
    streampod_tests::raise_fd_limit();
    let restarting = node(&redis).await;
    let poster = node(&redis).await;
    let posts = poster.handle().messages();
    post(&posts, "before".into()).await;

    let addr = restarting.local_addr();
    let mut clients = Vec::new();
    for chunk in 0..10 {
        let joins = (0..100).map(|_| async move {
            let mut client = TestClient::connect(addr, "").await;
            let joined = join(&mut client, None).await;
            (client, joined["position"].clone())
        });
        clients.extend(futures_util::future::join_all(joins).await);
        assert_eq!(clients.len(), (chunk + 1) * 100);
    }
    assert!(clients.iter().all(|(_, position)| position["offset"] == 1));

    eprintln!("1,000 joined");
    // The node goes away with its clients; 100 posts go on elsewhere meanwhile.
    restarting.shutdown().await;
    eprintln!("node stopped");
    for n in 0..100 {
        post(&posts, format!("missed {n}")).await;
    }
    let restarted = node(&redis).await;
    let addr = restarted.local_addr();
    let started = std::time::Instant::now();
    let recoveries = clients.into_iter().map(|(client, position)| async move {
        drop(client);
        let mut client = TestClient::connect(addr, "").await;
        let joined = join(&mut client, Some(&position)).await;
        let offsets = offsets_until(&mut client, Vec::new(), 101).await;
        (joined, offsets)
    });
    let results = futures_util::future::join_all(recoveries).await;
    let took = started.elapsed();
    for (joined, offsets) in &results {
        assert_eq!(joined["recovered"], true, "{joined}");
        assert_eq!(joined["replayed"], 100, "{joined}");
        assert_eq!(*offsets, (2..=101).collect::<Vec<u64>>());
    }
    assert_eq!(results.len(), 1000);
    assert!(
        took < MASS_RECOVERY_BOUND,
        "1,000 recoveries took {took:?}, over {MASS_RECOVERY_BOUND:?}"
    );
    eprintln!("1,000 clients reconnected and recovered 100 posts each in {took:?}");
    restarted.shutdown().await;
    poster.shutdown().await;
}

async fn streaming_calls_resume_from_the_clusters_history_after_their_sockets_are_cut(
    redis: TestBackplane,
) {
    use futures_util::StreamExt;
    use streampod::client::{json as args, MethodClient, NoException, StreamCallError};
    use streampod_tests::cut_proxy::CutProxy;

    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let network = CutProxy::start(nodes[0].local_addr()).await;
    let client = MethodClient::new(&format!("http://{}", network.addr())).unwrap();
    let mut calls = Vec::new();
    for _ in 0..10 {
        let call = client
            .call_stream::<ChatMessage, NoException>("feeds", "room", args!({"room": ROOM}), &[])
            .await
            .unwrap();
        calls.push(call);
    }
    // Posts come from the other two nodes, in turns; the calls' socket is cut halfway.
    let posters = [nodes[1].handle().messages(), nodes[2].handle().messages()];
    let readers: Vec<_> = calls
        .into_iter()
        .map(|mut call| {
            tokio::spawn(async move {
                let mut next = 1_u32;
                while next <= 300 {
                    match tokio::time::timeout(Duration::from_secs(20), call.next()).await {
                        Ok(Some(Ok(message))) => {
                            assert_eq!(
                                message.content,
                                next.to_string(),
                                "every post once, in order"
                            );
                            next += 1;
                        }
                        Ok(Some(Err(StreamCallError::NotRecovered))) => {
                            panic!("the cluster's history has everything")
                        }
                        other => panic!("the call ended: {other:?}"),
                    }
                }
                call.resumes()
            })
        })
        .collect();
    for n in 1..=300_u32 {
        if n == 150 {
            network.cut();
        }
        post(&posters[n as usize % 2], n.to_string()).await;
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), 1, "each call went on once");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// Waits until every node noticed the backplane gone, then until it is back.
async fn through_a_restart(nodes: &[Server<Protocol>], restart: impl FnOnce()) {
    for node in nodes {
        streampod_tests::wait_for_cluster(node, |state| *state != ClusterState::Connected).await;
    }
    restart();
    for node in nodes {
        connected(node).await;
    }
}

#[tokio::test]
async fn a_nats_restarted_with_its_data_keeps_the_epoch_and_clients_recover_across_it() {
    let mut backplane = TestBackplane::nats();
    let nodes = [node(&backplane).await, node(&backplane).await];
    let poster = nodes[0].handle().messages();
    for n in 1..=3 {
        post(&poster, format!("before-{n}")).await;
    }
    let mut listener = TestClient::connect(nodes[1].local_addr(), "").await;
    let joined = join(&mut listener, None).await;
    assert_eq!(joined["position"]["offset"], 3);
    let epoch = joined["position"]["epoch"].clone();
    let mut cut = TestClient::connect(nodes[1].local_addr(), "").await;
    let position = join(&mut cut, None).await["position"].clone();
    drop(cut);

    let TestBackplane::Nats(nats) = &mut backplane else {
        unreachable!("a NATS backplane")
    };
    nats.kill();
    through_a_restart(&nodes, || nats.restart()).await;
    for n in 1..=3 {
        post(&poster, format!("after-{n}")).await;
    }
    // The live subscriber goes on in the same epoch: no `joined` frame, no gap.
    for (expected, content) in [(4, "after-1"), (5, "after-2"), (6, "after-3")] {
        let frame = listener.next_json().await;
        assert_eq!(frame["command"], Value::Null, "{frame}");
        assert_eq!(
            (offset(&frame), &frame["object"]["data"]["content"]),
            (expected, &json!(content))
        );
    }
    // A client cut off before the restart recovers what was posted after it.
    let mut back = TestClient::connect(nodes[0].local_addr(), "").await;
    let joined = join(&mut back, Some(&position)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["replayed"], 3, "{joined}");
    assert_eq!(joined["position"]["epoch"], epoch);
    let replayed = offsets_until(&mut back, Vec::new(), 6).await;
    assert_eq!(replayed, [4, 5, 6]);
    for node in nodes {
        node.shutdown().await;
    }
}

/// What became of posts to the room: confirmed, may have gone out, certainly not.
#[derive(Debug, Default)]
struct Outcomes {
    confirmed: Vec<String>,
    maybe: Vec<String>,
    not_published: Vec<String>,
}

async fn a_frozen_backplane_keeps_every_confirmed_post_and_none_reported_unpublished(
    redis: TestBackplane,
) {
    let nodes = [node(&redis).await, node(&redis).await];
    let poster = nodes[0].handle().messages();
    post(&poster, "before".into()).await;
    let mut listener = TestClient::connect(nodes[1].local_addr(), "").await;
    join(&mut listener, None).await;

    // Posts every 50 ms through a freeze longer than the default liveness checks.
    redis.pause();
    let mut outcomes = Outcomes::default();
    let started = Instant::now();
    for n in 0.. {
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
        let text = format!("frozen-{n:03}");
        match poster.post_global(ROOM, chat(text.clone())).await {
            Ok(_) => outcomes.confirmed.push(text),
            Err(PostError::Cluster(error)) if error.may_have_been_delivered() => {
                outcomes.maybe.push(text);
            }
            Err(PostError::Cluster(_)) => outcomes.not_published.push(text),
            Err(other) => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.resume();
    for node in &nodes {
        connected(node).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while poster
        .post_global(ROOM, chat("after".into()))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "posts never went out again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !outcomes.not_published.is_empty(),
        "the freeze was noticed: {outcomes:?}"
    );

    // The history, read on the other node, holds every confirmed post, none reported
    // not published, in one order.
    let page = nodes[1]
        .handle()
        .messages()
        .history(ROOM, None, 10_000)
        .await
        .unwrap();
    let offsets: Vec<u64> = page.messages.iter().map(|entry| entry.offset).collect();
    assert!(
        offsets.windows(2).all(|pair| pair[0] < pair[1]),
        "{offsets:?}"
    );
    let kept: Vec<String> = page
        .messages
        .iter()
        .map(|entry| {
            let message: Value = serde_json::from_str(entry.message.get()).unwrap();
            message["data"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    for text in &outcomes.confirmed {
        assert!(
            kept.contains(text),
            "{text} was confirmed, yet not kept: {kept:?}"
        );
    }
    for text in &outcomes.not_published {
        assert!(
            !kept.contains(text),
            "{text} was reported not published, yet kept"
        );
    }
    assert!(kept.contains(&"before".to_owned()) && kept.contains(&"after".to_owned()));
    eprintln!(
        "frozen backplane: {} confirmed, {} maybe ({} of them kept), {} not published",
        outcomes.confirmed.len(),
        outcomes.maybe.len(),
        outcomes
            .maybe
            .iter()
            .filter(|text| kept.contains(text))
            .count(),
        outcomes.not_published.len()
    );
    for node in nodes {
        node.shutdown().await;
    }
}

async fn the_apps_own_listeners_hear_other_nodes_posts_to_a_history_channel(redis: TestBackplane) {
    let nodes = [node(&redis).await, node(&redis).await];
    // A listener of the app's own, no session: nothing reads the history for it.
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    let _listener = nodes[1]
        .handle()
        .messages()
        .add_listener(ROOM, move |message| {
            if let Protocol::ChatMessage(chat) = message {
                let _ = heard.send(chat.content.clone());
            }
        })
        .unwrap();
    let poster = nodes[0].handle().messages();
    // The first posts may go out before the other node follows the channel.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        post(&poster, "probe".into()).await;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), hearing.recv()).await
        {
            break;
        }
        assert!(Instant::now() < deadline, "the listener never heard a post");
    }
    while tokio::time::timeout(Duration::from_millis(200), hearing.recv())
        .await
        .is_ok()
    {}
    for n in 0..20 {
        post(&poster, format!("post-{n:02}")).await;
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let text = tokio::time::timeout(Duration::from_secs(5), hearing.recv())
            .await
            .expect("every post heard")
            .unwrap();
        got.push(text);
    }
    let expected: Vec<String> = (0..20).map(|n| format!("post-{n:02}")).collect();
    assert_eq!(got, expected, "every post once, in order");
    for node in nodes {
        node.shutdown().await;
    }
}

/// The contents a history page holds, oldest first.
fn contents(page: &streampod::messages::HistoryPage) -> Vec<String> {
    page.messages
        .iter()
        .map(|entry| {
            let message: Value = serde_json::from_str(entry.message.get()).unwrap();
            message["data"]["content"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn the_cluster_keeps_the_newest_posts_within_the_historys_size_bytes_and_age(
    redis: TestBackplane,
) {
    let nodes = [node(&redis).await, node(&redis).await];
    let (poster, reader) = (nodes[0].handle().messages(), nodes[1].handle().messages());
    let configure = |channel: &str, history: HistoryConfig| {
        for node in &nodes {
            let config = ChannelConfig::default().with_history(history);
            node.handle().messages().configure_channel(channel, config);
        }
    };
    let send = |channel: &'static str, text: String| {
        let poster = poster.clone();
        async move {
            let mut message = chat(text);
            message.channel_id = channel.into();
            poster.post_global(channel, message).await.unwrap();
        }
    };
    // By count: the newest five of eight.
    configure(
        "kept-by-count",
        HistoryConfig::new(5, Duration::from_secs(60)),
    );
    for n in 1..=8 {
        send("kept-by-count", format!("count-{n}")).await;
    }
    let page = reader.history("kept-by-count", None, 100).await.unwrap();
    assert_eq!(page.newest, 8);
    assert_eq!(
        contents(&page),
        ["count-4", "count-5", "count-6", "count-7", "count-8"]
    );
    assert!(!page.complete, "posts 1 to 3 were forgotten");

    // By bytes: posts of about 1 KiB in 4 KiB: the newest few, never none.
    configure(
        "kept-by-bytes",
        HistoryConfig::new(100, Duration::from_secs(60)).with_max_bytes(4096),
    );
    for n in 1..=10 {
        send(
            "kept-by-bytes",
            format!("bytes-{n:02}-{}", "x".repeat(1000)),
        )
        .await;
    }
    let page = reader.history("kept-by-bytes", None, 100).await.unwrap();
    let kept = contents(&page);
    assert!((1..=4).contains(&kept.len()), "{} kept", kept.len());
    assert!(
        kept.last().unwrap().starts_with("bytes-10-"),
        "the newest stays"
    );
    // One post larger than the bytes allowed: it stays, alone.
    send("kept-by-bytes", format!("large-{}", "y".repeat(6000))).await;
    let page = reader.history("kept-by-bytes", None, 100).await.unwrap();
    let kept = contents(&page);
    assert_eq!(kept.len(), 1, "only the newest");
    assert!(kept[0].starts_with("large-"));
    // The next post that fits pushes it out, oldest first.
    send("kept-by-bytes", "small".into()).await;
    let page = reader.history("kept-by-bytes", None, 100).await.unwrap();
    assert_eq!(contents(&page), ["small"]);

    // By age: gone after the TTL, the offsets stay.
    configure(
        "kept-by-age",
        HistoryConfig::new(100, Duration::from_secs(1)),
    );
    for n in 1..=3 {
        send("kept-by-age", format!("age-{n}")).await;
    }
    assert_eq!(
        contents(&reader.history("kept-by-age", None, 100).await.unwrap()).len(),
        3
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let page = reader.history("kept-by-age", None, 100).await.unwrap();
    assert_eq!(page.newest, 3, "offsets outlive the posts");
    assert!(contents(&page).is_empty(), "expired: {:?}", contents(&page));
    for node in nodes {
        node.shutdown().await;
    }
}
