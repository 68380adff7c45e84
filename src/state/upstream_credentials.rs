//! `[upstream_credentials.NAME]` compiled: the secret an upstream expects, held by the gateway
//! and added to every request to that upstream (a client's copy of the header is dropped).
//! The value file is a snapshot input: rotating the secret is a reload. Never logged.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::config::{ConfigError, ConfigFile, UpstreamCredentialKind};
use crate::util::time::unix_now;

/// One credential, ready to inject.
#[derive(Debug)]
pub struct UpstreamCredential {
    pub name: String,
    pub header: HeaderName,
    /// Marked sensitive: HPACK never indexes it.
    pub value: HeaderValue,
    pub owner: Option<String>,
    /// Unix seconds of 00:00 UTC on the expiry day.
    pub expires: Option<i64>,
}

/// The credential of each upstream (indexed like the snapshot's upstreams).
pub(super) fn compile_upstream_credentials(
    file: &ConfigFile,
    upstream_names: &[&String],
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<Arc<UpstreamCredential>>>, ConfigError> {
    let raw = &file.raw;
    let mut compiled = std::collections::HashMap::new();
    for (name, c) in &raw.upstream_credentials {
        let key = |k: &str| format!("upstream_credentials.{name}.{k}");
        if c.kind == UpstreamCredentialKind::Oauth2ClientCredentials {
            return Err(file.invalid(
                key("kind"),
                "oauth2_client_credentials is not built yet: use kind = \"header\"",
            ));
        }
        let header = c
            .header
            .as_deref()
            .ok_or_else(|| file.invalid(key("header"), "required with kind = \"header\""))?;
        let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
            .ok()
            .filter(|h| {
                !matches!(
                    h.as_str(),
                    "host" | "content-length" | "transfer-encoding" | "connection"
                )
            })
            .ok_or_else(|| {
                file.invalid(
                    key("header"),
                    format!("{header:?} cannot carry a credential"),
                )
            })?;
        let path = c
            .value_file
            .as_deref()
            .map(|p| file.resolve(p))
            .ok_or_else(|| file.invalid(key("value_file"), "required with kind = \"header\""))?;
        let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
            file: path.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let mut value = HeaderValue::from_str(text.trim_end_matches(['\n', '\r']))
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                file.invalid(
                    key("value_file"),
                    format!("{}: not one line of visible characters", path.display()),
                )
            })?;
        value.set_sensitive(true);
        let expires = match &c.expires {
            None => None,
            Some(day) => Some(
                humantime::parse_rfc3339(&format!("{day}T00:00:00Z"))
                    .map_err(|_| {
                        file.invalid(key("expires"), format!("{day:?} is not a YYYY-MM-DD day"))
                    })?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64),
            ),
        };
        if let (Some(t), Some(day)) = (expires, &c.expires) {
            let window = raw.expiry.warning_window.as_secs() as i64;
            if t - unix_now() <= window {
                warnings.push(format!(
                    "upstream_credentials.{name} expires {day} (within expiry.warning_window): rotate it"
                ));
            }
        }
        compiled.insert(
            name.clone(),
            Arc::new(UpstreamCredential {
                name: name.clone(),
                header,
                value,
                owner: c.owner.clone(),
                expires,
            }),
        );
    }
    upstream_names
        .iter()
        .map(|u| match &raw.upstreams[*u].credential {
            None => Ok(None),
            Some(c) => compiled.get(c).cloned().map(Some).ok_or_else(|| {
                file.invalid(
                    format!("upstreams.{u}.credential"),
                    format!("no [upstream_credentials.{c}] is defined"),
                )
            }),
        })
        .collect()
}
