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

/// `[limits]`: where the routes' rate-limit counters live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub backend: LimitBackend,
    /// `redis://[user:password@]host:port/db` (or `rediss://` for TLS); needed with
    /// `backend = "redis"`.
    pub redis_url: Option<String>,
    pub on_backend_error: OnBackendError,
    /// A Redis answer slower than this counts as a backend error (the request goes on under
    /// `on_backend_error`).
    #[serde(with = "humantime_serde")]
    pub backend_timeout: Duration,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            backend: LimitBackend::Local,
            redis_url: None,
            on_backend_error: OnBackendError::Local,
            backend_timeout: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitBackend {
    /// Counters in this process.
    #[default]
    Local,
    /// Counters in Redis, shared by every gateway that points at it.
    Redis,
}

/// What a rate limit does when its Redis backend is slow or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBackendError {
    /// Count in this process until Redis answers again.
    #[default]
    Local,
    /// Let the request through.
    Allow,
    /// Refuse it (429).
    Deny,
}

impl OnBackendError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// `[anomaly]`: the thresholds of the abuse signals.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAnomaly {
    pub enabled: bool,
    /// The sliding window of `distinct_source_ips` and `denial_burst`; also how often one
    /// identity can raise the same kind again.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// One certificate from more source IPs than this within `window`: shared_credential.
    pub distinct_source_ips: u32,
    /// More refused requests (401/403/429) than this for one identity within `window`:
    /// denial_burst.
    pub denial_burst: u32,
    /// Requests in the last `spike_interval` above this many times the identity's own
    /// average per interval (and at least `spike_min_requests`): rate_spike.
    pub spike_factor: f64,
    pub spike_min_requests: u32,
    #[serde(with = "humantime_serde")]
    pub spike_interval: Duration,
    /// After an identity has been seen this long, its first call to a route: new_route.
    #[serde(with = "humantime_serde")]
    pub learning_period: Duration,
    /// Identities tracked at once; beyond it new identities are not watched until idle ones
    /// are evicted.
    pub max_identities: usize,
    /// An identity not seen for this long is forgotten (and learns its routes again).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for RawAnomaly {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(600),
            distinct_source_ips: 5,
            denial_burst: 20,
            spike_factor: 10.0,
            spike_min_requests: 100,
            spike_interval: Duration::from_secs(60),
            learning_period: Duration::from_secs(3600),
            max_identities: 100_000,
            idle_timeout: Duration::from_secs(86_400),
        }
    }
}
