//! Credentials other than client certificates. API keys and upstream credentials are named by
//! the config: registered when it goes live, so the register lists them before their first use
//! (and keeps them while unused). Token clients and token signing keys are found on verified
//! tokens: created on first sight, like certificates.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Described, Entry, Inventory};

impl Inventory {
    /// Registers a credential the config names, or updates its description (a new sunset,
    /// expiry or owner) keeping its counts; `revoked` marks it revoked. Never used yet: first
    /// and last seen 0.
    pub fn register(&self, d: &Described, owner: Option<Arc<str>>, revoked: bool, now: i64) {
        let entry = self
            .entries
            .entry(d.key)
            .or_insert_with(|| Arc::new(Entry::new(d.identity(), 0, 0)))
            .clone();
        let identity = d.identity();
        if **entry.identity.load() != identity {
            entry.identity.store(Arc::new(identity));
        }
        entry.set_owner(owner);
        if revoked {
            entry.mark_revoked(now);
        }
        // The fleet database gets the facts as they stand now (once per config going live).
        entry.facts_unsynced.store(true, Ordering::Relaxed);
    }

    /// The entry of a credential that is registered or was seen before.
    pub fn credential(&self, key: &[u8; 32]) -> Option<Arc<Entry>> {
        self.entries.get(key).map(|e| e.value().clone())
    }

    /// The entry of a credential found on a request (`describe` runs on first sight only),
    /// and how many entries were evicted to make room.
    pub fn observe_credential(
        &self,
        key: &[u8; 32],
        describe: impl FnOnce() -> Described,
        now: i64,
    ) -> (Arc<Entry>, u64) {
        if let Some(e) = self.entries.get(key) {
            e.last_seen.fetch_max(now, Ordering::Relaxed);
            return (e.clone(), 0);
        }
        let entry = self
            .entries
            .entry(*key)
            .or_insert_with(|| Arc::new(Entry::new(describe().identity(), now, now)))
            .clone();
        (entry, self.evict_over_cap(key))
    }
}
