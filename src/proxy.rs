//! The request path: normalise → route and authorise → prepare the upstream request → forward →
//! record. Each phase is a function of its own; [`Exchange`] carries what the final record needs
//! and is recorded exactly once, when the response body ends or is dropped.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::identity::ClientIdentity;
use crate::inventory;
use crate::metrics::Limit;
use crate::path;
use crate::policy::{DecidedBy, RequestParts, Route, Verdict};
use crate::pool::ResponseBody;
use crate::server::Gateway;
use crate::snapshot::{Snapshot, coarse_unix_now, unix_now};
use crate::tls::HandshakeResult;
use crate::upstream::{BodyMeter, Outbound, UpstreamBody};
use rustls::pki_types::{CertificateDer, UnixTime};

/// Per-connection state shared by every request on the connection.
pub struct ConnContext {
    /// Each request reads the gateway's current snapshot once and uses it to the end.
    pub gateway: Arc<Gateway>,
    /// `None` when the client presented no certificate (optional mode).
    pub identity: Option<Arc<ClientIdentity>>,
    /// The identity's inventory entry.
    pub inventory: Option<Arc<inventory::Entry>>,
    pub peer: SocketAddr,
    /// The peer IP, preformatted for `x-forwarded-for`.
    peer_ip: HeaderValue,
    /// Requests seen on this connection, for `max_requests_per_connection`.
    requests: AtomicU64,
    /// Request bytes read from the client, and that count when the last response ended: equal
    /// means the connection sat idle between requests (see `idle_after_response`).
    bytes_read: AtomicU64,
    bytes_read_at_response: AtomicU64,
    max_requests: u64,
    /// Intermediates the client presented (the leaf is in `identity`), to re-verify the chain
    /// after a reload.
    intermediates: Vec<CertificateDer<'static>>,
    /// The snapshot generation the chain was last verified against.
    verified_generation: AtomicU64,
    /// Signalled when the connection should close gracefully (request limit reached).
    pub close: tokio::sync::Notify,
}

impl ConnContext {
    pub fn new(
        gateway: Arc<Gateway>,
        snapshot: &Snapshot,
        verified: Option<(Arc<ClientIdentity>, Vec<CertificateDer<'static>>)>,
        inventory: Option<Arc<inventory::Entry>>,
        peer: SocketAddr,
    ) -> Self {
        let (identity, intermediates) = match verified {
            Some((id, intermediates)) => (Some(id), intermediates),
            None => (None, Vec::new()),
        };
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            gateway,
            identity,
            inventory,
            peer,
            peer_ip,
            requests: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_read_at_response: AtomicU64::new(0),
            max_requests: snapshot.max_requests_per_connection,
            intermediates,
            verified_generation: AtomicU64::new(snapshot.generation),
            close: tokio::sync::Notify::new(),
        }
    }

    /// Re-checks the connection's certificate against `snapshot`: expiry on every request, and
    /// chain, trust and revocation once per snapshot generation (so a CRL or trust-store reload
    /// reaches connections that stay open, resumed or not).
    fn revalidate(&self, snapshot: &Snapshot) -> Result<(), String> {
        let Some(id) = &self.identity else {
            return Ok(());
        };
        if coarse_unix_now() > id.not_after {
            return Err("client certificate expired while the connection was open".into());
        }
        if self.verified_generation.load(Ordering::Relaxed) == snapshot.generation {
            return Ok(());
        }
        match snapshot.client_verifier.verify_client_cert(
            &id.der,
            &self.intermediates,
            UnixTime::now(),
        ) {
            Ok(_) => {
                self.verified_generation
                    .store(snapshot.generation, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(format!(
                "client certificate no longer accepted after reload: {} ({e})",
                HandshakeResult::classify(&e).label()
            )),
        }
    }

    /// Counts request bytes read from the client.
    pub fn note_read(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// True when at least one response was sent and nothing was read since: the connection is
    /// an idle keep-alive one, not a client sending a request head slowly.
    pub fn idle_after_response(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
            && self.bytes_read.load(Ordering::Relaxed)
                == self.bytes_read_at_response.load(Ordering::Relaxed)
    }

    /// Counts a request; on reaching the per-connection limit, asks the connection to close.
    fn count_request(&self) {
        let limit = self.max_requests;
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if limit > 0 && n == limit {
            self.gateway
                .telemetry
                .metrics
                .limit_hit(Limit::RequestsPerConnection);
            self.close.notify_one();
        }
    }
}

/// Response body: streamed from the upstream or a small local answer. Counts the bytes it
/// yields and records the exchange when it is dropped (after the last frame, or when the client
/// goes away).
pub struct ProxyBody {
    inner: Inner,
    exchange: Option<Exchange>,
}

enum Inner {
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

pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop only (RFC 9110 §7.6.1), removed in both directions.
fn hop_by_hop() -> [&'static HeaderName; 8] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Identity headers a client might try to spoof; never forwarded as sent.
const SPOOFABLE_IDENTITY_HEADERS: [&str; 10] = [
    "x-forwarded-client-cert",
    "x-client-cert",
    "x-client-verify",
    "x-client-dn",
    "x-ssl-client-cert",
    "x-ssl-client-verify",
    "x-ssl-client-dn",
    "x-ssl-client-s-dn",
    "ssl-client-cert",
    "ssl-client-verify",
];
const SPOOFABLE_IDENTITY_PREFIXES: [&str; 3] = ["x-ssl-client-", "x-client-cert-", "x-certgate-"];

fn is_spoofable_identity_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    // Every listed name starts with one of these; most headers are ruled out by this alone.
    if !(n.starts_with("x-") || n.starts_with("ssl-")) {
        return false;
    }
    SPOOFABLE_IDENTITY_HEADERS.contains(&n)
        || SPOOFABLE_IDENTITY_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// One request/response exchange as it will be recorded: metrics, inventory, access log.
pub struct Exchange {
    ctx: Arc<ConnContext>,
    snapshot: Arc<Snapshot>,
    start: Instant,
    request_id: HeaderValue,
    method: Method,
    uri: Uri,
    /// The normalised path when it differs from `uri.path()`.
    normalized: Option<String>,
    route: Option<usize>,
    verdict: Option<Verdict>,
    decided_by: Option<DecidedBy>,
    upstream: Option<usize>,
    upstream_latency: Option<Duration>,
    status: StatusCode,
    error: Option<String>,
    bytes_in: Option<Arc<BodyMeter>>,
    bytes_out: u64,
}

impl Exchange {
    fn new(ctx: &Arc<ConnContext>, snapshot: Arc<Snapshot>, req: &Request<Incoming>) -> Self {
        Self {
            ctx: ctx.clone(),
            snapshot,
            start: Instant::now(),
            request_id: request_id(req.headers()),
            method: req.method().clone(),
            uri: req.uri().clone(),
            normalized: None,
            route: None,
            verdict: None,
            decided_by: None,
            upstream: None,
            upstream_latency: None,
            status: StatusCode::OK,
            error: None,
            bytes_in: None,
            bytes_out: 0,
        }
    }

    fn path(&self) -> &str {
        self.normalized.as_deref().unwrap_or(self.uri.path())
    }

    /// Metrics, inventory and one access-log event. Runs once per request.
    fn finish(self) {
        self.ctx.bytes_read_at_response.store(
            self.ctx.bytes_read.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let snapshot = &self.snapshot;
        let telemetry = &self.ctx.gateway.telemetry;
        let route_obs = self.route.and_then(|i| snapshot.route_obs.get(i));
        let metrics = route_obs.map_or(&telemetry.metrics.unrouted, |r| &r.metrics);
        let elapsed = self.start.elapsed();
        let bytes_in = self.bytes_in.as_ref().map_or(0, |m| m.bytes());
        if let Some(v) = self.verdict {
            metrics.decision(v);
            if let Some(entry) = &self.ctx.inventory {
                entry.record(route_obs.map(|r| r.inventory_id), v, coarse_unix_now());
            }
        }
        metrics.finished(&self.method, self.status, elapsed, bytes_in, self.bytes_out);

        let route = self
            .route
            .and_then(|i| snapshot.routes.routes().get(i))
            .map(|r| r.name.as_str());
        let upstream = self
            .upstream
            .and_then(|i| snapshot.upstreams.get(i))
            .map(|u| u.name.as_str());
        let id = self.ctx.identity.as_deref();
        tracing::info!(
            target: "certgate::access",
            request_id = self.request_id.to_str().unwrap_or(""),
            client = %self.ctx.peer,
            client_sha256 = id.map(|i| i.sha256_hex.as_str()),
            client_subject = id.map(|i| i.subject.as_str()),
            client_uri = id.map(|i| i.uri_list.as_str()),
            client_dns = id.map(|i| i.dns_list.as_str()),
            client_issuer = id.map(|i| i.issuer.as_str()),
            client_serial = id.map(|i| i.serial.as_str()),
            method = self.method.as_str(),
            path = self.path(),
            route,
            decision = self.verdict.map(Verdict::label),
            rule = self.decided_by.map(tracing::field::display),
            status = self.status.as_u16(),
            upstream,
            upstream_latency_us = self.upstream_latency.map(|d| d.as_micros() as u64),
            duration_us = elapsed.as_micros() as u64,
            bytes_in,
            bytes_out = self.bytes_out,
            error = self.error.as_deref(),
            "request"
        );
    }
}

/// Serves one request. Never fails: every problem becomes an HTTP answer.
pub async fn handle(
    ctx: Arc<ConnContext>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    ctx.count_request();
    let snapshot = ctx.gateway.current.load_full();
    let mut x = Exchange::new(&ctx, snapshot.clone(), &req);
    let grpc = is_grpc(&req);
    let result = match ctx.revalidate(&snapshot) {
        Ok(()) => proxy(&ctx, &snapshot, req, &mut x).await,
        Err(why) => {
            x.verdict = Some(Verdict::Deny);
            x.decided_by = Some(DecidedBy::CertificateNoLongerValid);
            x.error = Some(why);
            ctx.close.notify_one();
            Err(StatusCode::FORBIDDEN)
        }
    };
    let resp = match result {
        Ok(resp) => {
            x.status = resp.status();
            resp.map(Inner::Upstream)
        }
        Err(status) => {
            // Metrics and logs keep the HTTP meaning even when gRPC gets it as a grpc-status.
            x.status = status;
            local_response(status, &x.request_id, grpc)
        }
    };
    Ok(resp.map(|inner| ProxyBody {
        inner,
        exchange: Some(x),
    }))
}

async fn proxy(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    mut req: Request<Incoming>,
    x: &mut Exchange,
) -> Result<Response<ResponseBody>, StatusCode> {
    let uri = req.uri().clone();
    let path = normalize(&uri, x)?;
    let route = authorize(ctx, snapshot, &req, &path, x)?;
    let upstream = snapshot
        .upstreams
        .get(route.upstream)
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
    x.upstream = Some(route.upstream);
    if declared_length(&req).is_some_and(|n| n > route.max_request_body) {
        return Err(body_too_large(ctx, x, route.max_request_body));
    }
    let upgrade = upgrade_protocol(&req).map(|proto| (proto, hyper::upgrade::on(&mut req)));
    let new_path = matches!(path, Cow::Owned(_)).then_some(&*path);
    // Bodiless requests (most GETs) need no meter.
    let meter = (!req.body().is_end_stream()).then(|| BodyMeter::new(route.max_request_body));
    x.bytes_in = meter.clone();
    let body_meter = meter.clone();
    let out = prepare_upstream_request(
        ctx,
        req,
        new_path,
        &x.request_id,
        meter,
        upgrade.as_ref().map(|(p, _)| p),
    )
    .map_err(|e| {
        x.error = Some(e);
        StatusCode::BAD_REQUEST
    })?;
    let timeout = route.timeout.unwrap_or(upstream.timeout);
    let started = Instant::now();
    let result = upstream.forward(out, timeout).await;
    x.upstream_latency = Some(started.elapsed());
    let mut resp = match result {
        Ok(r) => r,
        // The body was cut off at the limit, which is what made the upstream request fail.
        Err(_) if body_meter.as_ref().is_some_and(|m| m.exceeded()) => {
            return Err(body_too_large(ctx, x, route.max_request_body));
        }
        Err(e) => {
            x.error = Some(e.to_string());
            return Err(e.status());
        }
    };
    match upgrade {
        Some((proto, client_side)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let upstream_side = hyper::upgrade::on(&mut resp);
            strip_hop_by_hop(resp.headers_mut());
            let h = resp.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, proto);
            tokio::spawn(tunnel(client_side, upstream_side, x.request_id.clone()));
        }
        _ => strip_hop_by_hop(resp.headers_mut()),
    }
    Ok(resp)
}

fn body_too_large(ctx: &ConnContext, x: &mut Exchange, limit: u64) -> StatusCode {
    ctx.gateway.telemetry.metrics.limit_hit(Limit::BodyBytes);
    x.error = Some(format!("request body larger than {limit} bytes"));
    StatusCode::PAYLOAD_TOO_LARGE
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The `Upgrade` protocol of an HTTP/1.1 upgrade request (WebSocket and the like).
fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants_upgrade {
        return None;
    }
    req.headers().get(header::UPGRADE).cloned()
}

/// Pipes bytes both ways between an upgraded client connection and the upstream's.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    request_id: HeaderValue,
) {
    let id = request_id.to_str().unwrap_or("");
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(request_id = id, error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_upstream, to_client)) => tracing::info!(
            target: "certgate::access",
            request_id = id,
            bytes_to_upstream = to_upstream,
            bytes_to_client = to_client,
            "upgraded connection closed"
        ),
        Err(e) => tracing::debug!(request_id = id, error = %e, "upgraded connection ended"),
    }
}

/// Phase 1: the normalised path. What is authorised is what is forwarded.
fn normalize<'u>(uri: &'u Uri, x: &mut Exchange) -> Result<Cow<'u, str>, StatusCode> {
    match path::normalize(uri.path()) {
        Ok(p) => {
            if let Cow::Owned(n) = &p {
                x.normalized = Some(n.clone());
            }
            Ok(p)
        }
        Err(e) => {
            x.error = Some(format!("rejected path: {e}"));
            Err(StatusCode::BAD_REQUEST)
        }
    }
}

/// Phase 2: routing and policy.
fn authorize<'s>(
    ctx: &ConnContext,
    snapshot: &'s Snapshot,
    req: &Request<Incoming>,
    path: &str,
    x: &mut Exchange,
) -> Result<&'s Route, StatusCode> {
    let parts = RequestParts {
        method: req.method(),
        host: request_host(req),
        path,
    };
    let decision = snapshot.routes.decide(&parts, ctx.identity.as_deref());
    x.route = decision.route.map(|r| r.index);
    x.verdict = Some(decision.verdict);
    x.decided_by = Some(decision.decided_by);
    match (decision.verdict, decision.route) {
        (Verdict::Allow, Some(r)) => Ok(r),
        (Verdict::Unauthenticated, _) => Err(StatusCode::UNAUTHORIZED),
        (Verdict::Deny, _) => Err(StatusCode::FORBIDDEN),
        (Verdict::Allow | Verdict::NoRoute, _) => Err(StatusCode::NOT_FOUND),
    }
}

/// The request's host without port: `:authority` / absolute-form first, else the `Host` header.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    if let Some(h) = req.uri().host() {
        return Some(h);
    }
    let h = req.headers().get(header::HOST)?.to_str().ok()?;
    if let Some(end) = h.strip_prefix('[').and_then(|r| r.find(']')) {
        return Some(&h[..=end + 1]);
    }
    Some(h.rsplit_once(':').map_or(h, |(host, _)| host))
}

/// Phase 3: strips hop-by-hop and spoofable identity headers, adds identity and forwarding
/// headers, and points the request at the upstream with the normalised path.
fn prepare_upstream_request(
    ctx: &ConnContext,
    req: Request<Incoming>,
    new_path: Option<&str>,
    request_id: &HeaderValue,
    meter: Option<Arc<BodyMeter>>,
    upgrade: Option<&HeaderValue>,
) -> Result<Outbound, String> {
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    // HTTP/2 carries the host in :authority; HTTP/1 upstreams need it as Host.
    if !headers.contains_key(header::HOST)
        && let Some(auth) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(auth.as_str())
    {
        headers.insert(header::HOST, v);
    }
    forwarding_headers(
        headers,
        ctx.identity.as_deref(),
        &ctx.peer_ip,
        request_id,
        upgrade,
    );

    let path_and_query = match new_path {
        None => parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        Some(p) => {
            let pq = match parts.uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p.to_string(),
            };
            PathAndQuery::try_from(pq).map_err(|e| format!("cannot forward path: {e}"))?
        }
    };
    let retryable = upgrade.is_none() && is_idempotent(&parts.method) && body.is_end_stream();
    Ok(Outbound {
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body: match meter {
            Some(meter) if !body.is_end_stream() => UpstreamBody::Stream { inner: body, meter },
            _ => UpstreamBody::Empty,
        },
        retryable,
    })
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Rewrites a client's request headers for the upstream: hop-by-hop headers and any identity
/// header the client sent are removed, then the verified identity (XFCC) and the forwarding
/// headers are set. `TE: trailers` survives (gRPC needs it); an upgrade keeps its `Upgrade`.
pub fn forwarding_headers(
    headers: &mut HeaderMap,
    identity: Option<&ClientIdentity>,
    peer_ip: &HeaderValue,
    request_id: &HeaderValue,
    upgrade: Option<&HeaderValue>,
) {
    let keep_te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    strip_hop_by_hop(headers);
    headers.remove(header::TE);
    if keep_te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // Collect only when there is something to remove: the common case allocates nothing.
    if headers.keys().any(is_spoofable_identity_header) {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_spoofable_identity_header(n))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(&name);
        }
    }
    // Room for the headers added below, so the map grows at most once.
    headers.reserve(5);
    if let Some(id) = identity {
        headers.insert(X_FORWARDED_CLIENT_CERT.clone(), id.xfcc.clone());
    }
    headers.insert(X_FORWARDED_FOR.clone(), peer_ip.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too ("keep-alive"/"close" name nothing to
    // remove beyond the fixed list, so the common case allocates nothing).
    let names_extra = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            !t.eq_ignore_ascii_case("keep-alive")
                && !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("upgrade")
        });
    if names_extra {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    // One pass to see whether there is anything to remove; most requests carry at most
    // `connection`, and a failed removal costs a hash lookup each.
    let hops = hop_by_hop();
    if headers.keys().any(|k| hops.contains(&k)) {
        for n in hops {
            headers.remove(n);
        }
    }
}

fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            return v.clone();
        }
    }
    generate_request_id()
}

/// 32 hex digits: a random per-process prefix and a counter. Unique, cheap, not secret.
fn generate_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut b);
        u64::from_le_bytes(b) ^ unix_now() as u64
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 32];
    let (hi, lo) = id.split_at_mut(16);
    hex_u64(prefix, hi);
    hex_u64(n, lo);
    // One allocation, and clones (the upstream copy, the log) only count references; formatting
    // into a String and copying it made four per request.
    HeaderValue::from_maybe_shared(Bytes::from_owner(id))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `v` as 16 lower-case hex digits into `out`.
fn hex_u64(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate().take(16) {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        _ => "internal_error",
    }
}

/// A small JSON error that reveals no route name or policy.
fn local_response(status: StatusCode, request_id: &HeaderValue, grpc: bool) -> Response<Inner> {
    if grpc {
        return grpc_local_response(status, request_id);
    }
    let body = format!(
        "{{\"error\":\"{}\",\"request_id\":\"{}\"}}\n",
        error_code(status),
        request_id.to_str().unwrap_or("")
    );
    let mut resp = Response::new(Inner::Local(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(X_REQUEST_ID.clone(), request_id.clone());
    if status == StatusCode::UNAUTHORIZED {
        // No standard scheme for client certificates; tell the client what is expected.
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("MutualTLS realm=\"certgate\""),
        );
    }
    resp
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// gRPC clients read errors from `grpc-status`, not the HTTP status: answer "trailers-only"
/// (HTTP 200, status in the headers) with the code the gRPC spec maps the HTTP status to.
fn grpc_local_response(status: StatusCode, request_id: &HeaderValue) -> Response<Inner> {
    let code = match status {
        StatusCode::UNAUTHORIZED => "16",     // UNAUTHENTICATED
        StatusCode::FORBIDDEN => "7",         // PERMISSION_DENIED
        StatusCode::NOT_FOUND => "12",        // UNIMPLEMENTED
        StatusCode::PAYLOAD_TOO_LARGE => "8", // RESOURCE_EXHAUSTED
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            "14"
        } // UNAVAILABLE
        StatusCode::BAD_REQUEST => "13",      // INTERNAL
        _ => "2",                             // UNKNOWN
    };
    let mut resp = Response::new(Inner::Local(Full::new(Bytes::new())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from_static(code));
    h.insert("grpc-message", HeaderValue::from_static(error_code(status)));
    h.insert(X_REQUEST_ID.clone(), request_id.clone());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&h), "abc-123_x.y");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("bad id\"<>"));
        let generated = request_id(&h);
        assert_eq!(generated.len(), 32);
        assert!(generated.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(generated, request_id(&HeaderMap::new()));
        let mut out = [0u8; 16];
        hex_u64(0x0123_4567_89ab_cdef, &mut out);
        assert_eq!(&out, b"0123456789abcdef");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn spoofable_headers() {
        for n in [
            "x-forwarded-client-cert",
            "x-ssl-client-s-dn",
            "x-certgate-identity",
            "ssl-client-cert",
        ] {
            assert!(
                is_spoofable_identity_header(&HeaderName::from_static(n)),
                "{n}"
            );
        }
        assert!(!is_spoofable_identity_header(&header::AUTHORIZATION));
    }

    #[test]
    fn host_without_port() {
        let r = Request::builder()
            .uri("/x")
            .header("host", "api.example.com:8443")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r), Some("api.example.com"));
        let r = Request::builder()
            .uri("/x")
            .header("host", "[::1]:8443")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r), Some("[::1]"));
        let r = Request::builder()
            .uri("https://h2.example:1/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r), Some("h2.example"));
    }
}
