//! Open connections per source IP and per client certificate, so one address or one credential
//! cannot take every slot of the listener. Touched once when a connection opens and once when
//! it closes, never per request.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The live counts.
#[derive(Default)]
pub struct ConnCaps {
    by_ip: Counts<IpAddr>,
    by_identity: Counts<[u8; 32]>,
}

struct Counts<K>(Arc<Mutex<HashMap<K, usize>>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

/// One admitted connection; the count goes down when it is dropped.
pub struct Held<K: Eq + Hash + Copy> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Eq + Hash + Copy> Drop for Held<K> {
    fn drop(&mut self) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl<K: Eq + Hash + Copy> Counts<K> {
    /// Counts one more connection of `key`, unless it already holds `limit` (0: no limit).
    fn admit(&self, key: K, limit: usize) -> Option<Held<K>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        if limit > 0 && *n >= limit {
            if *n == 0 {
                m.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Held {
            counts: self.0.clone(),
            key,
        })
    }
}

impl ConnCaps {
    pub fn admit_ip(&self, ip: IpAddr, limit: usize) -> Option<Held<IpAddr>> {
        self.by_ip.admit(ip, limit)
    }

    pub fn admit_identity(&self, sha256: [u8; 32], limit: usize) -> Option<Held<[u8; 32]>> {
        self.by_identity.admit(sha256, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_down_on_drop() {
        let caps = ConnCaps::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = caps.admit_ip(ip, 2).unwrap();
        let b = caps.admit_ip(ip, 2).unwrap();
        assert!(caps.admit_ip(ip, 2).is_none());
        assert!(caps.admit_ip("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        let c = caps.admit_ip(ip, 2).unwrap();
        drop((b, c));
        assert!(
            caps.by_ip.0.lock().unwrap().is_empty(),
            "no entry left behind"
        );
        let unlimited: Vec<_> = (0..100).map(|_| caps.admit_identity([1; 32], 0)).collect();
        assert!(unlimited.iter().all(Option::is_some));
    }
}
