//! The convenience server: binds TCP, caps and times connections, serves HTTP/1.1 with
//! [`StreampodService`] on each, and shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::StatusCode;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::transport::context::Io;
use crate::service::admission::{Connections, Refusal, Ticket};
use crate::server::direct_upgrade::{self, Head, Prefixed};
use crate::endpoint::server_handle::ServerHandle;
use crate::util::log_limit::RateLimitedLog;
use crate::protocol::ModelSet;
use crate::server::write_deadline::WriteDeadline;
use crate::server::idle_after_answer::AnswerWatch;
use crate::service::{HeldConnection, RemoteAddr, StreampodService};

/// A running server. Dropping it leaves the server running in the background; call
/// [`Server::shutdown`] or [`Server::run_until`] to stop it.
#[derive(Debug)]
pub struct Server<P: ModelSet> {
    handle: ServerHandle<P>,
    accept: JoinHandle<()>,
    local_addr: SocketAddr,
}

impl<P: ModelSet> Server<P> {
    /// Starts accepting on `listener`.
    pub(crate) fn start(
        service: StreampodService<P>,
        listener: TcpListener,
        connections: Arc<Connections>,
        tls: Option<Tls>,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let handle = service.handle();
        let endpoints = service.state().streams.endpoints.len();
        tracing::info!(target: "streampod::server", %local_addr, endpoints, "serving");
        let accept = tokio::spawn(accept_loop(service, listener, connections, tls));
        Ok(Self {
            handle,
            accept,
            local_addr,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for background tasks: reach sessions, shut down.
    pub fn handle(&self) -> ServerHandle<P> {
        self.handle.clone()
    }

    /// Stops the server gracefully; see [`ServerHandle::shutdown`].
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
        let _ = self.accept.await;
    }

    /// Serves until `signal` completes (e.g. Ctrl-C) or a handle calls shutdown, then
    /// shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        tokio::select! {
            () = signal => tracing::info!(target: "streampod::server", "shutdown requested"),
            () = self.handle.shutdown_signal().cancelled() => {}
        }
        self.shutdown().await;
    }
}

/// A listener on the first address `addr` resolves to that binds, with `backlog`
/// (`SO_REUSEADDR` set, as `std` does on Unix, so a restarted server rebinds at once).
pub(crate) async fn listen(addr: impl ToSocketAddrs, backlog: u32) -> io::Result<TcpListener> {
    let mut failed = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(error) => failed = Some(error),
        }
    }
    Err(failed.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the address resolved to no address")
    }))
}

async fn accept_loop<P: ModelSet>(
    service: StreampodService<P>,
    listener: TcpListener,
    connections: Arc<Connections>,
    tls: Option<Tls>,
) {
    let handle = service.handle();
    let metrics = service.state().streams.metrics.clone();
    let mut failures = AcceptFailures::default();
    let refusals = RateLimitedLog::new(LOG_INTERVAL);
    let lingering = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            biased;
            () = handle.shutdown_signal().cancelled() => break,
            // Unconstrained: accepting drains the kernel's queue before the accepted
            // connections' handshakes run (tokio's budget would stop it after 128), so a
            // reconnect storm does not overflow the backlog into 1 s SYN retransmits.
            accepted = tokio::task::unconstrained(listener.accept()) => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                failures.succeeded();
                accepted
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                let pause = failures.failed(&error);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let ticket = match connections.admit(peer.ip()) {
            Ok(ticket) => {
                metrics.connections_accepted.inc();
                ticket
            }
            Err(refusal) => {
                metrics
                    .connections_refused
                    .get_or_create(&vec![("reason", refusal.as_str().to_owned())])
                    .inc();
                refuse(handle.tasks(), &lingering, stream, refusal);
                if let Some(suppressed) = refusals.ready() {
                    tracing::warn!(target: "streampod::server", %peer, reason = refusal.as_str(), suppressed, "refused a connection at the connection limit");
                }
                continue;
            }
        };
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        handle
            .tasks()
            .spawn(serve_accepted(
                service.clone(),
                stream,
                peer,
                ticket,
                tls.clone(),
            ));
    }
    tracing::info!(target: "streampod::server", "stopped accepting connections");
}

/// Refused connections that may linger at once to deliver their 503 (each holds a
/// file descriptor for up to [`REFUSAL_LINGER`]; `max_connections`' reserve covers them).
const LINGERING_REFUSALS: usize = 32;

/// How long a refused connection is read and discarded after its 503, so that closing
/// it does not reset the connection before the client read the answer.
const REFUSAL_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Answers a refused connection with its 503 and closes it. A fresh socket's send
/// buffer is empty, so the short answer is written at once; then, while few are
/// lingering, the connection is half-closed and drained briefly so the client gets the
/// answer instead of a reset. Beyond that it is simply dropped.
fn refuse(tasks: &TaskTracker, lingering: &Arc<AtomicUsize>, stream: TcpStream, refusal: Refusal) {
    let _ = stream.try_write(&refusal.response());
    if lingering.fetch_add(1, Ordering::Relaxed) >= LINGERING_REFUSALS {
        lingering.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let lingering = lingering.clone();
    tasks.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0_u8; 1024];
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
        })
        .await;
        lingering.fetch_sub(1, Ordering::Relaxed);
    });
}

/// How often a repeated warning a peer can trigger is logged at most.
const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Failed accepts: an exponential pause, and one log line per interval with a count.
#[derive(Debug)]
struct AcceptFailures {
    pause: std::time::Duration,
    log: RateLimitedLog,
}

impl Default for AcceptFailures {
    fn default() -> Self {
        Self {
            pause: Self::FIRST_PAUSE,
            log: RateLimitedLog::new(LOG_INTERVAL),
        }
    }
}

impl AcceptFailures {
    const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
    const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

    fn succeeded(&mut self) {
        self.pause = Self::FIRST_PAUSE;
    }

    /// Logs (rate-limited) and returns how long to pause before the next accept.
    fn failed(&mut self, error: &io::Error) -> std::time::Duration {
        if let Some(suppressed) = self.log.ready() {
            tracing::warn!(target: "streampod::server", %error, suppressed, "accept failed; pausing (raise the open-file limit or lower max_connections)");
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Self::MAX_PAUSE);
        pause
    }
}

/// The TLS acceptor of a server that serves TLS (uninhabited without the `tls` feature).
#[cfg(feature = "tls")]
pub(crate) type Tls = tokio_rustls::TlsAcceptor;
/// The TLS acceptor of a server that serves TLS (uninhabited without the `tls` feature).
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(crate) enum Tls {}

/// Completes the TLS handshake, if the server serves TLS (within the header timeout: a
/// silent client holds its place no longer than one that sends no request), then serves
/// HTTP on the connection.
async fn serve_accepted<P: ModelSet>(
    service: StreampodService<P>,
    stream: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    tls: Option<Tls>,
) {
    let Some(acceptor) = tls else {
        serve_connection(service, stream, peer, ticket).await;
        return;
    };
    #[cfg(feature = "tls")]
    {
        let timeout = service.state().streams.config.http_header_timeout;
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve_connection(service, stream, peer, ticket).await,
            Ok(Err(error)) => {
                tracing::debug!(target: "streampod::http", %peer, %error, "TLS handshake failed");
            }
            Err(_) => tracing::debug!(target: "streampod::http", %peer, "TLS handshake timed out"),
        }
    }
    #[cfg(not(feature = "tls"))]
    match acceptor {}
}

/// Serves one accepted connection: a WebSocket upgrade straight away (see
/// `direct_upgrade`), anything else with hyper. The header timeout covers the first head
/// either way; eviction at the connection cap and shutdown close a connection that has
/// not sent it.
async fn serve_connection<P: ModelSet>(
    service: StreampodService<P>,
    mut stream: impl Io,
    peer: SocketAddr,
    ticket: Ticket,
) {
    let header_timeout = service.state().streams.config.http_header_timeout;
    let shutdown = service.handle().shutdown_signal().clone();
    let head = tokio::select! {
        head = tokio::time::timeout(header_timeout, direct_upgrade::read_head(&mut stream)) => head,
        () = ticket.evicted().cancelled() => {
            tracing::debug!(target: "streampod::http", %peer, "closed a waiting connection to admit a new one");
            return;
        }
        () = shutdown.cancelled() => return,
    };
    let (bytes, stream, ticket) = match head {
        Ok(Ok(Head::Complete(bytes, len))) => {
            match direct_upgrade::upgrade(&service, bytes, len, stream, peer, ticket).await {
                // Not an upgrade accepted here: hyper answers it.
                Some((bytes, stream, ticket)) => (bytes, stream, ticket),
                None => return,
            }
        }
        Ok(Ok(Head::Other(bytes))) if bytes.starts_with(HTTP2_PREFACE_START) => {
            // HTTP/2 with prior knowledge (h2c), or negotiated by TLS ALPN.
            return serve_http2(service, Prefixed::new(bytes, stream), peer, ticket).await;
        }
        Ok(Ok(Head::Other(bytes))) => (bytes, stream, ticket),
        Ok(Ok(Head::Closed)) => return,
        Ok(Err(error)) => {
            tracing::debug!(target: "streampod::http", %peer, %error, "reading the request failed");
            return;
        }
        Err(_) => {
            tracing::debug!(target: "streampod::http", %peer, "no request head within the header timeout");
            return;
        }
    };
    serve_http(service, Prefixed::new(bytes, stream), peer, ticket).await;
}

/// How an HTTP/2 connection starts (RFC 9113 §3.4: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`);
/// the request head reader stops after its first blank line.
const HTTP2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";

/// Most streams (requests, WebSockets) one HTTP/2 connection may have open at once: the
/// connection caps count TCP connections, so this bounds what one of them holds.
const HTTP2_MAX_STREAMS: u32 = 128;

/// Serves HTTP/2 with hyper, WebSockets included (RFC 8441 extended CONNECT): many
/// requests and streams on one connection. Such a connection counts as busy from its
/// first request on (it may carry a WebSocket), so the connection cap never evicts it;
/// HTTP/2 pings at the keepalive interval drop a dead peer; graceful shutdown as for
/// HTTP/1.1.
async fn serve_http2<P: ModelSet>(
    service: StreampodService<P>,
    stream: impl Io,
    peer: SocketAddr,
    ticket: Ticket,
) {
    let config = &service.state().streams.config;
    let write_timeout = config.http_write_timeout;
    // HTTP/2 pings find a dead peer as the WebSocket keepalive does.
    let (ping_every, ping_timeout) = (config.keepalive_interval, config.keepalive_timeout);
    let shutdown = service.handle().shutdown_signal().clone();
    let ticket = Arc::new(ticket);
    let serve_request = {
        let ticket = ticket.clone();
        service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let (service, ticket) = (service.clone(), ticket.clone());
            async move {
                ticket.busy();
                request.extensions_mut().insert(RemoteAddr(peer));
                request.extensions_mut().insert(HeldConnection {
                    _ticket: ticket.clone(),
                });
                Ok::<_, Infallible>(service.respond(request).await)
            }
        })
    };
    let connection = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(ping_every)
        .keep_alive_timeout(ping_timeout)
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .enable_connect_protocol()
        .serve_connection(
            TokioIo::new(WriteDeadline::new(stream, write_timeout)),
            serve_request,
        );
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(target: "streampod::http", %peer, %error, "HTTP/2 connection ended with an error");
    }
}

/// Serves HTTP/1.1 with hyper: the header and keep-alive timeout, eviction at the
/// connection cap, graceful shutdown.
async fn serve_http<P: ModelSet>(
    service: StreampodService<P>,
    stream: impl Io,
    peer: SocketAddr,
    ticket: Ticket,
) {
    let config = &service.state().streams.config;
    let (header_timeout, write_timeout) = (config.http_header_timeout, config.http_write_timeout);
    let shutdown = service.handle().shutdown_signal().clone();
    let ticket = Arc::new(ticket);
    let watch = AnswerWatch::new(ticket.clone());
    let serve_request = {
        let (ticket, watch) = (ticket.clone(), watch.clone());
        service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let (service, ticket, watch) = (service.clone(), ticket.clone(), watch.clone());
            async move {
                ticket.busy();
                request.extensions_mut().insert(RemoteAddr(peer));
                request.extensions_mut().insert(HeldConnection {
                    _ticket: ticket.clone(),
                });
                let response = service.respond(request).await;
                let upgrade = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                Ok::<_, Infallible>(response.map(|body| watch.body(body, upgrade)))
            }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(
            TokioIo::new(watch.io(WriteDeadline::new(stream, write_timeout))),
            serve_request,
        )
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = ticket.evicted().cancelled() => {
            tracing::debug!(target: "streampod::http", %peer, "closed a waiting connection to admit a new one");
            return;
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(target: "streampod::http", %peer, %error, "HTTP connection ended with an error");
    }
}
