//! Rate limiters by route name across reloads: a route whose limit spec is unchanged keeps its
//! limiter (and every key's budget); a changed or new one starts fresh; removed ones are
//! dropped with the old snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{RateLimit, RateLimitSpec};

/// Locked only while a snapshot is built or swapped in, never on the request path.
#[derive(Default)]
pub struct LimitRegistry {
    live: Mutex<HashMap<String, Arc<RateLimit>>>,
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

    /// Makes `limits` (route name, limiter; those of the snapshot going live) the registered set.
    pub fn adopt<'a>(&self, limits: impl Iterator<Item = (&'a str, &'a Arc<RateLimit>)>) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.clear();
        live.extend(limits.map(|(n, l)| (n.to_string(), l.clone())));
    }
}
