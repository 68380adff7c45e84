//! Upstreams: where allowed requests go, with a pooled keep-alive HTTP client each.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::RawUpstream;
use crate::metrics::{Metrics, UpstreamMetrics};

pub type HttpClient = Client<HttpConnector, CountingBody>;

/// A client's request body on its way upstream, streamed, counting the bytes that pass.
pub struct CountingBody {
    inner: Incoming,
    count: Arc<AtomicU64>,
}

impl CountingBody {
    pub fn new(inner: Incoming) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One compiled upstream.
pub struct Upstream {
    pub name: String,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Time allowed for the upstream to produce response headers.
    pub timeout: Duration,
    pub client: HttpClient,
    pub metrics: UpstreamMetrics,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("url", &format_args!("{}://{}", self.scheme, self.authority))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Upstream {
    /// Compiles `[upstreams.NAME]`. Errors are `(key, problem)`.
    pub fn compile(
        name: &str,
        raw: &RawUpstream,
        metrics: &Metrics,
    ) -> Result<Self, (&'static str, String)> {
        let uri: http::Uri = raw
            .url
            .parse()
            .map_err(|e| ("url", format!("{:?} is not a URL: {e}", raw.url)))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or(("url", "missing scheme (http://)".to_string()))?;
        if scheme != Scheme::HTTP {
            return Err((
                "url",
                format!("scheme {scheme:?} is not supported yet; use http://"),
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or(("url", "missing host".to_string()))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err((
                "url",
                "must be scheme://host:port only; the request path is forwarded as is".to_string(),
            ));
        }
        if raw.timeout.is_zero() {
            return Err(("timeout", "must be greater than zero".to_string()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(raw.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            name: name.to_string(),
            scheme,
            authority,
            timeout: raw.timeout,
            client,
            metrics: metrics.upstream(name),
        })
    }
}
