//! The client's stream as hyper sees it: counts the request bytes read (so that a header timeout
//! on an idle keep-alive connection can be told from a slow request head) and, on HTTP/2, watches
//! for PING/SETTINGS floods. A flooding client gets GOAWAY ENHANCE_YOUR_CALM between two of the
//! server's frames, then TLS close_notify, and the connection ends; if the server is mid-frame
//! or the client does not take the bytes within a second, the connection is cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::h2flood::FloodGuard;
use crate::http::ConnContext;
use crate::telemetry::metrics::Limit;

/// How long a flooding client has to take the GOAWAY before the connection is cut.
const CALM_DEADLINE: Duration = Duration::from_secs(1);

pub(super) struct ClientIo<T> {
    inner: T,
    ctx: Arc<ConnContext>,
    /// HTTP/2 only.
    flood: Option<FloodGuard>,
    /// A flood was seen: the GOAWAY on its way out.
    calming: Option<Calming>,
}

struct Calming {
    goaway: Vec<u8>,
    written: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<T> ClientIo<T> {
    pub(super) fn new(inner: T, ctx: Arc<ConnContext>, flood: Option<FloodGuard>) -> Self {
        Self {
            inner,
            ctx,
            flood,
            calming: None,
        }
    }
}

fn flood_error() -> io::Error {
    io::Error::other("HTTP/2 control-frame flood")
}

impl<T: AsyncRead + AsyncWrite + Unpin> ClientIo<T> {
    /// Writes the GOAWAY, then closes the TLS session; the read side reports the flood as an
    /// error once that is done (or at the deadline), which ends the connection.
    fn poll_calm(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(calm) = self.calming.as_mut() else {
            return Poll::Ready(Err(flood_error()));
        };
        while calm.written < calm.goaway.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &calm.goaway[calm.written..]) {
                Poll::Ready(Ok(n)) if n > 0 => calm.written += n,
                Poll::Ready(_) => return Poll::Ready(Err(flood_error())),
                Poll::Pending => {
                    return calm.deadline.as_mut().poll(cx).map(|()| Err(flood_error()));
                }
            }
        }
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Ready(_) => Poll::Ready(Err(flood_error())),
            Poll::Pending => calm.deadline.as_mut().poll(cx).map(|()| Err(flood_error())),
        }
    }

    fn flooded(&mut self, count: u32) {
        let goaway = self.flood.take().and_then(|g| g.goaway());
        let metrics = &self.ctx.gateway.telemetry.metrics;
        metrics.limit_hit(Limit::H2ControlFlood);
        tracing::warn!(
            target: "certgate::tls",
            client = %self.ctx.peer,
            client_subject = self.ctx.identity.as_ref().map(|i| i.subject.as_str()),
            count,
            answer = if goaway.is_some() { "GOAWAY ENHANCE_YOUR_CALM" } else { "connection cut" },
            "HTTP/2 PING/SETTINGS flood: connection closed"
        );
        self.calming = goaway.map(|goaway| Calming {
            goaway,
            written: 0,
            deadline: Box::pin(tokio::time::sleep(CALM_DEADLINE)),
        });
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.calming.is_some() {
            return this.poll_calm(cx);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.ctx.note_read(n);
            if let Some(guard) = &mut this.flood
                && let Err(count) = guard.inbound(&buf.filled()[before..])
            {
                // hyper never sees the flooding bytes.
                buf.set_filled(before);
                this.flooded(count);
                return this.poll_calm(cx);
            }
        }
        polled
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.calming.is_some() {
            // Nothing of hyper's may follow the GOAWAY.
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Some(guard), Poll::Ready(Ok(n))) = (&mut this.flood, &polled) {
            guard.outbound(&buf[..*n]);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.calming.is_some() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (Some(guard), Poll::Ready(Ok(n))) = (&mut this.flood, &polled) {
            let mut left = *n;
            for b in bufs {
                let take = left.min(b.len());
                guard.outbound(&b[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.calming.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.calming.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
