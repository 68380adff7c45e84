//! The TLS inputs of a snapshot: the listener's certificate and key, and who may connect —
//! trust anchors, intermediates and CRLs compiled into the client verifier.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;

use crate::authn::identity::ClientIdentity;
use crate::util::pem;
use tracing::{error, info};

use crate::authn::revocation::check::{PendingReport, Revocation};
use crate::authn::revocation::ocsp::{AiaHosts, OcspPolicy};
use crate::authn::revocation::remote::RemoteCrl;
use crate::authn::tls::{self, ClientAuthSettings};
use crate::config::{ConfigError, ConfigFile, OcspMode, UnknownRevocation};
use crate::telemetry::Telemetry;
use crate::util::time::{fmt_time, unix_now};

use super::Registries;
use super::crls::{CrlChecks, CrlSummary, crl_sources, load_crls, resolve_crl_urls};

/// A trust anchor or intermediate as `check` reports it.
#[derive(Debug, Clone)]
pub struct CertSummary {
    pub file: PathBuf,
    pub subject: String,
    pub not_after: i64,
}

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
        let chain = pem::load_certs(&cert_path).map_err(|e| file.invalid("listener.cert", e))?;
        let key =
            pem::load_key(&file.resolve(&l.key)).map_err(|e| file.invalid("listener.key", e))?;
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
    /// `client_auth.crl_urls`, and the CAs their CRLs must come from.
    pub(super) remote_crls: Vec<Arc<RemoteCrl>>,
    pub(super) cas: Arc<Vec<CertificateDer<'static>>>,
    pub(super) ocsp: Option<Arc<OcspPolicy>>,
}

impl Trust {
    pub(super) fn load(
        file: &ConfigFile,
        registries: &Registries,
        telemetry: &Telemetry,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let ca = &file.raw.client_auth;
        let CaFiles {
            roots,
            anchors,
            anchor_subjects,
            intermediates,
            intermediate_certs,
            cas,
        } = CaFiles::load(file)?;
        let mut checks = CrlChecks::default();
        let remote_crls = resolve_crl_urls(file, &registries.crl_urls, telemetry)?;
        let sources = crl_sources(file, &remote_crls);
        let crls = load_crls(
            file,
            &sources,
            &cas,
            &registries.crls,
            warnings,
            &mut checks,
        )?;
        warn_about_ca_without_crl(file, &crls, &anchors, &intermediates, warnings);
        let revocation = (!sources.is_empty()).then(|| {
            Revocation::new(
                crls.iter().map(|c| (c.source.clone(), c.crl.clone())),
                anchor_subjects,
                ca.revocation_scope,
                ca.unknown_revocation,
                ca.stale_crl,
                report_pending(telemetry),
            )
        });
        let verifier = tls::client_verifier(ClientAuthSettings {
            mode: ca.mode,
            roots,
            intermediates: intermediate_certs,
            revocation,
        })
        .map_err(|e| file.invalid("client_auth", e))?;
        let cas = Arc::new(cas);
        let ocsp = ocsp_policy(file, &cas)?;
        Ok(Self {
            verifier,
            anchors,
            intermediates,
            crls,
            checks,
            remote_crls,
            cas,
            ocsp,
        })
    }
}

/// The trust anchors and intermediates the config names, read and checked.
struct CaFiles {
    roots: RootCertStore,
    anchors: Vec<CertSummary>,
    anchor_subjects: Vec<Vec<u8>>,
    intermediates: Vec<CertSummary>,
    intermediate_certs: Vec<CertificateDer<'static>>,
    /// Anchors and intermediates: what a CRL must be issued by.
    cas: Vec<CertificateDer<'static>>,
}

impl CaFiles {
    fn load(file: &ConfigFile) -> Result<Self, ConfigError> {
        let ca = &file.raw.client_auth;
        if ca.trust_store.is_empty() {
            return Err(file.invalid(
                "client_auth.trust_store",
                "at least one PEM bundle is required",
            ));
        }
        let mut roots = RootCertStore::empty();
        let mut anchors = Vec::new();
        let mut anchor_subjects = Vec::new();
        let mut cas = Vec::new();
        for (key, cert, summary) in read_bundles(file, "trust_store", &ca.trust_store)? {
            anchor_subjects.push(subject_der(&cert));
            cas.push(cert.clone());
            roots.add(cert).map_err(|e| {
                file.invalid(
                    &key,
                    format!("{}: not a usable trust anchor: {e}", summary.file.display()),
                )
            })?;
            anchors.push(summary);
        }
        let mut intermediate_certs = Vec::new();
        let mut intermediates = Vec::new();
        for (_, cert, summary) in read_bundles(file, "intermediates", &ca.intermediates)? {
            intermediates.push(summary);
            cas.push(cert.clone());
            intermediate_certs.push(cert);
        }
        Ok(Self {
            roots,
            anchors,
            anchor_subjects,
            intermediates,
            intermediate_certs,
            cas,
        })
    }
}

/// Every certificate of the PEM bundles `client_auth.NAME`, with the key naming its bundle
/// (`client_auth.NAME[i]`) and its summary.
fn read_bundles(
    file: &ConfigFile,
    name: &str,
    paths: &[PathBuf],
) -> Result<Vec<(String, CertificateDer<'static>, CertSummary)>, ConfigError> {
    let mut out = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let key = format!("client_auth.{name}[{i}]");
        let path = file.resolve(p);
        for cert in pem::load_certs(&path).map_err(|e| file.invalid(&key, e))? {
            let summary = summarize(&path, &cert).map_err(|e| file.invalid(&key, e))?;
            out.push((key.clone(), cert, summary));
        }
    }
    Ok(out)
}

/// Logs the first verification of a pending CRL against each CA key; one that fails makes
/// the CRL unusable for that CA: ERROR once, `certgate_crl_usable{source}` 0.
fn report_pending(telemetry: &Telemetry) -> PendingReport {
    let usable = telemetry.metrics.crl_usable_handle();
    Arc::new(move |source, ca, outcome| match outcome {
        Ok(()) => info!(
            target: "certgate::tls",
            source,
            ca,
            "pending CRL verified against the CA certificate a client presented; in force for that CA"
        ),
        Err(why) => {
            usable.set(source, false);
            error!(
                target: "certgate::tls",
                source,
                ca,
                problem = %why,
                "pending CRL does not verify against the CA certificate a client presented: unusable for that CA, whose clients are revocation-unknown"
            );
        }
    })
}

/// `client_auth.ocsp*`: `None` when OCSP is off.
fn ocsp_policy(
    file: &ConfigFile,
    cas: &Arc<Vec<CertificateDer<'static>>>,
) -> Result<Option<Arc<OcspPolicy>>, ConfigError> {
    let ca = &file.raw.client_auth;
    if ca.ocsp == OcspMode::Off {
        return Ok(None);
    }
    if ca.ocsp_timeout.is_zero() {
        return Err(file.invalid("client_auth.ocsp_timeout", "must be more than 0"));
    }
    if ca.ocsp_max_age.as_secs() < 1 {
        return Err(file.invalid("client_auth.ocsp_max_age", "must be at least 1s"));
    }
    let aia_hosts = AiaHosts::parse(&ca.ocsp_aia_hosts)
        .map_err(|e| file.invalid("client_auth.ocsp_aia_hosts", e))?;
    if ca.ocsp_responder.is_empty() && aia_hosts.is_empty() {
        return Err(file.invalid(
            "client_auth.ocsp",
            "is on but neither ocsp_responder nor ocsp_aia_hosts is set: certgate never fetches a URL a client certificate names unless its host is listed in ocsp_aia_hosts",
        ));
    }
    OcspPolicy::new(
        ca.ocsp,
        &ca.ocsp_responder,
        aia_hosts,
        ca.ocsp_timeout,
        ca.ocsp_max_age,
        cas.clone(),
    )
    .map(|p| Some(Arc::new(p)))
    .map_err(|e| file.invalid("client_auth.ocsp_responder", e))
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
    if ca.crls.is_empty() && ca.crl_urls.is_empty() {
        if ca.ocsp != OcspMode::Off {
            return;
        }
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

/// A certificate's subject name as DER (as certificates' issuer fields carry it).
fn subject_der(cert: &CertificateDer<'_>) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(cert.as_ref())
        .map(|(_, c)| c.subject().as_raw().to_vec())
        .unwrap_or_default()
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
