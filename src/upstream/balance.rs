//! Choosing an endpoint: round robin, or least requests by the power of two choices, among
//! endpoints neither ejected nor failing health checks.

use std::sync::atomic::Ordering;

use crate::config::LoadBalancing;

use super::Upstream;
use super::endpoint::now_ms;

impl Upstream {
    /// Chooses an endpoint that is neither ejected nor unhealthy, avoiding `tried` when possible.
    pub(super) fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let ok = |i: usize| self.endpoints[i].available(now);
        self.pick_among(|i| ok(i) && !tried.contains(&i))
            .or_else(|| self.pick_among(ok))
    }

    fn pick_among(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let first = (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))?;
        if self.lb == LoadBalancing::RoundRobin || n == 1 {
            return Some(first);
        }
        // Power of two choices: a second eligible endpoint from a random offset.
        let offset = fastrand::usize(1..n);
        let second = (0..n)
            .map(|k| (first + offset + k) % n)
            .find(|&i| i != first && eligible(i));
        match second {
            Some(s)
                if self.endpoints[s].in_flight.load(Ordering::Relaxed)
                    < self.endpoints[first].in_flight.load(Ordering::Relaxed) =>
            {
                Some(s)
            }
            _ => Some(first),
        }
    }
}
