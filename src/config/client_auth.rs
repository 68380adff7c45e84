//! `[client_auth]`: who may connect, and how their revocation status is checked.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::defaults::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    Require,
    Optional,
}

impl ClientAuthMode {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Require => "require",
            Self::Optional => "optional",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationScope {
    #[default]
    Chain,
    EndEntity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownRevocation {
    #[default]
    Deny,
    Allow,
}

/// `client_auth.ocsp`: whether the leaf's status is asked of an OCSP responder, and what an
/// unreachable responder or an `unknown` answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OcspMode {
    #[default]
    Off,
    /// Unreachable or `unknown`: allowed (and counted).
    Soft,
    /// Unreachable or `unknown`: refused.
    Hard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCrl {
    #[default]
    Deny,
    Warn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub mode: ClientAuthMode,
    pub trust_store: Vec<PathBuf>,
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    #[serde(default)]
    pub intermediates: Vec<PathBuf>,
    #[serde(default)]
    pub revocation_scope: RevocationScope,
    #[serde(default)]
    pub unknown_revocation: UnknownRevocation,
    #[serde(default)]
    pub stale_crl: StaleCrl,
    /// http(s) URLs of CRLs, fetched at start and every `crl_refresh`.
    #[serde(default)]
    pub crl_urls: Vec<String>,
    #[serde(default = "default_crl_refresh", with = "humantime_serde")]
    pub crl_refresh: Duration,
    /// Where fetched CRLs are kept (the last good copy of each URL).
    #[serde(default = "default_crl_cache_dir")]
    pub crl_cache_dir: PathBuf,
    /// A fetched CRL larger than this is refused (streamed to disk, never buffered whole).
    #[serde(default = "default_crl_max_bytes")]
    pub crl_max_bytes: bytesize::ByteSize,
    #[serde(default)]
    pub ocsp: OcspMode,
    /// Overrides the leaf's AIA OCSP URL; empty: use the AIA, if its host is allowed.
    #[serde(default)]
    pub ocsp_responder: String,
    /// Hosts (`host` or `host:port`) whose OCSP URLs in a client certificate's AIA may be
    /// fetched; empty: none, never a URL a certificate names (no SSRF).
    #[serde(default)]
    pub ocsp_aia_hosts: Vec<String>,
    #[serde(default = "default_ocsp_timeout", with = "humantime_serde")]
    pub ocsp_timeout: Duration,
    #[serde(default = "default_ocsp_max_age", with = "humantime_serde")]
    pub ocsp_max_age: Duration,
}
