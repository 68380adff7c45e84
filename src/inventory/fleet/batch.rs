//! A batch: what the database does not have yet, as column arrays for one `unnest` upsert per
//! table, and the marks that move when it is committed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_postgres::Transaction;

use crate::inventory::{Entry, Inventory, RouteCount};

/// Counts of one (credential, route) not yet in the database.
#[derive(Default)]
pub struct Batch {
    pub seq: i64,
    // certgate_credentials columns.
    sha256: Vec<String>,
    kind: Vec<&'static str>,
    subject: Vec<String>,
    issuer: Vec<String>,
    serial: Vec<String>,
    not_before: Vec<i64>,
    not_after: Vec<i64>,
    owner: Vec<Option<String>>,
    first_seen: Vec<i64>,
    last_seen: Vec<i64>,
    revoked_at: Vec<Option<i64>>,
    // certgate_sightings columns.
    s_sha256: Vec<String>,
    s_route: Vec<String>,
    s_first: Vec<i64>,
    s_last: Vec<i64>,
    s_allowed: Vec<i64>,
    s_refused: Vec<i64>,
    /// What each route count will be marked as synced to once committed.
    marks: Vec<(Arc<RouteCount>, u64, u64, i64)>,
    /// Credentials the config names whose facts this batch carries.
    facts: Vec<Arc<Entry>>,
}

impl Batch {
    /// What was counted since the last commit, one row per (credential, route) that changed,
    /// at most `limit` rows (the rest goes in the next batch).
    pub fn collect(inventory: &Inventory, seq: i64, limit: usize) -> Self {
        let names = inventory.route_names_snapshot();
        let mut b = Batch {
            seq,
            ..Batch::default()
        };
        for e in inventory.entries.iter() {
            if b.rows() >= limit {
                break;
            }
            let entry = e.value();
            let mut any = false;
            for c in entry.route_counts.all() {
                let Some((allowed, refused, last)) = c.unsynced() else {
                    continue;
                };
                let synced_allowed = c.synced_allowed.load(Ordering::Relaxed);
                let synced_refused = c.synced_refused.load(Ordering::Relaxed);
                let Some(route) = names.get(c.id as usize) else {
                    continue;
                };
                any = true;
                b.s_sha256.push(entry.identity.load().sha256.clone());
                b.s_route.push(route.clone());
                b.s_first.push(c.first_seen);
                b.s_last.push(last);
                b.s_allowed.push((allowed - synced_allowed) as i64);
                b.s_refused.push((refused - synced_refused) as i64);
                b.marks.push((c.clone(), allowed, refused, last));
            }
            let facts = entry.facts_unsynced.load(Ordering::Relaxed);
            if facts {
                b.facts.push(entry.clone());
            }
            if any || facts {
                let id = entry.identity.load();
                b.sha256.push(id.sha256.clone());
                b.kind.push(id.kind.label());
                b.subject.push(id.subject.clone());
                b.issuer.push(id.issuer.clone());
                b.serial.push(id.serial.clone());
                b.not_before.push(id.not_before);
                b.not_after.push(id.not_after);
                b.owner.push(entry.owner());
                b.first_seen.push(entry.first_seen.load(Ordering::Relaxed));
                b.last_seen.push(entry.last_seen.load(Ordering::Relaxed));
                b.revoked_at.push(entry.revoked_at());
            }
        }
        b
    }

    /// Rows a batch would carry now, counted without building one.
    pub fn pending(inventory: &Inventory) -> usize {
        inventory
            .entries
            .iter()
            .map(|e| {
                let e = e.value();
                let facts = usize::from(e.facts_unsynced.load(Ordering::Relaxed));
                facts
                    + e.route_counts
                        .all()
                        .iter()
                        .filter(|c| c.unsynced().is_some())
                        .count()
            })
            .sum()
    }

    /// Rows waiting for the database: sightings, and the facts of configured credentials.
    pub fn rows(&self) -> usize {
        self.s_sha256.len() + self.facts.len()
    }

    /// Writes the batch in `tx`; false when the database already has it (a retry after a
    /// commit whose answer was lost).
    pub async fn apply(
        &self,
        tx: &Transaction<'_>,
        gateway_id: &str,
        boot_id: i64,
    ) -> Result<bool, tokio_postgres::Error> {
        let fresh = tx
            .execute(
                "INSERT INTO certgate_batches (gateway_id, boot_id, seq) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&gateway_id, &boot_id, &self.seq],
            )
            .await?;
        if fresh == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO certgate_credentials
                 (sha256, subject, issuer, serial, not_before, not_after, owner, first_seen, last_seen,
                  kind, revoked_at)
             SELECT s, sub, iss, ser, to_timestamp(nb), to_timestamp(na), o, to_timestamp(f),
                    to_timestamp(l), k, to_timestamp(rv)
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                         $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::bigint[])
                  AS u(s, sub, iss, ser, nb, na, o, f, l, k, rv)
             ON CONFLICT (sha256) DO UPDATE SET
                 owner = coalesce(EXCLUDED.owner, certgate_credentials.owner),
                 not_after = EXCLUDED.not_after,
                 revoked_at = coalesce(certgate_credentials.revoked_at, EXCLUDED.revoked_at),
                 -- 0 (1970): a configured credential nobody used yet, never the earliest use.
                 first_seen = coalesce(least(nullif(certgate_credentials.first_seen, to_timestamp(0)),
                                             nullif(EXCLUDED.first_seen, to_timestamp(0))),
                                       to_timestamp(0)),
                 last_seen = greatest(certgate_credentials.last_seen, EXCLUDED.last_seen)",
            &[
                &self.sha256,
                &self.subject,
                &self.issuer,
                &self.serial,
                &self.not_before,
                &self.not_after,
                &self.owner,
                &self.first_seen,
                &self.last_seen,
                &self.kind,
                &self.revoked_at,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO certgate_sightings (sha256, gateway_id, route, first_seen, last_seen, allowed, refused)
             SELECT s, $1, r, to_timestamp(f), to_timestamp(l), a, d
             FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
                  AS u(s, r, f, l, a, d)
             ON CONFLICT (sha256, gateway_id, route) DO UPDATE SET
                 allowed = certgate_sightings.allowed + EXCLUDED.allowed,
                 refused = certgate_sightings.refused + EXCLUDED.refused,
                 first_seen = least(certgate_sightings.first_seen, EXCLUDED.first_seen),
                 last_seen = greatest(certgate_sightings.last_seen, EXCLUDED.last_seen)",
            &[
                &gateway_id,
                &self.s_sha256,
                &self.s_route,
                &self.s_first,
                &self.s_last,
                &self.s_allowed,
                &self.s_refused,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO certgate_gateways (gateway_id, last_sync) VALUES ($1, now())
             ON CONFLICT (gateway_id) DO UPDATE SET last_sync = now()",
            &[&gateway_id],
        )
        .await?;
        Ok(true)
    }

    /// After the commit: the database has what this batch carried.
    pub fn acknowledge(&self) {
        for e in &self.facts {
            e.facts_unsynced.store(false, Ordering::Relaxed);
        }
        for (c, allowed, refused, last) in &self.marks {
            c.synced_allowed.store(*allowed, Ordering::Relaxed);
            c.synced_refused.store(*refused, Ordering::Relaxed);
            c.synced_last_seen.store(*last, Ordering::Relaxed);
        }
    }
}
