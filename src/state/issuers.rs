//! `[token_issuers.NAME]` compiled: a JWKS file is read and parsed now (it is one of the
//! snapshot's inputs, so a change to it is a reload); a JWKS URL resolves to the live
//! [`RemoteJwks`] of the registry, kept across reloads while its definition is unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::authn::token::remote::{Definition, JwksRegistry, RemoteJwks};
use crate::authn::token::{Issuer, IssuerSpec, JwksSource, KeySet, parse_algorithms};
use crate::config::{ConfigError, ConfigFile, RawTokenIssuer};
use crate::telemetry::Telemetry;

/// Compiled issuers in name order, and each name's index among them.
pub(super) type Issuers = (Vec<Arc<Issuer>>, HashMap<String, usize>);

pub(super) fn compile_issuers(
    file: &ConfigFile,
    telemetry: &Telemetry,
    registry: &JwksRegistry,
    warnings: &mut Vec<String>,
) -> Result<Issuers, ConfigError> {
    let mut issuers = Vec::new();
    let mut index = HashMap::new();
    for (name, raw) in &file.raw.token_issuers {
        let key = |k: &str| format!("token_issuers.{name}.{k}");
        let allowed =
            parse_algorithms(&raw.algorithms).map_err(|e| file.invalid(key("algorithms"), e))?;
        let (source, keys, remote) = if raw.jwks_is_url() {
            let remote = resolve_remote(name, raw, &allowed, file, telemetry, registry)
                .map_err(|(k, e)| file.invalid(key(k), e))?;
            (
                JwksSource::Url(raw.jwks.clone()),
                remote.keys.clone(),
                Some(remote),
            )
        } else {
            if raw.jwks_ca.is_some() {
                return Err(file.invalid(key("jwks_ca"), "only applies to an https:// jwks URL"));
            }
            let path = file.resolve(std::path::Path::new(&raw.jwks));
            let bytes = std::fs::read(&path)
                .map_err(|e| file.invalid(key("jwks"), format!("{}: {e}", path.display())))?;
            let set = KeySet::parse(&bytes, &allowed)
                .map_err(|e| file.invalid(key("jwks"), format!("{}: {e}", path.display())))?;
            for s in &set.skipped {
                warnings.push(format!(
                    "token_issuers.{name}.jwks: {}: {s}; tokens signed with it are refused",
                    path.display()
                ));
            }
            (
                JwksSource::File(path),
                Arc::new(ArcSwap::from_pointee(set)),
                None,
            )
        };
        if !raw.require_binding {
            warnings.push(format!(
                "token_issuers.{name}.require_binding = false: unbound tokens are bearer tokens, usable by anyone who copies them"
            ));
        }
        let issuer = Issuer::compile(IssuerSpec {
            name,
            raw,
            algorithms: allowed,
            source,
            keys,
            remote,
            counter: &|result| telemetry.metrics.token_validation(name, result),
        })
        .map_err(|(k, e)| file.invalid(key(k), e))?;
        index.insert(name.clone(), issuers.len());
        issuers.push(Arc::new(issuer));
    }
    Ok((issuers, index))
}

fn resolve_remote(
    name: &str,
    raw: &RawTokenIssuer,
    allowed: &[jsonwebtoken::Algorithm],
    file: &ConfigFile,
    telemetry: &Telemetry,
    registry: &JwksRegistry,
) -> Result<Arc<RemoteJwks>, (&'static str, String)> {
    if raw.jwks_refresh.as_secs() < 1 {
        return Err(("jwks_refresh", "must be at least 1s".into()));
    }
    let ca = raw.jwks_ca.as_ref().map(|p| file.resolve(p));
    let ca_digest = match &ca {
        None => None,
        Some(p) => {
            let bytes =
                std::fs::read(p).map_err(|e| ("jwks_ca", format!("{}: {e}", p.display())))?;
            Some(crate::util::digest::sha256(&bytes))
        }
    };
    let definition = Definition {
        url: raw.jwks.clone(),
        refresh: raw.jwks_refresh,
        algorithms: allowed.to_vec(),
        ca_digest,
    };
    registry
        .resolve(name, definition, ca.as_deref(), &|result| {
            telemetry.metrics.jwks_fetch(name, result)
        })
        .map_err(|e| (if ca.is_some() { "jwks_ca" } else { "jwks" }, e.to_string()))
}
