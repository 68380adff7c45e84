//! [`RequestError`]: every way a request can be refused or fail, and, in one place, what each
//! means — the side at fault, the HTTP status, the JSON `error` code, the gRPC status and the
//! log level. Handlers return it; nothing builds an error response by hand.

use std::time::Duration;

use http::StatusCode;

use crate::authn::token::TokenFailure;
use crate::authz::authority::AuthorityError;
use crate::authz::path::PathError;
use crate::upstream::ForwardError;

/// Which side caused a failure. Decides the status class, the log level and whether the
/// failure counts against an upstream endpoint (only `Upstream` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong, too much or too slowly, or is not allowed (4xx).
    Client,
    /// The upstream failed, timed out or answered nonsense (502/503/504).
    Upstream,
    /// certgate itself could not do its part (500).
    Gateway,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Gateway => "gateway",
        }
    }
}

/// A malformed request: refused with 400 before anything goes upstream.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("rejected path: {0}")]
    Path(#[from] PathError),
    #[error("path parameters (';') are not allowed on this route")]
    PathParams,
    #[error("rejected authority: {0}")]
    Authority(#[from] AuthorityError),
    #[error("method {0:?} is not an upper-case token")]
    MethodCase(String),
    #[error("transfer-coding other than a single 'chunked'")]
    TransferEncoding,
    #[error("more than one Content-Length field")]
    ContentLengths,
    #[error("WebSocket upgrades are not served on this route")]
    UpgradeRefused,
    #[error("unsupported upgrade {0:?}: only 'websocket' is proxied")]
    Upgrade(String),
    #[error("Connection header names {0:?}, which is not a hop-by-hop header")]
    ConnectionNames(&'static str),
    #[error("request body could not be read: {0}")]
    Body(String),
}

/// A refused access token: why, and for a scope or claim failure the route's challenge
/// (`error="insufficient_scope", scope="…"`).
#[derive(Debug)]
pub struct TokenRefused {
    pub failure: TokenFailure,
    pub scope_challenge: Option<http::HeaderValue>,
}

impl std::fmt::Display for TokenRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.failure.label())
    }
}

/// Why the certificate of an open connection stopped being accepted (403).
#[derive(Debug, thiserror::Error)]
pub enum NoLongerValid {
    #[error("client certificate expired while the connection was open")]
    Expired,
    /// A reload changed the trust store or the CRLs.
    #[error("client certificate no longer accepted after reload: {0}")]
    Refused(crate::authn::tls::Refusal),
    #[error("client certificate revoked (OCSP)")]
    OcspRevoked,
    #[error("the OCSP responder does not know the client certificate (ocsp = \"hard\")")]
    OcspUnknown,
}

/// Why a legacy API key is refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyRefused {
    /// Unknown, wrong, malformed or revoked.
    Invalid,
    /// Past its sunset day.
    Sunset,
    /// `cutover = "reject_if_cert_seen"` and its owner has used a certificate.
    CutOver,
}

impl ApiKeyRefused {
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid => "invalid_api_key",
            Self::Sunset => "api_key_sunset",
            Self::CutOver => "api_key_cut_over",
        }
    }
}

impl std::fmt::Display for ApiKeyRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Invalid => "unknown, wrong, malformed or revoked",
            Self::Sunset => "past its sunset",
            Self::CutOver => "its owner has moved to a certificate",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Malformed(#[from] Malformed),
    #[error("method {0} is not served")]
    MethodNotAllowed(http::Method),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The request head is larger than `listener.max_request_header_bytes`.
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("request body stalled for more than {0:?}")]
    BodyTimeout(Duration),
    #[error("no route matches")]
    NoRoute,
    #[error("no client certificate")]
    Unauthenticated,
    #[error("refused by policy")]
    Forbidden,
    /// The route's access token is missing, invalid, or lacks a scope or claim.
    #[error("access token refused: {0}")]
    Token(TokenRefused),
    /// Over the route's rate limit.
    #[error("{} limit reached; retry after {}s", kind.label(), crate::limits::retry_after_secs(*retry_after))]
    RateLimited {
        kind: crate::limits::LimitKind,
        retry_after: Duration,
        policy: http::HeaderValue,
    },
    /// RFC 6750 `invalid_request`: the token came in a way certgate does not accept.
    #[error("invalid token request: {0}")]
    TokenRequest(&'static str),
    /// A legacy API key refused.
    #[error("API key refused: {0}")]
    ApiKey(ApiKeyRefused),
    /// An API key sent where keys are refused (the query string).
    #[error("invalid API key request: {0}")]
    KeyRequest(&'static str),
    #[error("{0}")]
    CertificateNoLongerValid(NoLongerValid),
    /// `ocsp = "hard"` and the responder gave no usable answer.
    #[error("the client certificate's OCSP status could not be confirmed (ocsp = \"hard\")")]
    RevocationUnavailable,
    #[error("{0}")]
    Upstream(ForwardError),
    /// The upstream's credential (an OAuth2 access token) could not be obtained.
    #[error("no access token for the upstream's credential (token endpoint unavailable)")]
    UpstreamCredential,
    #[error("upstream answered an upgrade with {0:?}")]
    UpstreamUpgrade(String),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl RequestError {
    pub fn side(&self) -> Side {
        match self {
            Self::Upstream(_) | Self::UpstreamUpgrade(_) | Self::UpstreamCredential => {
                Side::Upstream
            }
            Self::Internal(_) => Side::Gateway,
            _ => Side::Client,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::CertificateNoLongerValid(_) => StatusCode::FORBIDDEN,
            Self::RevocationUnavailable | Self::UpstreamCredential => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Token(t) if t.failure.is_forbidden() => StatusCode::FORBIDDEN,
            Self::Token(_) => StatusCode::UNAUTHORIZED,
            Self::TokenRequest(_) | Self::KeyRequest(_) => StatusCode::BAD_REQUEST,
            Self::ApiKey(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream(e) => e.status(),
            Self::UpstreamUpgrade(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON `error` code (also the `grpc-message`); names no route, rule or claim.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Token(t) if t.failure == TokenFailure::Missing => "unauthenticated",
            Self::Token(t) if t.failure.is_forbidden() => "insufficient_scope",
            Self::Token(_) => "invalid_token",
            Self::TokenRequest(_) | Self::KeyRequest(_) => "invalid_request",
            Self::ApiKey(k) => k.code(),
            Self::UpstreamCredential => "upstream_credential_unavailable",
            _ => code_for(self.status()),
        }
    }

    /// The gRPC status a gRPC client gets in a trailers-only response.
    pub fn grpc_status(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "3",         // INVALID_ARGUMENT
            StatusCode::UNAUTHORIZED => "16",       // UNAUTHENTICATED
            StatusCode::FORBIDDEN => "7",           // PERMISSION_DENIED
            StatusCode::NOT_FOUND => "12",          // UNIMPLEMENTED
            StatusCode::METHOD_NOT_ALLOWED => "12", // UNIMPLEMENTED
            StatusCode::PAYLOAD_TOO_LARGE => "8",   // RESOURCE_EXHAUSTED
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "8", // RESOURCE_EXHAUSTED
            StatusCode::REQUEST_TIMEOUT => "4",     // DEADLINE_EXCEEDED
            StatusCode::TOO_MANY_REQUESTS => "8",   // RESOURCE_EXHAUSTED
            s if s.is_server_error() && s != StatusCode::INTERNAL_SERVER_ERROR => "14", // UNAVAILABLE
            StatusCode::INTERNAL_SERVER_ERROR => "13",                                  // INTERNAL
            _ => "2",                                                                   // UNKNOWN
        }
    }

    /// Client faults are routine (debug); upstream failures need an operator's eye (warn);
    /// gateway failures are bugs or resource problems (error).
    pub fn level(&self) -> tracing::Level {
        match self.side() {
            Side::Client => tracing::Level::DEBUG,
            Side::Upstream => tracing::Level::WARN,
            Side::Gateway => tracing::Level::ERROR,
        }
    }
}

/// The JSON `error` code of a status certgate answers locally.
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request_header_fields_too_large",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        _ => "internal_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_knows_its_side_and_answers() {
        let cases: [(RequestError, Side, u16, &str, &str); 7] = [
            (
                Malformed::TransferEncoding.into(),
                Side::Client,
                400,
                "bad_request",
                "3",
            ),
            (
                RequestError::BodyTimeout(Duration::from_secs(1)),
                Side::Client,
                408,
                "request_timeout",
                "4",
            ),
            (RequestError::NoRoute, Side::Client, 404, "not_found", "12"),
            (
                RequestError::Unauthenticated,
                Side::Client,
                401,
                "unauthenticated",
                "16",
            ),
            (RequestError::Forbidden, Side::Client, 403, "forbidden", "7"),
            (
                RequestError::UpstreamUpgrade("h2c".into()),
                Side::Upstream,
                502,
                "bad_gateway",
                "14",
            ),
            (
                RequestError::Internal("x"),
                Side::Gateway,
                500,
                "internal_error",
                "13",
            ),
        ];
        for (e, side, status, code, grpc) in cases {
            assert_eq!(e.side(), side, "{e}");
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(e.code(), code, "{e}");
            assert_eq!(e.grpc_status(), grpc, "{e}");
        }
    }
}
