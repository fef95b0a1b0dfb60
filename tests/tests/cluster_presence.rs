//! Presence across a cluster of three servers over one private Redis (and, for the
//! scenarios in `on_every_backplane!`, over a private three-master Redis Cluster and a
//! private NATS with JetStream too): every node lists every node's members and hears every join and leave;
//! a node that dies (cut off from Redis for good, or crashed) has its members leave
//! everyone's presence, each announced, within the stated bound; a Redis restart loses
//! nothing once the nodes are back, and a NATS frozen longer than the node TTL sweeps
//! nobody when it is back.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::{ChannelConfig, PresenceChange};
use streampod::Server;
use streampod_tests::backplanes::{Join, TestBackplane};
use streampod_tests::client::TestClient;
use streampod_tests::crashable::CrashableServer;
use streampod_tests::cut_proxy::CutProxy;
use streampod_tests::fixtures::Protocol;
use streampod_tests::redis_server::RedisServer;
use streampod_tests::rooms::{command, Rooms};

const ROOM: &str = "presence-room";

streampod_tests::on_every_backplane!(
    a_crashed_nodes_members_leave_everyones_presence_within_the_bound,
    members_are_written_again_after_redis_restarts_and_leaves_are_heard,
);

/// A dead node's members leave everyone's presence within the node TTL (6 s) after its
/// last heartbeat, and heartbeats are 2 s apart: 8 s, plus a read's time.
const DEAD_NODE_BOUND: Duration = Duration::from_secs(9);

/// A node whose hooks record every change they hear.
async fn node(redis_url: String) -> (Server<Protocol>, Arc<Mutex<Vec<PresenceChange>>>) {
    node_with(ClusterConfig::redis(redis_url)).await
}

/// A node joining the cluster as `join` says.
async fn node_with(join: impl Into<Join>) -> (Server<Protocol>, Arc<Mutex<Vec<PresenceChange>>>) {
    let builder = Server::builder().endpoint("rooms", Rooms::default());
    let server = join
        .into()
        .prefix("presence-test")
        .apply(builder)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let central = server.handle().messages();
    central.configure_channel(ROOM, ChannelConfig::default().with_presence());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    central.on_presence(ROOM, move |_, change| {
        log.lock().unwrap().push(change.clone());
    });
    wait_connected(&server).await;
    (server, heard)
}

async fn wait_connected(server: &Server<Protocol>) {
    streampod_tests::wait_for_cluster(server, |state| *state == ClusterState::Connected).await;
}

/// 20 clients of `server` in the room.
async fn members(server: &Server<Protocol>) -> Vec<TestClient> {
    members_at(server.local_addr()).await
}

/// 20 clients of the server at `addr` in the room.
async fn members_at(addr: std::net::SocketAddr) -> Vec<TestClient> {
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut client = TestClient::connect_legacy(addr, "").await;
        command(&mut client, "join", ROOM).await;
        clients.push(client);
    }
    clients
}

/// Waits until `server` counts `wanted` members in the room; how long that took.
async fn until_count(server: &Server<Protocol>, wanted: usize, within: Duration) -> Duration {
    let central = server.handle().messages();
    let started = Instant::now();
    loop {
        let count = central.presence_count(ROOM).await.unwrap();
        if count == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{count} members after {within:?}, not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn leaves(heard: &Mutex<Vec<PresenceChange>>) -> usize {
    heard.lock().unwrap().iter().filter(|c| !c.joined).count()
}

async fn a_crashed_nodes_members_leave_everyones_presence_within_the_bound(redis: TestBackplane) {
    let (first, first_heard) = node_with(redis.join()).await;
    let (second, second_heard) = node_with(redis.join()).await;
    let join = redis.join();
    let third = CrashableServer::start(move || async move { node_with(join).await.0 }).await;
    let _clients = [
        members(&first).await,
        members(&second).await,
        members_at(third.addr()).await,
    ];
    for server in [&first, &second] {
        until_count(server, 60, Duration::from_secs(5)).await;
    }
    let listed = first
        .handle()
        .messages()
        .presence(ROOM, 1_000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 60, "every node's members, each once");

    third.crash();
    let took = until_count(&first, 40, DEAD_NODE_BOUND).await;
    until_count(&second, 40, Duration::from_secs(1)).await;
    let started = Instant::now();
    while (leaves(&first_heard) < 20 || leaves(&second_heard) < 20)
        && started.elapsed() < DEAD_NODE_BOUND
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (leaves(&first_heard), leaves(&second_heard)),
        (20, 20),
        "each of the crashed node's members announced leaving once, on both nodes"
    );
    eprintln!("a crashed node's 20 members left presence {took:?} after the crash");
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_dead_nodes_members_leave_everyones_presence_within_the_bound() {
    let redis = RedisServer::start();
    let proxy = CutProxy::start(format!("127.0.0.1:{}", redis.port()).parse().unwrap()).await;
    let (first, first_heard) = node(redis.url()).await;
    let (second, second_heard) = node(redis.url()).await;
    // The third reaches Redis through a proxy: dropping it kills the node for the
    // cluster (no heartbeat, no leave), while the process goes on.
    let (third, _) = node(format!("redis://{}/", proxy.addr())).await;
    let _clients = [
        members(&first).await,
        members(&second).await,
        members(&third).await,
    ];

    for server in [&first, &second, &third] {
        until_count(server, 60, Duration::from_secs(5)).await;
    }
    let members = first
        .handle()
        .messages()
        .presence(ROOM, 1_000)
        .await
        .unwrap();
    let mut sessions: Vec<&str> = members.iter().map(|m| m.session.as_str()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(
        sessions.len(),
        60,
        "each member once, with a cluster-wide id"
    );
    // A node hears every join made while it has members in the room, wherever it
    // happened, its own included: the first node all 60, the second at least its own
    // 20 and the third's 20 (the first node's came before it had members there).
    for (heard, expected) in [(&first_heard, 60), (&second_heard, 40)] {
        // Distinct members: a resync after Redis lost its data announces them again.
        let joins = || {
            let heard = heard.lock().unwrap();
            let joined: std::collections::HashSet<&str> = heard
                .iter()
                .filter(|c| c.joined)
                .map(|c| c.member.session.as_str())
                .collect();
            joined.len()
        };
        let started = Instant::now();
        while joins() < expected && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // At least: a join written late (batched) may also reach a node that got
        // members meanwhile.
        assert!(joins() >= expected, "{} members heard joining", joins());
    }

    drop(proxy);
    let took = until_count(&first, 40, DEAD_NODE_BOUND).await;
    until_count(&second, 40, Duration::from_secs(1)).await;
    // The leaves were announced: both surviving nodes heard 20.
    let started = Instant::now();
    while (leaves(&first_heard) < 20 || leaves(&second_heard) < 20)
        && started.elapsed() < DEAD_NODE_BOUND
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((leaves(&first_heard), leaves(&second_heard)), (20, 20));
    eprintln!("a dead node's 20 members left presence {took:?} after it was cut off");
    for server in [first, second, third] {
        server.shutdown().await;
    }
}

async fn members_are_written_again_after_redis_restarts_and_leaves_are_heard(
    mut redis: TestBackplane,
) {
    let (first, _) = node_with(redis.join()).await;
    let (second, second_heard) = node_with(redis.join()).await;
    let mut clients = members(&first).await;
    // Hooks hear a channel's changes on nodes with members in it.
    let mut watcher = TestClient::connect_legacy(second.local_addr(), "").await;
    command(&mut watcher, "join", ROOM).await;
    until_count(&second, 21, Duration::from_secs(5)).await;

    redis.kill();
    for server in [&first, &second] {
        streampod_tests::wait_for_cluster(server, |state| *state != ClusterState::Connected).await;
    }
    // One member leaves while Redis is away: it must not come back.
    clients.pop().unwrap().close().await;
    redis.start_empty();
    wait_connected(&first).await;
    wait_connected(&second).await;
    // Redis came back empty: a node's first read waits for its own members to be
    // written back rather than count without them (a member list going 0 → 1 → 2).
    let first_read = first
        .handle()
        .messages()
        .presence_count(ROOM)
        .await
        .unwrap();
    assert!(
        first_read >= 19,
        "the first count after the restart was {first_read}"
    );
    until_count(&second, 20, Duration::from_secs(5)).await;

    // A leave after the restart is heard on the other node.
    let before = leaves(&second_heard);
    clients.pop().unwrap().close().await;
    until_count(&second, 19, Duration::from_secs(5)).await;
    let started = Instant::now();
    while leaves(&second_heard) == before && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(leaves(&second_heard), before + 1);
    first.shutdown().await;
    second.shutdown().await;
    drop(redis);
}

fn joins(heard: &Mutex<Vec<PresenceChange>>) -> usize {
    heard.lock().unwrap().iter().filter(|c| c.joined).count()
}

#[tokio::test]
async fn a_reconnect_writes_the_members_back_without_a_dip_or_a_join_announced_again() {
    let redis = RedisServer::start();
    let proxy = CutProxy::start(format!("127.0.0.1:{}", redis.port()).parse().unwrap()).await;
    // The first node reaches Redis through a proxy the test cuts; Redis keeps its data.
    let (first, _) = node(format!("redis://{}/", proxy.addr())).await;
    let (second, second_heard) = node(redis.url()).await;
    let mut clients = members(&first).await;
    let mut watcher = TestClient::connect_legacy(second.local_addr(), "").await;
    command(&mut watcher, "join", ROOM).await;
    until_count(&second, 21, Duration::from_secs(5)).await;
    let (joins_before, leaves_before) = (joins(&second_heard), leaves(&second_heard));

    // The second node counts all along; the lowest count it sees is the dip.
    let central = second.handle().messages();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut lowest = usize::MAX;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(count) = central.presence_count(ROOM).await {
                    lowest = lowest.min(count);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lowest
        }
    });

    proxy.cut();
    let mut changes = first.handle().messages().cluster_state_changes().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        changes.wait_for(|state| *state != ClusterState::Connected),
    )
    .await
    .expect("the cut noticed")
    .unwrap();
    // One member leaves while the node cannot tell Redis.
    clients.pop().unwrap().close().await;
    wait_connected(&first).await;
    until_count(&second, 20, Duration::from_secs(5)).await;
    // Let the node's resync finish, and any announcement of it arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let lowest = sampler.await.unwrap();

    assert_eq!(
        lowest, 20,
        "the room's count dipped to {lowest} while the node wrote its members back"
    );
    assert_eq!(
        joins(&second_heard),
        joins_before,
        "members Redis still held were announced as joining again"
    );
    assert_eq!(
        leaves(&second_heard),
        leaves_before + 1,
        "the member that left during the cut is announced once"
    );
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_nats_frozen_longer_than_the_node_ttl_sweeps_nobody_when_it_is_back() {
    let nats = TestBackplane::nats();
    let (first, first_heard) = node_with(nats.join()).await;
    let (second, second_heard) = node_with(nats.join()).await;
    let _clients = [members(&first).await, members(&second).await];
    for server in [&first, &second] {
        until_count(server, 40, Duration::from_secs(5)).await;
    }

    // Nobody beats while NATS is frozen: every heartbeat is older than the TTL after.
    nats.pause();
    tokio::time::sleep(Duration::from_secs(8)).await;
    nats.resume();
    for server in [&first, &second] {
        wait_connected(server).await;
    }
    // Longer than a sweep would take (a beat, then the TTL from the reconnect).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        (leaves(&first_heard), leaves(&second_heard)),
        (0, 0),
        "nobody left: every node was alive all along"
    );
    for server in [&first, &second] {
        until_count(server, 40, Duration::from_secs(5)).await;
    }
    first.shutdown().await;
    second.shutdown().await;
}
