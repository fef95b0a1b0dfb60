//! Keepalive: when to ping an idle socket, and when to give up on one that stopped
//! answering or never spoke. Shared by every socket kind.

use std::time::Duration;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::config::ServerConfig;
use crate::session::state::SessionShared;

/// When to ping an idle socket, and when to give up on it.
pub(crate) struct Keepalive {
    interval: Duration,
    timeout: Duration,
    last_activity: Instant,
    pinged_at: Option<Instant>,
    /// Until the first frame arrives: when a socket that never sent one is closed.
    first_frame_by: Option<Instant>,
}

/// What is due at a [`Keepalive`] deadline.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// The socket has been quiet for the interval: ping it.
    Ping,
    /// The ping went unanswered.
    Unanswered,
    /// The socket has sent nothing at all since it opened.
    Silent,
}

impl Keepalive {
    /// The keepalive `config` sets for every socket, from now.
    pub(crate) fn for_sockets(config: &ServerConfig) -> Self {
        Self::new(
            config.keepalive_interval,
            config.keepalive_timeout,
            config.first_frame_timeout,
        )
    }

    pub(crate) fn new(interval: Duration, timeout: Duration, first_frame: Duration) -> Self {
        let now = Instant::now();
        Self {
            interval,
            timeout,
            last_activity: now,
            pinged_at: None,
            first_frame_by: Some(now + first_frame),
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        let keepalive = match self.pinged_at {
            Some(pinged_at) => pinged_at + self.timeout,
            None => self.last_activity + self.interval,
        };
        self.first_frame_by
            .map_or(keepalive, |first| first.min(keepalive))
    }

    pub(crate) fn activity(&mut self) {
        self.last_activity = Instant::now();
        self.pinged_at = None;
        self.first_frame_by = None;
    }

    /// At the deadline: pings a quiet socket, or closes one that stopped answering (or
    /// never sent anything); `false` once the socket is closing.
    pub(crate) fn at_deadline(&mut self, shared: &SessionShared) -> bool {
        match self.due() {
            Due::Ping => {
                shared.outbound.ping();
                true
            }
            Due::Unanswered => {
                tracing::debug!(target: "streampod::connection", "keepalive timeout; closing");
                shared.abort(CloseCode::Away, "keepalive timeout");
                false
            }
            Due::Silent => {
                tracing::debug!(target: "streampod::connection", "no frame since opening; closing");
                shared.close(
                    CloseCode::Policy,
                    "no frame received since the socket opened",
                );
                false
            }
        }
    }

    /// Called at the deadline: what is due, recording a ping as sent.
    fn due(&mut self) -> Due {
        if self
            .first_frame_by
            .is_some_and(|first| Instant::now() >= first)
        {
            return Due::Silent;
        }
        if self.pinged_at.is_some() {
            return Due::Unanswered;
        }
        self.pinged_at = Some(Instant::now());
        Due::Ping
    }
}

