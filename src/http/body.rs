//! The response body certgate answers with: the upstream's, streamed, or a small local one.
//! It counts what it yields and records the exchange ([`super::record`]) when it ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

use super::record::Exchange;
use crate::upstream::pool::ResponseBody;

/// Response body: streamed from the upstream or a small local answer. Counts the bytes it
/// yields and records the exchange when it is dropped (after the last frame, or when the client
/// goes away).
pub struct ProxyBody {
    pub(super) inner: Inner,
    pub(super) exchange: Option<Box<Exchange>>,
}

pub(super) enum Inner {
    Upstream(ResponseBody),
    Local(Full<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Upstream(b) => Pin::new(b).poll_frame(cx),
            Inner::Local(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never: Infallible| match never {}))),
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(x)) = (&polled, this.exchange.as_mut())
            && let Some(data) = frame.data_ref()
        {
            x.bytes_out += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Local(b) => b.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(x) = self.exchange.take() {
            x.finish();
        }
    }
}
