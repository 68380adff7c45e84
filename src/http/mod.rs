//! The request path: normalise → route and authorise → prepare the upstream request → forward →
//! record. Each phase is a function of its own; [`Exchange`] carries what the final record needs
//! and is recorded exactly once, when the response body ends or is dropped.

pub mod authority;
pub mod error;
pub mod framing;
pub mod headers;
pub mod tunnel;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::authn::identity::ClientIdentity;
use crate::authn::tls::HandshakeResult;
use crate::authz::path;
use crate::authz::{DecidedBy, RequestParts, Route, Verdict};
use crate::http::authority::RequestAuthority;
use crate::http::error::{Malformed, RequestError, Side};
use crate::http::headers::{
    Forwarding, X_REQUEST_ID, forwarding_headers, request_id, strip_hop_by_hop,
};
use crate::inventory;
use crate::state::Gateway;
use crate::state::snapshot::Snapshot;
use crate::telemetry::metrics::Limit;
use crate::upstream::body::{BodyFault, BodyMeter, UpstreamBody, discard_rest};
use crate::upstream::pool::ResponseBody;
use crate::upstream::{ForwardError, Outbound};
use crate::util::time::coarse_unix_now;
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
    pub(crate) fn revalidate(&self, snapshot: &Snapshot) -> Result<(), String> {
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

/// One request/response exchange as it will be recorded: metrics, inventory, access log.
pub struct Exchange {
    ctx: Arc<ConnContext>,
    snapshot: Arc<Snapshot>,
    start: Instant,
    request_id: HeaderValue,
    method: Method,
    uri: Uri,
    version: Version,
    /// The canonical authority, once validated.
    host: Option<HeaderValue>,
    /// The normalised path when it differs from `uri.path()`.
    normalized: Option<String>,
    route: Option<usize>,
    verdict: Option<Verdict>,
    decided_by: Option<DecidedBy>,
    upstream: Option<usize>,
    upstream_latency: Option<Duration>,
    status: StatusCode,
    error: Option<RequestError>,
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
            version: req.version(),
            host: None,
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
        let side = self.error.as_ref().map(RequestError::side);
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
            host = self.host.as_ref().and_then(|h| h.to_str().ok()),
            protocol = protocol_label(self.version),
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
            error = self.error.as_ref().map(tracing::field::display),
            error_side = side.map(Side::label),
            "request"
        );
        // Failures an operator must look at also get a line of their own at their level.
        match (side, &self.error) {
            (Some(Side::Upstream), Some(e)) => tracing::warn!(
                request_id = self.request_id.to_str().unwrap_or(""),
                route,
                upstream,
                error = %e,
                "upstream failure"
            ),
            (Some(Side::Gateway), Some(e)) => tracing::error!(
                request_id = self.request_id.to_str().unwrap_or(""),
                route,
                error = %e,
                "gateway failure"
            ),
            _ => {}
        }
    }
}

fn protocol_label(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
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
            ctx.close.notify_one();
            Err(RequestError::CertificateNoLongerValid(why))
        }
    };
    let resp = match result {
        Ok(resp) => {
            x.status = resp.status();
            resp.map(Inner::Upstream)
        }
        Err(e) => {
            // Metrics and logs keep the HTTP meaning even when gRPC gets it as a grpc-status.
            x.status = e.status();
            let resp = local_response(&e, &x.request_id, grpc);
            x.error = Some(e);
            resp
        }
    };
    Ok(resp.map(|inner| ProxyBody {
        inner,
        exchange: Some(x),
    }))
}

/// The phases in order: screen the request line and framing, settle the authority and the
/// path, route and authorise, then forward what was authorised and hand back the answer.
async fn proxy(
    ctx: &Arc<ConnContext>,
    snapshot: &Snapshot,
    mut req: Request<Incoming>,
    x: &mut Exchange,
) -> Result<Response<ResponseBody>, RequestError> {
    framing::check_method(req.method())?;
    framing::check_framing(&req)?;
    let websocket = framing::upgrade_request(&req)?;
    let authority = RequestAuthority::of(&req).map_err(Malformed::from)?;
    x.host = Some(authority.header_value().clone());
    let uri = req.uri().clone();
    let path = normalize(&uri, x)?;
    let route = authorize(ctx, snapshot, &req, &authority, &path, x)?;
    let upstream = snapshot
        .upstreams
        .get(route.upstream)
        .ok_or(RequestError::Internal("route names a missing upstream"))?;
    x.upstream = Some(route.upstream);
    if framing::declared_length(req.headers()).is_some_and(|n| n > route.max_request_body) {
        // Read (and drop) what the client is still sending, so it sees the 413, not a reset.
        tokio::spawn(discard_rest(req.into_body()));
        return Err(body_too_large(ctx, route.max_request_body));
    }
    let client_side = websocket.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let new_path = matches!(path, Cow::Owned(_)).then_some(&*path);
    // Bodiless requests (most GETs) need no meter.
    let meter = (!req.body().is_end_stream())
        .then(|| BodyMeter::new(route.max_request_body, snapshot.request_body_timeout));
    x.bytes_in = meter.clone();
    let out = prepare_upstream_request(
        ctx,
        snapshot,
        req,
        &Forwarded {
            path: new_path,
            authority: &authority,
            request_id: &x.request_id,
            upgrade: websocket.as_ref(),
        },
        meter,
    )?;
    let timeout = route.timeout.unwrap_or(upstream.timeout);
    let started = Instant::now();
    let result = upstream.forward(out, timeout).await;
    x.upstream_latency = Some(started.elapsed());
    let mut resp = match result {
        Ok(r) => r,
        Err(ForwardError::Client(fault)) => return Err(client_body_error(ctx, fault)),
        Err(e) => return Err(RequestError::Upstream(e)),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only the WebSocket upgrade that was asked for may turn the exchange into a tunnel.
        let (Some(client_side), true) = (client_side, framing::accepts_websocket(resp.headers()))
        else {
            let offered = resp
                .headers()
                .get(header::UPGRADE)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(64)
                        .collect()
                })
                .unwrap_or_default();
            return Err(RequestError::UpstreamUpgrade(offered));
        };
        let upstream_side = hyper::upgrade::on(&mut resp);
        strip_hop_by_hop(resp.headers_mut());
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        tokio::spawn(tunnel::run(
            client_side,
            upstream_side,
            x.request_id.clone(),
            ctx.clone(),
        ));
    } else {
        strip_hop_by_hop(resp.headers_mut());
    }
    Ok(resp)
}

fn body_too_large(ctx: &ConnContext, limit: u64) -> RequestError {
    ctx.gateway.telemetry.metrics.limit_hit(Limit::BodyBytes);
    RequestError::BodyTooLarge(limit)
}

/// A request body that failed by the client's doing: 413, 408 or 400.
fn client_body_error(ctx: &ConnContext, fault: BodyFault) -> RequestError {
    match fault {
        BodyFault::TooLarge(limit) => body_too_large(ctx, limit),
        BodyFault::Stalled(after) => RequestError::BodyTimeout(after),
        BodyFault::Unreadable(why) => Malformed::Body(why).into(),
    }
}

/// Phase: the normalised path. What is authorised is what is forwarded.
fn normalize<'u>(uri: &'u Uri, x: &mut Exchange) -> Result<Cow<'u, str>, RequestError> {
    let p = path::normalize(uri.path()).map_err(Malformed::from)?;
    if let Cow::Owned(n) = &p {
        x.normalized = Some(n.clone());
    }
    Ok(p)
}

/// Phase: routing and policy, on the canonical host and the normalised path (without `;`
/// parameters, which only a route with `allow_path_params` accepts).
fn authorize<'s>(
    ctx: &ConnContext,
    snapshot: &'s Snapshot,
    req: &Request<Incoming>,
    authority: &RequestAuthority,
    path: &str,
    x: &mut Exchange,
) -> Result<&'s Route, RequestError> {
    let without_params = if path.contains(';') {
        Some(path::without_params(path).map_err(Malformed::from)?)
    } else {
        None
    };
    let parts = RequestParts {
        method: req.method(),
        host: Some(authority.host()),
        path: without_params.as_deref().unwrap_or(path),
    };
    let decision = snapshot.routes.decide(&parts, ctx.identity.as_deref());
    x.route = decision.route.map(|r| r.index);
    if without_params.is_some() && decision.route.is_some_and(|r| !r.allow_path_params) {
        return Err(Malformed::PathParams.into());
    }
    x.verdict = Some(decision.verdict);
    x.decided_by = Some(decision.decided_by);
    match (decision.verdict, decision.route) {
        (Verdict::Allow, Some(r)) => Ok(r),
        (Verdict::Unauthenticated, _) => Err(RequestError::Unauthenticated),
        (Verdict::Deny, _) => Err(RequestError::Forbidden),
        (Verdict::Allow | Verdict::NoRoute, _) => {
            if without_params.is_some() {
                // No route takes it: say why the path is refused rather than "not found".
                return Err(Malformed::PathParams.into());
            }
            Err(RequestError::NoRoute)
        }
    }
}

/// What the request path settled that the upstream request carries.
struct Forwarded<'a> {
    /// The normalised path, when it differs from the one the client sent.
    path: Option<&'a str>,
    authority: &'a RequestAuthority,
    request_id: &'a HeaderValue,
    upgrade: Option<&'a HeaderValue>,
}

/// Phase: strips hop-by-hop and screened headers, adds identity and forwarding headers, and
/// points the request at the upstream with the normalised path and the canonical authority.
fn prepare_upstream_request(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    req: Request<Incoming>,
    f: &Forwarded<'_>,
    meter: Option<Arc<BodyMeter>>,
) -> Result<Outbound, RequestError> {
    let (mut parts, body) = req.into_parts();
    forwarding_headers(
        &mut parts.headers,
        &Forwarding {
            identity: ctx.identity.as_deref(),
            peer_ip: &ctx.peer_ip,
            request_id: f.request_id,
            authority: f.authority.header_value(),
            upgrade: f.upgrade,
            strip: &snapshot.strip_request_headers,
        },
    );
    framing::canonical_content_length(&mut parts.headers);

    let path_and_query = match f.path {
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
            PathAndQuery::try_from(pq)
                .map_err(|_| RequestError::Internal("normalised path is not a valid URI path"))?
        }
    };
    let retryable = f.upgrade.is_none() && is_idempotent(&parts.method) && body.is_end_stream();
    let body = match &meter {
        Some(meter) if !body.is_end_stream() => UpstreamBody::stream(body, meter.clone()),
        _ => UpstreamBody::Empty,
    };
    Ok(Outbound {
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body,
        meter,
        retryable,
    })
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// A small JSON error that reveals no route name or policy.
fn local_response(e: &RequestError, request_id: &HeaderValue, grpc: bool) -> Response<Inner> {
    if grpc {
        return grpc_local_response(e, request_id);
    }
    let body = format!(
        "{{\"error\":\"{}\",\"request_id\":\"{}\"}}\n",
        e.code(),
        request_id.to_str().unwrap_or("")
    );
    let mut resp = Response::new(Inner::Local(Full::new(Bytes::from(body))));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(X_REQUEST_ID.clone(), request_id.clone());
    add_error_headers(e, h);
    resp
}

/// Headers that belong to the kind of refusal.
fn add_error_headers(e: &RequestError, h: &mut HeaderMap) {
    match e {
        // No standard scheme for client certificates; tell the client what is expected.
        RequestError::Unauthenticated => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("MutualTLS realm=\"certgate\""),
            );
        }
        RequestError::MethodNotAllowed(_) => {
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        // The rest of the body is not read: the connection cannot carry another request.
        RequestError::BodyTimeout(_) | RequestError::Malformed(Malformed::Body(_)) => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// gRPC clients read errors from `grpc-status`, not the HTTP status: answer "trailers-only"
/// (HTTP 200, status in the headers).
fn grpc_local_response(e: &RequestError, request_id: &HeaderValue) -> Response<Inner> {
    let mut resp = Response::new(Inner::Local(Full::new(Bytes::new())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from_static(e.grpc_status()));
    h.insert("grpc-message", HeaderValue::from_static(e.code()));
    h.insert(X_REQUEST_ID.clone(), request_id.clone());
    resp
}
