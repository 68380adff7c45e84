//! Abuse controls on the request path: per-route rate limits (GCRA, burst-tolerant) keyed by
//! identity, source IP or route, counted in this process or in Redis for a whole fleet
//! ([`redis`]), and quotas ([`quota`]). The limiters are live state ([`registry`]): a reload
//! that leaves a route's limit as it was keeps its counters.

pub mod conns;
pub mod quota;
pub mod redis;
pub mod registry;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderValue;

use crate::config::{LimitKeyKind, OnBackendError, RawRateLimit};

/// Which limit refused a request: the `kind` label of `certgate_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Rate,
    Quota,
}

impl LimitKind {
    pub const ALL: [LimitKind; 2] = [Self::Rate, Self::Quota];

    pub fn label(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::Quota => "quota",
        }
    }
}

/// What one request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// The client certificate (SHA-256 of the leaf).
    Identity([u8; 32]),
    SourceIp(IpAddr),
    /// One budget for the whole route.
    Route,
}

impl LimitKey {
    /// The key a request is counted under: `identity` falls back to the source IP for a
    /// client without a certificate.
    pub fn of(kind: LimitKeyKind, leaf: Option<&[u8; 32]>, ip: IpAddr) -> Self {
        match (kind, leaf) {
            (LimitKeyKind::Identity, Some(l)) => Self::Identity(*l),
            (LimitKeyKind::Identity | LimitKeyKind::SourceIp, _) => Self::SourceIp(ip),
            (LimitKeyKind::Route, _) => Self::Route,
        }
    }
}

/// A route's `rate_limit`, validated. Equal specs share their counters across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    pub key: LimitKeyKind,
}

impl RateLimitSpec {
    /// Errors are `(key, problem)`, the key relative to the route.
    pub fn compile(raw: &RawRateLimit) -> Result<Self, (&'static str, String)> {
        if raw.requests == 0 {
            return Err(("rate_limit.requests", "must be at least 1".into()));
        }
        if raw.per.is_zero() {
            return Err(("rate_limit.per", "must be greater than zero".into()));
        }
        let burst = raw.burst.unwrap_or(raw.requests);
        if burst == 0 {
            return Err(("rate_limit.burst", "must be at least 1".into()));
        }
        if raw.per / raw.requests < Duration::from_nanos(1) {
            return Err(("rate_limit.per", "too short for that many requests".into()));
        }
        Ok(Self {
            requests: raw.requests,
            per: raw.per,
            burst,
            key: raw.key,
        })
    }
}

type Keyed =
    RateLimiter<LimitKey, DashMapStateStore<LimitKey>, DefaultClock, StateInformationMiddleware>;

/// One route's limiter.
pub struct RateLimit {
    pub spec: RateLimitSpec,
    limiter: Keyed,
    /// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the sustained rate.
    pub policy_header: HeaderValue,
}

/// A limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let through; this many more would be let through right now.
    Allowed { remaining: u32 },
    /// Over the limit: the earliest time a request of this key would pass.
    Limited { retry_after: Duration },
}

impl RateLimit {
    pub fn new(spec: RateLimitSpec) -> Self {
        let burst = NonZeroU32::new(spec.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(spec.per / spec.requests)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let policy = format!(
            "\"rate\";q={};w={}",
            spec.requests,
            spec.per.as_secs().max(1)
        );
        Self {
            limiter: RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
            policy_header: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("\"rate\"")),
            spec,
        }
    }

    /// Counts one request against `key`.
    pub fn check(&self, key: &LimitKey) -> Outcome {
        match self.limiter.check_key(key) {
            Ok(snapshot) => Outcome::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => Outcome::Limited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    /// Counts one request against `key` where the limit is kept: in this process, or in
    /// `fleet` (Redis) for a fleet-wide limit. When Redis fails (or is known to be down),
    /// `on_error` answers — this process's limiter (`local`), let through uncounted (`allow`:
    /// `None`), or refused for a second (`deny`) — and the failure is returned beside it.
    pub async fn check_where_kept(
        &self,
        route: &str,
        key: LimitKey,
        fleet: Option<&Fleet<'_>>,
    ) -> (Option<Outcome>, Option<redis::BackendFailure>) {
        let Some(fleet) = fleet else {
            return (Some(self.check(&key)), None);
        };
        match fleet
            .backend
            .check(route, &self.spec, &key, fleet.timeout)
            .await
        {
            Ok(outcome) => (Some(outcome), None),
            Err(failure) => {
                let answer = match fleet.on_error {
                    OnBackendError::Local => Some(self.check(&key)),
                    OnBackendError::Allow => None,
                    OnBackendError::Deny => Some(Outcome::Limited {
                        retry_after: Duration::from_secs(1),
                    }),
                };
                (answer, Some(failure))
            }
        }
    }

    /// Forgets keys whose state is back to fresh (bounded memory for idle identities).
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Where fleet-wide rate limits are counted, and what answers when that store fails.
pub struct Fleet<'a> {
    pub backend: &'a redis::RedisBackend,
    pub timeout: Duration,
    pub on_error: OnBackendError,
}

/// Whole seconds for `Retry-After`, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requests: u32, per_ms: u64, burst: u32, key: LimitKeyKind) -> RateLimitSpec {
        RateLimitSpec {
            requests,
            per: Duration::from_millis(per_ms),
            burst,
            key,
        }
    }

    #[test]
    fn burst_then_limited_then_keys_are_independent() {
        let l = RateLimit::new(spec(1, 60_000, 3, LimitKeyKind::Identity));
        let a = LimitKey::Identity([1; 32]);
        let b = LimitKey::Identity([2; 32]);
        assert_eq!(l.check(&a), Outcome::Allowed { remaining: 2 });
        assert_eq!(l.check(&a), Outcome::Allowed { remaining: 1 });
        assert_eq!(l.check(&a), Outcome::Allowed { remaining: 0 });
        match l.check(&a) {
            Outcome::Limited { retry_after } => {
                assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");
                assert_eq!(retry_after_secs(retry_after), 60);
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(l.check(&b), Outcome::Allowed { .. }));
        assert_eq!(l.policy_header, "\"rate\";q=1;w=60");
    }

    #[test]
    fn keys_fall_back_to_the_source_ip_without_a_certificate() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(
            LimitKey::of(LimitKeyKind::Identity, None, ip),
            LimitKey::SourceIp(ip)
        );
        assert_eq!(
            LimitKey::of(LimitKeyKind::Identity, Some(&[3; 32]), ip),
            LimitKey::Identity([3; 32])
        );
        assert_eq!(
            LimitKey::of(LimitKeyKind::SourceIp, Some(&[3; 32]), ip),
            LimitKey::SourceIp(ip)
        );
        assert_eq!(LimitKey::of(LimitKeyKind::Route, None, ip), LimitKey::Route);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn malformed_limits_name_their_key() {
        let raw = |requests, per_ms, burst| RawRateLimit {
            requests,
            per: Duration::from_millis(per_ms),
            burst,
            key: LimitKeyKind::Identity,
        };
        assert_eq!(
            RateLimitSpec::compile(&raw(0, 1000, None)).unwrap_err().0,
            "rate_limit.requests"
        );
        assert_eq!(
            RateLimitSpec::compile(&raw(1, 0, None)).unwrap_err().0,
            "rate_limit.per"
        );
        assert_eq!(
            RateLimitSpec::compile(&raw(1, 1000, Some(0)))
                .unwrap_err()
                .0,
            "rate_limit.burst"
        );
        assert_eq!(
            RateLimitSpec::compile(&raw(5, 1000, None)).unwrap().burst,
            5
        );
    }
}
