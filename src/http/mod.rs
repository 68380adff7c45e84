//! The request path, as named phases: screen the request line and framing ([`framing`]), settle
//! the authority and the path, route and authorise, prepare the upstream request ([`headers`]),
//! forward, and answer; the exchange is recorded once when its response body ends
//! ([`record`]). Every refusal is a [`error::RequestError`].

mod apikey;
mod bearer;
pub mod error;
pub mod framing;
pub mod headers;
mod limits;
mod ocsp;
pub mod tunnel;

mod body;
mod conn;
mod outbound;
mod record;
mod register;
mod respond;

pub use bearer::presented_token;
pub use body::ProxyBody;
pub use conn::ConnContext;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body, Incoming};

use crate::authn::apikey::KeyRecord;
use crate::authn::token::VerifiedToken;
use crate::authz::authority::RequestAuthority;
use crate::authz::path;
use crate::authz::{self, Credential, DecidedBy, Refusal, RequestParts, Route, Verdict};
use crate::http::body::Inner;
use crate::http::error::{Malformed, RequestError};
use crate::http::headers::strip_hop_by_hop;
use crate::http::record::Exchange;
use crate::http::respond::{is_grpc, local_response};
use crate::state::snapshot::Snapshot;
use crate::telemetry::metrics::Limit;
use crate::upstream::ForwardError;
use crate::upstream::body::{BodyFault, BodyMeter, discard_rest};
use crate::upstream::pool::ResponseBody;

/// Serves one request. Never fails: every problem becomes an HTTP answer.
pub async fn handle(
    ctx: Arc<ConnContext>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    ctx.count_request();
    let snapshot = ctx.gateway.current.load_full();
    // Boxed: the record rides along with the response through hyper, which moves the response
    // several times; a pointer is cheaper to move than the whole record.
    let mut x = Box::new(Exchange::new(&ctx, snapshot.clone(), &req));
    let grpc = is_grpc(&req);
    let checked = match ctx.revalidate(&snapshot) {
        Ok(()) => ocsp::check(&ctx, &snapshot).await,
        Err(why) => Err((
            DecidedBy::CertificateNoLongerValid,
            RequestError::CertificateNoLongerValid(why),
        )),
    };
    let result = match checked {
        Ok(()) => proxy(&ctx, &snapshot, req, &mut x).await,
        Err((by, e)) => {
            x.verdict = Some(Verdict::Deny);
            x.decided_by = Some(by);
            ctx.close.notify_one();
            Err(e)
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
            x.error = Some(Box::new(e));
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
    framing::check_head_size(&req, snapshot.listener.max_request_header_bytes).inspect_err(
        |_| {
            ctx.gateway.telemetry.metrics.limit_hit(Limit::HeaderBytes);
        },
    )?;
    framing::check_method(req.method())?;
    framing::check_framing(&req)?;
    let websocket = framing::upgrade_request(&req)?;
    let authority = RequestAuthority::of(&req, &ctx.authority).map_err(Malformed::from)?;
    x.host = Some(authority.header_value().clone());
    let uri = req.uri().clone();
    let path = normalize(&uri, x)?;
    let (route, token) = authorize(
        ctx,
        snapshot,
        &req,
        &authority,
        &path,
        websocket.is_some(),
        x,
    )
    .await?;
    limits::check_limits(ctx, snapshot, route, x).await?;
    let upstream = snapshot
        .routing
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
    let meter = (!req.body().is_end_stream()).then(|| {
        BodyMeter::new(
            route.max_request_body,
            snapshot.listener.request_body_timeout,
        )
    });
    x.bytes_in = meter.clone();
    let key = x.api_key.as_ref().and_then(|k| k.record.clone());
    let credential = match snapshot.routing.upstream_credentials.get(route.upstream) {
        Some(Some(c)) => Some(
            c.current()
                .await
                .map_err(|_| RequestError::UpstreamCredential)?,
        ),
        _ => None,
    };
    let out = outbound::prepare_upstream_request(
        ctx,
        snapshot,
        req,
        &outbound::Forwarded {
            path: new_path,
            authority: &authority,
            request_id: &x.request_id,
            upgrade: websocket.as_ref(),
            token: token.as_deref(),
            keep_authorization: route.token.as_ref().is_none_or(|t| t.forward),
            api_key: key.as_deref(),
            credential: credential.as_ref().map(|c| c.header()),
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
    if let Some(k) = &key {
        deprecation_headers(resp.headers_mut(), k, snapshot);
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        tunnel(
            ctx,
            snapshot,
            route,
            client_side,
            &mut resp,
            token.as_deref(),
            x,
        )?;
    } else {
        strip_hop_by_hop(resp.headers_mut());
    }
    Ok(resp)
}

/// Phase: a 101 answer. Only the WebSocket upgrade that was asked for may turn the exchange
/// into a tunnel, bounded by the route's quota and the token's expiry.
fn tunnel(
    ctx: &Arc<ConnContext>,
    snapshot: &Snapshot,
    route: &Route,
    client_side: Option<hyper::upgrade::OnUpgrade>,
    resp: &mut Response<ResponseBody>,
    token: Option<&VerifiedToken>,
    x: &Exchange,
) -> Result<(), RequestError> {
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
    let upstream_side = hyper::upgrade::on(&mut *resp);
    strip_hop_by_hop(resp.headers_mut());
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let bounds = tunnel::Bounds {
        quota: route
            .quota
            .as_ref()
            .filter(|q| q.spec.bytes.is_some())
            .zip(snapshot.routing.route_obs.get(route.index))
            .map(|(q, obs)| {
                let leaf = ctx.identity.as_deref().map(|i| &i.sha256);
                (
                    q.clone(),
                    crate::limits::LimitKey::of(q.spec.key, leaf, ctx.peer.ip()),
                    obs.metrics
                        .rate_limited_counter(crate::limits::LimitKind::Quota, false)
                        .clone(),
                )
            }),
        token_exp: token.map(|t| t.exp),
    };
    tokio::spawn(tunnel::run(
        client_side,
        upstream_side,
        x.request_id.clone(),
        ctx.clone(),
        bounds,
    ));
    Ok(())
}

/// What a caller with a legacy key learns on every answer: the key is deprecated (since it was
/// issued, RFC 9745), when it stops working (RFC 8594), and where to read how to move.
fn deprecation_headers(h: &mut http::HeaderMap, key: &KeyRecord, snapshot: &Snapshot) {
    h.insert(DEPRECATION.clone(), key.deprecation_header.clone());
    h.insert(SUNSET.clone(), key.sunset_header.clone());
    if let Some(link) = snapshot
        .identity
        .api_keys
        .as_ref()
        .and_then(|k| k.link.as_ref())
    {
        h.append(header::LINK, link.clone());
    }
}

static DEPRECATION: http::HeaderName = http::HeaderName::from_static("deprecation");
static SUNSET: http::HeaderName = http::HeaderName::from_static("sunset");

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

/// Phase: routing, then the one decision ([`crate::authz::decide`]) on the canonical host and
/// the normalised path (without `;` parameters, which only a route with `allow_path_params`
/// accepts), enforced and recorded: the route, and the token to vouch for upstream.
async fn authorize<'s, B>(
    ctx: &ConnContext,
    snapshot: &'s Snapshot,
    req: &Request<B>,
    authority: &RequestAuthority,
    path: &str,
    upgrade: bool,
    x: &mut Exchange,
) -> Result<(&'s Route, Option<Arc<VerifiedToken>>), RequestError> {
    let without_params = if path::has_params(path) {
        Some(path::without_params(path).map_err(Malformed::from)?)
    } else {
        None
    };
    let parts = RequestParts {
        method: req.method(),
        host: Some(authority.host()),
        path: without_params.as_deref().unwrap_or(path),
        params: without_params.is_some(),
        upgrade,
    };
    x.owner = ctx.owner(snapshot);
    let Some(route) = snapshot.routing.routes.find(&parts) else {
        x.verdict = Some(Verdict::NoRoute);
        x.decided_by = Some(DecidedBy::NoRoute);
        if parts.params {
            // No route takes it: say why the path is refused rather than "not found".
            return Err(Malformed::PathParams.into());
        }
        return Err(RequestError::NoRoute);
    };
    x.route = Some(route.index);
    let key = apikey::authenticate(ctx, snapshot, route, req, x).await?;
    let credential = match &key {
        Some(record) => Credential::ApiKey(record),
        None => Credential::of(ctx.identity.as_deref(), x.owner),
    };
    let mut presented = bearer::Presented::default();
    let slot = &mut presented;
    let d = authz::decide(
        &parts,
        &credential,
        route,
        &snapshot.identity.owners,
        move |need| {
            let slot = slot;
            slot.verify(ctx, snapshot, req, need)
        },
    );
    x.verdict = d.verdict;
    if d.verdict.is_some() {
        x.decided_by = Some(d.decided_by);
    }
    x.owner_finding = d.owner_finding;
    x.would = d.would;
    x.shadow = d.shadow;
    let token = match (&route.token, d.token) {
        (Some(need), Some(verdict)) => {
            let enforced = matches!(d.refusal, Some(Refusal::Token { .. }));
            presented.settle(snapshot, need, verdict, enforced, x)?
        }
        _ => None,
    };
    match d.refusal {
        None => Ok((route, token)),
        Some(Refusal::Token { .. }) => Err(RequestError::Internal("token refusal not answered")),
        Some(Refusal::PathParams) => Err(Malformed::PathParams.into()),
        Some(Refusal::UpgradeRefused) => Err(Malformed::UpgradeRefused.into()),
        Some(Refusal::Unauthenticated) => Err(RequestError::Unauthenticated),
        Some(Refusal::Forbidden) => Err(RequestError::Forbidden),
    }
}
