//! Quotas: requests and response bytes per key per fixed window (windows start at multiples of
//! `per` since the Unix epoch, so every gateway agrees on them). The request that crosses the
//! quota completes; the next one is refused until the window ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use http::HeaderValue;

use super::{LimitKey, Outcome};
use crate::config::{LimitKeyKind, RawQuota};

/// A route's `quota`, validated. Equal specs share their counters across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSpec {
    pub requests: Option<u64>,
    pub bytes: Option<u64>,
    pub per: Duration,
    pub key: LimitKeyKind,
}

impl QuotaSpec {
    pub fn compile(raw: &RawQuota) -> Result<Self, (&'static str, String)> {
        if raw.requests.is_none() && raw.bytes.is_none() {
            return Err(("quota", "give requests, bytes or both".into()));
        }
        if raw.requests == Some(0) {
            return Err(("quota.requests", "must be at least 1".into()));
        }
        if raw.bytes.is_some_and(|b| b.as_u64() == 0) {
            return Err(("quota.bytes", "must be at least 1 byte".into()));
        }
        if raw.per.as_secs() < 1 {
            return Err(("quota.per", "must be at least 1s".into()));
        }
        Ok(Self {
            requests: raw.requests,
            bytes: raw.bytes.map(|b| b.as_u64()),
            per: raw.per,
            key: raw.key,
        })
    }
}

/// One key's use of the current window.
#[derive(Default)]
pub struct QuotaCell {
    window: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl QuotaCell {
    /// Adds the bytes of a response sent in window `window`.
    pub fn add_bytes(&self, window: u64, n: u64) {
        if self.window.load(Ordering::Relaxed) == window {
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// One route's quota.
pub struct Quota {
    pub spec: QuotaSpec,
    cells: DashMap<LimitKey, Arc<QuotaCell>>,
    pub policy_header: HeaderValue,
}

/// What a request drew from the quota: its cell and window, to add the response's bytes.
pub struct Charge {
    pub cell: Arc<QuotaCell>,
    pub window: u64,
}

impl Quota {
    pub fn new(spec: QuotaSpec) -> Self {
        // q: requests when the quota counts them, else bytes.
        let q = spec.requests.or(spec.bytes).unwrap_or(0);
        let policy = format!("\"quota\";q={q};w={}", spec.per.as_secs());
        Self {
            policy_header: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("\"quota\"")),
            cells: DashMap::new(),
            spec,
        }
    }

    /// `key`'s cell, moved to the window of `now_ms` (its counts reset when the window is new).
    fn cell(&self, key: &LimitKey, now_ms: u64) -> (Arc<QuotaCell>, u64) {
        let window = now_ms / self.spec.per.as_millis() as u64;
        let cell = match self.cells.get(key) {
            Some(c) => c.clone(),
            None => self.cells.entry(*key).or_default().clone(),
        };
        let seen = cell.window.load(Ordering::Relaxed);
        if seen != window
            && cell
                .window
                .compare_exchange(seen, window, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            cell.requests.store(0, Ordering::Relaxed);
            cell.bytes.store(0, Ordering::Relaxed);
        }
        (cell, window)
    }

    /// Adds `n` bytes that went through an upgraded connection (either way) to `key`'s use at
    /// `now_ms`; true when that use is now over the byte quota (the tunnel is then closed).
    pub fn charge_tunnel_bytes(&self, key: &LimitKey, now_ms: u64, n: u64) -> bool {
        let Some(limit) = self.spec.bytes else {
            return false;
        };
        let (cell, _) = self.cell(key, now_ms);
        cell.bytes.fetch_add(n, Ordering::Relaxed) + n > limit
    }

    /// Counts one request against `key` at `now_ms` (Unix milliseconds).
    pub fn check(&self, key: &LimitKey, now_ms: u64) -> (Outcome, Option<Charge>) {
        let per_ms = self.spec.per.as_millis() as u64;
        let (cell, window) = self.cell(key, now_ms);
        let used_requests = cell.requests.load(Ordering::Relaxed);
        let used_bytes = cell.bytes.load(Ordering::Relaxed);
        let over = self.spec.requests.is_some_and(|r| used_requests >= r)
            || self.spec.bytes.is_some_and(|b| used_bytes >= b);
        if over {
            let end = (window + 1) * per_ms;
            return (
                Outcome::Limited {
                    retry_after: Duration::from_millis(end.saturating_sub(now_ms)),
                },
                None,
            );
        }
        let used = cell.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let remaining = self.spec.requests.map_or(u32::MAX, |r| {
            u32::try_from(r.saturating_sub(used)).unwrap_or(u32::MAX)
        });
        (
            Outcome::Allowed { remaining },
            Some(Charge { cell, window }),
        )
    }

    /// Forgets keys whose window is over (bounded memory).
    pub fn sweep(&self, now_ms: u64) {
        let window = now_ms / (self.spec.per.as_millis() as u64);
        self.cells
            .retain(|_, c| c.window.load(Ordering::Relaxed) >= window);
    }
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(requests: Option<u64>, bytes: Option<u64>) -> Quota {
        Quota::new(QuotaSpec {
            requests,
            bytes,
            per: Duration::from_secs(60),
            key: LimitKeyKind::Identity,
        })
    }

    #[test]
    fn requests_then_refused_until_the_window_ends() {
        let q = quota(Some(2), None);
        let k = LimitKey::Identity([1; 32]);
        let t = 120_000 + 15_000; // 15 s into a window
        assert!(matches!(
            q.check(&k, t).0,
            Outcome::Allowed { remaining: 1 }
        ));
        assert!(matches!(
            q.check(&k, t).0,
            Outcome::Allowed { remaining: 0 }
        ));
        assert_eq!(
            q.check(&k, t).0,
            Outcome::Limited {
                retry_after: Duration::from_secs(45)
            }
        );
        assert!(
            matches!(q.check(&k, 180_000).0, Outcome::Allowed { .. }),
            "next window"
        );
    }

    #[test]
    fn the_response_that_crosses_the_byte_quota_completes_the_next_is_refused() {
        let q = quota(None, Some(1000));
        let k = LimitKey::Identity([1; 32]);
        let (o, charge) = q.check(&k, 1);
        assert!(matches!(o, Outcome::Allowed { .. }));
        let c = charge.unwrap();
        c.cell.add_bytes(c.window, 1500);
        assert!(matches!(q.check(&k, 2).0, Outcome::Limited { .. }));
        q.sweep(60_001);
        assert!(q.cells.is_empty(), "a finished window is forgotten");
    }

    #[test]
    fn malformed_quotas_name_their_key() {
        let raw = |requests, bytes: Option<u64>, per| RawQuota {
            requests,
            bytes: bytes.map(bytesize::ByteSize),
            per: Duration::from_secs(per),
            key: LimitKeyKind::Identity,
        };
        assert_eq!(
            QuotaSpec::compile(&raw(None, None, 60)).unwrap_err().0,
            "quota"
        );
        assert_eq!(
            QuotaSpec::compile(&raw(Some(0), None, 60)).unwrap_err().0,
            "quota.requests"
        );
        assert_eq!(
            QuotaSpec::compile(&raw(None, Some(0), 60)).unwrap_err().0,
            "quota.bytes"
        );
        assert_eq!(
            QuotaSpec::compile(&raw(Some(1), None, 0)).unwrap_err().0,
            "quota.per"
        );
    }
}
