//! Upstreams: pools of endpoints behind one pooled keep-alive client each, with load balancing,
//! passive outlier ejection, optional active health checks, retries, and TLS/mTLS to `https://`
//! endpoints.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use rustls::RootCertStore;
use tracing::{info, warn};

use crate::config::{ConfigFile, LoadBalancing, RawHealthCheck, RawUpstream, UpstreamProtocol};
use crate::metrics::{Metrics, UpstreamMetrics, UpstreamOutcome};
use crate::pool::{Connector, EndpointPool, ResponseBody, SendError};
use crate::tls;

type BoxError = Box<dyn StdError + Send + Sync>;

// === request bodies ===

/// Byte count and limit of one request body on its way upstream.
pub struct BodyMeter {
    bytes: AtomicU64,
    limit: u64,
    exceeded: AtomicBool,
}

impl BodyMeter {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicU64::new(0),
            limit,
            exceeded: AtomicBool::new(false),
        })
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// True once the body went over the limit (and was cut off).
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {0} bytes")]
pub struct BodyTooLarge(u64);

/// A client's request body forwarded upstream: streamed and metered, or empty.
pub enum UpstreamBody {
    Stream {
        inner: Incoming,
        meter: Arc<BodyMeter>,
    },
    Empty,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let UpstreamBody::Stream { inner, meter } = this else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let total = meter.bytes.fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if total > meter.limit {
                        meter.exceeded.store(true, Ordering::Relaxed);
                        let limit = meter.limit;
                        if let UpstreamBody::Stream { inner, .. } =
                            std::mem::replace(this, UpstreamBody::Empty)
                        {
                            tokio::spawn(discard_rest(inner));
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
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

/// Reads and drops what remains of a request body cut off at its limit, for a bounded time and
/// amount, so that the client finishes sending and reads the 413 instead of a connection reset
/// (what nginx calls a lingering close). Past the bounds the body is dropped and the connection
/// closes.
async fn discard_rest(mut body: Incoming) {
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

// === endpoints ===

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One endpoint of a pool and what passive and active checks know about it.
pub struct Endpoint {
    pub authority: Authority,
    pool: Arc<EndpointPool>,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    in_flight: AtomicU32,
    /// Active health: false after `unhealthy_threshold` failed checks.
    healthy: AtomicBool,
    hc_streak: AtomicU32,
}

impl Endpoint {
    fn new(authority: Authority) -> Self {
        Self {
            pool: EndpointPool::new(authority.clone()),
            authority,
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            hc_streak: AtomicU32::new(0),
        }
    }

    fn available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until_ms.load(Ordering::Relaxed) <= now
    }
}

/// Decrements an endpoint's in-flight count when an attempt ends.
struct InFlight<'a>(&'a Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why forwarding failed; decides the status, the metric outcome and the log wording.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream {upstream} ({endpoint}) did not answer within {timeout:?}")]
    Timeout {
        upstream: String,
        endpoint: String,
        timeout: Duration,
    },
    #[error("upstream {upstream} ({endpoint}) unreachable: {detail}")]
    Unreachable {
        upstream: String,
        endpoint: String,
        detail: String,
    },
    #[error("upstream {upstream} ({endpoint}) failed: {detail}")]
    Failed {
        upstream: String,
        endpoint: String,
        detail: String,
    },
    #[error("upstream {upstream}: no healthy endpoint")]
    NoEndpoint { upstream: String },
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable { .. } | Self::Failed { .. } => StatusCode::BAD_GATEWAY,
            Self::NoEndpoint { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A request ready to go upstream, minus the endpoint.
pub struct Outbound {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
    /// Safe to send again: idempotent method and no body.
    pub retryable: bool,
}

/// One compiled upstream pool.
pub struct Upstream {
    pub name: String,
    pub scheme: Scheme,
    pub endpoints: Vec<Endpoint>,
    pub lb: LoadBalancing,
    pub protocol: UpstreamProtocol,
    /// Time allowed for the upstream to produce response headers.
    pub timeout: Duration,
    retries: u32,
    retry_on_status: Vec<u16>,
    eject_after: u32,
    ejection_time: Duration,
    health_check: Option<RawHealthCheck>,
    connector: Connector,
    pub metrics: UpstreamMetrics,
    next: AtomicUsize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("endpoints", &self.endpoint_list())
            .finish()
    }
}

impl Upstream {
    /// Compiles `[upstreams.NAME]`. Errors are `(key, problem)`.
    pub fn compile(
        name: &str,
        raw: &RawUpstream,
        file: &ConfigFile,
        metrics: &Metrics,
    ) -> Result<Self, (&'static str, String)> {
        let (key, urls): (&'static str, Vec<&String>) = match (&raw.url, &raw.endpoints) {
            (Some(u), None) => ("url", vec![u]),
            (None, Some(list)) if !list.is_empty() => ("endpoints", list.iter().collect()),
            (None, Some(_)) => return Err(("endpoints", "must list at least one URL".into())),
            (Some(_), Some(_)) => {
                return Err(("url", "give either url or endpoints, not both".into()));
            }
            (None, None) => return Err(("url", "missing: give url or endpoints".into())),
        };
        let mut scheme: Option<Scheme> = None;
        let mut endpoints = Vec::new();
        for u in urls {
            let uri: Uri = u
                .parse()
                .map_err(|e| (key, format!("{u:?} is not a URL: {e}")))?;
            let s = uri
                .scheme()
                .cloned()
                .ok_or((key, format!("{u:?}: missing scheme (http:// or https://)")))?;
            if s != Scheme::HTTP && s != Scheme::HTTPS {
                return Err((
                    key,
                    format!("{u:?}: scheme {s} is not supported; use http:// or https://"),
                ));
            }
            if scheme.as_ref().is_some_and(|prev| *prev != s) {
                return Err((key, "all endpoints must use the same scheme".into()));
            }
            let authority = uri
                .authority()
                .cloned()
                .ok_or((key, format!("{u:?}: missing host")))?;
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                return Err((
                    key,
                    format!(
                        "{u:?}: must be scheme://host:port only; the request path is forwarded as is"
                    ),
                ));
            }
            scheme = Some(s);
            endpoints.push(Endpoint::new(authority));
        }
        let scheme = scheme.unwrap_or(Scheme::HTTP);
        if raw.timeout.is_zero() {
            return Err(("timeout", "must be greater than zero".into()));
        }
        if let Some(hc) = &raw.health_check {
            if !hc.path.starts_with('/') {
                return Err(("health_check", "path must start with '/'".into()));
            }
            if hc.interval.is_zero() || hc.timeout.is_zero() {
                return Err((
                    "health_check",
                    "interval and timeout must be greater than zero".into(),
                ));
            }
        }
        if raw.eject_after == 0 {
            return Err(("eject_after", "must be at least 1".into()));
        }
        if let Some(s) = raw
            .retry_on_status
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(("retry_on_status", format!("{s} is not an HTTP status")));
        }
        let mut tls = client_tls(raw, &scheme, file)?;
        tls.alpn_protocols = vec![match raw.protocol {
            UpstreamProtocol::Http1 => b"http/1.1".to_vec(),
            UpstreamProtocol::H2 => b"h2".to_vec(),
        }];
        let server_name = match &raw.server_name {
            Some(n) => Some(
                rustls::pki_types::ServerName::try_from(n.clone())
                    .map_err(|e| ("server_name", format!("{n:?}: {e}")))?,
            ),
            None => None,
        };
        let upstream_metrics = metrics.upstream(name);
        let connector = Connector {
            protocol: raw.protocol,
            tls: (scheme == Scheme::HTTPS).then(|| Arc::new(tls)),
            server_name,
            connect_timeout: raw.connect_timeout,
            idle_timeout: raw.idle_timeout,
            opened: upstream_metrics.connections.clone(),
        };
        Ok(Self {
            name: name.to_string(),
            scheme,
            endpoints,
            lb: raw.lb,
            protocol: raw.protocol,
            timeout: raw.timeout,
            retries: raw.retries,
            retry_on_status: raw.retry_on_status.clone(),
            eject_after: raw.eject_after,
            ejection_time: raw.ejection_time,
            health_check: raw.health_check.clone(),
            connector,
            metrics: upstream_metrics,
            next: AtomicUsize::new(0),
        })
    }

    /// `scheme://host:port, …` for humans.
    pub fn endpoint_list(&self) -> String {
        self.endpoints
            .iter()
            .map(|e| format!("{}://{}", self.scheme, e.authority))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Chooses an endpoint that is neither ejected nor unhealthy, avoiding `tried` when possible.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let ok = |i: usize| self.endpoints[i].available(now);
        self.pick_among(|i| ok(i) && !tried.contains(&i))
            .or_else(|| self.pick_among(ok))
    }

    fn pick_among(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let first = (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))?;
        if self.lb == LoadBalancing::RoundRobin || n == 1 {
            return Some(first);
        }
        // Power of two choices: a second eligible endpoint from a random offset.
        let offset = fastrand::usize(1..n);
        let second = (0..n)
            .map(|k| (first + offset + k) % n)
            .find(|&i| i != first && eligible(i));
        match second {
            Some(s)
                if self.endpoints[s].in_flight.load(Ordering::Relaxed)
                    < self.endpoints[first].in_flight.load(Ordering::Relaxed) =>
            {
                Some(s)
            }
            _ => Some(first),
        }
    }

    /// Passive outlier detection: consecutive connect failures or 5xx eject an endpoint.
    fn report(&self, i: usize, success: bool) {
        let e = &self.endpoints[i];
        if success {
            e.consecutive_failures.store(0, Ordering::Relaxed);
            e.ejections.store(0, Ordering::Relaxed);
            return;
        }
        let failures = e.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.eject_after {
            e.consecutive_failures.store(0, Ordering::Relaxed);
            let n = e.ejections.fetch_add(1, Ordering::Relaxed).min(10);
            let ms = (self.ejection_time.as_millis() as u64).saturating_mul(1 << n);
            e.ejected_until_ms.store(now_ms() + ms, Ordering::Relaxed);
            self.metrics.ejected();
            warn!(
                upstream = %self.name,
                endpoint = %e.authority,
                failures,
                ejected_for_ms = ms,
                "endpoint ejected after consecutive failures"
            );
        }
    }

    /// Sends `out` to an endpoint, retrying idempotent bodiless requests on another endpoint.
    pub async fn forward(
        &self,
        mut out: Outbound,
        timeout: Duration,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        let attempts = if out.retryable { 1 + self.retries } else { 1 };
        // Attempts are few (1 + retries): a fixed array avoids an allocation per request.
        let mut tried_buf = [usize::MAX; 8];
        let mut tried_len = 0;
        let mut last_err = None;
        for attempt in 0..attempts {
            let Some(i) = self.pick(&tried_buf[..tried_len]) else {
                // Everything this request tried got ejected: report what actually happened.
                if let Some(e) = last_err {
                    return Err(e);
                }
                self.metrics
                    .record(UpstreamOutcome::NoEndpoint, Duration::ZERO);
                return Err(ForwardError::NoEndpoint {
                    upstream: self.name.clone(),
                });
            };
            if let Some(slot) = tried_buf.get_mut(tried_len) {
                *slot = i;
                tried_len += 1;
            }
            if attempt > 0 {
                self.metrics.retried();
            }
            let last = attempt + 1 == attempts;
            let endpoint = &self.endpoints[i];
            let req = self.build(&mut out, endpoint, last);
            endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
            let _in_flight = InFlight(endpoint);
            let started = Instant::now();
            let result =
                tokio::time::timeout(timeout, endpoint.pool.send(&self.connector, req)).await;
            let elapsed = started.elapsed();
            let err = match result {
                Ok(Ok(resp)) => {
                    self.metrics.record(UpstreamOutcome::Response, elapsed);
                    let status = resp.status();
                    self.report(i, !status.is_server_error());
                    if !last && self.retry_on_status.contains(&status.as_u16()) {
                        continue;
                    }
                    return Ok(resp);
                }
                Err(_) => {
                    self.metrics.record(UpstreamOutcome::Timeout, elapsed);
                    self.report(i, false);
                    // The request may have been processed: do not send it again.
                    return Err(ForwardError::Timeout {
                        upstream: self.name.clone(),
                        endpoint: endpoint.authority.to_string(),
                        timeout,
                    });
                }
                Ok(Err(e)) => e,
            };
            let endpoint_name = endpoint.authority.to_string();
            last_err = Some(match err {
                SendError::Connect(err) => {
                    self.metrics.record(UpstreamOutcome::ConnectError, elapsed);
                    self.report(i, false);
                    ForwardError::Unreachable {
                        upstream: self.name.clone(),
                        endpoint: endpoint_name,
                        detail: error_chain(&*err),
                    }
                }
                SendError::Request(err) => {
                    self.metrics.record(UpstreamOutcome::Error, elapsed);
                    ForwardError::Failed {
                        upstream: self.name.clone(),
                        endpoint: endpoint_name,
                        detail: error_chain(&err),
                    }
                }
            });
        }
        Err(last_err.unwrap_or(ForwardError::NoEndpoint {
            upstream: self.name.clone(),
        }))
    }

    /// HTTP/1.1 sends the origin form (`/path?query`); HTTP/2 takes `:scheme` and `:authority`
    /// from an absolute URI.
    fn request_uri(&self, endpoint: &Endpoint, pq: PathAndQuery) -> Uri {
        match self.protocol {
            UpstreamProtocol::Http1 => Uri::from(pq),
            UpstreamProtocol::H2 => Uri::builder()
                .scheme(self.scheme.clone())
                .authority(endpoint.authority.clone())
                .path_and_query(pq)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The request for one attempt. Headers are copied only while another attempt may follow.
    fn build(&self, out: &mut Outbound, endpoint: &Endpoint, last: bool) -> Request<UpstreamBody> {
        let uri = self.request_uri(endpoint, out.path_and_query.clone());
        let mut req = Request::new(if out.retryable {
            UpstreamBody::Empty
        } else {
            std::mem::replace(&mut out.body, UpstreamBody::Empty)
        });
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = if last {
            std::mem::take(&mut out.headers)
        } else {
            out.headers.clone()
        };
        *req.version_mut() = match self.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::H2 => {
                // :authority names the endpoint; a differing Host would make the request malformed.
                req.headers_mut().remove(header::HOST);
                Version::HTTP_2
            }
        };
        req
    }
}

/// `a: b: c` from an error and its sources, for logs (e.g. the TLS verification failure).
fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The rustls client config for an upstream: verification roots, optional client certificate.
fn client_tls(
    raw: &RawUpstream,
    scheme: &Scheme,
    file: &ConfigFile,
) -> Result<rustls::ClientConfig, (&'static str, String)> {
    let https = *scheme == Scheme::HTTPS;
    if !https {
        for (key, set) in [
            ("ca", raw.ca.is_some()),
            ("server_name", raw.server_name.is_some()),
            ("client_cert", raw.client_cert.is_some()),
            ("client_key", raw.client_key.is_some()),
        ] {
            if set {
                return Err((key, "only applies to https:// endpoints".into()));
            }
        }
    }
    let mut roots = RootCertStore::empty();
    if https {
        match &raw.ca {
            Some(p) => {
                for c in tls::load_certs(&file.resolve(p)).map_err(|e| ("ca", e))? {
                    roots
                        .add(c)
                        .map_err(|e| ("ca", format!("not a usable CA certificate: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err((
                        "ca",
                        "no system CA roots found (install ca-certificates) and no ca given".into(),
                    ));
                }
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ("url", e.to_string()))?
        .with_root_certificates(roots);
    match (&raw.client_cert, &raw.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(c), Some(k)) => {
            let chain = tls::load_certs(&file.resolve(c)).map_err(|e| ("client_cert", e))?;
            let key = tls::load_key(&file.resolve(k)).map_err(|e| ("client_key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("client_key", format!("does not fit client_cert: {e}")))
        }
        (Some(_), None) => Err(("client_key", "missing: client_cert needs client_key".into())),
        (None, Some(_)) => Err((
            "client_cert",
            "missing: client_key needs client_cert".into(),
        )),
    }
}

// === active health checks ===

/// Starts each upstream's background tasks: the idle-connection sweep and, with
/// `health_check`, the health checks. Each task ends when its upstream is dropped (its snapshot
/// was replaced).
pub fn spawn_background(upstreams: &[Arc<Upstream>]) {
    for u in upstreams {
        tokio::spawn(sweep_loop(Arc::downgrade(u)));
        if u.health_check.is_some() {
            tokio::spawn(health_check_loop(Arc::downgrade(u)));
        }
    }
}

async fn sweep_loop(upstream: Weak<Upstream>) {
    let every = match upstream.upgrade() {
        Some(u) => (u.connector.idle_timeout / 2).max(Duration::from_secs(1)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(u) = upstream.upgrade() else { return };
        for e in &u.endpoints {
            e.pool.sweep(u.connector.idle_timeout);
        }
    }
}

async fn health_check_loop(upstream: Weak<Upstream>) {
    loop {
        let Some(u) = upstream.upgrade() else { return };
        let Some(hc) = u.health_check.clone() else {
            return;
        };
        for (i, _) in u.endpoints.iter().enumerate() {
            let passed = u.probe(i, &hc).await;
            u.record_probe(i, passed, &hc);
        }
        drop(u);
        tokio::time::sleep(hc.interval).await;
    }
}

impl Upstream {
    async fn probe(&self, i: usize, hc: &RawHealthCheck) -> bool {
        let e = &self.endpoints[i];
        let Ok(pq) = PathAndQuery::try_from(hc.path.as_str()) else {
            return false;
        };
        let uri = self.request_uri(e, pq);
        let mut req = Request::new(UpstreamBody::Empty);
        *req.uri_mut() = uri;
        if self.protocol == UpstreamProtocol::H2 {
            *req.version_mut() = Version::HTTP_2;
        }
        matches!(
            tokio::time::timeout(hc.timeout, e.pool.send(&self.connector, req)).await,
            Ok(Ok(resp)) if resp.status().is_success()
        )
    }

    fn record_probe(&self, i: usize, passed: bool, hc: &RawHealthCheck) {
        let e = &self.endpoints[i];
        let was_healthy = e.healthy.load(Ordering::Relaxed);
        if passed == was_healthy {
            e.hc_streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = e.hc_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if passed {
            hc.healthy_threshold
        } else {
            hc.unhealthy_threshold
        };
        if streak >= threshold.max(1) {
            e.hc_streak.store(0, Ordering::Relaxed);
            e.healthy.store(passed, Ordering::Relaxed);
            if passed {
                // A passing health check also ends a passive ejection.
                e.ejected_until_ms.store(0, Ordering::Relaxed);
                info!(upstream = %self.name, endpoint = %e.authority, "endpoint healthy again");
            } else {
                warn!(upstream = %self.name, endpoint = %e.authority, path = %hc.path, "endpoint failed its health checks");
            }
        }
    }
}
