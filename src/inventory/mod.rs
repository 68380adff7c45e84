//! The credential inventory — the register of every credential: each client certificate the
//! gateway has verified, each API key and upstream credential the config names, each token
//! client and token signing key seen on verified tokens; who owns it, when it was seen, what it
//! called and how often it was allowed or denied.
//!
//! A connection looks its entry up once, after the handshake; each request then updates the
//! entry with atomic operations only. The map is bounded (least recently seen evicted) and can be
//! persisted atomically to a JSON file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;

use crate::authn::identity::ClientIdentity;

mod entry;
mod error;
mod filter;
pub mod fleet;
mod kinds;
mod migration;
mod principals;
mod record;
mod report;
mod routes;
mod store;

pub use routes::RouteCount;

pub use entry::Entry;
pub use error::{FilterError, InventoryError};
pub use filter::{Filter, lifetime_excess};
pub use migration::{MigrationRow, migration_rows, render_migration};
pub use record::{DayUses, Described, Kind, NO_EXPIRY, Record, RouteUse, credential_key};
use record::{Identity, identity_of};
pub use report::{Format, RecordView, render};
pub use store::{LoadOutcome, read_file};

/// `credentials{kind,owner,state}` labels.
pub type CountKey = (Kind, String, &'static str);

pub struct Inventory {
    entries: DashMap<[u8; 32], Arc<Entry>>,
    /// Owners (owners file) one of whose certificates has been used: an API key of theirs
    /// with `cutover = "reject_if_cert_seen"` stops working.
    certificate_owners: DashMap<Arc<str>, ()>,
    max_entries: AtomicUsize,
    evictions: AtomicU64,
    route_names: RwLock<RouteNames>,
}

#[derive(Default)]
struct RouteNames {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Inventory {
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: DashMap::new(),
            certificate_owners: DashMap::new(),
            max_entries: AtomicUsize::new(max_entries.max(1)),
            evictions: AtomicU64::new(0),
            route_names: RwLock::new(RouteNames::default()),
        }
    }

    /// Notes that a certificate of `owner` was used.
    pub fn note_certificate_owner(&self, owner: &Arc<str>) {
        if !self.certificate_owners.contains_key(owner) {
            self.certificate_owners.insert(owner.clone(), ());
        }
    }

    /// Whether a certificate of `owner` has been used (since start, or in the saved inventory).
    pub fn owner_uses_certificate(&self, owner: &str) -> bool {
        self.certificate_owners.contains_key(owner)
    }

    pub fn set_max_entries(&self, max: usize) {
        self.max_entries.store(max.max(1), Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total evictions since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Route names by id.
    fn route_names_snapshot(&self) -> Vec<String> {
        match self.route_names.read() {
            Ok(n) => n.names.clone(),
            Err(poisoned) => poisoned.into_inner().names.clone(),
        }
    }

    /// A stable id for a route name (call at config load).
    pub fn route_id(&self, name: &str) -> u32 {
        let mut names = match self.route_names.write() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(id) = names.ids.get(name) {
            return *id;
        }
        let id = names.names.len() as u32;
        names.names.push(name.to_string());
        names.ids.insert(name.to_string(), id);
        id
    }

    /// The entry for a verified certificate, created on first sight (call once per connection).
    /// Returns the entry and how many entries were evicted to make room.
    pub fn observe(&self, id: &ClientIdentity, now: i64) -> (Arc<Entry>, u64) {
        if let Some(e) = self.entries.get(&id.sha256) {
            e.last_seen.fetch_max(now, Ordering::Relaxed);
            return (e.clone(), 0);
        }
        let entry = self
            .entries
            .entry(id.sha256)
            .or_insert_with(|| Arc::new(Entry::new(identity_of(id), now, now)))
            .clone();
        (entry, self.evict_over_cap(&id.sha256))
    }

    pub(super) fn evict_over_cap(&self, keep: &[u8; 32]) -> u64 {
        let max = self.max_entries.load(Ordering::Relaxed);
        let mut evicted = 0;
        while self.entries.len() > max {
            let oldest = self
                .entries
                .iter()
                .filter(|e| e.key() != keep && !e.value().kind().from_config())
                .min_by_key(|e| e.value().last_seen.load(Ordering::Relaxed))
                .map(|e| *e.key());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                    evicted += 1;
                }
                None => break,
            }
        }
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        evicted
    }

    /// Marks revoked every entry that `listed(issuer, serial)` says a CRL in force lists
    /// (issuer as RFC 4514, serial as the raw bytes); returns how many it newly marked.
    pub fn mark_listed_revoked(&self, listed: impl Fn(&str, &[u8]) -> bool, now: i64) -> usize {
        let mut marked = 0;
        for e in self.entries.iter() {
            let v = e.value();
            let id = v.identity.load();
            if v.revoked_at().is_some() || id.kind != Kind::Certificate {
                continue;
            }
            let Ok(serial) = hex::decode(&id.serial) else {
                continue;
            };
            if listed(&id.issuer, &serial) {
                v.mark_revoked(now);
                marked += 1;
            }
        }
        marked
    }

    /// All entries, sorted by subject then SHA-256.
    pub fn records(&self) -> Vec<Record> {
        let names = match self.route_names.read() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<Record> = self
            .entries
            .iter()
            .map(|e| {
                let v = e.value();
                let named = |ids: Vec<u32>| -> Vec<String> {
                    let mut out: Vec<String> = ids
                        .into_iter()
                        .filter_map(|i| names.names.get(i as usize).cloned())
                        .collect();
                    out.sort();
                    out
                };
                let routes_allowed = named(v.routes_allowed.ids());
                let routes_refused: Vec<String> = named(v.routes_refused.ids())
                    .into_iter()
                    .filter(|r| routes_allowed.binary_search(r).is_err())
                    .collect();
                let mut routes: Vec<String> = routes_allowed
                    .iter()
                    .chain(&routes_refused)
                    .cloned()
                    .collect();
                routes.sort();
                let (token_subjects, token_client_ids, token_principals_overflow) =
                    v.principals.snapshot();
                Record {
                    identity: Identity::clone(&v.identity.load()),
                    first_seen: v.first_seen.load(Ordering::Relaxed),
                    last_seen: v.last_seen.load(Ordering::Relaxed),
                    requests_allowed: v.allowed.load(Ordering::Relaxed),
                    requests_denied: v.denied.load(Ordering::Relaxed),
                    routes,
                    routes_allowed,
                    routes_refused,
                    token_subjects,
                    token_client_ids,
                    token_principals_overflow,
                    owner: v.owner(),
                    revoked_at: v.revoked_at(),
                    route_counts: v
                        .route_counts
                        .all()
                        .iter()
                        .filter_map(|c| {
                            Some(RouteUse {
                                route: names.names.get(c.id as usize)?.clone(),
                                first_seen: c.first_seen,
                                last_seen: c.last_seen.load(Ordering::Relaxed),
                                allowed: c.allowed.load(Ordering::Relaxed),
                                refused: c.refused.load(Ordering::Relaxed),
                            })
                        })
                        .collect(),
                    gateways: Vec::new(),
                    uses_by_day: v.days.as_ref().map(|d| d.snapshot()).unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (a.identity.subject.as_str(), a.identity.sha256.as_str())
                .cmp(&(b.identity.subject.as_str(), b.identity.sha256.as_str()))
        });
        out
    }

    /// Credentials by kind, owner (`unowned` for none) and state: `revoked`, `sunset`,
    /// `expired`, `expiring` (within `window_secs`) or `active`.
    pub fn credential_counts(&self, now: i64, window_secs: i64) -> HashMap<CountKey, i64> {
        // Keyed by the shared owner name first: no allocation per credential.
        let mut by_arc: HashMap<(Kind, Option<Arc<str>>, &'static str), i64> = HashMap::new();
        for e in self.entries.iter() {
            let v = e.value();
            let owner = v.owner.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let id = v.identity.load();
            let state = credential_state(&id, v.revoked_at(), now, window_secs);
            *by_arc.entry((id.kind, owner, state)).or_insert(0) += 1;
        }
        let mut counts = HashMap::new();
        for ((kind, owner, state), n) in by_arc {
            let name = owner.map_or_else(
                || crate::authz::owners::UNOWNED.to_string(),
                |o| o.to_string(),
            );
            *counts.entry((kind, name, state)).or_insert(0) += n;
        }
        counts
    }

    /// How many certificates expire before `now + window_secs` (already expired included).
    pub fn expiring_within(&self, now: i64, window_secs: i64) -> usize {
        self.entries
            .iter()
            .filter(|e| {
                let id = e.value().identity.load();
                id.kind == Kind::Certificate && id.not_after < now + window_secs
            })
            .count()
    }
}

/// `revoked`, `expired` (`sunset` for an API key), `expiring` (before `now + window_secs`) or
/// `active`.
fn credential_state(
    id: &Identity,
    revoked_at: Option<i64>,
    now: i64,
    window_secs: i64,
) -> &'static str {
    let not_after = id.not_after;
    if revoked_at.is_some() {
        "revoked"
    } else if not_after < now && id.kind == Kind::ApiKey {
        "sunset"
    } else if not_after < now {
        "expired"
    } else if not_after < now.saturating_add(window_secs) {
        "expiring"
    } else {
        "active"
    }
}

#[cfg(test)]
mod tests;
