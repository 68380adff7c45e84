//! One inventory entry: what is known about one credential. Counters are atomics so requests
//! never lock.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::principals::Principals;
use super::record::{DayUses, Identity, Kind};
use super::routes::{RouteCounts, RouteSet};
use crate::authz::Verdict;

/// Days of per-day request counts an API key keeps.
pub const DAYS: usize = 32;

/// What is known about one credential. Counters are atomics so requests never lock.
pub struct Entry {
    /// Replaced when the config changes a registered credential (a new sunset or expiry).
    pub(super) identity: ArcSwap<Identity>,
    /// 0: registered from the config, never used yet.
    pub(super) first_seen: AtomicI64,
    pub(super) last_seen: AtomicI64,
    pub(super) allowed: AtomicU64,
    pub(super) denied: AtomicU64,
    /// Routes it was allowed on, and routes it was refused on.
    pub(super) routes_allowed: RouteSet,
    pub(super) routes_refused: RouteSet,
    /// Token `sub` and `client_id` values presented with this certificate.
    pub(super) principals: Principals,
    /// The owner the owners file gave it last (set once per connection and config).
    pub(super) owner: Mutex<Option<Arc<str>>>,
    /// Requests per route, allowed and refused, with first and last seen.
    pub(super) route_counts: RouteCounts,
    /// When the gateway learnt it was revoked (a CRL in force lists it, or OCSP said so);
    /// 0: not known to be revoked. Never undone.
    pub(super) revoked_at: AtomicI64,
    /// API keys: requests per day over the last [`DAYS`] days (the migration report).
    pub(super) days: Option<Box<DayCounts>>,
    /// A credential the config names whose facts (owner, sunset, expiry) the fleet database
    /// has not had since they were last registered: sent even without new requests.
    pub(super) facts_unsynced: AtomicBool,
}

impl Entry {
    pub(super) fn new(identity: Identity, first_seen: i64, last_seen: i64) -> Self {
        let days = (identity.kind == Kind::ApiKey).then(Box::default);
        let from_config = identity.kind.from_config();
        Self {
            identity: ArcSwap::from_pointee(identity),
            first_seen: AtomicI64::new(first_seen),
            last_seen: AtomicI64::new(last_seen),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            routes_allowed: RouteSet::new(),
            routes_refused: RouteSet::new(),
            principals: Principals::default(),
            owner: Mutex::new(None),
            route_counts: RouteCounts::default(),
            revoked_at: AtomicI64::new(0),
            days,
            facts_unsynced: AtomicBool::new(from_config),
        }
    }

    pub fn kind(&self) -> Kind {
        self.identity.load().kind
    }

    /// Records that the certificate is revoked (the first time only).
    pub fn mark_revoked(&self, now: i64) {
        let _ =
            self.revoked_at
                .compare_exchange(0, now.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(super) fn revoked_at(&self) -> Option<i64> {
        Some(self.revoked_at.load(Ordering::Relaxed)).filter(|t| *t != 0)
    }

    /// Records the certificate's owner (`None`: no owner entry matches it).
    pub fn set_owner(&self, owner: Option<Arc<str>>) {
        let mut o = self.owner.lock().unwrap_or_else(|e| e.into_inner());
        if *o != owner {
            *o = owner;
        }
    }

    pub(super) fn owner(&self) -> Option<String> {
        let o = self.owner.lock().unwrap_or_else(|e| e.into_inner());
        o.as_deref().map(str::to_string)
    }

    /// Records the principals of a verified access token presented with this certificate.
    pub fn note_token(&self, sub: Option<&str>, client_id: Option<&str>) {
        self.principals.note(sub, client_id);
    }

    /// Records one request: a policy verdict and, when a route matched, its inventory id.
    pub fn record(&self, route_id: Option<u32>, verdict: Verdict, now: i64) {
        self.last_seen.fetch_max(now, Ordering::Relaxed);
        if self.first_seen.load(Ordering::Relaxed) == 0 {
            let _ = self.first_seen.compare_exchange(
                0,
                now.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        let (count, routes) = match verdict {
            Verdict::Allow => (&self.allowed, &self.routes_allowed),
            Verdict::Deny | Verdict::WouldDeny => (&self.denied, &self.routes_refused),
            Verdict::Unauthenticated | Verdict::NoRoute => return,
        };
        count.fetch_add(1, Ordering::Relaxed);
        if let Some(days) = &self.days {
            days.add(now.div_euclid(86400));
        }
        if let Some(id) = route_id {
            routes.insert(id);
            self.route_counts
                .record(id, matches!(verdict, Verdict::Allow), now);
        }
    }
}

/// Requests per day in a ring of [`DAYS`] slots, each tagged with its day.
#[derive(Default)]
pub(super) struct DayCounts {
    slots: [(AtomicI64, AtomicU64); DAYS],
}

impl DayCounts {
    fn add(&self, day: i64) {
        let (tag, count) = &self.slots[day.rem_euclid(DAYS as i64) as usize];
        if tag.swap(day, Ordering::Relaxed) != day {
            // A new day in this slot (a race at midnight may lose a count: it is a report).
            count.store(0, Ordering::Relaxed);
        }
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// The days with requests, oldest first.
    pub(super) fn snapshot(&self) -> Vec<DayUses> {
        let mut out: Vec<DayUses> = self
            .slots
            .iter()
            .map(|(tag, count)| DayUses {
                day: tag.load(Ordering::Relaxed),
                requests: count.load(Ordering::Relaxed),
            })
            .filter(|d| d.requests > 0)
            .collect();
        out.sort_by_key(|d| d.day);
        out
    }

    pub(super) fn restore(&self, days: &[DayUses]) {
        for d in days {
            let (tag, count) = &self.slots[d.day.rem_euclid(DAYS as i64) as usize];
            if tag.load(Ordering::Relaxed) <= d.day {
                tag.store(d.day, Ordering::Relaxed);
                count.store(d.requests, Ordering::Relaxed);
            }
        }
    }
}
