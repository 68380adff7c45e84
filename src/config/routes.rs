//! The raw `[[routes]]` table: matching, policy (allow/deny, shadow, enforcement), limits and
//! token requirements of one route.

use std::time::Duration;

use serde::Deserialize;

use super::defaults::*;
use super::limits::{RawQuota, RawRateLimit};
use super::tokens::RawRouteToken;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub path_prefix: String,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub allow: Vec<RawMatcher>,
    #[serde(default)]
    pub deny: Vec<RawMatcher>,
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Overrides the upstream's `timeout` for this route.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Largest request body forwarded; larger gets 413 (counted while streaming).
    #[serde(default = "default_max_body")]
    pub max_request_body: bytesize::ByteSize,
    /// Accept `;` parameters in path segments (Java-style `;jsessionid=`); policy then matches
    /// the path without them. Off: such a path is 400.
    #[serde(default)]
    pub allow_path_params: bool,
    /// WebSocket upgrades are proxied (false: refused, never reaching the upstream).
    #[serde(default = "default_true")]
    pub websocket: bool,
    /// Legacy API keys (`[api_keys]`) are accepted from clients without a certificate.
    #[serde(default)]
    pub api_keys: bool,
    /// The route needs a (certificate-bound) access token from this issuer.
    pub token: Option<RawRouteToken>,
    /// Requests per identity, source IP or route (GCRA: smooth, with a burst).
    pub rate_limit: Option<RawRateLimit>,
    /// Requests and response bytes per key per fixed window.
    pub quota: Option<RawQuota>,
    /// `audit`: every refusal of policy, token and limits is logged and counted as
    /// `would_deny` / `would_limit`, and the request is forwarded.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// A candidate policy evaluated beside the real one, logged and counted, never enforced.
    pub shadow: Option<RawShadow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    #[default]
    Enforce,
    Audit,
}

/// `shadow = { allow = [...], deny = [...] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    #[serde(default)]
    pub allow: Vec<RawMatcher>,
    #[serde(default)]
    pub deny: Vec<RawMatcher>,
}

/// One allow/deny entry: every key present must match (AND).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatcher {
    pub uri: Option<String>,
    pub dns: Option<String>,
    pub email: Option<String>,
    pub cn: Option<String>,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub issuer_cn: Option<String>,
    pub sha256: Option<String>,
    pub any: Option<bool>,
}
