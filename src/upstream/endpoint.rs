//! One endpoint of an upstream and what passive and active checks know about it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::uri::Authority;

use crate::upstream::pool::EndpointPool;

pub(super) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One endpoint of a pool and what passive and active checks know about it.
pub struct Endpoint {
    pub authority: Authority,
    pub(super) pool: Arc<EndpointPool>,
    pub(super) consecutive_failures: AtomicU32,
    pub(super) ejections: AtomicU32,
    pub(super) ejected_until_ms: AtomicU64,
    pub(super) in_flight: AtomicU32,
    /// Active health: false after `unhealthy_threshold` failed checks.
    pub(super) healthy: AtomicBool,
    pub(super) hc_streak: AtomicU32,
}

impl Endpoint {
    pub(super) fn new(authority: Authority) -> Self {
        Self {
            pool: EndpointPool::new(authority.clone()),
            authority,
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            hc_streak: AtomicU32::new(0),
        }
    }

    pub(super) fn available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until_ms.load(Ordering::Relaxed) <= now
    }
}

/// Decrements an endpoint's in-flight count when an attempt ends.
pub(super) struct InFlight<'a>(pub(super) &'a Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
