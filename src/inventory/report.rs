//! Inventory reports: each record with its owner, state and times made readable, as JSON (the
//! admin API and tools), CSV (spreadsheets) or an aligned table (people, with relative times
//! like "in 12 days").

use std::borrow::Cow;

use serde::Serialize;

use crate::authz::owners::{Owners, UNOWNED};
use crate::util::time::fmt_time;

use super::{InventoryError, Kind, NO_EXPIRY, Record, credential_state, lifetime_excess};

/// A record as reports show it.
#[derive(Serialize)]
pub struct RecordView<'a> {
    #[serde(flatten)]
    record: &'a Record,
    /// The owner's contact and purpose, from the owners file.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_contact: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_purpose: Option<&'a str>,
    /// active | expiring | expired | sunset | revoked.
    state: &'static str,
    not_before_utc: String,
    not_after_utc: String,
    first_seen_utc: String,
    last_seen_utc: String,
    expires_in_days: i64,
    lifetime_days: i64,
    /// Longer than the owner's `max_lifetime`.
    lifetime_violation: bool,
}

impl<'a> RecordView<'a> {
    /// `expiring_secs`: the window of the `expiring` state.
    pub fn new(record: &'a Record, now: i64, expiring_secs: i64, owners: &'a Owners) -> Self {
        let id = &record.identity;
        let owner = record
            .owner
            .as_deref()
            .and_then(|name| owners.list.iter().find(|o| &*o.name == name));
        Self {
            owner_contact: owner.and_then(|o| o.contact.as_deref()),
            owner_purpose: owner.and_then(|o| o.purpose.as_deref()),
            state: credential_state(id, record.revoked_at, now, expiring_secs),
            not_before_utc: fmt_time(id.not_before),
            not_after_utc: fmt_time(id.not_after),
            first_seen_utc: fmt_time(record.first_seen),
            last_seen_utc: fmt_time(record.last_seen),
            expires_in_days: (id.not_after - now).div_euclid(86400),
            lifetime_days: (id.not_after - id.not_before).div_euclid(86400),
            lifetime_violation: lifetime_excess(record, owners).is_some(),
            record,
        }
    }
}

/// Output format of `certgate inventory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

/// The report in `format`; `generated_at` and the count head the JSON form.
pub fn render(
    views: &[RecordView<'_>],
    format: Format,
    now: i64,
) -> Result<String, InventoryError> {
    match format {
        Format::Json => {
            let body = serde_json::json!({
                "generated_at": fmt_time(now),
                "count": views.len(),
                "identities": views,
            });
            Ok(serde_json::to_string_pretty(&body)?)
        }
        Format::Csv => csv(views),
        Format::Table => Ok(table(views, now)),
    }
}

const COLUMNS: [&str; 16] = [
    "subject",
    "owner",
    "state",
    "expires",
    "lifetime",
    "last_seen",
    "allowed",
    "refused",
    "routes",
    "issuer",
    "serial",
    "sha256",
    "gateways",
    "owner_contact",
    "owner_purpose",
    "kind",
];

/// Text from certificates, owner files and the fleet, safe to print: control characters
/// (C0, DEL, C1: terminal titles, screen clears, forged rows) as `\xHH` / `\u{HH}`.
pub(super) fn printable(s: &str) -> Cow<'_, str> {
    let control = |c: char| c.is_control();
    if !s.chars().any(control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if (c as u32) < 0x80 && control(c) => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if control(c) => out.push_str(&format!("\\u{{{:X}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A CSV cell: [`printable`], and a cell a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, tab or carriage return: OWASP's CSV injection list) prefixed with `'`.
pub(super) fn csv_cell(s: &str) -> Cow<'_, str> {
    let shown = printable(s);
    if shown.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        return Cow::Owned(format!("'{shown}"));
    }
    shown
}

fn csv(views: &[RecordView<'_>]) -> Result<String, InventoryError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for v in views {
        let r = v.record;
        let lifetime = format!(
            "{}{}",
            v.lifetime_days,
            if v.lifetime_violation { "!" } else { "" }
        );
        let text = |s: &str| csv_cell(s).into_owned();
        w.write_record([
            text(&r.identity.subject),
            text(r.owner.as_deref().unwrap_or(UNOWNED)),
            v.state.to_string(),
            v.not_after_utc.clone(),
            lifetime,
            v.last_seen_utc.clone(),
            r.requests_allowed.to_string(),
            r.requests_denied.to_string(),
            text(&r.routes.join(" ")),
            text(&r.identity.issuer),
            text(&r.identity.serial),
            text(&r.identity.sha256),
            text(&r.gateways.join(" ")),
            text(v.owner_contact.unwrap_or("")),
            text(v.owner_purpose.unwrap_or("")),
            r.kind().label().to_string(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    // Every cell was a String: the bytes are UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn table(views: &[RecordView<'_>], now: i64) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.force_no_tty();
    let fleet = views.iter().any(|v| !v.record.gateways.is_empty());
    let mut header = vec![
        "KIND",
        "SUBJECT",
        "OWNER",
        "STATE",
        "EXPIRES",
        "LIFETIME",
        "LAST SEEN",
        "ALLOWED",
        "REFUSED",
        "ROUTES",
        "SHA256",
    ];
    if fleet {
        header.push("GATEWAYS");
    }
    t.set_header(header);
    for v in views {
        let r = v.record;
        let mut row = vec![
            r.kind().label().to_string(),
            printable(&r.identity.subject).into_owned(),
            printable(r.owner.as_deref().unwrap_or(UNOWNED)).into_owned(),
            v.state.to_string(),
            expiry(r.identity.not_after, now),
            if r.kind() == Kind::Certificate {
                format!(
                    "{}d{}",
                    v.lifetime_days,
                    if v.lifetime_violation {
                        " (too long)"
                    } else {
                        ""
                    }
                )
            } else {
                "-".to_string()
            },
            if r.last_seen == 0 {
                "never".to_string()
            } else {
                relative(r.last_seen - now)
            },
            r.requests_allowed.to_string(),
            r.requests_denied.to_string(),
            printable(&r.routes.join(",")).into_owned(),
            printable(&r.identity.sha256).chars().take(16).collect(),
        ];
        if fleet {
            row.push(printable(&r.gateways.join(",")).into_owned());
        }
        t.add_row(row);
    }
    let noun = if views.iter().all(|v| v.record.kind() == Kind::Certificate) {
        "certificate(s)"
    } else {
        "credential(s)"
    };
    format!("{t}\n{} {noun}\n", views.len())
}

/// When a credential expires, in words; "never" for one without an expiry.
fn expiry(not_after: i64, now: i64) -> String {
    if not_after >= NO_EXPIRY {
        "never".to_string()
    } else {
        relative(not_after - now)
    }
}

/// `delta` seconds from now in words: "in 12 days", "3 hours ago", "now".
pub fn relative(delta: i64) -> String {
    let n = delta.unsigned_abs();
    let (value, unit) = match n {
        0..60 => return "now".to_string(),
        60..3600 => (n / 60, "minute"),
        3600..86400 => (n / 3600, "hour"),
        _ => (n / 86400, "day"),
    };
    let unit = if value == 1 {
        unit.to_string()
    } else {
        format!("{unit}s")
    };
    if delta > 0 {
        format!("in {value} {unit}")
    } else {
        format!("{value} {unit} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::{csv_cell, printable, relative};

    #[test]
    fn control_characters_are_escaped_and_formulas_defused() {
        assert_eq!(printable("CN=ok"), "CN=ok");
        assert_eq!(
            printable("CN=\u{1b}]0;pwned\u{7}\r\nforged,row"),
            "CN=\\x1B]0;pwned\\x07\\x0D\\x0Aforged,row"
        );
        assert_eq!(printable("a\u{9b}b\u{7f}"), "a\\u{9B}b\\x7F");
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(
            csv_cell("\tx"),
            "\\x09x",
            "escaped, no longer a formula lead"
        );
        for f in ["+1", "-2+3", "@SUM(A1)"] {
            assert!(csv_cell(f).starts_with('\''), "{f}");
        }
        assert_eq!(csv_cell("CN=a,O=b"), "CN=a,O=b");
    }

    #[test]
    fn relative_times_read_like_words() {
        assert_eq!(relative(12 * 86400 + 5), "in 12 days");
        assert_eq!(relative(-3 * 3600), "3 hours ago");
        assert_eq!(relative(86400), "in 1 day");
        assert_eq!(relative(-61), "1 minute ago");
        assert_eq!(relative(30), "now");
    }
}
