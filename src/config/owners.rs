//! `[owners]` in the config, and the owners file it names: who owns which client certificates,
//! and what happens to certificates nobody owns or that outlive their owner's rotation rule.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::routes::RawMatcher;

/// `[owners]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOwners {
    /// The owners file (`[[owner]]` entries), relative to the config file; hot-reloaded.
    pub file: Option<PathBuf>,
    /// A verified certificate no owner entry matches.
    pub unowned: OwnerPolicy,
    /// A certificate whose validity period is longer than its owner's `max_lifetime`.
    pub lifetime_violation: OwnerPolicy,
}

/// What a governance finding does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerPolicy {
    /// Nothing (the inventory and reports still show it).
    #[default]
    Allow,
    /// Logged and counted as `would_deny`, forwarded.
    Audit,
    /// 403 on every route.
    Deny,
}

impl OwnerPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Audit => "audit",
            Self::Deny => "deny",
        }
    }
}

/// The owners file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwnersFile {
    #[serde(default)]
    pub owner: Vec<RawOwner>,
}

/// One `[[owner]]`: the first whose `match` entries match a certificate owns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwner {
    pub name: String,
    #[serde(default)]
    pub contact: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    /// Longest validity period (notAfter − notBefore) this owner's certificates may have.
    #[serde(default, with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    /// Entries as in a route's `allow`: any one matching makes the certificate this owner's.
    #[serde(rename = "match")]
    pub matchers: Vec<RawMatcher>,
}
