//! Listeners added through a session go when it closes: 10,000 open/join/close cycles
//! leave no listener, no channel and no session behind, and memory stays flat.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;

use streampod::messages::Reach;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::{command, Rooms};
use streampod_tests::{eventually, raise_fd_limit};

const CYCLES: usize = 10_000;
const PARALLEL: usize = 20;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn cycles(server: &Server<Protocol>, count: usize) {
    let addr = server.local_addr();
    let workers: Vec<_> = (0..PARALLEL)
        .map(|worker| {
            tokio::spawn(async move {
                for i in (worker..count).step_by(PARALLEL) {
                    let mut client = TestClient::connect(addr, "").await;
                    command(&mut client, "join", "lobby").await;
                    command(&mut client, "listen", &format!("private-{}", i % 7)).await;
                    if i % 2 == 0 {
                        client.close().await;
                    } else {
                        // Half vanish without a close frame.
                        drop(client.into_inner());
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_leave_nothing_behind() {
    raise_fd_limit();
    let rooms = Rooms::default();
    let server = Server::builder()
        .endpoint("rooms", rooms.clone())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let messages = server.handle().messages();

    cycles(&server, 1000).await;
    eventually("sessions closed", || server.handle().session_count() == 0).await;
    let warmed_up = rss_kib();
    cycles(&server, CYCLES - 1000).await;
    eventually("sessions closed", || server.handle().session_count() == 0).await;
    eventually("listeners removed", || messages.total_listeners() == 0).await;
    assert_eq!(messages.listener_count("lobby"), 0);
    assert_eq!(messages.channel_count(), 0);

    let grown = rss_kib().saturating_sub(warmed_up);
    assert!(
        grown < 8 * 1024,
        "RSS grew by {grown} KiB over {} cycles",
        CYCLES - 1000
    );

    // Posting to the emptied channels reaches nobody, and no dead callback fires.
    let heard = rooms.heard.load(Ordering::Relaxed);
    let chat = ChatMessage {
        sender_name: "s".into(),
        content: "x".into(),
        timestamp: None,
        channel_id: "lobby".into(),
        priority: Priority::Low,
    };
    assert_eq!(
        messages
            .post_message("lobby", chat.clone(), Reach::Local)
            .unwrap()
            .delivered(),
        Some(0)
    );
    assert_eq!(
        messages
            .post_message("private-3", chat, Reach::Local)
            .unwrap()
            .delivered(),
        Some(0)
    );
    assert_eq!(rooms.heard.load(Ordering::Relaxed), heard);
    server.shutdown().await;
}
