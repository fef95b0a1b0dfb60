//! WebSocket upgrades the convenience server answers itself. It reads the request head;
//! when that is an upgrade on the websocket path that passes the same checks as one
//! through hyper (`service::upgrade::check`), it writes the 101 and starts the session
//! on the socket directly: no HTTP connection state, no hand-off task waiting for the
//! upgrade, no boxed I/O under every read and write of the session. Anything else (other
//! requests, upgrades that are refused, heads this module does not parse) goes to hyper
//! with the bytes already read replayed first, and is answered exactly as before.
//!
//! Measured in a storm of 10,000 connections (BENCHMARKS.md, issue 16): the handshake
//! through hyper held two 8 KiB buffers per connection while it lasted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::transport::context::Io;
use crate::service::admission::Ticket;
use crate::protocol::ModelSet;
use crate::service::StreampodService;

/// The longest request head read here; a longer one goes to hyper as it is.
const HEAD_LIMIT: usize = 8 << 10;

/// The most headers a head read here may have; more go to hyper.
const MAX_HEADERS: usize = 32;

/// What [`read_head`] read.
#[derive(Debug)]
pub(crate) enum Head {
    /// A whole request head: the bytes read (the head, then whatever followed it) and
    /// the head's length.
    Complete(Bytes, usize),
    /// Bytes that are not a head parsed here (malformed, too long, too many headers, or
    /// cut by the peer's half-close): hyper answers them.
    Other(Bytes),
    /// The peer closed without sending anything.
    Closed,
}

/// Reads until the request head is complete (or is not one parsed here).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Head> {
    let mut read = BytesMut::with_capacity(1024);
    loop {
        if read.len() == read.capacity() {
            read.reserve(read.len());
        }
        if io.read_buf(&mut read).await? == 0 {
            return Ok(if read.is_empty() {
                Head::Closed
            } else {
                Head::Other(read.freeze())
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&read) {
            Ok(httparse::Status::Complete(len)) => return Ok(Head::Complete(read.freeze(), len)),
            Ok(httparse::Status::Partial) if read.len() < HEAD_LIMIT => {}
            _ => return Ok(Head::Other(read.freeze())),
        }
    }
}

/// The head in `bytes` (its first `len` bytes) as a request, its header values sharing
/// `bytes`; `None` when it has a body or anything [`http`] does not accept (hyper then
/// answers it).
fn request(bytes: &Bytes, len: usize) -> Option<Request<()>> {
    let head = bytes.get(..len)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    if !parsed.parse(head).ok()?.is_complete() {
        return None;
    }
    let mut request = Request::new(());
    *request.method_mut() = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    *request.version_mut() = match parsed.version? {
        1 => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    *request.uri_mut() = Uri::from_maybe_shared(bytes.slice_ref(parsed.path?.as_bytes())).ok()?;
    let map = request.headers_mut();
    map.reserve(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            return None;
        }
        map.append(name, HeaderValue::from_maybe_shared(bytes.slice_ref(header.value)).ok()?);
    }
    Some(request)
}

/// Starts a session on `stream` when the head in `bytes` is an upgrade `service`
/// accepts (writing the 101 first); otherwise gives the bytes back for hyper. `ticket`
/// (the connection's place) is held until the session ends.
pub(crate) async fn upgrade<P: ModelSet, S: Io>(
    service: &StreampodService<P>,
    bytes: Bytes,
    len: usize,
    mut stream: S,
    peer: SocketAddr,
    ticket: Ticket,
) -> Option<(Bytes, S, Ticket)> {
    let Some(accepted) = request(&bytes, len).and_then(|r| service.accept_websocket(&r)) else {
        return Some((bytes, stream, ticket));
    };
    ticket.busy();
    let head = accepted.response_head();
    if let Err(error) = async {
        stream.write_all(&head).await?;
        stream.flush().await
    }
    .await
    {
        tracing::debug!(target: "streampod::http", %peer, %error, "WebSocket upgrade failed");
        return None;
    }
    // What the client sent after its head (frames it did not wait to send) is read first.
    let rest = Prefixed::new(bytes.slice(len..), stream);
    let session = service.session(accepted, rest, peer);
    // A task of its own: the handshake's state is freed now, not kept for the socket's
    // whole life.
    service
        .handle()
        .tasks()
        .spawn(session.map(move |()| drop(ticket)));
    None
}

/// A stream whose first bytes were already read: reads replay them, then go on.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    /// Bytes still to replay; an empty one holds no buffer.
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read first.
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        let prefix = if prefix.is_empty() { Bytes::new() } else { prefix };
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let take = self.prefix.len().min(buf.remaining());
        buf.put_slice(self.prefix.get(..take).unwrap_or_default());
        self.prefix.advance(take);
        if self.prefix.is_empty() {
            // Let the head's buffer go.
            self.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that sends `parts`, one read each, then closes.
    struct Parts(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Parts {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut part) = self.0.pop_front() {
                let rest = part.split_off(part.len().min(buf.remaining()));
                buf.put_slice(&part);
                if !rest.is_empty() {
                    self.0.push_front(rest);
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn head_of(parts: &[&[u8]]) -> Head {
        let mut peer = Parts(parts.iter().map(|p| p.to_vec()).collect());
        read_head(&mut peer).await.expect("read")
    }

    const UPGRADE: &[u8] = b"GET /websocket?auth=k HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[tokio::test]
    async fn a_head_split_anywhere_is_read_whole_with_what_followed() {
        for cut in 1..UPGRADE.len() {
            let (first, second) = UPGRADE.split_at(cut);
            let Head::Complete(bytes, len) = head_of(&[first, second, b"\x81\x80"]).await else {
                panic!("a head cut at {cut} is read whole");
            };
            assert_eq!(len, UPGRADE.len());
            assert!(bytes.len() >= len, "what followed may be read too");
            let request = request(&bytes, len).expect("a request");
            assert_eq!(request.uri().query(), Some("auth=k"));
            assert_eq!(request.headers().len(), 5);
        }
    }

    #[tokio::test]
    async fn heads_not_parsed_here_go_to_hyper_whole() {
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; HEAD_LIMIT]].concat();
        let not_http = b"\x16\x03\x01 a TLS hello".as_slice();
        let cut = b"GET / HTTP/1.1\r\nHost".as_slice();
        for sent in [&long[..], not_http, cut] {
            let Head::Other(bytes) = head_of(&[sent]).await else {
                panic!("{:?} goes to hyper", String::from_utf8_lossy(sent));
            };
            // Every byte read is replayed; a long head is not read to its end here.
            assert!(sent.starts_with(&bytes), "the bytes read are the bytes sent");
            assert!(bytes.len() == sent.len() || bytes.len() >= HEAD_LIMIT);
        }
        assert!(matches!(head_of(&[]).await, Head::Closed));
    }

    #[test]
    fn a_head_with_a_body_is_left_to_hyper() {
        let with_body = b"GET /websocket HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        let bytes = Bytes::from_static(with_body);
        assert!(request(&bytes, with_body.len() - 2).is_none());
    }

    #[tokio::test]
    async fn a_prefixed_stream_replays_then_reads_on_and_lets_the_prefix_go() {
        let prefix = Bytes::from_static(b"head+");
        let mut stream = Prefixed::new(prefix.slice(5..), std::io::Cursor::new(b"rest".to_vec()));
        let mut all = String::new();
        stream.read_to_string(&mut all).await.expect("read");
        assert_eq!(all, "rest");

        let mut stream = Prefixed::new(prefix.slice(..5), std::io::Cursor::new(b"rest".to_vec()));
        let mut first = [0_u8; 3];
        stream.read_exact(&mut first).await.expect("read");
        assert_eq!(&first, b"hea");
        let mut all = String::new();
        stream.read_to_string(&mut all).await.expect("read");
        assert_eq!(all, "d+rest");
        assert!(stream.prefix.is_empty());
    }
}
