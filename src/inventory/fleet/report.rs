//! `certgate inventory --source postgres`: the fleet view, one record per credential with every
//! gateway that saw it and its counts summed over the fleet.

use std::path::Path;

use super::connect;
use crate::inventory::{Identity, InventoryError, Kind, Record, RouteUse};

/// Every credential in the fleet inventory, sorted by subject.
pub async fn fleet_records(url: &str, ca: Option<&Path>) -> Result<Vec<Record>, InventoryError> {
    let client = connect::connect(url, ca).await?;
    let reading = InventoryError::database("reading the fleet inventory: ");
    let creds = client
        .query(
            "SELECT sha256, subject, issuer, serial,
                    extract(epoch FROM not_before)::bigint, extract(epoch FROM not_after)::bigint,
                    owner, extract(epoch FROM first_seen)::bigint, extract(epoch FROM last_seen)::bigint,
                    kind, extract(epoch FROM revoked_at)::bigint
             FROM certgate_credentials ORDER BY subject, sha256",
            &[],
        )
        .await
        .map_err(&reading)?;
    let sightings = client
        .query(
            "SELECT sha256, gateway_id, route, extract(epoch FROM first_seen)::bigint,
                    extract(epoch FROM last_seen)::bigint, allowed, refused
             FROM certgate_sightings ORDER BY sha256, route, gateway_id",
            &[],
        )
        .await
        .map_err(&reading)?;
    let mut records: Vec<Record> = creds.iter().map(credential).collect();
    let index: std::collections::HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.identity.sha256.clone(), i))
        .collect();
    for s in &sightings {
        let sha: &str = s.get(0);
        let Some(&i) = index.get(sha) else {
            continue;
        };
        add_sighting(&mut records[i], s);
    }
    for r in &mut records {
        r.gateways.sort();
        r.routes.sort();
        r.routes_allowed.sort();
        r.routes_refused = r
            .routes
            .iter()
            .filter(|x| !r.routes_allowed.contains(x))
            .cloned()
            .collect();
    }
    Ok(records)
}

/// One `certgate_credentials` row, before its sightings.
fn credential(r: &tokio_postgres::Row) -> Record {
    Record {
        identity: Identity {
            kind: Kind::parse(r.get(9)).unwrap_or_default(),
            sha256: r.get(0),
            subject: r.get(1),
            issuer: r.get(2),
            serial: r.get(3),
            uris: Vec::new(),
            dns: Vec::new(),
            emails: Vec::new(),
            not_before: r.get(4),
            not_after: r.get(5),
        },
        first_seen: r.get(7),
        last_seen: r.get(8),
        requests_allowed: 0,
        requests_denied: 0,
        routes: Vec::new(),
        routes_allowed: Vec::new(),
        routes_refused: Vec::new(),
        token_subjects: Vec::new(),
        token_client_ids: Vec::new(),
        token_principals_overflow: 0,
        owner: r.get(6),
        revoked_at: r.get(10),
        route_counts: Vec::new(),
        gateways: Vec::new(),
        // Per-day counts stay with each gateway's file.
        uses_by_day: Vec::new(),
    }
}

/// Adds one `certgate_sightings` row (a gateway's counts on a route) to its credential.
fn add_sighting(r: &mut Record, s: &tokio_postgres::Row) {
    let gateway: String = s.get(1);
    let route: String = s.get(2);
    let (allowed, refused): (i64, i64) = (s.get(5), s.get(6));
    r.requests_allowed += allowed.max(0) as u64;
    r.requests_denied += refused.max(0) as u64;
    if !r.gateways.contains(&gateway) {
        r.gateways.push(gateway);
    }
    if !r.routes.contains(&route) {
        r.routes.push(route.clone());
    }
    if allowed > 0 && !r.routes_allowed.contains(&route) {
        r.routes_allowed.push(route.clone());
    }
    match r.route_counts.iter_mut().find(|u| u.route == route) {
        Some(u) => {
            u.first_seen = u.first_seen.min(s.get(3));
            u.last_seen = u.last_seen.max(s.get(4));
            u.allowed += allowed.max(0) as u64;
            u.refused += refused.max(0) as u64;
        }
        None => r.route_counts.push(RouteUse {
            route,
            first_seen: s.get(3),
            last_seen: s.get(4),
            allowed: allowed.max(0) as u64,
            refused: refused.max(0) as u64,
        }),
    }
}
