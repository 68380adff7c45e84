//! The credentials a config names, put in the register as it goes live: every API key of the
//! keys file and every upstream credential, listed (with owner, sunset or expiry, and whether
//! revoked) before anyone uses them.

use crate::inventory::{Described, Inventory, Kind, NO_EXPIRY};
use crate::upstream::credentials::{Held, UpstreamCredential};

use super::snapshot::Snapshot;

impl Snapshot {
    /// Registers this snapshot's API keys and upstream credentials (call when it goes live).
    pub fn register_credentials(&self, inventory: &Inventory, now: i64) {
        if let Some(settings) = &self.identity.api_keys {
            let file = settings.file.display().to_string();
            for k in settings.keys.records() {
                let d = Described {
                    kind: Kind::ApiKey,
                    key: k.limit_id,
                    name: k.id.clone(),
                    issuer: file.clone(),
                    detail: k.hash_kind().to_string(),
                    not_before: k.created,
                    not_after: k.sunset,
                };
                inventory.register(&d, Some(k.owner.clone()), k.revoked, now);
            }
        }
        for c in self.routing.upstream_credentials.iter().flatten() {
            inventory.register(
                &described(c),
                c.owner.as_deref().map(Into::into),
                false,
                now,
            );
        }
    }
}

/// An upstream credential in the register's columns: its name, where it comes from, how it
/// is sent.
pub fn described(c: &UpstreamCredential) -> Described {
    let (issuer, detail) = match &c.held {
        Held::Header { header, .. } => ("value_file".to_string(), format!("header {header}")),
        Held::OAuth2(t) => (
            t.definition.token_url.clone(),
            format!("oauth2 {}", t.definition.client_auth),
        ),
    };
    Described {
        kind: Kind::UpstreamCredential,
        key: c.inventory_key,
        name: c.name.clone(),
        issuer,
        detail,
        not_before: 0,
        not_after: c.expires.unwrap_or(NO_EXPIRY),
    }
}
