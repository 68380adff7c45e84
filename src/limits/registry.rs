//! Rate limiters by route name across reloads: a route whose limit spec is unchanged keeps its
//! limiter (and every key's budget); a changed or new one starts fresh; removed ones are
//! dropped with the old snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::IntCounter;

use super::quota::{Quota, QuotaSpec};
use super::redis::RedisBackend;
use super::{RateLimit, RateLimitSpec};

/// Locked only while a snapshot is built or swapped in, never on the request path.
#[derive(Default)]
pub struct LimitRegistry {
    live: Mutex<HashMap<String, Arc<RateLimit>>>,
    quotas: Mutex<HashMap<String, Arc<Quota>>>,
    /// The Redis backend, kept (with its connection) while `redis_url` stays the same.
    redis: Mutex<Option<Arc<RedisBackend>>>,
}

impl LimitRegistry {
    /// The limiter of route `route` for `spec`: the live one when its spec is unchanged.
    pub fn resolve(&self, route: &str, spec: RateLimitSpec) -> Arc<RateLimit> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(route) {
            Some(l) if l.spec == spec => l.clone(),
            _ => Arc::new(RateLimit::new(spec)),
        }
    }

    /// The quota of route `route` for `spec`: the live one (with its counters) when unchanged.
    pub fn resolve_quota(&self, route: &str, spec: QuotaSpec) -> Arc<Quota> {
        let live = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(route) {
            Some(q) if q.spec == spec => q.clone(),
            _ => Arc::new(Quota::new(spec)),
        }
    }

    /// The Redis backend for `url`: the live one (connected, with its health) when unchanged.
    pub fn resolve_redis(
        &self,
        url: &str,
        failures: impl FnOnce() -> [IntCounter; 3],
    ) -> Result<Arc<RedisBackend>, redis::RedisError> {
        let live = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        match &*live {
            Some(b) if b.url == url => Ok(b.clone()),
            _ => RedisBackend::new(url, failures()).map(Arc::new),
        }
    }

    /// Makes `limiters` and `quotas` (route name and handle; those of the snapshot going live)
    /// and `backend` the registered ones, and starts the backend's connection (inside the
    /// runtime).
    pub fn adopt<'a>(
        &self,
        limiters: impl Iterator<Item = (&'a str, &'a Arc<RateLimit>)>,
        quotas: impl Iterator<Item = (&'a str, &'a Arc<Quota>)>,
        backend: Option<&Arc<RedisBackend>>,
    ) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.clear();
        live.extend(limiters.map(|(n, l)| (n.to_string(), l.clone())));
        drop(live);
        let mut live = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        live.clear();
        live.extend(quotas.map(|(n, q)| (n.to_string(), q.clone())));
        drop(live);
        if let Some(b) = backend {
            b.start();
        }
        *self.redis.lock().unwrap_or_else(|e| e.into_inner()) = backend.cloned();
    }
}
