//! Passive outlier detection: consecutive connect failures, timeouts or 5xx from an endpoint
//! eject it for `ejection_time`, doubling on repeats. Only upstream-side failures count; a
//! client's fault never reaches here.

use std::sync::atomic::Ordering;

use tracing::warn;

use super::Upstream;
use super::endpoint::now_ms;

impl Upstream {
    /// Passive outlier detection: consecutive connect failures or 5xx eject an endpoint.
    pub(super) fn report(&self, i: usize, success: bool) {
        let e = &self.endpoints[i];
        if success {
            e.consecutive_failures.store(0, Ordering::Relaxed);
            e.ejections.store(0, Ordering::Relaxed);
            return;
        }
        let failures = e.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.eject_after {
            e.consecutive_failures.store(0, Ordering::Relaxed);
            let n = e.ejections.fetch_add(1, Ordering::Relaxed).min(10);
            let ms = (self.ejection_time.as_millis() as u64).saturating_mul(1 << n);
            e.ejected_until_ms.store(now_ms() + ms, Ordering::Relaxed);
            self.metrics.ejected();
            warn!(
                upstream = %self.name,
                endpoint = %e.authority,
                failures,
                ejected_for_ms = ms,
                "endpoint ejected after consecutive failures"
            );
        }
    }
}
