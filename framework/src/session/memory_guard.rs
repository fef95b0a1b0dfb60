//! The server-wide memory guard: when the bytes queued for all sessions together pass
//! [`ServerConfig::max_total_queued_bytes`](crate::ServerConfig::max_total_queued_bytes),
//! the sessions holding the most are closed first (1008 "server memory limit") until the
//! total is back under the limit.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::counter::Counter;

use crate::util::log_limit::RateLimitedLog;
use crate::session::outbound::TotalHeld;
use crate::session::registry::SessionRegistry;

/// How often the total is compared with the limit: one atomic load per tick.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Watches `total` until `stop`; closes the biggest holders while it exceeds `limit`.
pub(crate) async fn run(
    sessions: [Arc<SessionRegistry>; 2],
    total: Arc<TotalHeld>,
    limit: usize,
    closes: Counter,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if total.get() > limit {
            closes.inc_by(shed(&sessions, limit));
        }
    }
}

/// Closes the sessions holding the most bytes until what is left fits `limit`; how
/// many it closed.
fn shed(sessions: &[Arc<SessionRegistry>], limit: usize) -> u64 {
    let mut held: Vec<_> = sessions
        .iter()
        .flat_map(|registry| registry.snapshot())
        .map(|session| (session.outbound.held_bytes(), session))
        .collect();
    let mut remaining: usize = held.iter().map(|(bytes, _)| bytes).sum();
    held.sort_unstable_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
    let mut closed = 0_u64;
    for (bytes, session) in held {
        if remaining <= limit {
            break;
        }
        session.abort(CloseCode::Policy, "server memory limit");
        remaining -= bytes;
        closed += 1;
    }
    static SHED: RateLimitedLog = RateLimitedLog::new(std::time::Duration::from_secs(5));
    if let Some(suppressed) = SHED.ready() {
        tracing::warn!(
            target: "streampod::server",
            closed,
            limit,
            suppressed,
            "queued bytes over the server's limit; closed the sessions holding the most"
        );
    }
    closed
}
