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
    /// API keys: requests per day (Unix day number) over the last 32 days.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses_by_day: Vec<DayUses>,
}

/// Requests of one credential on one day.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct DayUses {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub requests: u64,
}

/// What kind of credential an entry is: the register holds every kind.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Kind {
    /// A client certificate the gateway verified.
    #[default]
    Certificate,
    /// A legacy API key (`[api_keys]`), listed from the keys file before its first use.
    ApiKey,
    /// An access token's client (`client_id`, else `sub`) at an issuer, seen on verified tokens.
    TokenClient,
    /// A token issuer's signing key (by `kid`), seen verifying tokens.
    TokenKey,
    /// A secret the gateway holds for an upstream (`[upstream_credentials]`).
    UpstreamCredential,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Certificate,
        Kind::ApiKey,
        Kind::TokenClient,
        Kind::TokenKey,
        Kind::UpstreamCredential,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::ApiKey => "api_key",
            Self::TokenClient => "token_client",
            Self::TokenKey => "token_key",
            Self::UpstreamCredential => "upstream_credential",
        }
    }

    /// Kinds the config names: kept however long unused (the register lists them), never
    /// evicted to make room for certificates.
    pub fn from_config(self) -> bool {
        matches!(self, Self::ApiKey | Self::UpstreamCredential)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == s)
    }
}

/// `not_after` of a credential that does not expire (9999-12-31T23:59:59Z).
pub const NO_EXPIRY: i64 = 253_402_300_799;

/// The inventory key of a credential that is not a certificate: SHA-256 over its kind and
/// the names that identify it (never a secret).
pub fn credential_key(kind: Kind, names: &[&str]) -> [u8; 32] {
    crate::util::digest::named_key(kind.label(), names)
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
    pub fn kind(&self) -> Kind {
        self.identity.kind
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Identity {
    /// Absent in files written before the register held other kinds: a certificate.
    #[serde(default)]
    pub(super) kind: Kind,
    /// A certificate's SHA-256; for other kinds [`credential_key`], hex.
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
        kind: Kind::Certificate,
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

/// What names a credential that is not a certificate, in the register's columns.
pub struct Described {
    pub kind: Kind,
    /// [`credential_key`] of the credential.
    pub key: [u8; 32],
    /// The subject column: a key id, a client id, a `kid`, a credential name.
    pub name: String,
    /// The issuer column: the token issuer, the keys file, the token endpoint.
    pub issuer: String,
    /// The serial column: the algorithm, the hash kind, the header.
    pub detail: String,
    pub not_before: i64,
    /// Sunset or expiry; [`NO_EXPIRY`] for none.
    pub not_after: i64,
}

impl Described {
    pub(super) fn identity(&self) -> Identity {
        Identity {
            kind: self.kind,
            sha256: hex::encode(self.key),
            subject: self.name.clone(),
            issuer: self.issuer.clone(),
            serial: self.detail.clone(),
            uris: Vec::new(),
            dns: Vec::new(),
            emails: Vec::new(),
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}
