//! An inventory entry as saved to the file, served by `GET /inventory` and read back by reports.

use serde::{Deserialize, Serialize};

use crate::authn::identity::ClientIdentity;

/// One inventory entry as persisted and as served by `GET /inventory`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub(super) identity: Identity,
    pub first_seen: i64,
    pub last_seen: i64,
    pub requests_allowed: u64,
    pub requests_denied: u64,
    /// Every route it called (allowed or refused), sorted.
    pub routes: Vec<String>,
    /// Routes it was allowed on.
    #[serde(default)]
    pub routes_allowed: Vec<String>,
    /// Routes it was only ever refused on: probing, or a policy that needs attention.
    #[serde(default)]
    pub routes_refused: Vec<String>,
    /// Access-token subjects (`sub`) presented with this certificate (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_subjects: Vec<String>,
    /// Access-token `client_id`s presented with this certificate (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_client_ids: Vec<String>,
    /// Further distinct subjects or client ids seen beyond those kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub token_principals_overflow: u64,
    /// The owner (from the owners file) when last seen; absent: none matched, or no owners file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When the gateway learnt the certificate is revoked (unix seconds); absent: not known
    /// to be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Requests per route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_counts: Vec<RouteUse>,
    /// The gateways that saw it (fleet inventory only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
}

/// One route's use by one certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteUse {
    pub route: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub allowed: u64,
    pub refused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Record {
    pub fn sha256(&self) -> &str {
        &self.identity.sha256
    }
    pub fn subject(&self) -> &str {
        &self.identity.subject
    }
    pub fn not_after(&self) -> i64 {
        self.identity.not_after
    }
    pub fn not_before(&self) -> i64 {
        self.identity.not_before
    }
    pub fn issuer(&self) -> &str {
        &self.identity.issuer
    }
    pub fn serial(&self) -> &str {
        &self.identity.serial
    }
}

/// A certificate as the inventory knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Identity {
    pub(super) sha256: String,
    pub(super) subject: String,
    pub(super) issuer: String,
    pub(super) serial: String,
    #[serde(default)]
    pub(super) uris: Vec<String>,
    #[serde(default)]
    pub(super) dns: Vec<String>,
    #[serde(default)]
    pub(super) emails: Vec<String>,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
}

/// What the inventory keeps of a verified certificate.
pub(super) fn identity_of(id: &ClientIdentity) -> Identity {
    Identity {
        sha256: id.sha256_hex.clone(),
        subject: id.subject.clone(),
        issuer: id.issuer.clone(),
        serial: id.serial.clone(),
        uris: id.uris.clone(),
        dns: id.dns_names.clone(),
        emails: id.emails.clone(),
        not_before: id.not_before,
        not_after: id.not_after,
    }
}
