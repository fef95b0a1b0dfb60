//! End-to-end tests of streampod. The tests live in `tests/`; this library holds what
//! they share: the fixture models and small WebSocket, HTTP and WebDriver clients.
//!
//! The README is this crate's documentation (below), and the guides of
//! `framework/docs/` are its `guides` module's, so every Rust block in them is compiled
//! by `cargo test`.
#![doc = include_str!("../../README.md")]

/// The guides `streampod::guide` shows, compiled here where the example's models are.
pub mod guides {
    #[doc = include_str!("../../framework/docs/server.md")]
    pub mod server {}
    #[doc = include_str!("../../framework/docs/channels.md")]
    pub mod channels {}
    #[doc = include_str!("../../framework/docs/cluster.md")]
    pub mod cluster {}
    #[doc = include_str!("../../framework/docs/limits.md")]
    pub mod limits {}
    #[doc = include_str!("../../framework/docs/typescript.md")]
    pub mod typescript {}
    #[doc = include_str!("../../framework/docs/axum.md")]
    pub mod axum {}
    #[doc = include_str!("../../framework/docs/wire.md")]
    pub mod wire {}
}

pub mod backplanes;
pub mod captured_log;
pub mod client;
pub mod crashable;
pub mod cut_proxy;
pub mod http;
pub mod nats_server;
pub mod postgres_server;
pub mod recorder;
pub mod redis_server;
pub mod rooms;
pub mod webdriver;
pub mod ws_frames;

/// The code generator's fixture models (`codegen/tests/fixtures/models`), compiled.
pub mod fixtures {
    streampod::include_models!();
}

/// A module's models (`codegen/tests/fixtures/kit`), used by [`app`] as `module:kit:…`.
pub mod kit {
    include!(concat!(env!("OUT_DIR"), "/kit.rs"));
}

/// A shared package's models (`codegen/tests/fixtures/shared`), used by [`app`].
pub mod common {
    include!(concat!(env!("OUT_DIR"), "/shared.rs"));
}

/// The models behind `codegen/tests/fixtures/wire-vectors.json` (`codegen/tests/fixtures/wire`).
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/wire.rs"));
}

/// Models that use [`kit`]'s and [`common`]'s (`codegen/tests/fixtures/app`).
pub mod app {
    include!(concat!(env!("OUT_DIR"), "/app.rs"));
}

/// Polls `condition` every 10 ms until it holds, failing the test after `client::WAIT`.
///
/// # Panics
///
/// When the condition does not hold in time; `what` names it.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + client::WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits (up to 10 s) until the cluster state of `server` satisfies `wanted`.
///
/// # Panics
///
/// When it does not in time, or `server` is not a cluster node.
#[allow(clippy::expect_used)] // a test helper: a panic is the test failing
pub async fn wait_for_cluster<P: streampod::protocol::ModelSet>(
    server: &streampod::Server<P>,
    wanted: impl Fn(&streampod::cluster::ClusterState) -> bool,
) {
    let mut changes = server
        .handle()
        .messages()
        .cluster_state_changes()
        .expect("a cluster node");
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        changes.wait_for(|state| wanted(state)),
    )
    .await
    .expect("the cluster state within 10 s")
    .expect("the node runs");
}

/// A `ChatMessage` in its JSON form, with `content`.
pub fn chat_json(content: &str) -> serde_json::Value {
    serde_json::json!({"senderName": "ann", "content": content, "channelId": "room-1"})
}

/// Raises this process's open-file limit to its hard limit, for tests with many sockets.
pub fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// The index a flood test puts in `senderName`.
///
/// # Panics
///
/// When the frame carries no numeric `senderName`.
pub fn sender_index(frame: &serde_json::Value) -> usize {
    frame["object"]["data"]["senderName"]
        .as_str()
        .and_then(|name| name.parse().ok())
        .unwrap_or_else(|| panic!("no index in senderName: {frame}"))
}

/// Reads `client` until the message with index `last`; returns every index seen.
pub async fn read_indexes_until(client: &mut client::TestClient, last: usize) -> Vec<usize> {
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        seen.push(sender_index(&client.next_json().await));
    }
    seen
}

/// Runs each named scenario (an `async fn(TestRedis)` of the test file) twice: as
/// `on_redis::<name>` over one private Redis and as `on_redis_cluster::<name>` over a
/// private three-master Redis Cluster.
#[macro_export]
macro_rules! on_redis_and_redis_cluster {
    ($($scenario:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::redis_server::TestRedis::single()).await;
                }
            )*
        }
        mod on_redis_cluster {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::redis_server::TestRedis::cluster()).await;
                }
            )*
        }
    };
}
