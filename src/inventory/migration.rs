//! `certgate inventory --migration`: the API keys still standing between a route and mTLS —
//! who holds each, how much it is still used, how long until its sunset, and whether its owner
//! already has a certificate (then the key can go: `cutover = "reject_if_cert_seen"`).

use serde::Serialize;

use super::report::{Format, relative};
use super::{InventoryError, Kind, NO_EXPIRY, Record, credential_state};
use crate::authz::owners::UNOWNED;
use crate::util::time::fmt_time;

/// The window "uses" counts.
pub const WINDOW_DAYS: i64 = 30;

/// One API key in the migration report.
#[derive(Debug, Serialize)]
pub struct MigrationRow {
    pub key_id: String,
    pub owner: String,
    /// active | expiring | sunset | revoked.
    pub state: &'static str,
    pub sunset: Option<String>,
    pub days_to_sunset: Option<i64>,
    /// Requests in the last 30 days; absent when the source keeps no per-day counts
    /// (the fleet database).
    pub uses_30d: Option<u64>,
    pub last_use: Option<String>,
    #[serde(skip)]
    last_use_unix: i64,
    pub owner_uses_certificate: bool,
    pub routes: Vec<String>,
}

/// The API keys among `records`, most used first.
pub fn migration_rows(records: &[Record], now: i64, expiring_secs: i64) -> Vec<MigrationRow> {
    let today = now.div_euclid(86400);
    // One pass: owners with a certificate (not one scan per key).
    let certificate_owners: std::collections::HashSet<&str> = records
        .iter()
        .filter(|r| r.kind() == Kind::Certificate)
        .filter_map(|r| r.owner.as_deref())
        .collect();
    let certificate_owner = |owner: &str| certificate_owners.contains(owner);
    let mut rows: Vec<MigrationRow> = records
        .iter()
        .filter(|r| r.kind() == Kind::ApiKey)
        .map(|r| {
            let sunset = (r.not_after() < NO_EXPIRY).then_some(r.not_after());
            let used = r.requests_allowed + r.requests_denied;
            let uses_30d = if !r.uses_by_day.is_empty() || used == 0 {
                Some(
                    r.uses_by_day
                        .iter()
                        .filter(|d| d.day > today - WINDOW_DAYS)
                        .map(|d| d.requests)
                        .sum(),
                )
            } else {
                None
            };
            let owner = r.owner.clone().unwrap_or_else(|| UNOWNED.to_string());
            MigrationRow {
                key_id: r.subject().to_string(),
                owner_uses_certificate: r.owner.as_deref().is_some_and(certificate_owner),
                owner,
                state: credential_state(&r.identity, r.revoked_at, now, expiring_secs),
                sunset: sunset.map(fmt_time),
                days_to_sunset: sunset.map(|s| (s - now).div_euclid(86400)),
                uses_30d,
                last_use: (r.last_seen > 0).then(|| fmt_time(r.last_seen)),
                last_use_unix: r.last_seen,
                routes: r.routes.clone(),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.uses_30d
            .cmp(&a.uses_30d)
            .then_with(|| a.key_id.cmp(&b.key_id))
    });
    rows
}

/// The report as a table, JSON or CSV.
pub fn render_migration(
    rows: &[MigrationRow],
    format: Format,
    now: i64,
) -> Result<String, InventoryError> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(&serde_json::json!({
            "generated_at": fmt_time(now),
            "window_days": WINDOW_DAYS,
            "count": rows.len(),
            "api_keys": rows,
        }))?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record([
                "key_id",
                "owner",
                "state",
                "sunset",
                "days_to_sunset",
                "uses_30d",
                "last_use",
                "owner_uses_certificate",
                "routes",
            ])?;
            for r in rows {
                w.write_record([
                    r.key_id.clone(),
                    super::report::csv_cell(&r.owner).into_owned(),
                    r.state.to_string(),
                    r.sunset.clone().unwrap_or_default(),
                    r.days_to_sunset.map(|d| d.to_string()).unwrap_or_default(),
                    r.uses_30d.map(|u| u.to_string()).unwrap_or_default(),
                    r.last_use.clone().unwrap_or_default(),
                    r.owner_uses_certificate.to_string(),
                    r.routes.join(" "),
                ])?;
            }
            let bytes = w.into_inner().map_err(|e| e.into_error())?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        Format::Table => Ok(table(rows, now)),
    }
}

fn table(rows: &[MigrationRow], now: i64) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.force_no_tty();
    t.set_header([
        "KEY ID",
        "OWNER",
        "STATE",
        "SUNSET",
        "USES (30D)",
        "LAST USE",
        "OWNER HAS CERT",
        "ROUTES",
    ]);
    for r in rows {
        t.add_row([
            r.key_id.clone(),
            super::report::printable(&r.owner).into_owned(),
            r.state.to_string(),
            match r.days_to_sunset {
                Some(d) => {
                    let day = r.sunset.as_deref().and_then(|s| s.get(..10));
                    format!("{} ({})", day.unwrap_or(""), relative(d * 86400))
                }
                None => "none".to_string(),
            },
            r.uses_30d
                .map_or_else(|| "-".to_string(), |u| u.to_string()),
            if r.last_use_unix > 0 {
                relative(r.last_use_unix - now)
            } else {
                "never".to_string()
            },
            if r.owner_uses_certificate {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            r.routes.join(","),
        ]);
    }
    let holders = rows.iter().filter(|r| !r.owner_uses_certificate).count();
    format!(
        "{t}\n{} API key(s); {holders} held by owners without a certificate yet\n",
        rows.len()
    )
}
