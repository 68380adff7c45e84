//! `[api_keys]` and the keys file it names: legacy static keys, kept only to move their holders
//! to certificates. The file holds hashes only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[api_keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    /// The keys file (`[[key]]` records), relative to the config file; hot-reloaded.
    pub file: PathBuf,
    /// The HMAC-SHA-256 secret (at least 32 bytes) keys issued by `certgate keys new` are
    /// hashed with.
    pub pepper_file: PathBuf,
    /// The request header carrying a key (`Authorization: ApiKey <key>` is accepted too).
    #[serde(default = "default_header")]
    pub header: String,
    /// Sent as `Link: <…>; rel="deprecation"` and `rel="sunset"` with every answer to a key.
    #[serde(default)]
    pub migration_link: String,
}

fn default_header() -> String {
    "x-api-key".into()
}

/// The keys file.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeysFile {
    #[serde(default)]
    pub key: Vec<RawKey>,
}

/// One `[[key]]`: who holds it, until when, for which routes — and its hash, never the key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Not secret: the `<id>` part of an issued key, sent upstream as `x-client-api-key-id`.
    pub id: String,
    pub owner: String,
    /// `hmac-sha256:<hex>` (issued keys) or `argon2id:<PHC string>` (imported legacy keys).
    pub hash: String,
    /// When the key was issued or imported (RFC 3339), sent as `Deprecation: @<unix seconds>`.
    pub created: String,
    /// The last day the key works (`YYYY-MM-DD`, UTC): refused from 00:00 UTC of that day.
    pub sunset: String,
    /// The routes (by name) the key may call.
    pub routes: Vec<String>,
    #[serde(default)]
    pub cutover: Cutover,
    #[serde(default)]
    pub revoked: bool,
}

/// When a key stops working before its sunset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cutover {
    /// Only at its sunset (or when revoked).
    #[default]
    None,
    /// Once a certificate of the key's owner (owners file) has been used.
    RejectIfCertSeen,
}

impl Cutover {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::RejectIfCertSeen => "reject_if_cert_seen",
        }
    }
}

/// `[upstream_credentials.NAME]`: a secret the gateway holds for an upstream, so callers
/// never do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamCredential {
    pub kind: UpstreamCredentialKind,
    /// `kind = "header"`: the header the upstream reads the secret from.
    pub header: Option<String>,
    /// `kind = "header"`: the file holding the secret (hot-reloaded; never logged).
    pub value_file: Option<PathBuf>,
    pub owner: Option<String>,
    /// The day the secret expires (`YYYY-MM-DD`): the inventory's state; `check` warns
    /// inside `expiry.warning_window`.
    pub expires: Option<String>,
    /// `kind = "oauth2_client_credentials"` (RFC 6749 §4.4).
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_auth: Option<OAuth2ClientAuth>,
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub secret_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// How the gateway authenticates to an OAuth2 token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2ClientAuth {
    /// RFC 7523: a JWT signed with `key` (ES256, ES384, EdDSA or PS256 by the key's type).
    PrivateKeyJwt,
    /// RFC 8705 §2: the TLS client certificate `cert` with `key`.
    TlsClientAuth,
    /// RFC 6749 §2.3.1: HTTP Basic with `client_id` and the secret in `secret_file`.
    ClientSecretBasic,
}

impl OAuth2ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::TlsClientAuth => "tls_client_auth",
            Self::ClientSecretBasic => "client_secret_basic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamCredentialKind {
    Header,
    Oauth2ClientCredentials,
}
