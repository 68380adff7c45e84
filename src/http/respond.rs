//! Answers certgate gives itself: a small JSON error, or a trailers-only gRPC status, with the
//! headers that belong to the kind of refusal. They never name a route, rule or claim.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;

use crate::authn::token::TokenFailure;
use crate::http::body::Inner;
use crate::http::error::{Malformed, RequestError};
use crate::http::headers::X_REQUEST_ID;

/// A small JSON error that reveals no route name or policy.
pub(super) fn local_response(
    e: &RequestError,
    request_id: &HeaderValue,
    grpc: bool,
) -> Response<Inner> {
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
        RequestError::ApiKey(_) => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey realm=\"certgate\""),
            );
        }
        // RFC 6750 §3.
        RequestError::Token(t) => {
            let challenge = match (t.failure, &t.scope_challenge) {
                (TokenFailure::Missing, _) => HeaderValue::from_static("Bearer realm=\"certgate\""),
                (f, Some(c)) if f.is_forbidden() => c.clone(),
                (f, None) if f.is_forbidden() => HeaderValue::from_static(
                    "Bearer realm=\"certgate\", error=\"insufficient_scope\"",
                ),
                _ => HeaderValue::from_static("Bearer realm=\"certgate\", error=\"invalid_token\""),
            };
            h.insert(header::WWW_AUTHENTICATE, challenge);
        }
        RequestError::TokenRequest(_) => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"certgate\", error=\"invalid_request\""),
            );
        }
        // draft-ietf-httpapi-ratelimit-headers: the policy and what is left of it.
        RequestError::RateLimited {
            kind,
            retry_after,
            policy,
        } => {
            let secs = crate::limits::retry_after_secs(*retry_after);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            h.insert("ratelimit-policy", policy.clone());
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\";r=0;t={secs}", kind.label())) {
                h.insert("ratelimit", v);
            }
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

pub(super) fn is_grpc<B>(req: &Request<B>) -> bool {
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
