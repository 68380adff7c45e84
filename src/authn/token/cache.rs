//! Verified tokens kept so a client that reuses its token pays one signature verification, not
//! one per request: per connection (the last token, compared byte for byte) and per issuer (by
//! the token's SHA-256, bounded). An entry counts only while the keys it was verified with are
//! the issuer's current keys; time, binding and scope are checked on every use.

use std::sync::{Arc, Mutex, Weak};

use super::{Issuer, VerifiedToken};

/// Entries per issuer; when full, expired ones are swept, and if none expired the new token is
/// simply not cached.
const MAX_ENTRIES: usize = 10_000;

/// Verified tokens of one issuer, by SHA-256 of the token.
#[derive(Default)]
pub struct TokenCache {
    map: dashmap::DashMap<[u8; 32], Arc<VerifiedToken>>,
}

/// The SHA-256 of a token: the shared cache's key.
pub fn token_digest(token: &str) -> [u8; 32] {
    crate::util::digest::sha256(token.as_bytes())
}

impl TokenCache {
    pub fn get(&self, digest: &[u8; 32], keys_generation: u64) -> Option<Arc<VerifiedToken>> {
        self.map
            .get(digest)
            .map(|e| e.value().clone())
            .filter(|t| t.keys_generation == keys_generation)
    }

    pub fn insert(&self, digest: [u8; 32], token: Arc<VerifiedToken>, now: u64) {
        if self.map.len() >= MAX_ENTRIES {
            self.map.retain(|_, t| t.exp >= now);
            if self.map.len() >= MAX_ENTRIES {
                return;
            }
        }
        self.map.insert(digest, token);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The last token verified on one connection.
#[derive(Default)]
pub struct ConnTokenCache {
    last: Mutex<Option<ConnEntry>>,
}

struct ConnEntry {
    issuer: Weak<Issuer>,
    token: Box<[u8]>,
    verified: Arc<VerifiedToken>,
}

impl ConnTokenCache {
    /// The verified token when `token` is the one this connection presented last to `issuer`.
    pub fn get(&self, issuer: &Arc<Issuer>, token: &str) -> Option<Arc<VerifiedToken>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let e = last.as_ref()?;
        // The weak handle keeps the issuer's allocation, so an equal address is the same issuer.
        (std::ptr::eq(e.issuer.as_ptr(), Arc::as_ptr(issuer)) && *e.token == *token.as_bytes())
            .then(|| e.verified.clone())
    }

    pub fn put(&self, issuer: &Arc<Issuer>, token: &str, verified: Arc<VerifiedToken>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(ConnEntry {
            issuer: Arc::downgrade(issuer),
            token: token.as_bytes().into(),
            verified,
        });
    }
}
