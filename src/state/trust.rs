//! The TLS inputs of a snapshot: the listener's certificate and key, and who may connect —
//! trust anchors, intermediates and CRLs compiled into the client verifier.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;

use crate::authn::crl;
use crate::authn::identity::ClientIdentity;
use crate::authn::tls::{self, ClientAuthSettings};
use crate::config::{ConfigError, ConfigFile, StaleCrl, UnknownRevocation};
use crate::util::time::{fmt_time, unix_now};

use super::snapshot::{CertSummary, CrlSummary};

/// The listener's certificate chain and key.
pub(super) struct ServerCert {
    pub(super) chain: Vec<CertificateDer<'static>>,
    pub(super) key: PrivateKeyDer<'static>,
    pub(super) identity: ClientIdentity,
}

impl ServerCert {
    /// Loads `listener.cert` and `listener.key`; an expired certificate is an error (every
    /// client would refuse the handshake).
    pub(super) fn load(file: &ConfigFile) -> Result<Self, ConfigError> {
        let l = &file.raw.listener;
        let cert_path = file.resolve(&l.cert);
        let chain = tls::load_certs(&cert_path).map_err(|e| file.invalid("listener.cert", e))?;
        let key =
            tls::load_key(&file.resolve(&l.key)).map_err(|e| file.invalid("listener.key", e))?;
        let identity = ClientIdentity::from_der(chain[0].as_ref())
            .map_err(|e| file.invalid("listener.cert", e))?;
        if identity.not_after < unix_now() {
            return Err(file.invalid(
                "listener.cert",
                format!(
                    "{}: the server certificate expired at {}",
                    cert_path.display(),
                    fmt_time(identity.not_after)
                ),
            ));
        }
        Ok(Self {
            chain,
            key,
            identity,
        })
    }
}

/// Who may connect: trust anchors, intermediates and CRLs, compiled into the verifier.
pub(super) struct Trust {
    pub(super) verifier: Arc<dyn ClientCertVerifier>,
    pub(super) anchors: Vec<CertSummary>,
    pub(super) intermediates: Vec<CertSummary>,
    pub(super) crls: Vec<CrlSummary>,
    pub(super) checks: CrlChecks,
}

/// What checking the configured CRLs found.
#[derive(Debug, Default)]
pub struct CrlChecks {
    /// Per configured CRL source: usable or not (`certgate_crl_usable{source}`).
    pub usable: Vec<(String, bool)>,
    /// Unusable CRLs, by file and reason: ERROR at start and reload, `check` fails.
    pub problems: Vec<String>,
    /// Issuers (DER names) of unusable CRLs with no last good one.
    revocation_unknown: Vec<Vec<u8>>,
}

/// The last good CRLs of each source, kept across reloads so an unusable replacement does not
/// undo revocations that were in force.
#[derive(Default)]
pub struct CrlRegistry {
    good: Mutex<HashMap<PathBuf, Vec<CrlSummary>>>,
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
}

impl Trust {
    pub(super) fn load(
        file: &ConfigFile,
        registry: &CrlRegistry,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let ca = &file.raw.client_auth;
        if ca.trust_store.is_empty() {
            return Err(file.invalid(
                "client_auth.trust_store",
                "at least one PEM bundle is required",
            ));
        }
        let mut roots = RootCertStore::empty();
        let mut anchors = Vec::new();
        let mut cas = Vec::new();
        for (i, p) in ca.trust_store.iter().enumerate() {
            let key = format!("client_auth.trust_store[{i}]");
            let path = file.resolve(p);
            for cert in tls::load_certs(&path).map_err(|e| file.invalid(&key, e))? {
                anchors.push(summarize(&path, &cert).map_err(|e| file.invalid(&key, e))?);
                cas.push(cert.clone());
                roots.add(cert).map_err(|e| {
                    file.invalid(
                        &key,
                        format!("{}: not a usable trust anchor: {e}", path.display()),
                    )
                })?;
            }
        }
        let mut intermediate_certs = Vec::new();
        let mut intermediates = Vec::new();
        for (i, p) in ca.intermediates.iter().enumerate() {
            let key = format!("client_auth.intermediates[{i}]");
            let path = file.resolve(p);
            for cert in tls::load_certs(&path).map_err(|e| file.invalid(&key, e))? {
                intermediates.push(summarize(&path, &cert).map_err(|e| file.invalid(&key, e))?);
                cas.push(cert.clone());
                intermediate_certs.push(cert);
            }
        }
        let mut checks = CrlChecks::default();
        let crls = load_crls(file, &cas, registry, warnings, &mut checks)?;
        warn_about_ca_without_crl(file, &crls, &anchors, &intermediates, warnings);
        let verifier = tls::client_verifier(ClientAuthSettings {
            mode: ca.mode,
            roots,
            crls: crls.iter().map(|c| c.crl.der.clone()).collect(),
            intermediates: intermediate_certs,
            revocation_scope: ca.revocation_scope,
            unknown_revocation: ca.unknown_revocation,
            stale_crl: ca.stale_crl,
            revocation_unknown: checks.revocation_unknown.clone(),
        })
        .map_err(|e| file.invalid("client_auth", e))?;
        Ok(Self {
            verifier,
            anchors,
            intermediates,
            crls,
            checks,
        })
    }
}

/// `client_auth.crls`, each checked before the verifier gets it: an unusable one (unparseable,
/// issuer not trusted, issuer without cRLSign, bad signature, rejected by the verifier) is
/// reported and replaced by the last good CRL of the same file, or else leaves its CA's clients
/// revocation-unknown. Stale ones are warnings.
fn load_crls(
    file: &ConfigFile,
    cas: &[CertificateDer<'static>],
    registry: &CrlRegistry,
    warnings: &mut Vec<String>,
    checked: &mut CrlChecks,
) -> Result<Vec<CrlSummary>, ConfigError> {
    let ca = &file.raw.client_auth;
    let now = unix_now();
    let mut crls = Vec::new();
    for (i, p) in ca.crls.iter().enumerate() {
        let key = format!("client_auth.crls[{i}]");
        let path = file.resolve(p);
        let loaded = crl::load_crls(&path).map_err(|e| file.invalid(&key, e))?;
        let usable = match loaded {
            Err(why) => Err((None, why)),
            Ok(list) => match list
                .iter()
                .find_map(|c| crl::unusable(c, cas).map(|why| (c.issuer_der.clone(), why)))
            {
                Some((issuer, why)) => Err((Some(issuer), why)),
                None => Ok(list),
            },
        };
        checked
            .usable
            .push((path.display().to_string(), usable.is_ok()));
        let list = match usable {
            Ok(list) => list,
            Err((issuer, why)) => {
                match registry.last_good(&path) {
                    Some(kept) => {
                        checked.problems.push(format!(
                            "{key}: {}: unusable CRL ({why}); the last good CRL loaded from it stays in force",
                            path.display()
                        ));
                        crls.extend(kept);
                    }
                    None => {
                        checked.problems.push(format!(
                            "{key}: {}: unusable CRL ({why}); the clients of its CA are revocation-unknown",
                            path.display()
                        ));
                        checked.revocation_unknown.extend(issuer);
                    }
                }
                continue;
            }
        };
        for crl in list {
            if crl.next_update.is_some_and(|t| t < now) {
                warnings.push(format!(
                    "{}: CRL of {} is past its nextUpdate{}",
                    path.display(),
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
                crl,
            });
        }
    }
    Ok(crls)
}

/// Warnings: no CRL configured at all, or a CA without a CRL in force.
fn warn_about_ca_without_crl(
    file: &ConfigFile,
    crls: &[CrlSummary],
    anchors: &[CertSummary],
    intermediates: &[CertSummary],
    warnings: &mut Vec<String>,
) {
    let ca = &file.raw.client_auth;
    if ca.crls.is_empty() {
        warnings.push(
            "client_auth.crls is empty: revoked client certificates will be accepted until they expire"
                .to_string(),
        );
        return;
    }
    let deny = ca.unknown_revocation == UnknownRevocation::Deny;
    for c in anchors.iter().chain(intermediates) {
        if !crls.iter().any(|crl| crl.crl.issuer == c.subject) {
            warnings.push(format!(
                "no CRL loaded for CA {} ({}); with unknown_revocation = \"{}\" its certificates are {}",
                c.subject,
                c.file.display(),
                if deny { "deny" } else { "allow" },
                if deny { "refused" } else { "not revocation-checked" },
            ));
        }
    }
}

fn summarize(path: &Path, cert: &CertificateDer<'_>) -> Result<CertSummary, String> {
    let id =
        ClientIdentity::from_der(cert.as_ref()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(CertSummary {
        file: path.to_path_buf(),
        subject: id.subject,
        not_after: id.not_after,
    })
}
