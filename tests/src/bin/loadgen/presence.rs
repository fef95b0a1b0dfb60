//! Presence at scale, on one cluster node: N subscribers join one room at once; then
//! all their sockets close at once. Reported: the time until Redis lists all N as the
//! room's members (the node's join rate), the time until it lists none (its leave rate),
//! and the server's CPU per 1,000 of each. Redis is read directly (`HLEN` of the room's
//! presence hash), so what is measured is presence written, not a message about it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{cpu_micros, process_cpu_ticks, storm, Common};

/// Polls `HLEN key` every 2 ms until `done(count)` or `deadline`; how long that took
/// from `started`, or `None` at the deadline.
async fn until(
    redis: &mut redis::aio::MultiplexedConnection,
    key: &str,
    done: impl Fn(usize) -> bool,
    started: Instant,
    deadline: Instant,
) -> Option<f64> {
    loop {
        let count: usize = redis::cmd("HLEN")
            .arg(key)
            .query_async(redis)
            .await
            .expect("HLEN answers");
        if done(count) {
            return Some(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            eprintln!("presence: {count} members of {key} at the deadline");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Server CPU per 1,000 members, in ms.
fn per_thousand(cpu: Option<f64>, members: usize) -> Option<f64> {
    cpu.map(|micros| micros / 1000.0 / (members as f64 / 1000.0))
}

pub(super) async fn run(common: Common, redis_url: String, key: String) -> (Common, Value) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(common.deadline);
    let client = redis::Client::open(redis_url).expect("a Redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let members = common.subscribers;

    let cpu_before = common.server_pid.and_then(process_cpu_ticks);
    let started = Instant::now();
    let subs = storm(&common, start).await;
    let failed = subs.failed;
    let joined_s = until(
        &mut redis,
        &key,
        |n| n >= members - failed,
        started,
        deadline,
    )
    .await;
    let join_cpu = cpu_micros(cpu_before, common.server_pid.and_then(process_cpu_ticks));

    let cpu_before = common.server_pid.and_then(process_cpu_ticks);
    let started = Instant::now();
    drop(subs);
    let left_s = until(&mut redis, &key, |n| n == 0, started, deadline).await;
    let leave_cpu = cpu_micros(cpu_before, common.server_pid.and_then(process_cpu_ticks));

    let rate = |seconds: Option<f64>| seconds.map(|s| (members - failed) as f64 / s);
    let result = json!({
        "mode": "presence", "deliveries": members - failed, "expected": members,
        "failed": failed,
        "joined_s": joined_s, "left_s": left_s,
        "joins_per_s": rate(joined_s), "leaves_per_s": rate(left_s),
        "server_cpu_ms_per_1000_joins": per_thousand(join_cpu, members),
        "server_cpu_ms_per_1000_leaves": per_thousand(leave_cpu, members),
    });
    (common, result)
}
