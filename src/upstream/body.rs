//! A client's request body on its way upstream: streamed, counted, held to the route's size limit
//! and to `listener.request_body_timeout`, and — when it fails — blamed on the client, so that a
//! slow, oversized or malformed body never counts against an upstream endpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a request body failed, by the client's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyFault {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("request body stalled for more than {0:?}")]
    Stalled(Duration),
    #[error("request body could not be read: {0}")]
    Unreadable(String),
}

const OPEN: u8 = 0;
const COMPLETE: u8 = 1;
const FAULT: u8 = 2;

/// Progress of one request body, shared between the body (which the upstream connection polls)
/// and the request that waits for the upstream's answer.
pub struct BodyMeter {
    bytes: AtomicU64,
    limit: u64,
    stall_timeout: Duration,
    state: AtomicU8,
    fault: std::sync::OnceLock<BodyFault>,
    /// Milliseconds since `start` at the last frame (or the end).
    progress_ms: AtomicU64,
    /// The last poll found no data from the client: a deadline passing now is the client's
    /// fault, not the upstream's (which is not reading when this is false).
    waiting_on_client: AtomicBool,
    start: Instant,
}

impl BodyMeter {
    pub fn new(limit: u64, stall_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicU64::new(0),
            limit,
            stall_timeout,
            state: AtomicU8::new(OPEN),
            fault: std::sync::OnceLock::new(),
            progress_ms: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
            start: Instant::now(),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Why the body failed, when the client made it fail.
    pub fn fault(&self) -> Option<&BodyFault> {
        self.fault.get()
    }

    fn fail(&self, fault: BodyFault) -> BodyFault {
        let _ = self.fault.set(fault.clone());
        self.state.store(FAULT, Ordering::Release);
        fault
    }

    fn progressed(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.progress_ms.store(ms, Ordering::Relaxed);
    }

    /// When the wait for the upstream's answer runs out: `response_timeout` after the body was
    /// complete (Envoy's route timeout starts there too), or after the upstream last took a
    /// chunk; while the client is the one not sending, the stall timeout governs and the body
    /// itself fails (so `None`: no upstream deadline now).
    pub fn upstream_deadline(&self, response_timeout: Duration) -> Option<Instant> {
        let last = self.start + Duration::from_millis(self.progress_ms.load(Ordering::Relaxed));
        match self.state.load(Ordering::Acquire) {
            OPEN if self.waiting_on_client.load(Ordering::Relaxed) => None,
            FAULT => None,
            _ => Some(last + response_timeout),
        }
    }
}

/// A client's request body forwarded upstream: streamed and metered, or empty.
pub enum UpstreamBody {
    Stream {
        inner: Incoming,
        meter: Arc<BodyMeter>,
        /// Armed while the client sends nothing; boxed and made on the first wait only.
        stall: Option<Pin<Box<tokio::time::Sleep>>>,
    },
    Empty,
}

impl UpstreamBody {
    pub fn stream(inner: Incoming, meter: Arc<BodyMeter>) -> Self {
        Self::Stream {
            inner,
            meter,
            stall: None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let UpstreamBody::Stream {
            inner,
            meter,
            stall,
        } = this
        else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                meter.waiting_on_client.store(false, Ordering::Relaxed);
                meter.progressed();
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    let total = meter.bytes.fetch_add(n, Ordering::Relaxed) + n;
                    if total > meter.limit {
                        let fault = meter.fail(BodyFault::TooLarge(meter.limit));
                        if let UpstreamBody::Stream { inner, .. } =
                            std::mem::replace(this, UpstreamBody::Empty)
                        {
                            tokio::spawn(discard_rest(inner));
                        }
                        return Poll::Ready(Some(Err(Box::new(fault))));
                    }
                }
                if inner.is_end_stream() {
                    meter.state.store(COMPLETE, Ordering::Release);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = meter.fail(BodyFault::Unreadable(e.to_string()));
                Poll::Ready(Some(Err(Box::new(fault))))
            }
            Poll::Ready(None) => {
                meter.progressed();
                meter.state.store(COMPLETE, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => {
                meter.waiting_on_client.store(true, Ordering::Relaxed);
                let deadline = tokio::time::Instant::from_std(
                    meter.start
                        + Duration::from_millis(meter.progress_ms.load(Ordering::Relaxed))
                        + meter.stall_timeout,
                );
                let timer =
                    stall.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    let fault = meter.fail(BodyFault::Stalled(meter.stall_timeout));
                    return Poll::Ready(Some(Err(Box::new(fault))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Stream { inner, .. } => inner.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Stream { inner, .. } => inner.size_hint(),
            UpstreamBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Reads and drops what remains of a request body that will not be forwarded (over its limit),
/// for a bounded time and amount, so that the client finishes sending and reads the answer
/// instead of a connection reset (what nginx calls a lingering close). Past the bounds the body
/// is dropped and the connection closes.
pub async fn discard_rest(mut body: Incoming) {
    const MAX_BYTES: usize = 8 << 20;
    const MAX_TIME: Duration = Duration::from_secs(5);
    let mut left = MAX_BYTES;
    let _ = tokio::time::timeout(MAX_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n >= left {
                return;
            }
            left -= n;
        }
    })
    .await;
}
