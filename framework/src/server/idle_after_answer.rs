//! When an HTTP connection counts as idle again (evictable at the connection cap, see
//! `service::admission`): once its answer is written to the socket, not when the handler
//! returns it. The answer's body notes that hyper took all of it; the connection's
//! next completed flush (hyper flushes only once its buffer is empty) marks it idle.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::service::admission::Ticket;
use crate::service::ResponseBody;

/// What an answer's body and its connection share.
#[derive(Debug)]
pub(crate) struct AnswerWatch {
    ticket: Arc<Ticket>,
    /// Set when hyper took a whole answer; cleared when it reached the socket.
    handed_over: AtomicBool,
}

impl AnswerWatch {
    pub(crate) fn new(ticket: Arc<Ticket>) -> Arc<Self> {
        Arc::new(Self {
            ticket,
            handed_over: AtomicBool::new(false),
        })
    }

    /// `body`, reporting here when hyper is done with it; an upgrade's stays busy.
    pub(crate) fn body(self: &Arc<Self>, body: ResponseBody, upgrade: bool) -> WatchedBody {
        WatchedBody {
            body,
            watch: (!upgrade).then(|| self.clone()),
        }
    }

    /// `io`, marking the connection idle when a handed-over answer is flushed.
    pub(crate) fn io<S>(self: &Arc<Self>, io: S) -> WatchedIo<S> {
        WatchedIo {
            inner: io,
            watch: self.clone(),
        }
    }
}

/// An answer's body that tells its [`AnswerWatch`] when hyper has taken all of it.
pub(crate) struct WatchedBody {
    body: ResponseBody,
    watch: Option<Arc<AnswerWatch>>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.handed_over.store(true, Ordering::Release);
        }
    }
}

/// A connection's socket that marks it idle once a handed-over answer is flushed.
pub(crate) struct WatchedIo<S> {
    inner: S,
    watch: Arc<AnswerWatch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
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
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(())))
            && self.watch.handed_over.swap(false, Ordering::AcqRel)
        {
            self.watch.ticket.idle();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
