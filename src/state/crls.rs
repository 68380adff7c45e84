//! The CRL inputs of a snapshot: files and URLs' cache files, each verified when read (or
//! reused from the last verification while the file and the CAs are unchanged), the last good
//! CRLs kept across reloads, and what `check` and the logs report about them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;

use crate::authn::revocation::crl::{self, LoadedCrl, Unusable};
use crate::authn::revocation::remote::{self, CrlUrlRegistry, RemoteCrl};
use crate::config::{ConfigError, ConfigFile, StaleCrl};
use crate::telemetry::Telemetry;
use crate::util::digest::sha256;
use crate::util::time::unix_now;

/// A CRL as `check` reports it.
#[derive(Debug, Clone)]
pub struct CrlSummary {
    /// The file read (for a URL, its cache file).
    pub file: PathBuf,
    /// The file, or the URL (without userinfo): what logs and metrics call it.
    pub source: String,
    pub crl: LoadedCrl,
}

/// What checking the configured CRLs found.
#[derive(Debug, Default)]
pub struct CrlChecks {
    /// Per configured CRL source: usable or not (`certgate_crl_usable{source}`).
    pub usable: Vec<(String, bool)>,
    /// Unusable CRLs, by file and reason: ERROR at start and reload, `check` fails.
    pub problems: Vec<String>,
    /// The sources among them with nothing in force (no last good CRL): `/readyz` is 503
    /// naming them, so a rollout with a placeholder or broken CRL does not go Ready.
    pub unready: Vec<String>,
    /// CRL URLs with no copy yet (never fetched, nothing cached): ERROR once the first fetch
    /// failed; a warning for `check`, which does not fetch.
    pub unfetched: Vec<String>,
    /// CRLs whose issuer is not a configured CA, verified against the CA certificate a client
    /// presents: a warning for `check` and `explain`, INFO when going live.
    pub pending: Vec<String>,
}

/// CRL state kept across reloads: the last good CRLs of each source, so an unusable
/// replacement does not undo revocations that were in force; and the last verification of each
/// source, so a reload that leaves a (possibly million-entry) CRL file and the CAs unchanged
/// does not verify it again.
#[derive(Default)]
pub struct CrlRegistry {
    good: Mutex<HashMap<PathBuf, Vec<CrlSummary>>>,
    verified: Mutex<HashMap<PathBuf, Verified>>,
}

/// One verification of a CRL file: the digests of its bytes and of the CAs, and the outcome.
struct Verified {
    bytes: [u8; 32],
    cas: [u8; 32],
    outcome: Result<Vec<LoadedCrl>, Unusable>,
}

impl CrlRegistry {
    fn last_good(&self, source: &Path) -> Option<Vec<CrlSummary>> {
        let good = self.good.lock().unwrap_or_else(|e| e.into_inner());
        good.get(source).cloned()
    }

    /// Makes the snapshot's CRLs (those in force) the last good ones.
    pub fn adopt(&self, crls: &[CrlSummary]) {
        let mut good = self.good.lock().unwrap_or_else(|e| e.into_inner());
        good.clear();
        for c in crls {
            good.entry(c.file.clone()).or_default().push(c.clone());
        }
    }

    /// Reads and verifies a CRL file, or reuses the last outcome when neither its bytes nor the
    /// CAs changed. The outer error is a file that cannot be read.
    fn load(
        &self,
        path: &Path,
        cas: &[CertificateDer<'static>],
        cas_digest: [u8; 32],
    ) -> Result<Result<Vec<LoadedCrl>, Unusable>, crate::util::pem::LoadError> {
        let bytes = crate::util::pem::read(path)?;
        let digest = sha256(&bytes);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = verified.get(path)
            && v.bytes == digest
            && v.cas == cas_digest
        {
            return Ok(v.outcome.clone());
        }
        let outcome = crl::parse_crls(&bytes, cas);
        verified.insert(
            path.to_path_buf(),
            Verified {
                bytes: digest,
                cas: cas_digest,
                outcome: outcome.clone(),
            },
        );
        Ok(outcome)
    }

    /// Forgets the verifications of files no longer configured.
    fn keep_only(&self, paths: &[PathBuf]) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.retain(|p, _| paths.contains(p));
    }
}

/// One configured CRL source: a file, or a URL read from its cache file.
pub(super) struct CrlSource {
    /// `client_auth.crls[i]` or `client_auth.crl_urls[i]`.
    key: String,
    /// The file, or the URL without userinfo.
    name: String,
    path: PathBuf,
    url: bool,
}

pub(super) fn crl_sources(file: &ConfigFile, remote: &[Arc<RemoteCrl>]) -> Vec<CrlSource> {
    let ca = &file.raw.client_auth;
    let files = ca.crls.iter().enumerate().map(|(i, p)| {
        let path = file.resolve(p);
        CrlSource {
            key: format!("client_auth.crls[{i}]"),
            name: path.display().to_string(),
            path,
            url: false,
        }
    });
    let urls = remote.iter().enumerate().map(|(i, r)| CrlSource {
        key: format!("client_auth.crl_urls[{i}]"),
        name: r.source.clone(),
        path: r.definition.cache.clone(),
        url: true,
    });
    files.chain(urls).collect()
}

/// `client_auth.crl_urls`: each URL's fetcher, kept from the registry while unchanged.
pub(super) fn resolve_crl_urls(
    file: &ConfigFile,
    registry: &CrlUrlRegistry,
    telemetry: &Telemetry,
) -> Result<Vec<Arc<RemoteCrl>>, ConfigError> {
    let ca = &file.raw.client_auth;
    if ca.crl_urls.is_empty() {
        return Ok(Vec::new());
    }
    if ca.crl_refresh.as_secs() < 1 {
        return Err(file.invalid("client_auth.crl_refresh", "must be at least 1s"));
    }
    let dir = file.resolve(&ca.crl_cache_dir);
    let max_bytes = usize::try_from(ca.crl_max_bytes.as_u64())
        .ok()
        .filter(|n| *n >= 1024)
        .ok_or_else(|| file.invalid("client_auth.crl_max_bytes", "must be at least 1KiB"))?;
    let mut seen = std::collections::HashSet::new();
    ca.crl_urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let key = format!("client_auth.crl_urls[{i}]");
            if !seen.insert(url.as_str()) {
                return Err(file.invalid(&key, format!("{url:?} is listed twice")));
            }
            let definition = remote::Definition {
                url: url.clone(),
                refresh: ca.crl_refresh,
                cache: remote::cache_path(&dir, url),
                max_bytes,
            };
            registry
                .resolve(definition, &|source, result| {
                    telemetry.metrics.crl_fetch(source, result)
                })
                .map_err(|e| file.invalid(&key, e))
        })
        .collect()
}

/// `client_auth.crls`, each verified when read (or when it or the CAs changed): an unusable one
/// (unparseable, issuer without cRLSign, bad signature, rejected by the verifier) is reported and replaced by the last good CRL of the same file, or else leaves its
/// CA's clients revocation-unknown. Stale ones are warnings; pending ones (issuer not a
/// configured CA) are noted.
pub(super) fn load_crls(
    file: &ConfigFile,
    sources: &[CrlSource],
    cas: &[CertificateDer<'static>],
    registry: &CrlRegistry,
    warnings: &mut Vec<String>,
    checked: &mut CrlChecks,
) -> Result<Vec<CrlSummary>, ConfigError> {
    let ca = &file.raw.client_auth;
    let now = unix_now();
    let cas_digest = sha256(&cas.iter().map(|c| c.as_ref()).collect::<Vec<_>>().concat());
    registry.keep_only(&sources.iter().map(|s| s.path.clone()).collect::<Vec<_>>());
    let mut crls = Vec::new();
    for source in sources {
        let CrlSource {
            key, name, path, ..
        } = source;
        if source.url && !path.exists() {
            checked.usable.push((name.clone(), false));
            checked.unfetched.push(format!(
                "{key}: {name}: no copy yet (not fetched, nothing cached at {}); the clients of its CA are revocation-unknown until a fetch succeeds",
                path.display()
            ));
            continue;
        }
        let loaded = registry
            .load(path, cas, cas_digest)
            .map_err(|e| file.invalid(key, e))?;
        // A pending CRL that a client's CA did not sign stays unusable (for that CA) across
        // reloads that keep it.
        let failed = loaded.as_ref().is_ok_and(|list| {
            list.iter()
                .any(|c| c.pending.as_ref().is_some_and(|p| p.failed_any()))
        });
        checked
            .usable
            .push((name.clone(), loaded.is_ok() && !failed));
        let list = match loaded {
            Ok(list) => list,
            Err(Unusable { why, .. }) => {
                crls.extend(keep_last_good(registry, source, &why, checked));
                continue;
            }
        };
        for crl in list {
            if crl.pending.is_some() {
                checked.pending.push(format!(
                    "{key}: {name}: the CRL of {} is pending: its issuer is not in the trust store or the intermediates, so it is verified against the CA certificate of that name a client presents, once per CA key, and used for that CA only if it verifies; to verify it at load, add that CA certificate to client_auth.intermediates",
                    crl.issuer
                ));
            }
            if crl.next_update.is_some_and(|t| t < now) {
                warnings.push(format!(
                    "{name}: CRL of {} is past its nextUpdate{}",
                    crl.issuer,
                    match ca.stale_crl {
                        StaleCrl::Deny =>
                            "; with stale_crl = \"deny\" every client of that CA is refused",
                        StaleCrl::Warn => "",
                    }
                ));
            }
            crls.push(CrlSummary {
                file: path.clone(),
                source: name.clone(),
                crl,
            });
        }
    }
    Ok(crls)
}

/// An unusable CRL: the last good one loaded from the same source stays in force, if any;
/// else the clients of its CA are revocation-unknown (and `/readyz` says why).
fn keep_last_good(
    registry: &CrlRegistry,
    source: &CrlSource,
    why: &str,
    checked: &mut CrlChecks,
) -> Vec<CrlSummary> {
    let CrlSource {
        key, name, path, ..
    } = source;
    let kept = registry.last_good(path);
    checked.problems.push(format!(
        "{key}: {name}: unusable CRL ({why}); {}",
        if kept.is_some() {
            "the last good CRL loaded from it stays in force"
        } else {
            "the clients of its CA are revocation-unknown"
        }
    ));
    if kept.is_none() {
        checked
            .unready
            .push(format!("{key}: {name}: unusable CRL ({why})"));
    }
    kept.unwrap_or_default()
}
