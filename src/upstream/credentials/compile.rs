//! `[upstream_credentials.NAME]` compiled: each kind's keys checked, its files read, and an
//! OAuth2 token source taken over from the live registry when its definition is unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use http::{HeaderName, HeaderValue};

use super::assertion::SigningKey;
use super::oauth2::{ClientAuth, Definition, FetchResults, TokenSource, form_encode};
use super::{CredentialRegistry, Held, UpstreamCredential};
use crate::authn::fetch::Fetcher;
use crate::config::{
    ConfigError, ConfigFile, OAuth2ClientAuth, RawUpstreamCredential, UpstreamCredentialKind,
};
use crate::inventory::{Kind, credential_key};
use crate::telemetry::metrics::Metrics;
use crate::util::time::unix_now;

/// The credential of each upstream (indexed like `upstream_names`).
pub fn compile_upstream_credentials(
    file: &ConfigFile,
    upstream_names: &[&String],
    metrics: &Metrics,
    registry: &CredentialRegistry,
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<Arc<UpstreamCredential>>>, ConfigError> {
    let raw = &file.raw;
    let mut compiled = std::collections::HashMap::new();
    for (name, c) in &raw.upstream_credentials {
        let at = Keys { file, name };
        let held = match c.kind {
            UpstreamCredentialKind::Header => header(&at, c)?,
            UpstreamCredentialKind::Oauth2ClientCredentials => {
                Held::OAuth2(token_source(&at, c, metrics, registry)?)
            }
        };
        let expires = c.expires.as_deref().map(|d| at.day(d)).transpose()?;
        if let (Some(t), Some(day)) = (expires, &c.expires)
            && t - unix_now() <= raw.expiry.warning_window.as_secs() as i64
        {
            warnings.push(format!(
                "upstream_credentials.{name} expires {day} (within expiry.warning_window): rotate it"
            ));
        }
        let credential = UpstreamCredential {
            name: name.clone(),
            owner: c.owner.clone(),
            expires,
            held,
            inventory_key: credential_key(Kind::UpstreamCredential, &[name]),
        };
        compiled.insert(name.clone(), Arc::new(credential));
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

/// Names keys of one `[upstream_credentials.NAME]` in errors.
struct Keys<'a> {
    file: &'a ConfigFile,
    name: &'a str,
}

impl Keys<'_> {
    fn invalid(&self, key: &str, problem: impl std::fmt::Display) -> ConfigError {
        let name = self.name;
        self.file
            .invalid(format!("upstream_credentials.{name}.{key}"), problem)
    }

    fn required<'v, T: ?Sized>(
        &self,
        v: Option<&'v T>,
        key: &str,
        kind: &str,
    ) -> Result<&'v T, ConfigError> {
        v.ok_or_else(|| self.invalid(key, format!("required with {kind}")))
    }

    /// Keys of another kind are mistakes, not silently ignored.
    fn unused(&self, set: &[(&str, bool)], kind: &str) -> Result<(), ConfigError> {
        match set.iter().find(|(_, is_set)| *is_set) {
            Some((key, _)) => Err(self.invalid(key, format!("does not apply to {kind}"))),
            None => Ok(()),
        }
    }

    fn read(&self, key: &str, path: &Path) -> Result<(PathBuf, Vec<u8>), ConfigError> {
        let path = self.file.resolve(path);
        let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
            file: path.clone(),
            source,
        })?;
        if bytes.is_empty() {
            return Err(self.invalid(key, format!("{}: empty", path.display())));
        }
        Ok((path, bytes))
    }

    /// 00:00 UTC of a `YYYY-MM-DD` day, in Unix seconds.
    fn day(&self, day: &str) -> Result<i64, ConfigError> {
        humantime::parse_rfc3339(&format!("{day}T00:00:00Z"))
            .map_err(|_| self.invalid("expires", format!("{day:?} is not a YYYY-MM-DD day")))
            .map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            })
    }
}

/// One line of a secret file (a trailing newline is not part of it).
fn one_line(at: &Keys<'_>, key: &str, path: &Path, bytes: &[u8]) -> Result<String, ConfigError> {
    std::str::from_utf8(bytes)
        .ok()
        .map(|t| t.trim_end_matches(['\n', '\r']))
        .filter(|t| !t.is_empty() && t.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .map(str::to_string)
        .ok_or_else(|| {
            at.invalid(
                key,
                format!("{}: not one line of visible characters", path.display()),
            )
        })
}

fn header(at: &Keys<'_>, c: &RawUpstreamCredential) -> Result<Held, ConfigError> {
    const KIND: &str = "kind = \"header\"";
    at.unused(
        &[
            ("token_url", c.token_url.is_some()),
            ("client_id", c.client_id.is_some()),
            ("client_auth", c.client_auth.is_some()),
            ("key", c.key.is_some()),
            ("cert", c.cert.is_some()),
            ("secret_file", c.secret_file.is_some()),
            ("ca", c.ca.is_some()),
            ("scopes", !c.scopes.is_empty()),
        ],
        KIND,
    )?;
    let name = at.required(c.header.as_deref(), "header", KIND)?;
    let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .ok()
        .filter(|h| {
            !matches!(
                h.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            )
        })
        .ok_or_else(|| at.invalid("header", format!("{name:?} cannot carry a credential")))?;
    let path = at.required(c.value_file.as_deref(), "value_file", KIND)?;
    let (path, bytes) = at.read("value_file", path)?;
    let mut value = HeaderValue::from_str(&one_line(at, "value_file", &path, &bytes)?)
        .map_err(|_| at.invalid("value_file", "not a header value"))?;
    value.set_sensitive(true);
    Ok(Held::Header { header, value })
}

fn token_source(
    at: &Keys<'_>,
    c: &RawUpstreamCredential,
    metrics: &Metrics,
    registry: &CredentialRegistry,
) -> Result<Arc<TokenSource>, ConfigError> {
    const KIND: &str = "kind = \"oauth2_client_credentials\"";
    at.unused(
        &[
            ("header", c.header.is_some()),
            ("value_file", c.value_file.is_some()),
        ],
        KIND,
    )?;
    let token_url = at.required(c.token_url.as_deref(), "token_url", KIND)?;
    if !token_url.starts_with("https://") {
        return Err(at.invalid(
            "token_url",
            "must be https:// (the gateway authenticates to it)",
        ));
    }
    let client_id = at.required(c.client_id.as_deref(), "client_id", KIND)?;
    let method = *at.required(c.client_auth.as_ref(), "client_auth", KIND)?;
    let mut files = Vec::new();
    let mut read = |key: &str, path: &Path| {
        let (path, bytes) = at.read(key, path)?;
        files.push(crate::util::digest::sha256(&bytes));
        Ok::<_, ConfigError>((path, bytes))
    };
    let ca = c.ca.as_deref().map(|p| read("ca", p)).transpose()?;
    let with = format!("client_auth = \"{}\"", method.as_str());
    let (auth, identity) = match method {
        OAuth2ClientAuth::PrivateKeyJwt => {
            at.unused(
                &[
                    ("cert", c.cert.is_some()),
                    ("secret_file", c.secret_file.is_some()),
                ],
                &with,
            )?;
            let (path, _) = read("key", at.required(c.key.as_deref(), "key", &with)?)?;
            let key = load_key(at, &path)?;
            let signer = SigningKey::from_der(&key).map_err(|e| at.invalid("key", e))?;
            (ClientAuth::PrivateKeyJwt(signer), None)
        }
        OAuth2ClientAuth::TlsClientAuth => {
            at.unused(&[("secret_file", c.secret_file.is_some())], &with)?;
            let (cert, _) = read("cert", at.required(c.cert.as_deref(), "cert", &with)?)?;
            let (key, _) = read("key", at.required(c.key.as_deref(), "key", &with)?)?;
            let chain = crate::util::pem::load_certs(&cert).map_err(|e| at.invalid("cert", e))?;
            (
                ClientAuth::TlsClientAuth,
                Some((chain, load_key(at, &key)?)),
            )
        }
        OAuth2ClientAuth::ClientSecretBasic => {
            at.unused(
                &[("cert", c.cert.is_some()), ("key", c.key.is_some())],
                &with,
            )?;
            let path = at.required(c.secret_file.as_deref(), "secret_file", &with)?;
            let (path, bytes) = read("secret_file", path)?;
            let secret = one_line(at, "secret_file", &path, &bytes)?;
            (
                ClientAuth::ClientSecretBasic(basic(client_id, &secret)),
                None,
            )
        }
    };
    let definition = Definition {
        token_url: token_url.to_string(),
        client_id: client_id.to_string(),
        client_auth: method.as_str(),
        scopes: c.scopes.clone(),
        files,
    };
    if let Some(live) = registry.live(at.name, &definition) {
        return Ok(live);
    }
    let ca_path = ca.map(|(p, _)| p);
    let fetcher = Fetcher::with_identity(token_url, ca_path.as_deref(), identity)
        .map_err(|e| at.invalid(if ca_path.is_some() { "ca" } else { "token_url" }, e))?;
    let results = FetchResults::new(&|result| metrics.upstream_credential_fetch(at.name, result));
    Ok(Arc::new(TokenSource::new(
        at.name, definition, fetcher, auth, results,
    )))
}

fn load_key(
    at: &Keys<'_>,
    path: &Path,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, ConfigError> {
    crate::util::pem::load_key(path).map_err(|e| at.invalid("key", e))
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive.
fn basic(client_id: &str, secret: &str) -> HeaderValue {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}
