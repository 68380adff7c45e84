//! Phase: the upstream request — screened and forwarding headers, the normalised path, the
//! canonical authority, the metered body.

use std::sync::Arc;

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, Request};
use hyper::body::{Body, Incoming};

use crate::authn::apikey::KeyRecord;
use crate::authn::token::VerifiedToken;
use crate::authz::authority::RequestAuthority;
use crate::http::ConnContext;
use crate::http::error::RequestError;
use crate::http::framing;
use crate::http::headers::{Forwarding, forwarding_headers};
use crate::state::snapshot::Snapshot;
use crate::upstream::Outbound;
use crate::upstream::body::{BodyMeter, UpstreamBody};

/// What the request path settled that the upstream request carries.
pub(super) struct Forwarded<'a> {
    /// The normalised path, when it differs from the one the client sent.
    pub(super) path: Option<&'a str>,
    pub(super) authority: &'a RequestAuthority,
    pub(super) request_id: &'a HeaderValue,
    pub(super) upgrade: Option<&'a HeaderValue>,
    /// The verified access token, for the `x-token-*` headers.
    pub(super) token: Option<&'a VerifiedToken>,
    /// False on a token route without `forward`: `Authorization` stays here.
    pub(super) keep_authorization: bool,
    /// The API key that authenticated the request, for `x-client-api-key-id` and
    /// `x-client-owner`.
    pub(super) api_key: Option<&'a KeyRecord>,
    /// The credential the gateway holds for the upstream.
    pub(super) credential: Option<(&'a http::HeaderName, &'a HeaderValue)>,
}

/// Phase: strips hop-by-hop and screened headers, adds identity and forwarding headers, and
/// points the request at the upstream with the normalised path and the canonical authority.
pub(super) fn prepare_upstream_request(
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
            xfcc: ctx.xfcc.as_ref(),
            peer_ip: &ctx.peer_ip,
            request_id: f.request_id,
            authority: f.authority.header_value(),
            upgrade: f.upgrade,
            strip: &snapshot.listener.strip_request_headers,
            token: f.token.map(|t| &t.headers),
            keep_authorization: f.keep_authorization,
            api_key: f.api_key.map(|k| (&k.id_header, &k.owner_header)),
            key_header: snapshot.identity.api_keys.as_ref().map(|k| &k.header),
            credential: f.credential,
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
