//! `[api_keys]` compiled: the pepper and the keys file are read now (both are snapshot inputs,
//! so editing either is a reload: a revoked key is refused from the next request). Errors name
//! the file and the record's key; the file's keys are never printed.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::authn::apikey::{ApiKeys, Pepper};
use crate::config::{ConfigError, ConfigFile, RawKeysFile, parse_toml};
use crate::util::time::unix_now;

/// The keys and how they are presented and answered.
#[derive(Debug)]
pub struct ApiKeySettings {
    pub keys: ApiKeys,
    /// The header carrying a key (`Authorization: ApiKey <key>` is accepted too).
    pub header: HeaderName,
    /// `Link: <migration_link>; rel="deprecation", <…>; rel="sunset"`, when set.
    pub link: Option<HeaderValue>,
    /// The keys file, for `check` and the logs.
    pub file: std::path::PathBuf,
}

/// Headers that carry something else: a key cannot be read from them.
const RESERVED: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
    "x-forwarded-client-cert",
    "x-client-api-key-id",
    "x-client-owner",
];

pub(super) fn compile_api_keys(
    file: &ConfigFile,
    route_exists: impl Fn(&str) -> bool,
    owners: &crate::authz::owners::Owners,
    warnings: &mut Vec<String>,
) -> Result<Option<Arc<ApiKeySettings>>, ConfigError> {
    let Some(raw) = &file.raw.api_keys else {
        return Ok(None);
    };
    let pepper_path = file.resolve(&raw.pepper_file);
    let pepper = std::fs::read(&pepper_path).map_err(|source| ConfigError::Read {
        file: pepper_path.clone(),
        source,
    })?;
    let pepper =
        Pepper::new(&pepper).map_err(|e| file.invalid("api_keys.pepper_file", e.problem))?;
    let path = file.resolve(&raw.file);
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        file: path.clone(),
        source,
    })?;
    let parsed: RawKeysFile = parse_toml(&path, &text)?;
    let keys =
        ApiKeys::compile(&parsed, pepper, route_exists).map_err(|e| ConfigError::Invalid {
            file: path.clone(),
            key: e.key,
            problem: e.problem,
        })?;
    let header = HeaderName::from_bytes(raw.header.to_ascii_lowercase().as_bytes())
        .ok()
        .filter(|h| !RESERVED.contains(&h.as_str()))
        .ok_or_else(|| {
            file.invalid(
                "api_keys.header",
                format!(
                    "{:?} cannot carry keys (a header name that is not reserved)",
                    raw.header
                ),
            )
        })?;
    let link = match raw.migration_link.trim() {
        "" => None,
        url => Some(migration_link(url).ok_or_else(|| {
            file.invalid(
                "api_keys.migration_link",
                format!("{url:?} is not an absolute http(s) URL"),
            )
        })?),
    };
    let now = unix_now();
    // A cut-over waits for a certificate of the key's owner: an owner no [[owner]] entry names
    // never has one, and the key would only stop at its sunset.
    for r in keys.records().filter(|r| {
        r.cutover == crate::config::Cutover::RejectIfCertSeen
            && !owners.list.iter().any(|o| *o.name == *r.owner)
    }) {
        warnings.push(format!(
            "{}: key {} cuts over when a certificate of {} is used, but no [[owner]] of the owners file is named {:?}: it only stops at its sunset ({})",
            path.display(),
            r.id,
            r.owner,
            &*r.owner,
            r.sunset_day
        ));
    }
    for r in keys.records().filter(|r| !r.revoked && r.sunset <= now) {
        warnings.push(format!(
            "{}: key {} of {} is past its sunset ({}): it is refused; remove it",
            path.display(),
            r.id,
            r.owner,
            r.sunset_day
        ));
    }
    Ok(Some(Arc::new(ApiKeySettings {
        keys,
        header,
        link,
        file: path,
    })))
}

fn migration_link(url: &str) -> Option<HeaderValue> {
    let uri: http::Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return None;
    }
    HeaderValue::from_str(&format!(
        "<{url}>; rel=\"deprecation\", <{url}>; rel=\"sunset\""
    ))
    .ok()
}
