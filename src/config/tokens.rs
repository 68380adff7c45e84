//! The raw access-token tables: `[token_issuers.NAME]` and a route's `token = {…}`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::defaults::*;

/// `token = { issuer, scopes, claims, forward }` on a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteToken {
    /// A `[token_issuers.NAME]`.
    pub issuer: String,
    /// Every one must be in the token's `scope`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claim name → required value (equal to a string claim, or a member of an array claim).
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Forward the `Authorization` header upstream (default: removed).
    #[serde(default)]
    pub forward: bool,
}

/// `[token_issuers.NAME]`: who issues the access tokens a route can require (RFC 9068 JWTs,
/// certificate-bound per RFC 8705).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenIssuer {
    /// The exact `iss`.
    pub issuer: String,
    /// `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// A JWKS file (hot-reloaded) or an `http(s)://` URL.
    pub jwks: String,
    /// How often a JWKS URL is fetched again.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Signature algorithms accepted; `none` and HS* are refused.
    #[serde(default = "default_token_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_token_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// The token must carry `cnf."x5t#S256"` naming the client's certificate.
    #[serde(default = "default_true")]
    pub require_binding: bool,
    /// PEM CA bundle for an `https://` JWKS URL; absent = the system roots.
    pub jwks_ca: Option<PathBuf>,
}

impl RawTokenIssuer {
    /// True when `jwks` names a URL rather than a file.
    pub fn jwks_is_url(&self) -> bool {
        self.jwks.starts_with("http://") || self.jwks.starts_with("https://")
    }
}
