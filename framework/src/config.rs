//! Server configuration with documented defaults.

use std::time::Duration;

use crate::rate_limit::RateLimit;

/// What a session's full outbound queue does with a new frame. The server default
/// applies to direct sends; each channel can choose its own (see
/// [`ChannelConfig`](crate::messages::ChannelConfig)). The publisher never waits under
/// any policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Close the session with code 1008 "slow consumer" (the default). Its queued
    /// frames are dropped and `stream_closed` runs.
    #[default]
    Disconnect,
    /// Drop the oldest queued frames of the same channel (or, for direct sends, the
    /// oldest direct frames) to make room; when there are none, drop the new frame.
    DropOldest,
    /// Keep only the newest frame of a channel waiting: a new frame replaces the
    /// channel's frame still queued, full queue or not, so a consumer that falls behind
    /// skips to the latest value. For direct sends it acts as `DropOldest`.
    LatestValue,
}

/// Server settings. Every field has a default chosen for chat-like traffic; change them
/// with the by-value setters:
///
/// ```
/// use std::time::Duration;
/// use streampod::ServerConfig;
///
/// let config = ServerConfig::default()
///     .keepalive_interval(Duration::from_secs(15))
///     .max_frame_size(64 * 1024);
/// assert_eq!(config.max_frame_size, 64 * 1024);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Largest frame a client may send, and largest message over all its fragments, in
    /// bytes. Larger ones close the socket with 1009, as soon as a frame's header shows
    /// it. Default 1 MiB.
    pub max_frame_size: usize,
    /// Most frames waiting in one session's outbound queue. Default 4,096.
    pub outbound_queue_frames: usize,
    /// Most bytes waiting in one session's outbound queue. Default 8 MiB.
    pub outbound_queue_bytes: usize,
    /// What a full outbound queue does. Default [`SlowConsumerPolicy::Disconnect`].
    pub slow_consumer: SlowConsumerPolicy,
    /// A socket that sent nothing for this long gets a WebSocket ping. Default 20 s:
    /// below the 30 s idle timeout of common load balancers.
    pub keepalive_interval: Duration,
    /// A pinged socket that sends nothing for this long is closed. Default 10 s.
    pub keepalive_timeout: Duration,
    /// How long a closing socket may take to flush and send its close frame. Default 2 s.
    pub close_timeout: Duration,
    /// How long [`Server::shutdown`](crate::Server::shutdown) waits for sessions to
    /// close before it returns. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Largest HTTP method-call body; larger ones get 413. Default 1 MiB.
    pub max_body_size: usize,
    /// Most channels one session may hold at once: joins plus session callbacks, over
    /// all its endpoints. A join beyond it fails with
    /// [`JoinError::TooManyChannels`](crate::messages::JoinError). Default 128, as
    /// Centrifugo's: enough for any screen, and it bounds what a client can make the
    /// server store and what closing its socket costs.
    pub max_channels_per_session: usize,
    /// Longest channel name a session may join, in bytes; longer ones fail with
    /// [`JoinError::NameTooLong`](crate::messages::JoinError). Default 255: names are
    /// ids, not payloads, and each join stores its name.
    pub max_channel_name_len: usize,
    /// Most bytes queued for all sessions (and streaming-method sockets) together.
    /// Beyond it, the sessions holding the most are closed first (1008 "server memory limit") until the total fits again;
    /// checked every 100 ms, each queue counted in 16 KiB steps. Default 1 GiB: a
    /// thousand slow consumers at the per-session limit cannot exhaust the machine.
    pub max_total_queued_bytes: usize,
    /// Frames per second one session may send (text, binary and WebSocket pings; pongs
    /// do not count), as a token bucket. A frame over it gets a `rate_limited`
    /// error frame and is not handled; a client that sends `burst` more frames past
    /// the limit without slowing down is closed with 1008. Default 200 per second
    /// with bursts of 2,000 ([`RateLimit::default`]): no person or game client meets
    /// it, a flood does. `None` switches it off; an endpoint can set its own
    /// ([`Endpoint::inbound_rate_limit`](crate::Endpoint::inbound_rate_limit)).
    pub inbound_rate_limit: Option<RateLimit>,
    /// HTTP method calls per second one client address may make, as a token bucket;
    /// a call over it gets `429` with `Retry-After` and a JSON body (code
    /// `rate_limited`) and is not run. Default 50 per second with bursts of 200: a page
    /// or an app calls a few times a second, a script guessing keys or flooding does
    /// not get far. Clients behind one NAT or proxy share it: raise it there, or `None`
    /// to switch it off (and limit at the proxy).
    pub http_call_rate_limit: Option<RateLimit>,
    /// Refused auth keys per client address, on every path (the socket's key and
    /// `auth` command, streaming-method opens, HTTP calls): past it keys from that
    /// address are refused without being checked (`429` + `Retry-After`, a
    /// `rate_limited` error frame, `authenticationFailed`) and one line per 10 s is
    /// logged. Default 1 a second with bursts of 20: a user mistyping a key never meets
    /// it, a script guessing keys gets one guess a second. `None` switches it off.
    pub failed_auth_rate_limit: Option<RateLimit>,
    /// Most TCP connections open at once. At the cap, the connection that has waited
    /// longest without a complete request (new, or idle between keep-alive requests)
    /// is closed to admit the new one; when every connection is busy the new one gets
    /// `503` with `Retry-After` and is closed. Default: the process's open-file limit
    /// less a reserve (a twentieth, at least 64) read when the config is made, so
    /// accepting never runs out of file descriptors (1,024 → 960).
    pub max_connections: usize,
    /// Most connections from one client address, refused beyond with `503`. Default
    /// `None` (off): offices behind NAT and reverse proxies share one address.
    pub max_connections_per_ip: Option<usize>,
    /// Connections the kernel queues, not yet accepted, for
    /// [`ServerBuilder::bind`](crate::ServerBuilder::bind) (the `listen` backlog; Linux
    /// caps it at `net.core.somaxconn` without a word). Default 65,535: as deep as the
    /// kernel allows, so raising `net.core.somaxconn` (4,096 on Linux ≥ 5.4) is all a
    /// deployment expecting reconnect storms needs. A full queue drops the client's SYN
    /// and it waits out a retransmit (1 s, then 2 s more): 10,000 clients reconnecting
    /// at once after a deploy overflow tokio's 1,024, and often 4,096.
    pub listen_backlog: u32,
    /// How long a connection may take to send a request's headers, counted from
    /// accept, and from the end of the previous response on a keep-alive connection:
    /// the header read timeout and the keep-alive idle timeout in one (hyper runs one
    /// timer for both). A connection that sends nothing, drips its headers or idles is
    /// closed. Default 10 s (hyper: 30 s; Cowboy: 5 s request, 60 s idle).
    pub http_header_timeout: Duration,
    /// How long a method call's body may take to arrive; slower ones get `408`.
    /// Default 30 s: a 1 MiB body over a poor mobile link.
    pub http_body_timeout: Duration,
    /// How long writing an HTTP answer may make no progress (the client reads none of
    /// it) before the connection is dropped and the answer freed, under the convenience
    /// server (a host app's server sets its own when the service is mounted). Default
    /// 30 s: ten clients that ask for large answers and never read them cannot hold the
    /// answers' memory for longer.
    pub http_write_timeout: Duration,
    /// How long the WebSocket upgrade may take after the `101` answer before the
    /// connection is dropped. Default 10 s.
    pub websocket_handshake_timeout: Duration,
    /// A WebSocket that sends no frame at all (not even a pong to the server's ping)
    /// this long after opening is closed with 1008. Default 30 s: past the first
    /// keepalive ping at 20 s, so a silent but live client answers in time.
    pub first_frame_timeout: Duration,
    /// Where `GET` serves the Prometheus metrics (OpenMetrics text). Default
    /// `Some("/metrics")`; `None` switches the route off. The figures say nothing
    /// about users, but put the path behind your proxy's access rules if its counts
    /// are not for everyone.
    pub metrics_path: Option<String>,
    /// Most streaming-method calls one `/v1/websocket` socket may have open at once;
    /// an open beyond it is refused (`invalidArguments`, the only refusal Serverpod's
    /// clients know besides not-found and auth) and logged. Default 128: a screen's
    /// worth of live queries, and with [`method_stream_queue`](Self::method_stream_queue)
    /// it keeps the answers one socket can have queued within
    /// [`outbound_queue_frames`](Self::outbound_queue_frames).
    pub max_method_calls_per_socket: usize,
    /// Values queued per streaming-method stream: each call's answers waiting for the
    /// socket (the method's stream is not polled while they wait, so a slow client
    /// slows that call only) and each input stream's values waiting for the method (a
    /// client that sends past it gets the input closed with `error`). Default 32.
    pub method_stream_queue: usize,
    /// How long a revocation ([`ServerHandle::revoke_key`](crate::ServerHandle::revoke_key),
    /// [`revoke_user`](crate::ServerHandle::revoke_user)) keeps refusing the keys it
    /// names. Default 24 h: longer than the access tokens it is meant for live; keys
    /// that live longer must also be refused by the authentication handler (or their
    /// issuer).
    pub revocation_retention: Duration,
    /// Most revocations kept at once (about 100 bytes each); past it the oldest is
    /// forgotten first. Default 100,000.
    pub max_revocations: usize,
    /// How long the publish API remembers an `Idempotency-Key` and its answer: a retry
    /// within it (on any server of the cluster) gets the first answer and posts
    /// nothing. Default 5 minutes; at most 100,000 keys are kept (the oldest go first).
    pub idempotency_window: Duration,
    /// What one signed-in user may post across all their sessions (endpoint-stream
    /// messages and HTTP method calls), and in a cluster across every server (servers
    /// share what their users spent every 100 ms). Past it a message gets a
    /// `rate_limited` error frame (the socket stays) and a call `429` with
    /// `Retry-After`. Default `None` (off): the per-socket
    /// [`inbound_rate_limit`](Self::inbound_rate_limit) still holds.
    pub user_rate_limit: Option<RateLimit>,
    /// WebSocket compression (`permessage-deflate`, RFC 7692): `Some(min)` accepts a
    /// client's offer (browsers and Dart make one) and sends messages of at least `min`
    /// bytes compressed, each compressed once however many sockets it goes to (no
    /// context takeover); `None` declines every offer. Messages from the client are
    /// inflated to at most [`max_frame_size`](Self::max_frame_size) bytes (more closes
    /// with 1009). Default `Some(512)`: see `BENCHMARKS.md` for what it saves and costs.
    pub websocket_compression: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 1 << 20,
            outbound_queue_frames: 4096,
            outbound_queue_bytes: 8 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
            max_body_size: 1 << 20,
            max_channels_per_session: 128,
            max_channel_name_len: 255,
            max_total_queued_bytes: 1 << 30,
            inbound_rate_limit: Some(RateLimit::default()),
            http_call_rate_limit: Some(RateLimit::new(50, 200)),
            failed_auth_rate_limit: Some(RateLimit::new(1, 20)),
            max_connections: default_max_connections(),
            max_connections_per_ip: None,
            listen_backlog: 65_535,
            http_header_timeout: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(30),
            http_write_timeout: Duration::from_secs(30),
            websocket_handshake_timeout: Duration::from_secs(10),
            first_frame_timeout: Duration::from_secs(30),
            metrics_path: Some("/metrics".to_owned()),
            max_method_calls_per_socket: 128,
            revocation_retention: crate::auth::DEFAULT_REVOCATION_RETENTION,
            max_revocations: crate::auth::DEFAULT_MAX_REVOCATIONS,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            user_rate_limit: None,
            method_stream_queue: 32,
            websocket_compression: Some(DEFAULT_COMPRESSION_MIN_SIZE),
        }
    }
}

/// Generates a by-value setter per field.
macro_rules! setters {
    ($($field:ident: $ty:ty),* $(,)?) => {
        impl ServerConfig {
            $(
                #[doc = concat!("Sets [`ServerConfig::", stringify!($field), "`].")]
                #[must_use]
                pub fn $field(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

setters! {
    max_frame_size: usize,
    outbound_queue_frames: usize,
    outbound_queue_bytes: usize,
    slow_consumer: SlowConsumerPolicy,
    keepalive_interval: Duration,
    keepalive_timeout: Duration,
    close_timeout: Duration,
    shutdown_timeout: Duration,
    max_body_size: usize,
    max_channels_per_session: usize,
    max_channel_name_len: usize,
    max_total_queued_bytes: usize,
    inbound_rate_limit: Option<RateLimit>,
    http_call_rate_limit: Option<RateLimit>,
    failed_auth_rate_limit: Option<RateLimit>,
    max_connections: usize,
    max_connections_per_ip: Option<usize>,
    listen_backlog: u32,
    http_header_timeout: Duration,
    http_body_timeout: Duration,
    http_write_timeout: Duration,
    websocket_handshake_timeout: Duration,
    first_frame_timeout: Duration,
    metrics_path: Option<String>,
    max_method_calls_per_socket: usize,
    method_stream_queue: usize,
    revocation_retention: Duration,
    max_revocations: usize,
    idempotency_window: Duration,
    user_rate_limit: Option<RateLimit>,
    websocket_compression: Option<usize>,
}

/// The shortest message sent compressed by default: 512 bytes.
pub(crate) const DEFAULT_COMPRESSION_MIN_SIZE: usize = 512;

/// How long the publish API remembers an idempotency key by default: 5 minutes.
pub(crate) const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The default `max_connections`: the process's open-file limit less a reserve for
/// everything else the process opens (a twentieth, at least 64), so accepting never
/// meets "too many open files".
fn default_max_connections() -> usize {
    let soft = open_file_limit();
    let reserve = (soft / 20).max(64);
    usize::try_from(soft.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1)
}

#[cfg(unix)]
fn open_file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

#[cfg(not(unix))]
fn open_file_limit() -> u64 {
    // Windows has no per-process descriptor limit of this kind.
    16_384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_reserve() {
        let max = default_max_connections() as u64;
        assert!(max < open_file_limit());
    }
}
