//! The limits counted in `certgate_limit_hits_total`.

/// The `limit` label of `certgate_limit_hits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Request head larger than `max_request_header_bytes` (431).
    HeaderBytes,
    /// Request body larger than the route's `max_request_body` (413).
    BodyBytes,
    /// Request head not complete within `header_read_timeout` (connection closed).
    HeaderTimeout,
    /// `max_connections` reached: accepting waits.
    Connections,
    /// `max_requests_per_connection` reached: connection closed / GOAWAY.
    RequestsPerConnection,
    /// TLS handshake not complete within `handshake_timeout`.
    HandshakeTimeout,
}

impl Limit {
    pub const ALL: [Limit; 6] = [
        Self::HeaderBytes,
        Self::BodyBytes,
        Self::HeaderTimeout,
        Self::Connections,
        Self::RequestsPerConnection,
        Self::HandshakeTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::HeaderBytes => "header_bytes",
            Self::BodyBytes => "body_bytes",
            Self::HeaderTimeout => "header_timeout",
            Self::Connections => "connections",
            Self::RequestsPerConnection => "requests_per_connection",
            Self::HandshakeTimeout => "handshake_timeout",
        }
    }
}
