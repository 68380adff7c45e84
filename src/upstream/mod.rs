//! Upstreams: pools of endpoints behind one pooled keep-alive client each, with load balancing,
//! passive outlier ejection, optional active health checks, retries, and TLS/mTLS to `https://`
//! endpoints.

pub mod body;
pub mod pool;
pub mod registry;

use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock, Weak};
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version, header};
use rustls::RootCertStore;
use tracing::{info, warn};

use crate::authn::tls;
use crate::config::{ConfigFile, LoadBalancing, RawHealthCheck, RawUpstream, UpstreamProtocol};
use crate::telemetry::metrics::{Metrics, UpstreamMetrics, UpstreamOutcome};
use crate::upstream::body::{BodyFault, BodyMeter, UpstreamBody};
use crate::upstream::pool::{Connector, EndpointPool, ResponseBody, SendError};
use crate::upstream::registry::Definition;

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
    /// The client's request body failed while it was being sent: the client's fault, never
    /// counted against the endpoint.
    #[error("{0}")]
    Client(BodyFault),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable { .. } | Self::Failed { .. } => StatusCode::BAD_GATEWAY,
            Self::NoEndpoint { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Client(BodyFault::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Client(BodyFault::Stalled(_)) => StatusCode::REQUEST_TIMEOUT,
            Self::Client(BodyFault::Unreadable(_)) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request ready to go upstream, minus the endpoint.
pub struct Outbound {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
    /// The body's progress, when there is a body.
    pub meter: Option<Arc<BodyMeter>>,
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
    /// What it was compiled from: an unchanged definition keeps this upstream across reloads.
    definition: Definition,
    /// Background tasks start once per upstream, however many snapshots share it.
    background: Once,
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
        definition: Definition,
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
            definition,
            background: Once::new(),
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
            let result = within_deadline(
                endpoint.pool.send(&self.connector, req),
                &out.meter,
                timeout,
            )
            .await;
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
                Err(Elapsed) => {
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
            // A body that failed by the client's doing (too slow, too large, malformed) is what
            // broke the attempt: the client's fault, not the endpoint's.
            if let Some(fault) = out.meter.as_ref().and_then(|m| m.fault()) {
                self.metrics.record(UpstreamOutcome::ClientError, elapsed);
                return Err(ForwardError::Client(fault.clone()));
            }
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

    /// The request for one attempt. Headers are copied only while another attempt may follow.
    fn build(&self, out: &mut Outbound, endpoint: &Endpoint, last: bool) -> Request<UpstreamBody> {
        let mut headers = if last {
            std::mem::take(&mut out.headers)
        } else {
            out.headers.clone()
        };
        let (uri, version) = match self.protocol {
            UpstreamProtocol::Http1 => (Uri::from(out.path_and_query.clone()), Version::HTTP_11),
            UpstreamProtocol::H2 => {
                // The request's authority (what routing saw) becomes :authority; a Host beside
                // it would make the request malformed.
                let authority = headers
                    .remove(header::HOST)
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                    .unwrap_or_else(|| endpoint.authority.clone());
                (
                    self.absolute_uri(authority, out.path_and_query.clone()),
                    Version::HTTP_2,
                )
            }
        };
        let mut req = Request::new(if out.retryable {
            UpstreamBody::Empty
        } else {
            std::mem::replace(&mut out.body, UpstreamBody::Empty)
        });
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        *req.version_mut() = version;
        req
    }

    /// `scheme://authority/path?query`, how HTTP/2 carries `:scheme` and `:authority`.
    fn absolute_uri(&self, authority: Authority, pq: PathAndQuery) -> Uri {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(pq)
            .build()
            .unwrap_or_default()
    }
}

/// The upstream's time to answer ran out.
struct Elapsed;

/// Runs `send` until the upstream's answer is due: `timeout` from the start for a bodiless
/// request; with a body, `timeout` after the body was complete or last taken by the upstream,
/// and no upstream deadline while the client is the one not sending (the body's own stall
/// timer fails it then, as the client's fault).
async fn within_deadline<F: Future>(
    send: F,
    meter: &Option<Arc<BodyMeter>>,
    timeout: Duration,
) -> Result<F::Output, Elapsed> {
    let Some(meter) = meter else {
        return tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| Elapsed);
    };
    let send = std::pin::pin!(send);
    let mut send = send;
    // Re-checked at most every `timeout / 4` (and at least every second) while it is open.
    let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let wake = match meter.upstream_deadline(timeout) {
            Some(d) if d <= Instant::now() => return Err(Elapsed),
            Some(d) => d.min(Instant::now() + tick),
            None => Instant::now() + tick,
        };
        tokio::select! {
            out = send.as_mut() => return Ok(out),
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
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
        u.background.call_once(|| {
            tokio::spawn(sweep_loop(Arc::downgrade(u)));
            if u.health_check.is_some() {
                tokio::spawn(health_check_loop(Arc::downgrade(u)));
            }
        });
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
        let mut req = Request::new(UpstreamBody::Empty);
        if self.protocol == UpstreamProtocol::H2 {
            *req.uri_mut() = self.absolute_uri(e.authority.clone(), pq);
            *req.version_mut() = Version::HTTP_2;
        } else {
            *req.uri_mut() = Uri::from(pq);
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
