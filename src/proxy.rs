//! The request path: normalise → route → authorise → prepare the upstream request → forward →
//! record. Each phase is a function of its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::identity::ClientIdentity;
use crate::path;
use crate::policy::{DecidedBy, RequestParts, Verdict};
use crate::snapshot::Snapshot;
use crate::telemetry::{self, Metrics};
use crate::upstream::Upstream;

/// Per-connection state shared by every request on the connection.
pub struct ConnContext {
    pub snapshot: Arc<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// `None` when the client presented no certificate (optional mode).
    pub identity: Option<Arc<ClientIdentity>>,
    pub peer: SocketAddr,
    /// The peer IP, preformatted for `x-forwarded-for`.
    pub peer_ip: HeaderValue,
}

impl ConnContext {
    pub fn new(
        snapshot: Arc<Snapshot>,
        metrics: Arc<Metrics>,
        identity: Option<Arc<ClientIdentity>>,
        peer: SocketAddr,
    ) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            snapshot,
            metrics,
            identity,
            peer,
            peer_ip,
        }
    }
}

/// Response body: streamed from the upstream, or a small local answer.
pub enum ProxyBody {
    Upstream(Incoming),
    Local(Full<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Local(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never: Infallible| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Local(b) => b.size_hint(),
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
    SPOOFABLE_IDENTITY_HEADERS.contains(&n)
        || SPOOFABLE_IDENTITY_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// Why forwarding failed; decides the status and the log wording.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        upstream: String,
        timeout: std::time::Duration,
    },
    #[error("upstream {upstream} unreachable: {source}")]
    Unreachable {
        upstream: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {upstream} failed: {source}")]
    Failed {
        upstream: String,
        source: hyper_util::client::legacy::Error,
    },
}

impl ForwardError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable { .. } | Self::Failed { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

/// What one request came to, for `record`.
struct Outcome<'a> {
    route: Option<&'a str>,
    verdict: Option<Verdict>,
    decided_by: Option<DecidedBy>,
    upstream: Option<&'a str>,
    status: StatusCode,
    error: Option<String>,
}

/// Serves one request. Never fails: every problem becomes an HTTP answer.
pub async fn handle(
    ctx: Arc<ConnContext>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let request_id = request_id(req.headers());
    let method = req.method().clone();
    let snapshot = &ctx.snapshot;

    // Phase 1: normalise the path. What is authorised is what is forwarded.
    // The Uri clone is reference-counted; it lets the path borrow outlive `req`.
    let uri = req.uri().clone();
    let raw_path = uri.path();
    let normalized = match path::normalize(raw_path) {
        Ok(p) => p,
        Err(e) => {
            let outcome = Outcome {
                route: None,
                verdict: None,
                decided_by: None,
                upstream: None,
                status: StatusCode::BAD_REQUEST,
                error: Some(format!("rejected path: {e}")),
            };
            record(&ctx, &method, raw_path, &request_id, &outcome, start);
            return Ok(local_response(StatusCode::BAD_REQUEST, &request_id));
        }
    };
    let path_changed = normalized != raw_path;

    // Phase 2: route and authorise.
    let host = request_host(&req);
    let parts = RequestParts {
        method: &method,
        host,
        path: &normalized,
    };
    let decision = snapshot.routes.decide(&parts, ctx.identity.as_deref());
    let route = decision.route;
    let mut outcome = Outcome {
        route: route.map(|r| r.name.as_str()),
        verdict: Some(decision.verdict),
        decided_by: Some(decision.decided_by),
        upstream: None,
        status: StatusCode::OK,
        error: None,
    };
    let route = match (decision.verdict, route) {
        (Verdict::Allow, Some(r)) => r,
        (verdict, _) => {
            let status = match verdict {
                Verdict::Unauthenticated => StatusCode::UNAUTHORIZED,
                Verdict::Deny => StatusCode::FORBIDDEN,
                Verdict::Allow | Verdict::NoRoute => StatusCode::NOT_FOUND,
            };
            outcome.status = status;
            record(&ctx, &method, &normalized, &request_id, &outcome, start);
            return Ok(local_response(status, &request_id));
        }
    };
    let Some(upstream) = snapshot.upstreams.get(route.upstream) else {
        outcome.status = StatusCode::INTERNAL_SERVER_ERROR;
        record(&ctx, &method, &normalized, &request_id, &outcome, start);
        return Ok(local_response(outcome.status, &request_id));
    };
    outcome.upstream = Some(upstream.name.as_str());

    // Phase 3: build the upstream request.
    let upstream_req = match prepare_upstream_request(
        &ctx,
        req,
        upstream,
        path_changed.then_some(&*normalized),
        &request_id,
    ) {
        Ok(r) => r,
        Err(e) => {
            outcome.status = StatusCode::BAD_REQUEST;
            outcome.error = Some(e);
            record(&ctx, &method, &normalized, &request_id, &outcome, start);
            return Ok(local_response(StatusCode::BAD_REQUEST, &request_id));
        }
    };

    // Phase 4: forward.
    let timeout = route.timeout.unwrap_or(upstream.timeout);
    match forward(upstream, upstream_req, timeout).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            outcome.status = resp.status();
            record(&ctx, &method, &normalized, &request_id, &outcome, start);
            Ok(resp.map(ProxyBody::Upstream))
        }
        Err(e) => {
            outcome.status = e.status();
            outcome.error = Some(e.to_string());
            record(&ctx, &method, &normalized, &request_id, &outcome, start);
            Ok(local_response(outcome.status, &request_id))
        }
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

/// Strips hop-by-hop and spoofable identity headers, adds identity and forwarding headers, and
/// points the request at the upstream with the normalised path.
fn prepare_upstream_request(
    ctx: &ConnContext,
    req: Request<Incoming>,
    upstream: &Upstream,
    new_path: Option<&str>,
    request_id: &HeaderValue,
) -> Result<Request<Incoming>, String> {
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    // HTTP/2 carries the host in :authority; HTTP/1 upstreams need it as Host.
    if !headers.contains_key(header::HOST)
        && let Some(auth) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(auth.as_str())
    {
        headers.insert(header::HOST, v);
    }
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
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_spoofable_identity_header(n))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
    if let Some(id) = &ctx.identity {
        headers.insert(X_FORWARDED_CLIENT_CERT.clone(), id.xfcc.clone());
    }
    headers.insert(X_FORWARDED_FOR.clone(), ctx.peer_ip.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());

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
    parts.uri = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("cannot build upstream URI: {e}"))?;
    parts.version = Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
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
    for n in hop_by_hop() {
        headers.remove(n);
    }
}

async fn forward(
    upstream: &Upstream,
    req: Request<Incoming>,
    timeout: std::time::Duration,
) -> Result<Response<Incoming>, ForwardError> {
    match tokio::time::timeout(timeout, upstream.client.request(req)).await {
        Err(_) => Err(ForwardError::Timeout {
            upstream: upstream.name.clone(),
            timeout,
        }),
        Ok(Err(source)) if source.is_connect() => Err(ForwardError::Unreachable {
            upstream: upstream.name.clone(),
            source,
        }),
        Ok(Err(source)) => Err(ForwardError::Failed {
            upstream: upstream.name.clone(),
            source,
        }),
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// One access-log event and the request metrics.
fn record(
    ctx: &ConnContext,
    method: &http::Method,
    path: &str,
    request_id: &HeaderValue,
    o: &Outcome<'_>,
    start: Instant,
) {
    let route_label = o.route.unwrap_or(telemetry::NO_ROUTE);
    let m = &ctx.metrics;
    m.requests_total
        .with_label_values(&[
            route_label,
            telemetry::method_label(method),
            o.status.as_str(),
        ])
        .inc();
    if let Some(v) = o.verdict {
        m.authz_decisions_total
            .with_label_values(&[route_label, v.label()])
            .inc();
    }
    let id = ctx.identity.as_deref();
    tracing::info!(
        target: "certgate::access",
        request_id = request_id.to_str().unwrap_or(""),
        client = %ctx.peer,
        method = %method,
        path,
        route = o.route,
        decision = o.verdict.map(Verdict::label),
        rule = o.decided_by.map(|d| d.to_string()),
        status = o.status.as_u16(),
        upstream = o.upstream,
        error = o.error.as_deref(),
        duration_us = start.elapsed().as_micros() as u64,
        client_sha256 = id.map(|i| i.sha256_hex.as_str()),
        client_subject = id.map(|i| i.subject.as_str()),
        "request"
    );
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
        u64::from_le_bytes(b) ^ crate::snapshot::unix_now() as u64
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix:016x}{n:016x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        _ => "internal_error",
    }
}

/// A small JSON error that reveals no route name or policy.
pub fn local_response(status: StatusCode, request_id: &HeaderValue) -> Response<ProxyBody> {
    let body = format!(
        "{{\"error\":\"{}\",\"request_id\":\"{}\"}}\n",
        error_code(status),
        request_id.to_str().unwrap_or("")
    );
    let mut resp = Response::new(ProxyBody::Local(Full::new(Bytes::from(body))));
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
        assert_ne!(generated, request_id(&HeaderMap::new()));
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
