//! The routes one certificate was allowed or refused on (a lock-free bitset per entry), and
//! its counts per route (for the fleet inventory).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Route ids below this are tracked in a lock-free bitset; higher ones (only after more than
/// this many distinct route names) in a small locked set.
const ROUTE_BITS: usize = 1024;

/// A set of route ids: a lock-free bitset for the first [`ROUTE_BITS`], a locked set beyond.
pub(super) struct RouteSet {
    bits: [AtomicU64; ROUTE_BITS / 64],
    more: Mutex<BTreeSet<u32>>,
}

impl RouteSet {
    pub(super) fn new() -> Self {
        Self {
            bits: std::array::from_fn(|_| AtomicU64::new(0)),
            more: Mutex::new(BTreeSet::new()),
        }
    }

    pub(super) fn insert(&self, id: u32) {
        let i = id as usize;
        match self.bits.get(i / 64) {
            Some(word) => {
                let bit = 1u64 << (i % 64);
                // Load first: after the first request on a route the bit is set and this is a read.
                if word.load(Ordering::Relaxed) & bit == 0 {
                    word.fetch_or(bit, Ordering::Relaxed);
                }
            }
            None => {
                if let Ok(mut more) = self.more.lock() {
                    more.insert(id);
                }
            }
        }
    }

    pub(super) fn ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for (w, word) in self.bits.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let b = bits.trailing_zeros();
                ids.push((w * 64) as u32 + b);
                bits &= bits - 1;
            }
        }
        if let Ok(more) = self.more.lock() {
            ids.extend(more.iter().copied());
        }
        ids
    }
}

/// Routes counted per certificate; calls to further routes are only in the sets above.
pub(super) const MAX_COUNTED_ROUTES: usize = 256;

/// One route's counts for one certificate, and what of them the fleet database already has.
#[derive(Debug)]
pub struct RouteCount {
    pub id: u32,
    pub first_seen: i64,
    pub last_seen: AtomicI64,
    pub allowed: AtomicU64,
    pub refused: AtomicU64,
    /// Written by the fleet sink only, after its database committed them.
    pub synced_allowed: AtomicU64,
    pub synced_refused: AtomicU64,
    pub synced_last_seen: AtomicI64,
}

impl RouteCount {
    fn new(id: u32, now: i64) -> Self {
        Self {
            id,
            first_seen: now,
            last_seen: AtomicI64::new(now),
            allowed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            synced_allowed: AtomicU64::new(0),
            synced_refused: AtomicU64::new(0),
            synced_last_seen: AtomicI64::new(i64::MIN),
        }
    }

    fn bump(&self, allowed: bool, now: i64) {
        if self.last_seen.load(Ordering::Relaxed) < now {
            self.last_seen.fetch_max(now, Ordering::Relaxed);
        }
        let c = if allowed {
            &self.allowed
        } else {
            &self.refused
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// What the database does not have yet: `(allowed, refused, last_seen)` now, when any of
    /// them moved since the last commit.
    pub fn unsynced(&self) -> Option<(u64, u64, i64)> {
        let now = (
            self.allowed.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.last_seen.load(Ordering::Relaxed),
        );
        let synced = (
            self.synced_allowed.load(Ordering::Relaxed),
            self.synced_refused.load(Ordering::Relaxed),
            self.synced_last_seen.load(Ordering::Relaxed),
        );
        (now != synced).then_some(now)
    }

    /// Marks everything counted so far as in the database (a restored inventory was synced
    /// before it was saved, or is deliberately not counted twice).
    pub fn mark_synced(&self) {
        self.synced_allowed
            .store(self.allowed.load(Ordering::Relaxed), Ordering::Relaxed);
        self.synced_refused
            .store(self.refused.load(Ordering::Relaxed), Ordering::Relaxed);
        self.synced_last_seen
            .store(self.last_seen.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A certificate's per-route counts: a read lock and a scan of a short list per request; the
/// write lock only the first time a route is called.
#[derive(Debug, Default)]
pub(super) struct RouteCounts {
    list: RwLock<Vec<Arc<RouteCount>>>,
}

impl RouteCounts {
    pub(super) fn record(&self, id: u32, allowed: bool, now: i64) {
        {
            let list = self.list.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = list.iter().find(|c| c.id == id) {
                c.bump(allowed, now);
                return;
            }
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = list.iter().find(|c| c.id == id) {
            c.bump(allowed, now);
        } else if list.len() < MAX_COUNTED_ROUTES {
            let c = RouteCount::new(id, now);
            c.bump(allowed, now);
            list.push(Arc::new(c));
        }
    }

    /// Restores one route's counts (from the saved inventory), as already synced.
    pub(super) fn restore(
        &self,
        id: u32,
        first_seen: i64,
        last_seen: i64,
        allowed: u64,
        refused: u64,
    ) {
        let c = RouteCount::new(id, first_seen);
        c.last_seen.store(last_seen, Ordering::Relaxed);
        c.allowed.store(allowed, Ordering::Relaxed);
        c.refused.store(refused, Ordering::Relaxed);
        c.mark_synced();
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if list.len() < MAX_COUNTED_ROUTES && list.iter().all(|x| x.id != id) {
            list.push(Arc::new(c));
        }
    }

    pub(super) fn all(&self) -> Vec<Arc<RouteCount>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
