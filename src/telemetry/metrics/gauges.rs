//! Gauges that are replaced whole (from the snapshot or the inventory) rather than updated by
//! requests.

use super::Metrics;

impl Metrics {
    /// Publishes the expiry of the loaded CRLs, replacing what a previous config published.
    pub fn set_crl_next_updates<'a>(&self, crls: impl Iterator<Item = (&'a str, Option<i64>)>) {
        self.crl_next_update.reset();
        for (file, next) in crls {
            if let Some(t) = next {
                self.crl_next_update.with_label_values(&[file]).set(t);
            }
        }
    }

    /// Replaces `certgate_crl_usable` with the configured sources' state.
    pub fn set_crl_usable<'a>(&self, sources: impl Iterator<Item = (&'a str, bool)>) {
        self.crl_usable.reset();
        for (source, ok) in sources {
            self.crl_usable
                .with_label_values(&[source])
                .set(i64::from(ok));
        }
    }

    /// A handle on `certgate_crl_usable` for what finds a CRL unusable after it went live (a
    /// pending CRL that a client's CA did not sign).
    pub fn crl_usable_handle(&self) -> CrlUsable {
        CrlUsable(self.crl_usable.clone())
    }

    /// Replaces `certgate_credentials` with `counts` by (owner, state).
    pub fn set_credentials(
        &self,
        counts: std::collections::HashMap<crate::inventory::CountKey, i64>,
    ) {
        self.credentials.reset();
        for ((kind, owner, state), n) in counts {
            self.credentials
                .with_label_values(&[kind.label(), &owner, state])
                .set(n);
        }
    }
}

/// Sets one CRL source's `certgate_crl_usable`.
#[derive(Clone)]
pub struct CrlUsable(prometheus::IntGaugeVec);

impl CrlUsable {
    pub fn set(&self, source: &str, usable: bool) {
        self.0.with_label_values(&[source]).set(i64::from(usable));
    }
}
