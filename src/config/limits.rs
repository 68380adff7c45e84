//! The raw abuse-control tables: a route's `rate_limit = {…}` and `quota = {…}`.

use std::time::Duration;

use serde::Deserialize;

/// `rate_limit = { requests, per, burst, key }` on a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Sustained rate: this many requests …
    pub requests: u32,
    /// … per this long.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Requests allowed at once after a quiet period; default `requests`.
    pub burst: Option<u32>,
    #[serde(default)]
    pub key: LimitKeyKind,
}

/// What a limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKeyKind {
    /// The client certificate; the source IP for a client without one.
    #[default]
    Identity,
    SourceIp,
    /// One budget shared by every client of the route.
    Route,
}

impl LimitKeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::SourceIp => "source_ip",
            Self::Route => "route",
        }
    }
}

/// `quota = { requests, bytes, per, key }` on a route: a fixed-window budget per key, the
/// bulk-extraction guard. At least one of `requests` and `bytes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// Requests per window.
    pub requests: Option<u64>,
    /// Response body bytes (as sent to the client) per window.
    pub bytes: Option<bytesize::ByteSize>,
    /// The window; windows start at multiples of it since the Unix epoch.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    #[serde(default)]
    pub key: LimitKeyKind,
}
