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
    /// An HTTP/2 connection idle for `idle_timeout`: GOAWAY.
    Idle,
    /// `max_connections_per_identity` reached: the new connection is closed.
    ConnectionsPerIdentity,
    /// `max_connections_per_source_ip` reached: the new connection is closed.
    ConnectionsPerSourceIp,
    /// More than `h2_max_pings_per_second` PING/SETTINGS frames: the connection is cut.
    H2ControlFlood,
}

impl Limit {
    pub const ALL: [Limit; 10] = [
        Self::HeaderBytes,
        Self::BodyBytes,
        Self::HeaderTimeout,
        Self::Connections,
        Self::RequestsPerConnection,
        Self::HandshakeTimeout,
        Self::Idle,
        Self::ConnectionsPerIdentity,
        Self::ConnectionsPerSourceIp,
        Self::H2ControlFlood,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::HeaderBytes => "header_bytes",
            Self::BodyBytes => "body_bytes",
            Self::HeaderTimeout => "header_timeout",
            Self::Connections => "connections",
            Self::RequestsPerConnection => "requests_per_connection",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Idle => "idle",
            Self::ConnectionsPerIdentity => "connections_per_identity",
            Self::ConnectionsPerSourceIp => "connections_per_source_ip",
            Self::H2ControlFlood => "h2_control_flood",
        }
    }
}
