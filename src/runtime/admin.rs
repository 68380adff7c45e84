//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/inventory`, `/anomalies`, `/reload`.
//! Plain HTTP on loopback by default; TLS with `[admin] client_ca`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::config::ConfigError;
use crate::inventory::{Filter, Format, RecordView, render};
use crate::state::Gateway;
use crate::state::{ReloadError, ReloadRequest, Trigger};
use crate::telemetry::anomaly::AnomalyKind;
use crate::util::time::unix_now;

pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(ADMIN_ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            // With admin.client_ca, TLS (as configured now: a reload applies to new connections).
            let tls = gateway.current.load().admin.access.tls();
            let Some(config) = tls else {
                serve_connection(TokioIo::new(tcp), gateway, false, peer).await;
                return;
            };
            let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
            match tokio::time::timeout(ADMIN_TIMEOUT, accept).await {
                Ok(Ok(tls)) => {
                    let client_cert = tls.get_ref().1.peer_certificates().is_some();
                    serve_connection(TokioIo::new(tls), gateway, client_cert, peer).await;
                }
                Ok(Err(e)) => debug!(client = %peer, error = %e, "admin TLS handshake failed"),
                Err(_) => debug!(client = %peer, "admin TLS handshake timed out"),
            }
        });
    }
}

const ADMIN_ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);
/// For a request head and for a TLS handshake on the admin listener.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One admin connection; `client_cert`: it presented a certificate the handshake verified.
async fn serve_connection<I>(
    io: TokioIo<I>,
    gateway: Arc<Gateway>,
    client_cert: bool,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let gateway = gateway.clone();
        async move {
            if let Some(refused) = guard(&gateway, &req, client_cert) {
                return Ok::<_, Infallible>(refused);
            }
            if req.uri().path() == "/reload" {
                return Ok::<_, Infallible>(reload(&gateway, req.method()).await);
            }
            Ok::<_, Infallible>(respond(&gateway, &req))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ADMIN_TIMEOUT)
        .serve_connection(io, service);
    if let Err(e) = conn.await {
        debug!(client = %peer, error = %e, "admin connection error");
    }
}

/// Refuses a request to a sensitive endpoint whose Host is not the admin listener's (DNS
/// rebinding: a web page's script sends its own site's name), or that lacks the admin token or
/// (with `client_ca`) a client certificate.
fn guard(
    gateway: &Gateway,
    req: &Request<Incoming>,
    client_cert: bool,
) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    let access = &gateway.current.load().admin.access;
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        warn!(path, "admin request refused: more than one Host header");
        return Some(text(StatusCode::BAD_REQUEST, "more than one Host header\n"));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| access.allows_origin(o))
    {
        warn!(
            path,
            origin = %String::from_utf8_lossy(origin.as_bytes()).chars().take(128).collect::<String>(),
            "admin request refused: Origin is not the admin listener (a web page's request)"
        );
        return Some(text(
            StatusCode::FORBIDDEN,
            "requests from another origin are refused\n",
        ));
    }
    let sensitive = matches!(path, "/reload" | "/inventory" | "/anomalies");
    let protected = sensitive || (path == "/metrics" && access.protects_metrics());
    if protected && !access.allows_connection(client_cert) {
        warn!(
            path,
            "admin request refused: no client certificate (admin.client_ca)"
        );
        return Some(text(
            StatusCode::FORBIDDEN,
            "a client certificate from admin.client_ca is required\n",
        ));
    }
    if sensitive {
        // An absolute-form target's authority is the request's host (RFC 9112 §3.2.2).
        let host = match req.uri().authority() {
            Some(a) => Some(a.as_str()),
            None => host_header.and_then(|h| h.to_str().ok()),
        };
        if !access.allows_host(host) {
            warn!(
                host = host.unwrap_or(""),
                path,
                "admin request refused: Host is not a loopback name, admin.bind or admin.allowed_hosts"
            );
            return Some(text(
                StatusCode::FORBIDDEN,
                "Host not allowed: use a loopback name, the admin address or admin.allowed_hosts\n",
            ));
        }
    }
    if protected
        && !access.allows_token(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        )
    {
        warn!(path, "admin request refused: missing or wrong admin token");
        let mut r = text(StatusCode::UNAUTHORIZED, "admin token required\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"certgate-admin\""),
        );
        return Some(r);
    }
    None
}

fn respond(gateway: &Gateway, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let snapshot = gateway.current.load();
            // A CRL input that is unusable with nothing in force refuses its CA's clients:
            // not Ready, so a rollout with a placeholder or broken CRL stops there.
            let unusable = &snapshot.tls.crl_checks.unready;
            let ready = gateway.ready.load(Ordering::SeqCst) && unusable.is_empty();
            let body = serde_json::json!({
                "status": if ready { "ready" } else { "not_ready" },
                "config_generation": snapshot.generation,
                "warnings": snapshot.expiry_warnings(unix_now()),
                "unusable": unusable,
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, body.to_string().into_bytes())
        }
        "/metrics" => {
            let telemetry = &gateway.telemetry;
            let snapshot = gateway.current.load();
            let window = snapshot.telemetry.expiry_window.as_secs() as i64;
            snapshot.mark_revoked_credentials(&telemetry.inventory, unix_now());
            telemetry.refresh_inventory_gauges(unix_now(), window);
            let mut r = Response::new(Full::new(Bytes::from(telemetry.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/inventory" => inventory(gateway, req.uri().query()),
        "/anomalies" => anomalies(gateway, req.uri().query()),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `POST /reload`: reload the config now; answers with the outcome.
async fn reload(gateway: &Gateway, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST /reload\n");
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = ReloadRequest {
        trigger: Trigger::Admin,
        reply: Some(reply),
    };
    if gateway.reloads.send(request).await.is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not running\n",
        );
    }
    let body = match answer.await {
        Ok(Ok(generation)) => (
            StatusCode::OK,
            serde_json::json!({ "result": "ok", "config_generation": generation }),
        ),
        Ok(Err(e)) => {
            let mut body = serde_json::json!({ "result": "error", "error": e.to_string() });
            if let ReloadError::Config(ConfigError::Invalid { file, key, .. }) = &e {
                body["file"] = file.display().to_string().into();
                body["key"] = key.as_str().into();
            }
            (StatusCode::UNPROCESSABLE_ENTITY, body)
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "result": "error", "error": "reload task stopped" }),
        ),
    };
    json(body.0, body.1.to_string().into_bytes())
}

/// `GET /inventory[?unowned][&expiring=30d][&lifetime_violations][&unused=30d][&route=NAME]`:
/// known client certificates as JSON, filtered like `certgate inventory`.
fn inventory(gateway: &Gateway, query: Option<&str>) -> Response<Full<Bytes>> {
    let filter = match Filter::from_query(query) {
        Ok(f) => f,
        Err(e) => {
            let body = serde_json::json!({ "error": e.to_string() }).to_string();
            return json(StatusCode::BAD_REQUEST, body.into_bytes());
        }
    };
    let now = unix_now();
    let snapshot = gateway.current.load();
    let window = snapshot.telemetry.expiry_window.as_secs() as i64;
    snapshot.mark_revoked_credentials(&gateway.telemetry.inventory, now);
    let records = gateway.telemetry.inventory.records();
    let views: Vec<RecordView<'_>> = records
        .iter()
        .filter(|r| filter.keeps(r, now, &snapshot.identity.owners))
        .map(|r| RecordView::new(r, now, window, &snapshot.identity.owners))
        .collect();
    match render(&views, Format::Json, now) {
        Ok(b) => json(StatusCode::OK, b.into_bytes()),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode inventory\n",
        ),
    }
}

/// `GET /anomalies[?kind=KIND]`: the most recent anomaly signals, newest first.
fn anomalies(gateway: &Gateway, query: Option<&str>) -> Response<Full<Bytes>> {
    let mut kind = None;
    for (k, v) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
    {
        match (k, AnomalyKind::parse(v)) {
            ("kind", Some(parsed)) => kind = Some(parsed),
            _ => {
                let names: Vec<_> = AnomalyKind::ALL.iter().map(|k| k.label()).collect();
                let error = format!("unknown filter {k}={v}; use kind={}", names.join("|"));
                let body = serde_json::json!({ "error": error }).to_string();
                return json(StatusCode::BAD_REQUEST, body.into_bytes());
            }
        }
    }
    let events = gateway.telemetry.anomalies.recent(kind);
    let body = serde_json::json!({
        "generated_at": crate::util::time::fmt_time(unix_now()),
        "count": events.len(),
        "anomalies": events,
    });
    match serde_json::to_vec_pretty(&body) {
        Ok(b) => json(StatusCode::OK, b),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode anomalies\n",
        ),
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}
