//! The routes one certificate was allowed or refused on: a lock-free bitset per entry.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
