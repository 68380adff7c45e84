//! Phase (record): the request's credentials other than the client certificate, in the
//! register — the API key, the token's client and signing key, the upstream credential the
//! gateway injected. Each is an atomic update of an entry found by a key computed ahead of
//! time (the token's once per token).

use crate::authz::Verdict;
use crate::inventory::{Described, Kind, NO_EXPIRY};
use crate::util::time::coarse_unix_now;

use super::record::Exchange;

impl Exchange {
    /// Counts one decided request against each credential it used.
    pub(super) fn register_use(&self, route_id: Option<u32>, verdict: Verdict) {
        let telemetry = &self.ctx.gateway.telemetry;
        let inventory = &telemetry.inventory;
        let now = coarse_unix_now();
        if let Some(rec) = self.api_key.as_ref().and_then(|k| k.record.as_ref())
            && let Some(entry) = inventory.credential(&rec.limit_id)
        {
            entry.record(route_id, verdict, now);
        }
        if let Some(t) = &self.token
            && let Some(token) = t.verified.as_deref()
            && let Some(issuer) = self.snapshot.identity.token_issuers.get(t.issuer)
        {
            let s = &token.sighting;
            let mut evicted = 0;
            if let Some(key) = s.client {
                let (name, detail) = match &token.client_id {
                    Some(c) => (c.as_str(), "client_id"),
                    None => (token.sub.as_deref().unwrap_or(""), "sub"),
                };
                let (entry, n) = inventory.observe_credential(
                    &key,
                    || described(Kind::TokenClient, key, name, &issuer.name, detail),
                    now,
                );
                if t.fresh {
                    let owner = self
                        .owner
                        .and_then(|i| self.snapshot.identity.owners.list.get(i));
                    entry.set_owner(owner.map(|o| o.name.clone()));
                }
                entry.record(route_id, verdict, now);
                evicted += n;
            }
            let kid = s.kid.as_deref().unwrap_or("(no kid)");
            let (entry, n) = inventory.observe_credential(
                &s.key,
                || described(Kind::TokenKey, s.key, kid, &issuer.name, &s.alg),
                now,
            );
            entry.record(route_id, verdict, now);
            telemetry.metrics.inventory_evictions.inc_by(evicted + n);
        }
        if verdict == Verdict::Allow
            && self.upstream_latency.is_some()
            && let Some(Some(c)) = self
                .upstream
                .and_then(|u| self.snapshot.routing.upstream_credentials.get(u))
            && let Some(entry) = inventory.credential(&c.inventory_key)
        {
            entry.record(route_id, verdict, now);
        }
    }
}

fn described(kind: Kind, key: [u8; 32], name: &str, issuer: &str, detail: &str) -> Described {
    Described {
        kind,
        key,
        name: name.to_string(),
        issuer: issuer.to_string(),
        detail: detail.to_string(),
        not_before: 0,
        not_after: NO_EXPIRY,
    }
}
